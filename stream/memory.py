"""What this process holds of sessions' video in memory, for `/healthz` and the memory benchmark.

Sessions keep their frames on disk; a server process holds only what is on its way to viewers:
the WebSocket outboxes and the WebRTC tracks' small buffers. Both register here, weakly, so the
figure is a sum over what is alive, and a bound that grows with a video's length would show.
"""

from __future__ import annotations

import weakref
from typing import Protocol

import psutil


class Holder(Protocol):
    @property
    def held_bytes(self) -> int: ...


_holders: weakref.WeakSet[Holder] = weakref.WeakSet()


def register(holder: Holder) -> None:
    _holders.add(holder)


def held_frame_bytes() -> int:
    return sum(holder.held_bytes for holder in list(_holders))


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss
