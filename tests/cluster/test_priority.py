"""`priority.LiveFirst`, the rule the Denoiser serves render jobs by: a job's section waits while
live sections are in the replica, however they come and go."""

from __future__ import annotations

import asyncio

from framepack_live.cluster.priority import LiveFirst


async def test_a_background_section_waits_until_no_live_one_is_left():
    gate = LiveFirst()
    await asyncio.wait_for(gate.background_turn(), 1)  # nothing live: at once
    with gate.live():
        waiting = asyncio.create_task(gate.background_turn())
        with gate.live():  # a second session's section comes and goes
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the first is still here
    with gate.live():  # the next live section came before the waiter ran: it waits again
        await asyncio.sleep(0.05)
        assert not waiting.done()
    await asyncio.wait_for(waiting, 1)
