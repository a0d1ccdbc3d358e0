"""The `/ws` endpoint: one `Connection` per WebSocket, reading commands and relaying its session.

A connection watches at most one session at a time. It pulls that session's log (`poll`) into its
bounded `Outbox`, and the outbox's pump sends as fast as the client reads: the session never
waits for a client, and the connection holds no more of a session's frames than its outbox does.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import WebSocket

from framepack_live.engine.errors import InputError
from framepack_live.engine.images import decode_image

from . import protocol
from .events import Entry
from .handle import SessionDirectory, SessionHandle
from .outbox import Envelope, Outbox

log = logging.getLogger(__name__)

#: How long one poll waits for news; it also tells the session that somebody still watches.
POLL_TIMEOUT_S = 10.0


class Connection:
    """A WebSocket client: drives at most one session at a time, the one it started or re-attached."""

    def __init__(self, websocket: WebSocket, directory: SessionDirectory, client: str) -> None:
        self.websocket = websocket
        self.directory = directory
        self.outbox = Outbox(directory.settings.limits.send_buffer_bytes)
        self.session: SessionHandle | None = None
        self.client = client
        self._relay: asyncio.Task | None = None

    async def serve(self) -> None:
        await self.websocket.accept()
        sender = asyncio.create_task(self.outbox.pump(self._send))
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                await self._handle(text if text is not None else message["bytes"])
        finally:
            tasks = [sender] + ([self._relay] if self._relay else [])
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self.websocket.send_text(message)
        else:
            await self.websocket.send_bytes(message)

    async def _handle(self, data: str | bytes) -> None:
        """One client message; a bad one gets an `error` and the connection goes on."""
        try:
            command = protocol.parse_client_message(data, self.directory.settings.limits)
            await self._dispatch(command)
        except InputError as exc:
            self.outbox.put(Envelope([protocol.error_message(exc.code, exc.message)]))
        except Exception:
            log.exception("handling a client message failed")
            self.outbox.put(Envelope([protocol.error_message("internal", "the server failed on this message")]))

    async def _dispatch(self, command: protocol.ClientMessage) -> None:
        if isinstance(command, protocol.Start):
            await self._start(command)
        elif isinstance(command, protocol.ResumeSession):
            session = await self.directory.get(command.session_id, command.token)
            await self._watch(session, command.token)
        else:
            session = self._current()
            if isinstance(command, protocol.Steer):
                await session.steer(command.prompt, command.transition)
            elif isinstance(command, protocol.Rewind):
                await session.rewind(command.section, command.prompt, command.transition, command.branch)
            elif isinstance(command, protocol.Pause):
                await session.pause()
            elif isinstance(command, protocol.Resume):
                await session.resume()
            else:
                await session.stop()

    async def _start(self, start: protocol.Start) -> None:
        if self._relay is not None and not self._relay.done():
            raise InputError("busy", f"this connection already drives session {self.session.id}; stop it first")
        self.directory.settings.access.check_api_key(start.api_key)
        start = start.model_copy(update={"api_key": None})  # the key goes no further than its check
        image = None
        if start.image is not None:
            data = protocol.image_bytes(start.image)
            # Off the loop: a large image takes a while to decode, and other clients are waiting.
            image = await asyncio.to_thread(decode_image, data, self.directory.settings.limits.max_image_pixels)
        session, token = await self.directory.create(self.client, start, image)
        await self._watch(session, token)

    async def _watch(self, session: SessionHandle, token: str) -> None:
        """Relay `session` from now on (and no other); confirmed by a `session` message."""
        if self._relay is not None:
            self._relay.cancel()
        self.session = session
        attachment = await session.attach()
        message = protocol.session_message(session.id, token, self.directory.settings.instance)
        self.outbox.put(Envelope([message], droppable=False))
        self._relay = asyncio.create_task(self._relay_log(session, attachment.viewer, attachment.cursor))

    async def _relay_log(self, session: SessionHandle, viewer: int, cursor: int) -> None:
        """Pull the session's log into the outbox until it ends or another viewer takes over."""
        try:
            await self._relay_entries(session, viewer, cursor)
        except InputError as exc:  # the session went away meanwhile (freed, or its process lost)
            self.outbox.put(Envelope([protocol.error_message(exc.code, exc.message)], droppable=False))
        except Exception:
            log.exception("relaying session %s failed", session.id)
            self.outbox.put(Envelope([protocol.error_message("internal", "lost the session's stream")], droppable=False))

    async def _relay_entries(self, session: SessionHandle, viewer: int, cursor: int) -> None:
        version = 0
        while True:
            poll = await session.poll(viewer, cursor, version, POLL_TIMEOUT_S)
            if poll.replaced:
                return
            for entry, jpegs in poll.entries:
                self.outbox.put(self._entry_envelope(session, viewer, entry, jpegs))
                cursor = entry.seq
            if poll.progress is not None:
                version = poll.progress.version
                self.outbox.put(Envelope(list(poll.progress.messages), replaceable=True))
            if poll.final is not None:
                self.outbox.put(Envelope([poll.final], droppable=False))
                return

    def _entry_envelope(self, session: SessionHandle, viewer: int, entry: Entry, jpegs: list[bytes]) -> Envelope:
        return Envelope([entry.message(), *jpegs], on_sent=lambda: session.delivered(viewer, entry.seq))

    def _current(self) -> SessionHandle:
        if self.session is None:
            raise InputError("bad_request", "no session on this connection: send `start` or `resume_session` first")
        return self.session
