"""A video a client sends (`start`'s `video`) for its session to continue.

Decoded once, where the `start` arrives, and bounded there: frame size by `max_video_pixels` (a
continuation keeps the video's size, which a session may not exceed) and length by
`max_continued_frames`, so a small upload cannot fill memory. Its hash goes into the export's
record, so that `render --from --extend FILE` can check it was given the same file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from framepack_live.engine.errors import InputError

from .metadata import Start, sha256
from .mp4 import read_video
from .settings import Limits


@dataclass(frozen=True)
class ContinuedVideo:
    """The decoded frames (uint8 [T, H, W, 3]) and the SHA-256 of the file they came from."""

    frames: np.ndarray
    sha256: str

    @property
    def width(self) -> int:
        return self.frames.shape[2]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    def record_start(self) -> Start:
        """How the export's record names this start: no path (it was uploaded), its hash and length."""
        return Start("video", sha256=self.sha256, frames=len(self.frames))


def read_continued(data: bytes, limits: Limits) -> ContinuedVideo:
    """Decode an uploaded video (blocking: run it off the event loop); `bad_request` for bytes
    FFmpeg cannot read, and for a video over the limits."""
    if not data:
        raise InputError("bad_request", "the video is empty")
    frames, _ = read_video(io.BytesIO(data), limits.max_video_pixels, limits.max_continued_frames)
    return ContinuedVideo(frames=frames, sha256=sha256(data))
