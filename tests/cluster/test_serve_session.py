"""The application on local Ray, spoken to like a browser: sessions, steering, rewinding, export,
`busy`, LoRAs chosen per session, and a Denoiser replica killed mid-session."""

from __future__ import annotations

import io

import av
import httpx
import pytest
import ray

from framepack_live.cluster.config import ClusterConfig
from framepack_live.stream.client import Received, connect, download, expect, receive, recv_json, rewind, send
from framepack_live.stream.metadata import read_record

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def toyworld_loras(tmp_path_factory, make_lora):
    """A LoRA directory (`--lora-dir`) with one random LoRA for the shipped toyworld transformer."""
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    from framepack_live.engine.presets import SHIPPED

    root = tmp_path_factory.mktemp("toyworld-loras")
    transformer = HunyuanVideoFramepackTransformer3DModel.from_pretrained(SHIPPED["toyworld"] / "transformer")
    make_lora(transformer, root / "random", seed=1)
    return root


@pytest.fixture(scope="module")
def server(deploy, generation, toyworld_loras):
    with deploy(ClusterConfig(generation=generation, max_sessions=2, lora_dir=str(toyworld_loras))) as server:
        yield server


async def test_three_sections_with_a_steer_and_the_mp4(server, generation):
    async with connect(server.ws_url) as ws:
        await send(ws, type="start", prompt="a red ball", sections=3)
        session = await expect(ws, "session")
        received = await receive(ws, Received(), until_sections=1)
        await send(ws, type="steer", prompt="a blue ball")
        await receive(ws, received)
    assert received.gaps() == []
    assert [m["section"] for m, _ in received.sections] == [0, 1, 2]
    prompts = [m["prompt"] for m, _ in received.sections]
    assert prompts[0] == "a red ball" and prompts[-1] == "a blue ball"
    assert {p["steps"] for p in received.progress} == {generation["steps"]}

    async with httpx.AsyncClient(base_url=server.url) as http:
        video = await download(http, session["session_id"], session["token"])
        health = await http.get("/healthz")
        page = await http.get("/")
    frames = _decode(video.content)
    assert len(frames) == received.done["frames"] == len(received.frames)
    assert frames[0].shape == (generation["height"], generation["width"], 3)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert page.status_code == 200 and "<html" in page.text.lower()


async def test_a_lora_chosen_in_start_reaches_the_denoiser(server):
    """The page names a LoRA from `GET /config`; the session's settings carry its file to the
    Denoiser, whose frames differ from the base model's; another session is the base model again."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        offered = (await http.get("/config")).json()["loras"]
    made = []
    for loras in ([], [{"name": "random", "scale": 1.0}], []):
        async with connect(server.ws_url) as ws:
            await send(ws, type="start", prompt="a red ball", sections=1, seed=3, loras=loras)
            await expect(ws, "session")
            made.append(await receive(ws, Received()))
        assert made[-1].gaps() == []
    async with connect(server.ws_url) as ws:
        await send(ws, type="start", prompt="a red ball", sections=1, loras=[{"name": "other"}])
        refused = await expect(ws, "error")
    assert offered == [{"name": "random", "description": "Random weights for tests."}]
    base, with_lora, base_again = (received.frames for received in made)
    assert with_lora != base and base_again == base
    assert refused["code"] == "bad_request"


async def test_a_start_from_the_prompt_alone_runs_through_the_stages(server):
    """`start: "text"`: the sketch section runs on the Encoder, Denoiser and Decoder like any other,
    and the video opens on its last frame, not on the built-in start image; the export says so."""
    made = {}
    for kind in ("image", "text"):
        async with connect(server.ws_url) as ws:
            await send(ws, type="start", prompt="a red ball", sections=1, seed=3, start=kind)
            session = await expect(ws, "session")
            made[kind] = await receive(ws, Received())
        assert made[kind].gaps() == []
    async with httpx.AsyncClient(base_url=server.url) as http:
        video = await download(http, session["session_id"], session["token"])
    assert made["text"].frames[0] != made["image"].frames[0]
    assert read_record(io.BytesIO(video.content)).start.kind == "text"


async def test_rewind_through_the_session_actor_replays_bit_for_bit(server):
    """The session actor and `RaySource`: a section made again from its kept boundary, with its
    prompt, is the same, although the source had planned the old branch's next section ahead."""
    async with connect(server.ws_url) as ws, httpx.AsyncClient(base_url=server.url) as http:
        await send(ws, type="start", prompt="a red ball", sections=0)
        session = await expect(ws, "session")
        received = await receive(ws, Received(), until_sections=2)
        branch = await rewind(ws, received, 1, "a red ball")
        await send(ws, type="stop")
        await receive(ws, received)
        old, new = [await download(http, session["session_id"], session["token"], b) for b in (0, 1)]
    assert (branch["branch"], branch["parent"]) == (1, 0) and not received.errors
    original = next(s for s in received.branch(0) if s[0]["section"] == 1)
    replayed = received.branch(1)[0]
    assert replayed[0]["first_frame"] == original[0]["first_frame"] and replayed[1] == original[1]
    old_frames, new_frames = [_decode(video.content) for video in (old, new)]
    end = original[0]["first_frame"] + original[0]["frames"]
    assert len(old_frames) >= end and len(new_frames) == received.done["frames"]
    assert all((a == b).all() for a, b in zip(old_frames[:end], new_frames[:end], strict=True))


def _decode(data: bytes) -> list:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


async def test_sessions_beyond_the_limit_are_busy(server):
    async with connect(server.ws_url) as a, connect(server.ws_url) as b, connect(server.ws_url) as c:
        for ws, prompt in ((a, "one"), (b, "two")):
            await send(ws, type="start", prompt=prompt, sections=0, media="none")
            await expect(ws, "session")
        await send(c, type="start", prompt="three", sections=0, media="none")
        error = await expect(c, "error")
        assert error["code"] == "busy"
        for ws in (a, b):  # and wait until they have ended, so the next test has room
            await send(ws, type="stop")
            assert (await receive(ws, Received(), media=False)).done is not None


def _denoiser_replicas(app: str) -> set[str]:
    return {
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(f"SERVE_REPLICA::{app}#Denoiser#")
    }


async def test_killing_the_denoiser_mid_session_loses_nothing(server):
    """The session's state travels with each request, so the section in flight is recomputed on
    the replica Serve starts instead, bit for bit: the video equals an undisturbed run's."""
    start = dict(type="start", prompt="a green ball", sections=3, seed=7)
    async with connect(server.ws_url) as ws:
        await send(ws, **start)
        await expect(ws, "session")
        undisturbed = await receive(ws, Received())
    assert undisturbed.gaps() == []

    async with connect(server.ws_url) as ws:
        await send(ws, **start)
        await expect(ws, "session")
        while (await recv_json(ws))["type"] != "progress":
            pass
        # The Denoiser is streaming section 0's steps right now.
        (killed,) = _denoiser_replicas(server.app)
        ray.kill(ray.get_actor(killed, namespace="serve"), no_restart=True)
        received = await receive(ws, Received(), timeout=120)

    assert received.gaps() == []
    assert [m["section"] for m, _ in received.sections] == [0, 1, 2]
    assert received.frames == undisturbed.frames
    replacement = _denoiser_replicas(server.app)
    assert replacement and killed not in replacement
