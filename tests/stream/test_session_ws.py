"""A whole session over a real WebSocket: order, frames, steering, `done`, and the MP4 export."""

from __future__ import annotations

import io

import av
import pytest
import httpx
from PIL import Image

from framepack_live.stream.client import Received, download, expect, receive, send



async def test_three_sections_with_a_steer(server):
    async with server.connect() as ws:
        await send(ws, type="start", prompt="a red ball", sections=3)
        session = await expect(ws, "session")
        assert session["session_id"] and len(session["token"]) >= 32
        received = await receive(ws, Received(), until_sections=1)
        await send(ws, type="steer", prompt="a blue ball")
        await receive(ws, received)

    assert not received.gaps(), received.gaps()
    assert [m["section"] for m, _ in received.sections] == [0, 1, 2]
    prompts = [m["prompt"] for m, _ in received.sections]
    # Steered after section 0 arrived: it applies at a later boundary and stays.
    assert prompts[0] == "a red ball" and prompts[-1] == "a blue ball"
    assert prompts == sorted(prompts, key=lambda p: p == "a blue ball")
    assert received.progress and {p["steps"] for p in received.progress} == {server.generation.steps}
    assert all(m["fps"] == server.generation.fps for m, _ in received.sections)
    for jpeg in received.frames:
        with Image.open(io.BytesIO(jpeg)) as image:
            assert image.format == "JPEG"
            assert image.size == (server.generation.width, server.generation.height)


async def test_mp4_export_holds_every_frame_so_far(server):
    async with server.connect() as ws, httpx.AsyncClient(base_url=server.url) as http:
        await send(ws, type="start", prompt="a red ball", sections=3)
        session = await expect(ws, "session")
        received = await receive(ws, Received(), until_sections=2)
        early = decode_mp4((await download(http, session["session_id"], session["token"])).content)
        await receive(ws, received)
        final = decode_mp4((await download(http, session["session_id"], session["token"])).content)

    assert not received.gaps(), received.gaps()
    # Mid-session: at least what the client had, and it grows to everything by the end.
    assert len(received.sections[0][1]) + len(received.sections[1][1]) <= len(early) < len(final)
    assert len(final) == received.done["frames"]
    assert {frame.shape for frame in final} == {(server.generation.height, server.generation.width, 3)}


def decode_mp4(data: bytes) -> list:
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


async def test_pause_holds_generation_and_stop_sends_the_held_back_tail(server):
    async with server.connect() as ws:
        await send(ws, type="start", prompt="a red ball", sections=0, media="none")
        await expect(ws, "session")
        received = await receive(ws, Received(), until_sections=1, media=False)
        await send(ws, type="pause")  # section 1 is already being made: it still comes
        await receive(ws, received, until_sections=2, media=False)
        with pytest.raises(TimeoutError):
            await expect(ws, "section", timeout=1.5)
        await send(ws, type="resume")
        await receive(ws, received, until_sections=3, media=False)
        await send(ws, type="pause")
        await receive(ws, received, until_sections=4, media=False)
        await send(ws, type="stop")
        await receive(ws, received, media=False)

    assert not received.gaps(), received.gaps()
    # Stopped between sections: the frames held back for blending come as a last `section`
    # message with the index of the section they belong to.
    assert [m["section"] for m, _ in received.sections] == [0, 1, 2, 3, 3]
    assert received.done["sections"] == 4


async def test_a_steer_the_engine_refuses_is_reported_and_the_session_goes_on(server):
    too_many_tokens = "a red ball " * 150  # under the character limit, over the text encoder's 256 tokens
    async with server.connect() as ws:
        await send(ws, type="start", prompt="a red ball", sections=3, media="none")
        await expect(ws, "session")
        received = await receive(ws, Received(), until_sections=1, media=False)
        await send(ws, type="steer", prompt=too_many_tokens)
        await receive(ws, received, media=False)
        assert [e["code"] for e in received.errors] == ["prompt_too_long"]
        await receive(ws, received, media=False)  # the error ended only the reading, not the session

    assert not received.gaps(), received.gaps()
    assert {m["prompt"] for m, _ in received.sections} == {"a red ball"}
