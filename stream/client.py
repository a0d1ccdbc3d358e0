"""A small Python client of the `/ws` protocol, on `websockets`: for tests, benchmarks and scripts.

It speaks the protocol as DESIGN.md defines it and checks what it receives (a JPEG must follow
its `section` message, frame indices must join up), so that tests of any server that mounts
`stream/` (in process or behind Ray Serve) and benchmarks share one reading of the protocol.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import ClientConnection


class ProtocolViolation(Exception):
    """The server sent something the protocol does not allow at this point."""


def connect(ws_url: str, **kwargs) -> websockets.asyncio.client.connect:
    """`websockets.connect` without permessage-deflate (JPEGs do not compress) or a size cap on
    received messages (a frame is as large as the video is)."""
    return websockets.connect(ws_url, compression=None, max_size=None, **kwargs)


@dataclass
class Received:
    """What a client got for one session: `section` messages with their JPEGs, and how it ended."""

    sections: list[tuple[dict, list[bytes]]] = field(default_factory=list)
    progress: list[dict] = field(default_factory=list)
    #: `preview` messages with their JPEG, and when each arrived (`time.monotonic()`).
    previews: list[tuple[dict, bytes, float]] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    #: `branch` messages: rewinds the session made.
    branches: list[dict] = field(default_factory=list)
    done: dict | None = None
    #: Sections received a second time: after a re-attach the server re-sends what it could not
    #: know was delivered (at least once), and a client drops the repeat, as the page does.
    resent: int = 0

    @property
    def frames(self) -> list[bytes]:
        return [jpeg for _, jpegs in self.sections for jpeg in jpegs]

    def branch(self, number: int) -> list[tuple[dict, list[bytes]]]:
        """The sections received that branch `number` made itself."""
        return [(m, jpegs) for m, jpegs in self.sections if m.get("branch", 0) == number]

    def gaps(self) -> list[str]:
        """Why this is not the whole video, in order and without gaps; empty when it is (a
        session without rewinds).

        A client that reads too slowly is skipped ahead (sections are dropped from its live
        view), which shows up here; the MP4 export still has everything.
        """
        problems = []
        next_frame = 0
        for message, _ in self.sections:
            if message["first_frame"] != next_frame:
                problems.append(f"section {message['section']} starts at frame {message['first_frame']}, not {next_frame}")
            next_frame = message["first_frame"] + message["frames"]
        indices = [m["section"] for m, _ in self.sections]
        if indices != sorted(indices):
            problems.append(f"sections out of order: {indices}")
        if self.done is None:
            problems.append(f"no `done` (errors: {self.errors})")
        elif (self.done["frames"], self.done["sections"]) != (next_frame, len(set(indices))):
            problems.append(f"`done` says {self.done}, received {len(set(indices))} sections, {next_frame} frames")
        return problems


def _same_piece(a: dict, b: dict) -> bool:
    return (a.get("branch", 0), a["section"], a["first_frame"]) == (b.get("branch", 0), b["section"], b["first_frame"])


async def download(http, session_id: str, token: str, branch: int | None = None):
    """The session's MP4 the way the page gets it: a signed link for the token
    (`POST /sessions/{id}/download`), then the link. `http` is an `httpx.AsyncClient` on the
    server's base URL (the caller's, so this module needs no HTTP library); returns the link's
    response, or the refusal when no link was given. `branch`: that branch's path (`?branch=N`)."""
    link = await http.post(f"/sessions/{session_id}/download", json={"token": token})
    if link.status_code != 200:
        return link
    url = link.json()["url"]
    return await http.get(url if branch is None else f"{url}&branch={branch}")


async def send(ws: ClientConnection, **message) -> None:
    await ws.send(json.dumps(message))


async def recv_json(ws: ClientConnection, timeout: float = 60) -> dict:
    message = await asyncio.wait_for(ws.recv(), timeout)
    if not isinstance(message, str):
        raise ProtocolViolation("binary message where a JSON one was due")
    return json.loads(message)


async def _recv_binary(ws: ClientConnection, message: dict, timeout: float) -> bytes:
    data = await asyncio.wait_for(ws.recv(), timeout)
    if not isinstance(data, bytes):
        raise ProtocolViolation(f"{message['type']} {message.get('section')}: a JSON message where its JPEG was due")
    return data


async def expect(ws: ClientConnection, type_: str, timeout: float = 60) -> dict:
    """The next message other than `progress` and `preview`; `ProtocolViolation` if it is not of `type_`."""
    while True:
        message = await recv_json(ws, timeout)
        if message["type"] == "preview":
            await _recv_binary(ws, message, timeout)
        elif message["type"] != "progress":
            if message["type"] != type_:
                raise ProtocolViolation(f"expected `{type_}`, got {message}")
            return message


async def receive(
    ws: ClientConnection,
    into: Received,
    until_sections: int | None = None,
    media: bool = True,
    timeout: float = 60,
    until: Callable[[dict], bool] | None = None,
) -> Received:
    """Read one session's messages into `into` until `done` or an `error` (or `until_sections`,
    or a message for which `until` is true).

    `media` says whether the session was started with `media: "jpeg"` (frames follow each
    `section` message) or `"none"`.
    """
    while into.done is None and (until_sections is None or len(into.sections) < until_sections):
        message = await recv_json(ws, timeout)
        kind = message["type"]
        if kind == "section":
            frames = [await asyncio.wait_for(ws.recv(), timeout) for _ in range(message["frames"])] if media else []
            if not all(isinstance(frame, bytes) for frame in frames):
                raise ProtocolViolation(f"section {message['section']}: a JSON message among its frames")
            if any(_same_piece(message, seen) for seen, _ in into.sections):
                into.resent += 1
            else:
                into.sections.append((message, frames))
        elif kind == "progress":
            into.progress.append(message)
        elif kind == "preview":
            into.previews.append((message, await _recv_binary(ws, message, timeout), time.monotonic()))
        elif kind == "branch":
            into.branches.append(message)
        elif kind == "done":
            into.done = message
        elif kind == "error":
            into.errors.append(message)
            break
        if until is not None and until(message):
            break
    return into


async def rewind(ws: ClientConnection, into: Received, section: int, prompt: str, timeout: float = 60) -> dict:
    """Rewind the session to the boundary before `section` and read into `into` until the new
    branch's first section has come; returns its `branch` message."""
    await send(ws, type="rewind", section=section, prompt=prompt)
    await receive(ws, into, timeout=timeout, until=lambda m: m["type"] in ("branch", "error"))
    if not into.branches:
        raise ProtocolViolation(f"no `branch` after a rewind (errors: {into.errors})")
    branch = into.branches[-1]
    await receive(ws, into, timeout=timeout, until=lambda m: m["type"] == "section" and m["branch"] == branch["branch"])
    return branch
