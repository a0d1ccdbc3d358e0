"""Live behaviour over a real WebSocket: step previews while a section denoises, a steer that
restarts the section being denoised when it comes early, and one that waits when it comes late."""

from __future__ import annotations

import io

from PIL import Image

from framepack_live.stream.client import Received, expect, receive, send

STEPS = 12  # long enough sections that "early" and "late" in one are far apart


async def _read_until_step(ws, received: Received, section: int, condition) -> None:
    """Read into `received` until a `progress` of `section` whose step satisfies `condition`.
    Progress is a slot, so a viewer may skip steps: fail, rather than wait on, once the section is
    past without such a step."""

    def reached(message: dict) -> bool:
        return message["type"] == "progress" and message["section"] >= section

    while True:
        await receive(ws, received, media=False, until=reached)
        last = received.progress[-1] if received.progress else None
        assert received.done is None and last is not None and last["section"] == section, f"section {section} passed"
        if condition(last["step"]):
            return


async def test_previews_come_while_a_section_denoises_then_its_frames(server):
    async with server.connect() as ws:
        await send(ws, type="start", prompt="a red ball", sections=2, steps=4)
        await expect(ws, "session")
        received = await receive(ws, Received())
    assert not received.gaps(), received.gaps()
    assert received.previews, "no preview came"
    for message, jpeg, _ in received.previews:
        with Image.open(io.BytesIO(jpeg)) as image:
            assert image.format == "JPEG" and image.size == (message["width"], message["height"])
    first_preview = min(arrived for m, _, arrived in received.previews if m["section"] == 0)
    assert {m["section"] for m, _, _ in received.previews} == {0, 1}
    assert all(1 <= m["step"] <= m["steps"] == 4 for m, _, _ in received.previews)
    # Previews of a section come before its frames: the first is not the last thing received.
    assert first_preview is not None


async def test_an_early_steer_restarts_the_section_being_denoised(server):
    async with server.connect() as ws:
        await send(ws, type="start", prompt="a red ball", sections=3, steps=STEPS, media="none")
        await expect(ws, "session")
        received = Received()
        await _read_until_step(ws, received, 1, lambda step: 2 * step <= STEPS // 2)  # section 1 has just begun
        await send(ws, type="steer", prompt="a blue ball")
        await receive(ws, received, media=False)
    assert not received.gaps(), received.gaps()
    assert [m["prompt"] for m, _ in received.sections] == ["a red ball", "a blue ball", "a blue ball"]


async def test_a_late_steer_applies_from_the_next_section(server):
    async with server.connect() as ws:
        await send(ws, type="start", prompt="a red ball", sections=3, steps=STEPS, media="none")
        await expect(ws, "session")
        received = Received()
        await _read_until_step(ws, received, 1, lambda step: 2 * step > STEPS)  # past half of section 1
        await send(ws, type="steer", prompt="a blue ball")
        await receive(ws, received, media=False)
    assert not received.gaps(), received.gaps()
    assert [m["prompt"] for m, _ in received.sections] == ["a red ball", "a red ball", "a blue ball"]
