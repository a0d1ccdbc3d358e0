"""What a session tells its viewers, as a log that any number of viewers, in any process, pull from.

Pulling rather than pushing is what lets a session live apart from the connections that watch it:
a viewer holds only a cursor (the last entry it was sent), so a client that re-attaches through
another server process carries on from where it was, and a session never waits for a viewer.
Entries (`section` and `branch` records, and asynchronous `error` notices) are kept in order; progress and
previews are only ever wanted at their newest, so each is one slot with a version number.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from . import protocol


@dataclass(frozen=True)
class SectionRecord:
    """One `section` message as sent; `seq` is its position in the log.

    A section index can appear twice: when a session is stopped between sections, the frames the
    engine held back for blending follow as a second record with the same index.
    """

    seq: int
    index: int
    prompt: str
    first_frame: int
    frames: int
    fps: int
    width: int
    height: int
    #: The branch whose path the section continues (0: the first; see `BranchRecord`).
    branch: int = 0

    def message(self) -> str:
        return protocol.section_message(
            self.index, self.prompt, self.frames, self.fps, self.width, self.height, self.first_frame, self.branch
        )


@dataclass(frozen=True)
class BranchRecord:
    """A rewind made `branch`: its path is `parent`'s sections before `section`, then its own,
    the first of which is `section` made again with `prompt`. The sections that follow are its."""

    seq: int
    branch: int
    parent: int
    section: int
    prompt: str

    def message(self) -> str:
        return protocol.branch_message(self.branch, self.parent, self.section, self.prompt)


@dataclass(frozen=True)
class Notice:
    """A message for whoever watches, in order with the sections (an engine's refused steer)."""

    seq: int
    text: str

    def message(self) -> str:
        return self.text


Entry = SectionRecord | BranchRecord | Notice


@dataclass
class Slot:
    """The newest of a kind of message nobody needs the history of (progress, previews)."""

    version: int = 0
    messages: tuple[str | bytes, ...] = ()

    def set(self, *messages: str | bytes) -> None:
        self.version += 1
        self.messages = messages


@dataclass
class EventLog:
    entries: list[Entry] = field(default_factory=list)
    progress: Slot = field(default_factory=Slot)
    #: The `done` or `error` message that ended the session.
    final: str | None = None

    def __post_init__(self) -> None:
        self._changed = asyncio.Event()

    @property
    def records(self) -> list[SectionRecord]:
        return [entry for entry in self.entries if isinstance(entry, SectionRecord)]

    def add_section(self, **fields) -> SectionRecord:
        record = SectionRecord(seq=len(self.entries), **fields)
        self.entries.append(record)
        self.notify()
        return record

    def add_branch(self, **fields) -> BranchRecord:
        record = BranchRecord(seq=len(self.entries), **fields)
        self.entries.append(record)
        self.notify()
        return record

    def add_notice(self, text: str) -> None:
        self.entries.append(Notice(seq=len(self.entries), text=text))
        self.notify()

    def set_progress(self, *messages: str | bytes) -> None:
        self.progress.set(*messages)
        self.notify()

    def finish(self, message: str) -> None:
        self.final = message
        self.notify()

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, after: int, progress_version: int, timeout: float) -> None:
        """Until there is an entry after `after`, newer progress, an end, or `timeout` seconds."""
        while not (
            len(self.entries) > after + 1 or self.progress.version != progress_version or self.final is not None
        ):
            # `asyncio.timeout`, not `wait_for`: on Python 3.11 a `wait_for` cancelled just as the
            # event is set returns instead of raising (gh-86296), so a viewer whose connection
            # closed kept polling, and a session nobody watched was never freed.
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                return


@dataclass
class Poll:
    """One viewer's share of the log: plain data, so it can cross processes.

    `sections` pairs each entry after the viewer's cursor with its JPEG frames (none for notices or
    with media "none"); `progress` is the newest progress slot when it changed; `final` is the end
    once every entry before it was handed out; `replaced` means another viewer took over.
    """

    entries: list[tuple[Entry, list[bytes]]] = field(default_factory=list)
    progress: Slot | None = None
    final: str | None = None
    replaced: bool = False
