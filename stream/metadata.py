"""What made a video, carried inside its MP4: model, settings, seed, timeline and start.

The record is one JSON object under the container tag `framepack_live` (written with the MP4
muxer's `use_metadata_tags`, which keeps tags of any name; `ffprobe -show_format` lists it). It
holds everything needed to make the same video again on the same machine and software
(`framepack-live render --from VIDEO.mp4`): the start image's bytes themselves (a video should not
depend on a file that may move), the per-section prompts and branches, the LoRA files with their
hashes, the runtime options that change the numbers, and the library versions it was made with.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path
from typing import BinaryIO, Literal

import av
from PIL import Image

from framepack_live.engine.errors import InputError
from framepack_live.engine.settings import GenerationSettings

#: The container tag that holds the record.
TAG = "framepack_live"
#: Version of the record's layout; a reader refuses layouts it does not know.
FORMAT = 1
#: Libraries whose versions decide the numbers of a render.
SOFTWARE = ("framepack-live", "torch", "diffusers", "transformers", "peft", "av")
StartKind = Literal["default", "image", "text", "video"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Start:
    """How the video began: the built-in image, an image (its file's bytes, kept), the prompt
    alone, or an existing video it continues (too large to keep: named by file and hash)."""

    kind: StartKind
    image: bytes | None = None
    name: str | None = None
    sha256: str | None = None
    #: Frames of the continued video (kind "video").
    frames: int | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["image"] = base64.b64encode(self.image).decode("ascii") if self.image is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Start:
        data = dict(data)
        if data.get("image") is not None:
            data["image"] = base64.b64decode(data["image"])
        return cls(**data)


@dataclass
class VideoRecord:
    """One video's making, as the MP4 carries it."""

    #: `--model` as given: a preset name, a model directory or a hub id; None when the server that
    #: made it did not say (`StreamSettings.model`).
    model: str | None
    settings: GenerationSettings
    #: One entry per section in the order they were made: `section` (playback index), `prompt`,
    #: `branch` (0 unless the video was rewound and steered anew).
    timeline: list[dict]
    start: Start
    end_image: Start | None = None
    #: Per LoRA of `settings.loras`, the SHA-256 of its weights file, in the same order.
    lora_sha256: list[str] = field(default_factory=list)
    #: Options that change the numbers without being generation settings: device, offloading,
    #: VAE tiling, sequence parallelism, the encoder's quality.
    runtime: dict = field(default_factory=dict)
    software: dict = field(default_factory=dict)

    def to_json(self) -> str:
        data = {
            "format": FORMAT,
            "model": self.model,
            "settings": self.settings.to_dict(),
            "timeline": self.timeline,
            "start": self.start.to_dict(),
            "end_image": self.end_image.to_dict() if self.end_image is not None else None,
            "lora_sha256": self.lora_sha256,
            "runtime": self.runtime,
            "software": self.software,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> VideoRecord:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise InputError("bad_request", f"the video's settings are in layout {data.get('format')!r}; this "
                                                f"version reads layout {FORMAT}")
            return cls(
                model=data["model"],
                settings=GenerationSettings(**data["settings"]),
                timeline=list(data["timeline"]),
                start=Start.from_dict(data["start"]),
                end_image=Start.from_dict(data["end_image"]) if data.get("end_image") else None,
                lora_sha256=list(data.get("lora_sha256", [])),
                runtime=dict(data.get("runtime", {})),
                software=dict(data.get("software", {})),
            )
        except InputError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError("bad_request", f"the video's framepack-live settings cannot be read: {exc}") from None

    def container_metadata(self) -> dict[str, str]:
        """What `Mp4Writer(metadata=...)` stores."""
        return {TAG: self.to_json()}


def image_start(image: Image.Image | None) -> Start:
    """The start of a video made from a decoded image (None: the built-in one). Kept as PNG:
    lossless, so decoding it again gives the same pixels the video was made from."""
    if image is None:
        return Start("default")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    return Start("image", image=data, sha256=sha256(data))


def software_versions() -> dict[str, str]:
    """The installed versions of the libraries that decide a render's numbers."""
    versions = {}
    for name in SOFTWARE:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def read_record(source: str | Path | BinaryIO) -> VideoRecord | None:
    """The record of an MP4, or None when it carries none (a video made elsewhere)."""
    try:
        with av.open(source if not isinstance(source, Path) else str(source)) as container:
            text = container.metadata.get(TAG)
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError("bad_request", f"cannot read the video {source}: {exc}") from None
    return VideoRecord.from_json(text) if text is not None else None
