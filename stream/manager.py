"""The sessions of this process: creation under the caps, token checks, reaping idle ones.

The in-process `SessionDirectory`; the cluster has its own, over sessions that live in actors.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from PIL import Image

from framepack_live.engine.errors import InputError

from .admission import check_room, generation_settings
from .backend import SectionBackend
from .frame_store import FrameStore
from .protocol import Start
from .session import Session, token_hash
from .settings import StreamSettings

log = logging.getLogger(__name__)


class SessionManager:
    """Creates, finds and frees sessions. Lives on one event loop, like the sessions."""

    def __init__(self, backend: SectionBackend, settings: StreamSettings) -> None:
        self.backend = backend
        self.settings = settings
        self._sessions: dict[str, Session] = {}
        self._reaper: asyncio.Task | None = None

    async def create(self, client: str, start: Start, image: Image.Image | None) -> tuple[Session, str]:
        check_room(self.settings, (s.client for s in self._sessions.values() if s.active), client)
        session_id, token = secrets.token_hex(8), secrets.token_urlsafe(32)
        store = await asyncio.to_thread(FrameStore, self.settings.session_dir / session_id, self.settings.jpeg_quality)
        session = Session(
            session_id=session_id,
            token_digest=token_hash(token),
            client=client,
            backend=self.backend,
            settings=generation_settings(self.settings, start),
            prompt=start.prompt,
            image=image,
            media=start.media,
            limits=self.settings.limits,
            store=store,
            restart_steered=self.settings.restart_steered,
            model=self.settings.model.source if self.settings.model is not None else None,
            from_text=start.start == "text",
        )
        self._sessions[session.id] = session
        if self._reaper is None:  # started here, not in a lifespan hook, so any host app works
            self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")
        session.start()
        return session, token

    async def active_count(self) -> int:
        return sum(s.active for s in self._sessions.values())

    async def model_status(self) -> None:
        """The model was loaded before this directory was made."""
        return None

    async def get(self, session_id: str, token: str) -> Session:
        session = await self.find(session_id)
        session.check_token(token)
        return session

    async def find(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise InputError("not_found", "no such session (it may have been freed after being idle)")
        return session

    async def reap(self) -> None:
        """Free the sessions nobody has watched for `idle_timeout_s`; one that fails to close is
        still forgotten (and logged), and the others are still reaped."""
        now = time.monotonic()
        for session in list(self._sessions.values()):
            idle_since = session.presence.idle_since()
            if idle_since is not None and now - idle_since > self.settings.idle_timeout_s:
                log.info("freeing session %s, idle for %.0f s", session.id, now - idle_since)
                del self._sessions[session.id]
                try:
                    await session.close()
                except Exception:
                    log.exception("closing idle session %s failed", session.id)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(min(self.settings.idle_timeout_s / 4, 10.0))
            await self.reap()

    async def close(self) -> None:
        """Stop the reaper and tear every session down (server shutdown)."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
