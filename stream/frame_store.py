"""A session's video on disk: a JPEG per frame, an MP4 fragment per section.

Disk, not a process's memory: a session that runs until stopped would otherwise grow the server
without bound, and whichever process serves a viewer reads only the few frames it sends. The JPEGs
feed live viewers (WebSocket frames, the WebRTC track, clients that re-attach); the fragments
make the export (`fmp4`): each section is encoded once, when it is stored, and a download reads
the files as they are.

Layout of a session's directory: `frames/000000123.jpg` and `video/header.mp4` (the segments'
shared `ftyp` + `moov`), `video/000000004.m4s` (the fragment of the fifth stored piece).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .fmp4 import encode_segment
from .media import encode_jpegs


class FrameStore:
    """Appends sections' frames and reads them back. Blocking file I/O: call it from a worker
    thread when an event loop is waiting (the session does)."""

    def __init__(self, directory: Path, jpeg_quality: int) -> None:
        self.directory = directory
        self._jpeg_quality = jpeg_quality
        self._frames = directory / "frames"
        self._video = directory / "video"
        self._frames.mkdir(parents=True, exist_ok=True)
        self._video.mkdir(parents=True, exist_ok=True)
        self.frame_count = len(list(self._frames.glob("*.jpg")))
        self.piece_count = len(list(self._video.glob("*.m4s")))

    def append(self, frames: np.ndarray, fps: int) -> None:
        """Store uint8 `[T, H, W, 3]` frames that continue the video (JPEGs and one fragment)."""
        first = self.frame_count
        for index, jpeg in enumerate(encode_jpegs(frames, self._jpeg_quality), start=first):
            _write(self._frames / f"{index:09d}.jpg", jpeg)
        segment = encode_segment(frames, fps, first_frame=first, sequence=self.piece_count + 1)
        header = self._video / "header.mp4"
        if not header.exists():
            _write(header, segment.header)
        _write(self._video / f"{self.piece_count:09d}.m4s", segment.fragment)
        self.frame_count += len(frames)
        self.piece_count += 1

    def read_frames(self, first: int, count: int) -> list[bytes]:
        """JPEGs `first` .. `first + count - 1` (fewer where the video is shorter)."""
        last = min(first + count, self.frame_count)
        return [(self._frames / f"{index:09d}.jpg").read_bytes() for index in range(first, last)]

    def export_parts(self) -> list[Path]:
        """The files whose concatenation is the MP4 of every frame stored so far, in order."""
        if not self.piece_count:
            return []
        return [self._video / "header.mp4", *(self._video / f"{i:09d}.m4s" for i in range(self.piece_count))]

    def read_export(self) -> Iterator[bytes]:
        for part in self.export_parts():
            yield part.read_bytes()

    def delete(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _write(path: Path, data: bytes) -> None:
    """Written under a temporary name and renamed, so a reader never sees half a file."""
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)
