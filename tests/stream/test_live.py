"""Live behaviour over a real WebSocket: step previews while a section denoises, a steer that
restarts the section being denoised when it comes early, and one that waits when it comes late."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from framepack_live.engine.images import default_start_image, fit_to_size

from framepack_live.stream.backend import worth_redoing
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
    assert all(1 <= m["step"] <= m["steps"] == 4 for m, _, _ in received.previews[1:])
    # First of all, before the start is encoded: the start image, as section 0's step 0.
    start, jpeg, _ = received.previews[0]
    assert (start["section"], start["step"]) == (0, 0)
    with Image.open(io.BytesIO(jpeg)) as image:
        shown = np.asarray(image.convert("RGB"), dtype=np.int16)
    expected = np.asarray(fit_to_size(default_start_image(), start["width"], start["height"]).convert("RGB"), dtype=np.int16)
    assert np.abs(shown - expected).mean() < 8  # a JPEG of it
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


async def test_bench_live_reads_a_session_in_order(server):
    """`bench live`'s timing of one session over /ws (its figures are ratios of these): the first
    preview before the first frame, the steer found on the section after it or the next, every
    frame decoded for the seam measure."""
    from framepack_live.bench.live import STEER, session

    start = {"width": 128, "height": 128, "steps": 4, "transition": 0}
    figures = await session(server.url.replace("http://", "ws://") + "/ws", start, sections=4, steer_after=0)
    assert 0 < figures["first_preview_s"] <= figures["first_step_preview_s"] < figures["first_frame_s"]
    assert figures["section_period_s"] > figures["step_period_s"] > 0
    assert figures["section_period_s"] == max(figures["section_gap_s"], figures["section_plays_s"])
    assert figures["section_plays_s"] == round(server.generation.frames_per_section / server.generation.fps, 3)
    assert figures["first_steered_section"] in (1, 2), STEER
    assert figures["steer_to_screen_s"] > 0
    assert len(figures["frames"]) == 1 + 4 * server.generation.frames_per_section
    assert {frame.shape for frame in figures["frames"]} == {(128, 128, 3)}


def test_a_section_being_decoded_is_made_again_only_while_more_decode_is_left_than_a_denoise_takes():
    assert worth_redoing(decoding_for=0.5, decode_s=3.0, denoise_s=1.0)
    assert not worth_redoing(decoding_for=2.5, decode_s=3.0, denoise_s=1.0)
    assert not worth_redoing(decoding_for=0.0, decode_s=1.0, denoise_s=3.0)  # a GPU's proportions
    assert not worth_redoing(decoding_for=0.0, decode_s=None, denoise_s=None)  # nothing measured yet
