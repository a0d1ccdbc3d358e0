"""The application on local Ray, spoken to like a browser: sessions, steering, rewinding, export,
text-to-video starts and `busy`. (A Denoiser lost mid-session: tests/cluster/test_kill.py.)"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from contextlib import suppress

import av
import httpx
import numpy as np
import pytest
import ray
from ray.serve.handle import DeploymentHandle

from framepack_live.cluster.backend import Stages, warm_up
from framepack_live.cluster.config import ClusterConfig
from framepack_live.cluster.model_status import REGISTRY
from framepack_live.cluster.session_host import NAMESPACE, session_actor_name
from framepack_live.cluster.session_registry import SPARE_AFTER_S
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import first_new_frame
from framepack_live.stream.client import Received, connect, download, expect, receive, rewind, send
from framepack_live.stream.metadata import read_record

from .conftest import APP

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
    frames = _decode(video.content)
    assert len(frames) == received.done["frames"] == len(received.frames)
    assert frames[0].shape == (generation["height"], generation["width"], 3)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert page.status_code == 200 and "<html" in page.text.lower()


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


async def test_a_video_continued_through_the_stages(server, generation):
    """`start`'s `video` (here a video this server made): the Encoder encodes its history, the new
    section comes after its kept frames, and the export is the whole video."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        async with connect(server.ws_url) as ws:
            await send(ws, type="start", prompt="a red ball", sections=1)
            first = await expect(ws, "session")
            await receive(ws, Received())
        upload = (await download(http, first["session_id"], first["token"])).content
        async with connect(server.ws_url) as ws:
            video = "data:video/mp4;base64," + base64.b64encode(upload).decode()
            await send(ws, type="start", prompt="a blue ball", sections=1, video=video)
            session = await expect(ws, "session")
            received = await receive(ws, Received())
        export = (await download(http, session["session_id"], session["token"])).content
    original, frames = np.stack(_decode(upload)), np.stack(_decode(export))
    kept = first_new_frame(len(original), GenerationSettings(**generation))
    assert received.gaps(first_frame=kept) == []
    assert len(frames) == received.done["frames"] == kept + len(received.frames)
    assert np.abs(frames[:kept].astype(np.float32) - original[:kept]).mean() < 4  # H.264 twice
    assert read_record(io.BytesIO(export)).start.kind == "video"


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


async def test_a_start_takes_a_session_actor_started_before_it(server):
    """The registry keeps spare session actors (`spare_sessions`, 2 by default), each named for a
    session to come: a start's session is one of them, not a process started for it."""
    before = await _spares(at_least=1)
    session = await _one_section_session(server)
    assert session["session_id"] in before


async def test_every_spare_taken_is_replaced_when_its_session_ends(server):
    """Then, not before: a process start (seconds of CPU) would slow the session that took the
    spare; and not 30 s later (as one taken while another was left was): a viewer who starts,
    stops and starts again within seconds, twice, would find no spare by the third start."""
    await _spares(at_least=2)
    known = set(_session_actors())
    for _ in range(2):  # both spares
        async with connect(server.ws_url) as ws:
            await send(ws, type="start", prompt="a red ball", sections=3)
            known.add((await expect(ws, "session"))["session_id"])
            await asyncio.sleep(0.5)
            assert set(_session_actors()) == known, "a spare was started while the session that took one ran"
            await receive(ws, Received())
        deadline = time.monotonic() + SPARE_AFTER_S / 3
        while not (new := set(_session_actors()) - known) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert len(new) == 1, "no spare was started in the place of the one taken"
        known |= new


async def _one_section_session(server) -> dict:
    """Its `session` message, once it has ended."""
    async with connect(server.ws_url) as ws:
        await send(ws, type="start", prompt="a red ball", sections=1)
        session = await expect(ws, "session")
        await receive(ws, Received())
    return session


def _session_actors() -> dict[str, ray.actor.ActorHandle]:
    """This application's session actors, spare or not, by session id."""
    prefix = session_actor_name(APP, "")
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == NAMESPACE and a["name"].startswith(prefix)]
    actors = {}
    for name in names:
        with suppress(ValueError):  # gone between the listing and the lookup
            actors[name[len(prefix):]] = ray.get_actor(name, namespace=NAMESPACE)
    return actors


async def _spares(at_least: int) -> set[str]:
    """Ids of the session actors that have no session yet, once there are `at_least` (the earlier
    tests' starts took spares; others follow)."""
    deadline = time.monotonic() + 120
    while True:
        actors = _session_actors()
        statuses = await asyncio.gather(*(a.status.remote() for a in actors.values()), return_exceptions=True)
        spares = {session_id for session_id, status in zip(actors, statuses) if status is None}  # gone: an error
        if len(spares) >= at_least or time.monotonic() > deadline:
            return spares
        await asyncio.sleep(1)


async def test_warmed_stage_handles_know_their_replicas_before_any_call(server):
    """What a spare session actor does when it starts (`SessionHost.ready`), here from a fresh
    process's handles: routers made and their replicas known, so a first call goes out at once."""
    stages = Stages(*(DeploymentHandle(name, APP) for name in ("Encoder", "Denoiser", "Decoder")))
    assert not any(handle.is_initialized for handle in stages.handles)
    await stages.warm()
    assert all(handle.running_replicas_populated() for handle in stages.handles)


async def test_the_warm_up_goes_through_every_stage_and_leaves_no_session(server, generation):
    """What the registry does when it starts (`backend.warm_up`), here once more from this process:
    a section of the empty prompt from the built-in start, decoded and thrown away."""
    registry = DeploymentHandle(REGISTRY, APP)
    active = await registry.active_count.remote()
    stages = Stages(*(DeploymentHandle(name, APP) for name in ("Encoder", "Denoiser", "Decoder")))
    await warm_up(stages, GenerationSettings(**generation))  # raises if a stage refused it
    assert await registry.active_count.remote() == active


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
