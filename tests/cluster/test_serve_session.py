"""The application on local Ray, spoken to like a browser: sessions, steering, export, `busy`,
and a Denoiser replica killed mid-session."""

from __future__ import annotations

import io

import av
import httpx
import pytest
import ray

from framepack_live.cluster.config import ClusterConfig
from framepack_live.stream.client import Received, connect, download, expect, receive, recv_json, send

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def server(deploy, generation):
    with deploy(ClusterConfig(generation=generation, max_sessions=2)) as server:
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
    with av.open(io.BytesIO(video.content)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == received.done["frames"] == len(received.frames)
    assert frames[0].shape == (generation["height"], generation["width"], 3)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert page.status_code == 200 and "<html" in page.text.lower()


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
