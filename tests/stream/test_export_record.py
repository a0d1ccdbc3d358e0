"""A session's MP4 export carries how it was made (`stream.metadata.VideoRecord`): the model, the
session's settings with its seed and LoRAs (and their hashes), the prompt of each section, and its
start image; `render --from` reads it."""

from __future__ import annotations

import base64
import dataclasses
import io

import av
import httpx
import numpy as np
from PIL import Image

from framepack_live.cluster import render
from framepack_live.cluster.cli import build_parser, main
from framepack_live.engine.lora import list_loras
from framepack_live.stream.client import Received, download, expect, receive, send
from framepack_live.stream.metadata import file_sha256, read_record
from framepack_live.stream.model_defaults import model_defaults


def decoded(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]).astype(np.float32)


async def test_the_export_carries_its_settings_and_timeline(server_factory, tiny_loras, tmp_path):
    info, _ = model_defaults("tiny")
    image = Image.new("RGB", (128, 128), (40, 120, 200))
    png = io.BytesIO()
    image.save(png, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    with server_factory(model=dataclasses.replace(info, loras=tuple(list_loras(tiny_loras)))) as server:
        async with server.connect() as ws:
            await send(ws, type="start", prompt="a red ball", sections=2, seed=9, image=data_url,
                       loras=[{"name": "second", "scale": 0.7}])
            session = await expect(ws, "session")
            received = await receive(ws, Received(), until_sections=1)
            await send(ws, type="steer", prompt="a blue ball")
            await receive(ws, received)
        settings = server.app.state.directory._sessions[session["session_id"]].settings
        async with httpx.AsyncClient(base_url=server.url) as http:
            video = (await download(http, session["session_id"], session["token"])).content
    assert received.gaps() == []
    prompts = [message["prompt"] for message, _ in received.sections]

    record = read_record(io.BytesIO(video))
    assert record.model == "tiny"
    assert record.settings == settings and record.settings.seed == 9
    (lora,) = record.settings.loras
    assert lora == (str((tiny_loras / "second" / "pytorch_lora_weights.safetensors").resolve()), 0.7)
    assert record.lora_sha256 == [file_sha256(lora[0])]
    assert record.timeline == [{"section": i, "prompt": prompt, "branch": 0} for i, prompt in enumerate(prompts)]
    assert prompts[-1] == "a blue ball"
    assert record.start.kind == "image"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(record.start.image))), np.asarray(image))
    frames = decoded(video)
    assert len(frames) == received.done["frames"]

    # `render --from` takes everything from the export: the same settings, start image and
    # prompt per section, and makes a video of the same length.
    export = tmp_path / "export.mp4"
    export.write_bytes(video)
    args = ["render", "--from", str(export), "--out", str(tmp_path / "again.mp4")]
    plan = render.plan(build_parser().parse_args(args))
    assert plan.job.settings == settings and plan.job.image == record.start.image and plan.job.model == "tiny"
    assert [plan.job.schedule.for_section(settings, i) for i in range(2)] == prompts
    assert main(args) == 0
    assert len(decoded((tmp_path / "again.mp4").read_bytes())) == len(frames)
