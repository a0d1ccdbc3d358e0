"""The engine state at every section boundary of a video and of its branches: what a rewind goes back to.

A `VideoState` is small plain data (history tail, random state, pending frames, prompt), so the
state before each section is simply kept (`video_state.snapshot`): going back to boundary k and
going on is then the same as having stopped there, bit for bit. A rewind starts a new branch whose
first boundaries are its parent's up to k (shared, never copied: snapshots are never changed), so
every branch stays reachable and each boundary costs its bytes once.

Most boundaries are small enough to keep in memory (the toy model at 128: 0.37 MB with causal
decoding, 2.1 MB with blend; the real model at 640x640 with causal decoding: 5.1 MB, mostly the 19
latent frames packing reads). Blend decoding at a real size keeps 33 float frames pending (166 MB
at 640x640), so past `memory_bytes` in all the snapshots go to files in a
temporary directory (`TMPDIR`), read back by a rewind and deleted by `close`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from . import video_state
from .video_state import VideoState

#: Snapshots kept in memory, in bytes (`video_state.snapshot_bytes`), before they go to disk.
MEMORY_BYTES = 256 * 2**20


class Boundaries:
    """Lines of boundary states, one per branch: `line[k]` is the state before section k of the
    branch's path (its ancestors' sections before it forked, then its own), in memory or a file."""

    def __init__(self, memory_bytes: int = MEMORY_BYTES) -> None:
        self._lines: list[list[VideoState | Path]] = [[]]
        #: The branch being made.
        self.branch = 0
        self._memory_left = memory_bytes
        self._disk: tempfile.TemporaryDirectory | None = None
        self._files = 0

    @property
    def branches(self) -> int:
        return len(self._lines)

    def keep(self, state: VideoState) -> None:
        """`state` is the current branch's boundary `state.step` (the state a section is planned
        from, or the end of the branch): kept, replacing what an abandoned attempt kept there."""
        line = self._lines[self.branch]
        if state.step > len(line):
            raise RuntimeError(f"boundary {state.step} kept before boundary {len(line)}")
        for dropped in line[state.step :]:
            self._release(dropped)
        line[state.step :] = [self._store(video_state.snapshot(state))]

    def sections(self, branch: int) -> int:
        """Boundaries of `branch` beyond its first: the sections its path has (so far)."""
        return len(self._line(branch)) - 1

    def rewind(self, section: int, branch: int | None = None) -> VideoState:
        """Start a new branch at boundary `section` of `branch` (default: the current one) and
        return the state to continue from, a copy of that boundary's. `ValueError` for a boundary
        that was not made."""
        line = self._line(self.branch if branch is None else branch)
        if not 0 <= section < len(line):
            raise ValueError(f"section {section} is not a boundary of this branch: it has {len(line) - 1} sections")
        self._lines.append(line[: section + 1])
        self.branch = len(self._lines) - 1
        return _copy(line[section])

    def latest(self) -> VideoState:
        """A copy of the current branch's last boundary: the state the section in the making was
        planned from, to make that section again (a steer dropped it before it was shown)."""
        line = self._lines[self.branch]
        if not line:
            raise ValueError("no boundary kept yet")
        return _copy(line[-1])

    def close(self) -> None:
        """Delete the files of the snapshots that went to disk."""
        if self._disk is not None:
            self._disk.cleanup()
            self._disk = None

    def _release(self, kept: VideoState | Path) -> None:
        """A boundary replaced on the current line: free it unless another line still has it."""
        if any(kept is other for line in self._lines if line is not self._lines[self.branch] for other in line):
            return
        if isinstance(kept, Path):
            kept.unlink()
        else:
            self._memory_left += video_state.snapshot_bytes(kept)

    def _store(self, snapshot: VideoState) -> VideoState | Path:
        size = video_state.snapshot_bytes(snapshot)
        if size <= self._memory_left:
            self._memory_left -= size
            return snapshot
        if self._disk is None:
            self._disk = tempfile.TemporaryDirectory(prefix="framepack-live-boundaries-")
        path = Path(self._disk.name) / f"{self._files:09d}.pt"
        self._files += 1
        torch.save(snapshot, path)  # pickled plain data of this process, read back only by it
        return path

    def _line(self, branch: int) -> list[VideoState]:
        if not 0 <= branch < len(self._lines):
            raise ValueError(f"no branch {branch}: there are {len(self._lines)}")
        return self._lines[branch]


def _copy(kept: VideoState | Path) -> VideoState:
    """A kept state to go on from: a file's is read afresh; one in memory is copied, so it stays as kept."""
    return torch.load(kept, weights_only=False) if isinstance(kept, Path) else video_state.snapshot(kept)
