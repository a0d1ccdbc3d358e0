"""`ModelThread.cancellable`: a call whose caller gives up is told to stop, and the replica's one
model thread goes on to the next call instead of finishing work nobody waits for."""

from __future__ import annotations

import asyncio
import threading

import pytest

from framepack_live.cluster.replica import ModelThread
from framepack_live.engine.interrupt import Interrupted


async def test_a_cancelled_call_stops_and_frees_the_thread():
    thread = ModelThread("test")
    started, stopped = threading.Event(), threading.Event()

    def long_call(stop) -> str:
        started.set()
        while not stop():  # a model call asking `stop` between its modules
            threading.Event().wait(0.01)
        stopped.set()
        raise Interrupted

    call = asyncio.ensure_future(thread.cancellable(long_call))
    await asyncio.to_thread(started.wait, 30)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await thread.cancellable(lambda stop: "next") == "next"
    assert stopped.is_set()
