"""A session's video on disk: a JPEG per frame, an MP4 fragment per section.

Disk, not a process's memory: a session that runs until stopped would otherwise grow the server
without bound, and whichever process serves a viewer reads only the few frames it sends. The JPEGs
feed live viewers (WebSocket frames, the WebRTC track, clients that re-attach); the fragments
make the export (`fmp4`): each section is encoded once, when it is stored, and a download reads
the files as they are.

Branches: a rewind forks the video at a section boundary, and every branch is kept. A branch's path
is its ancestors' frames before its fork point, then its own; frame and piece numbers count along
the path, so a branch's frames continue its parent's at the fork. Each branch stores only its own.

Layout of a session's directory: `frames/000000123.jpg` and `video/000000004.m4s` (the fragment of
the fifth stored piece) of the first branch, `branches/N/frames/...` and `branches/N/video/...` of
branch N, and `video/header.mp4` (the segments' shared `ftyp` + `moov`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fmp4 import encode_segment
from .media import encode_jpegs


def warm_codecs() -> None:
    """Encode a blank frame as an append does (JPEG and H.264): a process's first encodes load the
    codecs (about 11 and 6 ms on the 2-core development machine), which a spare session actor
    does before its session rather than on the way to its first frames."""
    frame = np.zeros((1, 16, 16, 3), np.uint8)
    encode_jpegs(frame, 80)
    encode_segment(frame, 30, first_frame=0, sequence=1)


@dataclass
class _Branch:
    directory: Path
    parent: int | None
    #: Where the branch forked: frames and pieces before these come from the parent's path.
    first_frame: int
    first_piece: int
    #: The end of the branch's path.
    frames: int
    #: First frame of each piece the branch stored itself.
    pieces: list[int] = field(default_factory=list)

    @property
    def frames_dir(self) -> Path:
        return self.directory / "frames"

    @property
    def video_dir(self) -> Path:
        return self.directory / "video"

    def piece(self, index: int) -> Path:
        return self.video_dir / f"{index:09d}.m4s"


class FrameStore:
    """Appends sections' frames to the current branch and reads any branch's back. Blocking file
    I/O: call it from a worker thread when an event loop is waiting (the session does)."""

    def __init__(self, directory: Path, jpeg_quality: int) -> None:
        self.directory = directory
        self._jpeg_quality = jpeg_quality
        self._header = directory / "video" / "header.mp4"
        self._branches: list[_Branch] = []
        self.branch = self._add(_Branch(directory, None, 0, 0, 0))

    @property
    def frame_count(self) -> int:
        """Frames of the current branch's path."""
        return self.frames_of(self.branch)

    def frames_of(self, branch: int) -> int:
        """Frames of a branch's path."""
        return self._get(branch).frames

    def fork_frame(self, branch: int) -> int:
        """The branch's first own frame: where it left its parent's path."""
        return self._get(branch).first_frame

    @property
    def stored_frames(self) -> int:
        """Frames stored on disk, every branch's own."""
        return sum(b.frames - b.first_frame for b in self._branches)

    def fork(self, parent: int, first_frame: int) -> int:
        """A new branch, made current, whose path is `parent`'s up to `first_frame` (a section
        boundary of it); returns its number."""
        pieces = [start for start, _ in self._path_pieces(parent) if start < first_frame]
        directory = self.directory / "branches" / str(len(self._branches))
        self.branch = self._add(_Branch(directory, parent, first_frame, len(pieces), first_frame))
        return self.branch

    def append(self, frames: np.ndarray, fps: int) -> None:
        """Store uint8 `[T, H, W, 3]` frames that continue the current branch (JPEGs and one fragment)."""
        branch = self._branches[self.branch]
        first = branch.frames
        for index, jpeg in enumerate(encode_jpegs(frames, self._jpeg_quality), start=first):
            _write(branch.frames_dir / f"{index:09d}.jpg", jpeg)
        piece = branch.first_piece + len(branch.pieces)
        segment = encode_segment(frames, fps, first_frame=first, sequence=piece + 1)
        if not self._header.exists():
            _write(self._header, segment.header)
        _write(branch.piece(piece), segment.fragment)
        branch.frames += len(frames)
        branch.pieces.append(first)

    def read_frames(self, first: int, count: int, branch: int | None = None) -> list[bytes]:
        """JPEGs `first` .. `first + count - 1` of a branch's path (default: the current one;
        fewer where it is shorter)."""
        number = self.branch if branch is None else branch
        last = min(first + count, self._get(number).frames)
        return [(self._owner(number, index).frames_dir / f"{index:09d}.jpg").read_bytes() for index in range(first, last)]

    def export_parts(self, branch: int | None = None) -> list[Path]:
        """The files whose concatenation is the MP4 of a branch's path so far (default: the
        current branch), in order."""
        pieces = self._path_pieces(self.branch if branch is None else branch)
        return [self._header, *(path for _, path in pieces)] if pieces else []

    def read_export(self, branch: int | None = None) -> Iterator[bytes]:
        for part in self.export_parts(branch):
            yield part.read_bytes()

    def delete(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _add(self, branch: _Branch) -> int:
        branch.frames_dir.mkdir(parents=True, exist_ok=True)
        branch.video_dir.mkdir(parents=True, exist_ok=True)
        self._branches.append(branch)
        return len(self._branches) - 1

    def _get(self, number: int) -> _Branch:
        if not 0 <= number < len(self._branches):
            raise ValueError(f"no branch {number}: there are {len(self._branches)}")
        return self._branches[number]

    def _owner(self, number: int, frame: int) -> _Branch:
        """The branch on `number`'s path that stored `frame`."""
        branch = self._get(number)
        while frame < branch.first_frame:
            branch = self._branches[branch.parent]
        return branch

    def _path_pieces(self, number: int) -> list[tuple[int, Path]]:
        """(first frame, file) of every piece on the branch's path, in order."""
        branch = self._get(number)
        inherited = [] if branch.parent is None else self._path_pieces(branch.parent)[: branch.first_piece]
        own = [(start, branch.piece(branch.first_piece + i)) for i, start in enumerate(branch.pieces)]
        return inherited + own


def _write(path: Path, data: bytes) -> None:
    """Written under a temporary name and renamed, so a reader never sees half a file."""
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)
