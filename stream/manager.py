"""All sessions of this process: creation under the caps, token checks, reaping idle ones."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time

from PIL import Image

from framepack_live.engine.errors import InputError
from framepack_live.engine.settings import GenerationSettings

from .backend import SectionBackend
from .protocol import Start
from .session import Session
from .settings import StreamSettings

log = logging.getLogger(__name__)


class SessionManager:
    """Creates, finds and frees sessions. Lives on one event loop, like the sessions."""

    def __init__(self, backend: SectionBackend, settings: StreamSettings) -> None:
        self.backend = backend
        self.settings = settings
        self._sessions: dict[str, Session] = {}
        self._reaper: asyncio.Task | None = None

    def create(self, client: str, start: Start, image: Image.Image | None) -> Session:
        """A new session for `client` (its address), not started yet; `busy` over the caps."""
        limits = self.settings.limits
        active = [s for s in self._sessions.values() if s.active]
        if len(active) >= limits.max_sessions_total:
            raise InputError("busy", "the server runs as many sessions as it can; try again later")
        if sum(s.client == client for s in active) >= limits.max_sessions_per_client:
            raise InputError("busy", f"at most {limits.max_sessions_per_client} running sessions per client")
        session = Session(
            session_id=secrets.token_hex(8),
            token=secrets.token_urlsafe(32),
            client=client,
            backend=self.backend,
            settings=self.generation_settings(start),
            prompt=start.prompt,
            image=image,
            media=start.media,
            limits=limits,
            jpeg_quality=self.settings.jpeg_quality,
        )
        self._sessions[session.id] = session
        if self._reaper is None:  # started here, not in a lifespan hook, so any host app works
            self._reaper = asyncio.create_task(self._reap_forever(), name="session-reaper")
        return session

    def generation_settings(self, start: Start) -> GenerationSettings:
        """The server's defaults with what the client may override; `bad_request` when out of range."""
        limits = self.settings.limits
        overrides = {
            name: getattr(start, name)
            for name in ("seed", "width", "height", "steps", "guidance")
            if getattr(start, name) is not None
        }
        if start.sections is not None:
            overrides["sections"] = start.sections or None  # 0: until stopped
        try:
            settings = dataclasses.replace(self.settings.generation, **overrides)
        except ValueError as exc:
            raise InputError("bad_request", str(exc)) from None
        if settings.width * settings.height > limits.max_video_pixels:
            raise InputError("bad_request", f"at most {limits.max_video_pixels} pixels per frame")
        if settings.steps > limits.max_steps:
            raise InputError("bad_request", f"at most {limits.max_steps} steps")
        return settings

    def active_count(self) -> int:
        return sum(s.active for s in self._sessions.values())

    def get(self, session_id: str, token: str) -> Session:
        """The session, if `token` is its token: `not_found` or `unauthorized` otherwise."""
        session = self._sessions.get(session_id)
        if session is None:
            raise InputError("not_found", "no such session (it may have been freed after being idle)")
        if not secrets.compare_digest(session.token.encode(), token.encode()):
            raise InputError("unauthorized", "wrong token for this session")
        return session

    async def reap(self) -> None:
        """Free the sessions nobody has watched for `idle_timeout_s`."""
        now = time.monotonic()
        for session in list(self._sessions.values()):
            if session.idle_since is not None and now - session.idle_since > self.settings.idle_timeout_s:
                log.info("freeing session %s, idle for %.0f s", session.id, now - session.idle_since)
                del self._sessions[session.id]
                await session.close()

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
