"""A bounded per-client send buffer that drops the oldest messages, never blocking the producer.

A session pushes each message group (a `section` message with its JPEG frames, a `progress`
message, ...) here and goes on generating; one task per connection sends them as fast as that
client reads. A client slower than the generation would otherwise hold its session (or, with a
shared queue, everybody's) back. Dropped sections are only gone from the live view: the session
keeps every frame for export and `resume_session`.

Hand-written because neither asyncio.Queue nor starlette offers drop-oldest with a byte bound and
groups that must stay whole (a JPEG without its `section` message is meaningless).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from . import memory

Message = str | bytes


@dataclass(frozen=True)
class Envelope:
    """Messages that go out together or not at all."""

    messages: Sequence[Message]
    #: Called once every message went to the socket (how a session learns what a client has).
    on_sent: Callable[[], None] | None = None
    #: A newer envelope of the same kind replaces a waiting one (used for `progress`).
    replaceable: bool = False
    #: False for the few small messages a client cannot do without (`session`, `done`): they
    #: neither get dropped nor push media out.
    droppable: bool = True

    @property
    def size(self) -> int:
        return sum(len(m) for m in self.messages)


class Outbox:
    """Envelopes waiting for one client: droppable ones beyond `max_bytes` go, oldest first.

    The newest droppable envelope always stays, however big, so a section larger than the
    budget still reaches a client that keeps up.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._queue: deque[Envelope] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.dropped = 0
        memory.register(self)

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def put(self, envelope: Envelope) -> None:
        if envelope.replaceable and self._queue and self._queue[-1].replaceable:
            self._bytes -= self._queue.pop().size
        self._queue.append(envelope)
        self._bytes += envelope.size
        if envelope.droppable and self._bytes > self._max_bytes:
            self._drop_oldest()
        self._ready.set()

    def _drop_oldest(self) -> None:
        kept: deque[Envelope] = deque()
        newest = self._queue[-1]
        for waiting in self._queue:
            if self._bytes > self._max_bytes and waiting.droppable and waiting is not newest:
                self._bytes -= waiting.size
                self.dropped += 1
            else:
                kept.append(waiting)
        self._queue = kept

    async def pump(self, send: Callable[[Message], Awaitable[None]]) -> None:
        """Send envelopes forever, in order; returns only by cancellation or when `send` raises."""
        while True:
            await self._ready.wait()
            envelope = self._queue.popleft()
            self._bytes -= envelope.size
            if not self._queue:
                self._ready.clear()
            for message in envelope.messages:
                await send(message)
            if envelope.on_sent is not None:
                envelope.on_sent()
