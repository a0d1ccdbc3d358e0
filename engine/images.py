"""Start images: safe decoding of untrusted bytes, the built-in default, fitting to a size."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageDraw

from .errors import InputError

#: Pixel count above which an image is refused before it is decoded in full (a 20000x20000 PNG
#: would need 1.2 GB of RAM). 4096x4096 is far above any FramePack bucket.
MAX_IMAGE_PIXELS = 4096 * 4096
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"RIFF": "WEBP"}


def sniff_format(data: bytes) -> str | None:
    """The format the bytes really are, whatever a file name or MIME type claims."""
    for magic, name in _SIGNATURES.items():
        if data.startswith(magic) and (name != "WEBP" or data[8:12] == b"WEBP"):
            return name
    return None


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode PNG/JPEG/WebP bytes into RGB, refusing other formats and oversized images.

    The header is read first (`Image.open` is lazy) so the pixel cap holds before any pixel is
    decoded; Pillow's own bomb check is made an error too.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise InputError("bad_image", "the image is not a PNG, JPEG or WebP file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(
                    "bad_image", f"the image is {width}x{height}; at most {max_pixels} pixels are accepted"
                )
            image.load()
    except InputError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError("bad_image", f"the image could not be decoded: {exc}") from None
    return image.convert("RGB")


def load_image_file(path: str) -> Image.Image:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputError("bad_image", f"cannot read image {path}: {exc.strerror}") from None
    return decode_image(data)


def default_start_image(width: int = 512, height: int = 512) -> Image.Image:
    """The built-in start image: a red disc on a sky-to-grass background, drawn, not shipped."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    horizon = int(height * 0.65)
    for y in range(height):
        if y < horizon:
            t = y / max(horizon, 1)
            color = (int(90 + 80 * t), int(150 + 60 * t), 235)
        else:
            t = (y - horizon) / max(height - horizon, 1)
            color = (int(60 - 20 * t), int(150 - 40 * t), int(70 - 20 * t))
        draw.line([(0, y), (width, y)], fill=color)
    radius = min(width, height) // 8
    cx, cy = width // 2, horizon - radius
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=(220, 40, 40))
    return image


def fit_to_size(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover `width`x`height` and crop the centre, as the original FramePack does.

    Stretching would distort the subject; cropping keeps its proportions.
    """
    scale = max(width / image.width, height / image.height)
    resized = image.resize(
        (max(width, round(image.width * scale)), max(height, round(image.height * scale))), Image.LANCZOS
    )
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def bucket_for(image_width: int, image_height: int, resolution: int) -> tuple[int, int]:
    """Width and height, multiples of 16, with about `resolution`² pixels and the image's aspect."""
    aspect = image_width / image_height
    height = (resolution / aspect**0.5) / 16
    width = (resolution * aspect**0.5) / 16
    return max(16, round(width) * 16), max(16, round(height) * 16)
