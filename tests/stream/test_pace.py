"""A session faster than real time waits for its viewers' play-out (`stream.pace`); the waits
asked for are read from `asyncio.sleep`, so no test depends on this machine's speed."""

from __future__ import annotations

import pytest

from framepack_live.stream import pace


@pytest.fixture
def sleeps(monkeypatch):
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(pace.asyncio, "sleep", sleep)
    return asked


async def test_the_next_section_waits_until_one_lead_of_video_is_left(sleeps):
    clock = pace.Pace(lead_s=0.4)
    await clock.wait()  # nothing delivered yet: the first section begins at once
    clock.delivered(0.4)
    clock.delivered(0.4)  # 0.8 s unplayed: begin when 0.4 s is left
    await clock.wait()
    assert sleeps == [pytest.approx(0.4, abs=0.05)]


async def test_a_slow_model_and_a_rewind_never_wait(sleeps):
    clock = pace.Pace(lead_s=0.4)
    clock.delivered(0.3)  # less than the lead: the model is slower than real time
    await clock.wait()
    clock.delivered(5.0)
    clock.reset()  # the viewers jumped to a new branch
    await clock.wait()
    unpaced = pace.Pace(lead_s=None)
    unpaced.delivered(5.0)
    await unpaced.wait()
    assert sleeps == []
