"""`Recent`: a dict of the most recently used entries, for the encoders' caches.

`functools.lru_cache` wraps a function whose arguments are the key; the Encoder deployment's
caches are looked up by keys its calls do not hash as such (a prompt answered on the event loop
without a trip to the model thread, an image by its pixels), so they hold their entries here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Recent(Generic[V]):
    """At most `size` entries; a lookup or a store makes an entry the newest, and the oldest goes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def put(self, key: Hashable, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
