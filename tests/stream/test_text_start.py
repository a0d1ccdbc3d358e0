"""A session started from the prompt alone (`start: "text"`): the engine's text-to-video start
(`engine.text_start`), streamed like any other; its export says so."""

from __future__ import annotations

import io

import httpx
import numpy as np

from framepack_live.engine import video_state
from framepack_live.engine.generator import SectionGenerator
from framepack_live.engine.text_start import start_from_text
from framepack_live.stream.client import Received, download, expect, receive, send
from framepack_live.stream.media import encode_jpegs
from framepack_live.stream.metadata import read_record
from framepack_live.stream.model_defaults import model_defaults


async def test_a_session_from_the_prompt_alone(server_factory, model):
    info, _ = model_defaults("tiny")
    with server_factory(model=info) as server:
        async with server.connect() as ws:
            await send(ws, type="start", prompt="a red ball", start="text", sections=1, seed=4)
            session = await expect(ws, "session")
            received = await receive(ws, Received())
            await send(ws, type="start", prompt="a red ball", start="text", image="aGVsbG8=")
            refused = await expect(ws, "error")
        settings = server.app.state.directory._sessions[session["session_id"]].settings
        jpeg_quality = server.app.state.directory.settings.jpeg_quality
        async with httpx.AsyncClient(base_url=server.url) as http:
            video = (await download(http, session["session_id"], session["token"])).content
    assert received.gaps() == []
    assert refused["code"] == "bad_request" and "no image" in refused["message"]
    assert read_record(io.BytesIO(video)).start.kind == "text"

    # The frames are the engine's own text-to-video start, JPEG for JPEG.
    state = video_state.begin(start_from_text(model, "a red ball", settings), settings, "a red ball")
    generator = SectionGenerator.from_state(model, state)
    section = generator.next_section()
    tail = generator.flush()
    frames = section.frames if tail is None else np.concatenate([section.frames, tail.frames])
    assert received.frames == encode_jpegs(frames, jpeg_quality)
