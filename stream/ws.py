"""The `/ws` endpoint: one `Connection` per WebSocket, reading commands and pumping its outbox."""

from __future__ import annotations

import asyncio
import logging

from fastapi import WebSocket

from framepack_live.engine.errors import InputError
from framepack_live.engine.images import decode_image

from . import protocol
from .manager import SessionManager
from .outbox import Envelope, Outbox
from .session import Session

log = logging.getLogger(__name__)


class Connection:
    """A WebSocket client: drives at most one session at a time, the one it started or re-attached."""

    def __init__(self, websocket: WebSocket, manager: SessionManager) -> None:
        self.websocket = websocket
        self.manager = manager
        self.outbox = Outbox(manager.settings.limits.send_buffer_bytes)
        self.session: Session | None = None
        self.client = websocket.client.host if websocket.client else "unknown"

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
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            if self.session is not None:
                self.session.detach(self.outbox)

    async def _send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            await self.websocket.send_text(message)
        else:
            await self.websocket.send_bytes(message)

    async def _handle(self, data: str | bytes) -> None:
        """One client message; a bad one gets an `error` and the connection goes on."""
        try:
            command = protocol.parse_client_message(data, self.manager.settings.limits)
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
            self._attach(self.manager.get(command.session_id, command.token), resend=True)
        else:
            session = self._current()
            if isinstance(command, protocol.Steer):
                session.steer(command.prompt)
            elif isinstance(command, protocol.Pause):
                session.pause()
            elif isinstance(command, protocol.Resume):
                session.resume()
            else:
                session.stop()

    async def _start(self, start: protocol.Start) -> None:
        if self.session is not None and self.session.active:
            raise InputError("busy", f"this connection already drives session {self.session.id}; stop it first")
        image = None
        if start.image is not None:
            data = protocol.image_bytes(start.image)
            # Off the loop: a large image takes a while to decode, and other clients are waiting.
            image = await asyncio.to_thread(decode_image, data, self.manager.settings.limits.max_image_pixels)
        session = self.manager.create(self.client, start, image)
        self._attach(session, resend=False)
        session.start()

    def _attach(self, session: Session, resend: bool) -> None:
        """Watch `session` from now on (and no other); it is confirmed by a `session` message."""
        if self.session is not None and self.session is not session:
            self.session.detach(self.outbox)
        self.session = session
        self.outbox.put(Envelope([protocol.session_message(session.id, session.token)], droppable=False))
        session.attach(self.outbox, resend)

    def _current(self) -> Session:
        if self.session is None:
            raise InputError("bad_request", "no session on this connection: send `start` or `resume_session` first")
        return self.session

