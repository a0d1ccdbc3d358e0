"""Keeping a live video at its viewers' pace: a session faster than real time waits.

A viewer plays a section's frames at the video's fps, from when they arrive or when the frames
before them have played, whichever is later. A model that makes video faster than that (the toy
model's few-step student makes 1.26 s of video per second through the server on two CPU cores,
`bench realtime`) would run further and further ahead of the screen, and a steer, applied to the
next section made, would show only after everything made before it had played: the longer the
session, the later (the unbounded queues Daydream Scope found pushing its latency past 10 s). So
the session makes its next section only once at most `lead_s` of video is left unplayed: the screen
never runs dry while a section takes less than that to make, and a steer shows within about one
section. A model slower than real time never waits.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass
class Pace:
    """The play-out clock of one session's video, as a real-time viewer sees it."""

    #: Unplayed video (seconds) that lets the next section begin; None: never wait.
    lead_s: float | None
    _played_until: float | None = None

    def delivered(self, seconds: float) -> None:
        """`seconds` more video went out to viewers."""
        now = time.monotonic()
        self._played_until = max(self._played_until or now, now) + seconds

    def reset(self) -> None:
        """The viewers jumped (a rewind plays the new branch at once): nothing is left to play."""
        self._played_until = None

    async def wait(self) -> None:
        """Return once the next section may begin."""
        if self.lead_s is None or self._played_until is None:
            return
        early = self._played_until - time.monotonic() - self.lead_s
        if early > 0:
            await asyncio.sleep(early)
