"""A session that continues an uploaded video (`start`'s `video`): the engine's continuation
(`engine.extension`) streamed like any session, and an export that is the whole video."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np

from framepack_live.engine.extension import generator_after
from framepack_live.engine.generator import SectionGenerator
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import first_new_frame
from framepack_live.stream.client import Received, download, expect, receive, send
from framepack_live.stream.media import encode_jpegs
from framepack_live.stream.metadata import read_record, sha256
from framepack_live.stream.model_defaults import model_defaults
from framepack_live.stream.mp4 import Mp4Writer, read_video


def mp4_bytes(frames: np.ndarray, fps: int) -> bytes:
    buffer = io.BytesIO()
    with Mp4Writer(buffer, fps) as writer:
        writer.write(frames)
    return buffer.getvalue()


def video_url(data: bytes) -> str:
    return "data:video/mp4;base64," + base64.b64encode(data).decode()


def engine_video(model, settings: GenerationSettings) -> bytes:
    """A one-section video the engine made, as the MP4 a user would upload (9 frames at 128x128)."""
    generator = SectionGenerator(model, "a red ball", None, settings)
    section = generator.next_section()
    tail = generator.flush()
    return mp4_bytes(np.concatenate([section.frames, tail.frames]), settings.fps)


async def test_a_session_continues_an_uploaded_video(server_factory, model):
    info, _ = model_defaults("tiny")
    with server_factory(model=info) as server:
        upload = engine_video(model, server.generation)
        original, _ = read_video(io.BytesIO(upload))  # what the server decodes too
        async with server.connect() as ws:
            await send(ws, type="start", prompt="a blue ball", video=video_url(upload), sections=1, seed=5)
            session = await expect(ws, "session")
            received = await receive(ws, Received())
        settings = server.app.state.directory._sessions[session["session_id"]].settings
        jpeg_quality = server.app.state.directory.settings.jpeg_quality
        async with httpx.AsyncClient(base_url=server.url) as http:
            video = (await download(http, session["session_id"], session["token"])).content

    kept = first_new_frame(len(original), settings)
    assert 0 < kept < len(original)
    assert (settings.width, settings.height) == (128, 128)  # the video's size, not asked for
    assert received.gaps(first_frame=kept) == []  # the live view: the new sections only
    exported, _ = read_video(io.BytesIO(video))
    assert len(exported) == received.done["frames"] == kept + len(received.frames)
    # The export begins with the original's frames (through H.264 again: within its tolerance)...
    assert np.abs(exported[:kept].astype(np.float32) - original[:kept]).mean() < 4
    # ...and goes on with the engine's own continuation of them, JPEG for JPEG.
    generator = generator_after(model, original, settings, "a blue ball")
    section = generator.next_section()
    tail = generator.flush()
    assert received.frames == encode_jpegs(np.concatenate([section.frames, tail.frames]), jpeg_quality)
    start = read_record(io.BytesIO(video)).start
    assert (start.kind, start.sha256, start.frames, start.name) == ("video", sha256(upload), len(original), None)
