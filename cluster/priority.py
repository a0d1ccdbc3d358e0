"""Live sessions before render jobs at a Denoiser replica: what "jobs run with lower priority" means.

A live session's viewer waits for its next section; a render job's owner does not. So a Denoiser
replica starts a job's section only while no live section is queued or being denoised on it: jobs
fill the time live sessions leave the replica idle (between sessions, while they are paused, and
when they end). A job's section that has begun runs to its end, so a live section that arrives
meanwhile waits at most one section's denoise (it may also join the job's batch, when the shapes
agree: Serve's batching then serves both in one forward pass). With live sessions generating
without pause, a job waits until they stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class LiveFirst:
    """Counts the live sections in a replica; background sections wait for none to be left. Lives
    on the replica's event loop."""

    def __init__(self) -> None:
        self._live = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def live(self) -> Iterator[None]:
        """Around a live section's whole stay in the replica, queued and denoised."""
        self._live += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._live -= 1
            if not self._live:
                self._idle.set()

    async def background_turn(self) -> None:
        """Return once no live section is in the replica (a live one that came while this waiter
        was being woken sends it back to waiting)."""
        while self._live:
            await self._idle.wait()
