"""Frames as JPEG: the form a session keeps them in and sends them over the WebSocket.

JPEG because browsers decode it natively (`createImageBitmap`), it is 10-20x smaller than raw RGB
so a long session's whole video fits in memory for export, and Pillow's libjpeg-turbo encodes a
frame in about a millisecond.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_jpegs(frames: np.ndarray, quality: int) -> list[bytes]:
    """uint8 `[T, H, W, 3]` frames to one JPEG each."""
    out = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame, "RGB").save(buffer, format="JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    """A JPEG the session made, back to uint8 `[H, W, 3]`."""
    with Image.open(io.BytesIO(jpeg)) as image:
        return np.asarray(image.convert("RGB"))
