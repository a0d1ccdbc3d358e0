"""Who is watching a session, told by what viewers do rather than by who said goodbye.

Viewers may live in other processes that can die without a word (an Ingress replica killed with
its connections), so presence is read from activity: a WebSocket viewer is present while one of
its polls is waiting, a WebRTC peer while it keeps fetching frames (a lease renewed by every
fetch). A session nobody is present at for the idle timeout is freed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: A peer that fetched no frame for this long is gone (its track fetches at least once a second).
PEER_LEASE_S = 10.0


class Presence:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        #: Number of the current WebSocket viewer; an attach makes a new one and retires the last.
        self.viewer = 0
        self._polling = 0
        self._last_seen = clock()
        self._peers: dict[str, float] = {}

    def attach(self) -> int:
        self.viewer += 1
        self._last_seen = self._clock()
        return self.viewer

    def poll_started(self) -> None:
        self._polling += 1

    def poll_ended(self) -> None:
        self._polling -= 1
        self._last_seen = self._clock()

    def peer_seen(self, peer: str) -> None:
        self._peers[peer] = self._last_seen = self._clock()

    def peer_gone(self, peer: str) -> None:
        if self._peers.pop(peer, None) is not None:
            self._last_seen = self._clock()

    def peers(self) -> set[str]:
        """The peers whose lease holds."""
        now = self._clock()
        self._peers = {peer: seen for peer, seen in self._peers.items() if now - seen < PEER_LEASE_S}
        return set(self._peers)

    def idle_since(self) -> float | None:
        """When the session was last watched, or None while somebody watches."""
        if self._polling or self.peers():
            return None
        return self._last_seen
