"""Client-side helpers for the stream tests: sending commands, reading a session's messages."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection

from framepack_live.engine.settings import GenerationSettings

#: Small enough for two shared CPU cores: about half a second per section, 8 frames each.
TEST_GENERATION = GenerationSettings(width=128, height=128, steps=2, window=2, seed=0)


@dataclass
class Received:
    """What a client got for one session: `section` messages with their JPEGs, and the end."""

    sections: list[tuple[dict, list[bytes]]] = field(default_factory=list)
    progress: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    done: dict | None = None

    @property
    def frames(self) -> list[bytes]:
        return [jpeg for _, jpegs in self.sections for jpeg in jpegs]


async def send(ws: ClientConnection, **message) -> None:
    await ws.send(json.dumps(message))


async def recv_json(ws: ClientConnection, timeout: float = 60) -> dict:
    message = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(message, str), "expected a JSON message, got binary"
    return json.loads(message)


async def expect(ws: ClientConnection, type_: str, timeout: float = 60) -> dict:
    """The next message that is not `progress`; it must be of `type_`."""
    while True:
        message = await recv_json(ws, timeout)
        if message["type"] != "progress":
            assert message["type"] == type_, message
            return message


async def receive(ws: ClientConnection, into: Received, until_sections: int | None = None, media: bool = True) -> Received:
    """Read messages into `into` until `done`/`error` (or `until_sections` section messages)."""
    while into.done is None and (until_sections is None or len(into.sections) < until_sections):
        message = await recv_json(ws)
        kind = message["type"]
        if kind == "section":
            frames = [await asyncio.wait_for(ws.recv(), 60) for _ in range(message["frames"])] if media else []
            assert all(isinstance(f, bytes) for f in frames)
            into.sections.append((message, frames))
        elif kind == "progress":
            into.progress.append(message)
        elif kind == "done":
            into.done = message
        elif kind == "error":
            into.errors.append(message)
            break
    return into


def assert_contiguous(received: Received) -> None:
    """Sections in playback order, frame indices without gap or overlap, totals as `done` says."""
    next_frame = 0
    for message, frames in received.sections:
        assert message["first_frame"] == next_frame, [m for m, _ in received.sections]
        next_frame += message["frames"]
    indices = [m["section"] for m, _ in received.sections]
    assert indices == sorted(indices)
    assert received.done is not None, received.errors
    assert received.done["frames"] == next_frame
    assert received.done["sections"] == len(set(indices))
