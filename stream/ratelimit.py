"""A token bucket, for the steer rate limit.

Hand-written: it is a dozen lines, and the rate-limit libraries on PyPI are built around HTTP
routes or Redis, not one counter inside a session.
"""

from __future__ import annotations

import time


class TokenBucket:
    """`burst` actions at once, refilled at `rate` per second."""

    def __init__(self, burst: int, rate: float, clock=time.monotonic) -> None:
        self._burst = burst
        self._rate = rate
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        """Spend one token if there is one; False means: refuse the action."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
