"""The engine state at every section boundary of a video and of its branches: what a rewind goes back to.

A `VideoState` is small plain data (history tail, random state, pending frames, prompt), so the
state before each section is simply kept (`video_state.snapshot`): going back to boundary k and
going on is then the same as having stopped there, bit for bit. A rewind starts a new branch whose
first boundaries are its parent's up to k (shared, never copied: snapshots are never changed), so
every branch stays reachable and each boundary costs its bytes once.
"""

from __future__ import annotations

from . import video_state
from .video_state import VideoState


class Boundaries:
    """Lines of boundary states, one per branch: `line[k]` is the state before section k of the
    branch's path (its ancestors' sections before it forked, then its own)."""

    def __init__(self) -> None:
        self._lines: list[list[VideoState]] = [[]]
        #: The branch being made.
        self.branch = 0

    @property
    def branches(self) -> int:
        return len(self._lines)

    def keep(self, state: VideoState) -> None:
        """`state` is the current branch's boundary `state.step` (the state a section is planned
        from, or the end of the branch): kept, replacing what an abandoned attempt kept there."""
        line = self._lines[self.branch]
        if state.step > len(line):
            raise RuntimeError(f"boundary {state.step} kept before boundary {len(line)}")
        line[state.step :] = [video_state.snapshot(state)]

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
        return video_state.snapshot(line[section])

    def _line(self, branch: int) -> list[VideoState]:
        if not 0 <= branch < len(self._lines):
            raise ValueError(f"no branch {branch}: there are {len(self._lines)}")
        return self._lines[branch]
