"""Sessions outlive the processes and nodes that serve them (issue 24): the Ingress replica that
serves a session is SIGKILLed, and the worker node that runs the Denoiser is removed, mid-session.
Both on the one multi-node cluster of conftest.py, so they share its start-up."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import signal
import time

import av
import httpx
import pytest
from ray import serve
from ray.serve.schema import ServeDeploySchema
from ray.util.state import list_actors
from websockets.exceptions import ConnectionClosed, InvalidStatus

from framepack_live.cluster.serve import deploy_schema
from framepack_live.cluster.config import ClusterConfig
from framepack_live.stream.client import Received, connect, download, expect, receive, send

from .conftest import APP

pytestmark = pytest.mark.heavy
SECTIONS = 6


def replica(ray_cluster, deployment: str) -> dict:
    """The live replica actor of `deployment` (state API: its pid and node)."""
    (actor,) = list_actors(
        address=ray_cluster.cluster.address,
        filters=[("class_name", "=", f"ServeReplica:{APP}:{deployment}"), ("state", "=", "ALIVE")],
        detail=True,
    )
    return actor


async def reattach(server, session: dict, received: Received, deadline_s: float = 120) -> tuple[str, float]:
    """Re-attach with the session's token through whatever replica answers, and read to the end;
    returns the `instance` that served the re-attach and when it answered. Retries while no
    replica takes the socket."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            async with connect(server.ws_url) as ws:
                await send(ws, type="resume_session", session_id=session["session_id"], token=session["token"])
                answer = await expect(ws, "session", timeout=10)
                answered = time.monotonic()
                await receive(ws, received, timeout=120)
                return answer["instance"], answered
        except (OSError, ConnectionClosed, InvalidStatus, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def mp4_frames(server, session: dict) -> int:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        reply = await download(http, session["session_id"], session["token"])
    with av.open(io.BytesIO(reply.content)) as container:
        return sum(1 for _ in container.decode(video=0))


def assert_whole(received: Received) -> None:
    assert received.gaps() == []
    assert [m["section"] for m, _ in received.sections] == list(range(SECTIONS))


async def test_sigkill_of_the_serving_ingress_loses_no_frame(deploy, generation, record_property):
    config = ClusterConfig(model="tiny", generation=generation, max_sessions=4)
    with deploy(config, ingress_replicas=2) as server:
        async with connect(server.ws_url) as ws:
            await send(ws, type="start", prompt="a red ball", sections=SECTIONS, seed=3)
            session = await expect(ws, "session")
            received = await receive(ws, Received(), until_sections=2)
            killed = time.monotonic()
            os.kill(int(re.search(r"pid=(\d+)", session["instance"]).group(1)), signal.SIGKILL)
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                while True:  # the socket dies with the replica
                    await asyncio.wait_for(ws.recv(), 30)
        served_by, reattached = await reattach(server, session, received)
        print(f"seconds from the SIGKILL to the re-attach's answer: {reattached - killed:.1f}")
        record_property("seconds_to_reattach", round(reattached - killed, 1))
        assert served_by != session["instance"]
        assert_whole(received)
        assert received.done["frames"] == len(received.frames) == await mp4_frames(server, session)


async def test_losing_the_denoiser_node_loses_no_section(ray_cluster, server_for, generation, record_property):
    """Stages on the worker nodes as a Serve config places them (`gpu_node` stands for a GPU node
    type), sessions and the Ingress on the head; the node running the Denoiser goes mid-session."""
    on_head, on_gpu = {"num_cpus": 0, "resources": {"head": 0.01}}, {"resources": {"gpu_node": 0.25}}
    schema = ServeDeploySchema.model_validate({
        "applications": [{
            "name": APP,
            "route_prefix": "/",
            "import_path": "framepack_live.cluster.app:build_app",
            "args": {"model": "tiny", "generation": generation, "max_sessions": 4},
            "deployments": [
                {"name": "Ingress", "num_replicas": 2, "ray_actor_options": on_head},
                {"name": "SessionRegistry", "ray_actor_options": on_head},
                {"name": "Encoder", "ray_actor_options": {"num_cpus": 0, **on_gpu}},
                {"name": "Decoder", "ray_actor_options": {"num_cpus": 0, **on_gpu}},
                {"name": "Denoiser", "ray_actor_options": {"num_cpus": 1, "resources": {"gpu_node": 0.5}}},
            ],
        }]
    })
    deploy_schema(schema)
    server = server_for()
    try:
        async with connect(server.ws_url) as ws:
            await send(ws, type="start", prompt="a blue ball", sections=SECTIONS, seed=5)
            session = await expect(ws, "session")
            received = await receive(ws, Received(), until_sections=2)
            lost = replica(ray_cluster, "Denoiser")
            (node,) = [n for n in ray_cluster.cluster.worker_nodes if n.node_id == lost["node_id"]]
            arrivals = [time.monotonic()]
            ray_cluster.cluster.remove_node(node)
            while received.done is None:
                try:
                    await receive(ws, received, until_sections=len(received.sections) + 1, timeout=240)
                except TimeoutError:
                    pytest.fail(f"no section for 240 s after section {len(received.sections) - 1}; "
                                f"Serve: {serve.status().applications[APP].deployments}")
                assert received.errors == []
                arrivals.append(time.monotonic())
        silent = max(b - a for a, b in zip(arrivals, arrivals[1:]))
        print(f"longest time without output after the Denoiser's node was removed: {silent:.1f} s")
        record_property("seconds_without_output", round(silent, 1))
        assert replica(ray_cluster, "Denoiser")["node_id"] != lost["node_id"]
        assert_whole(received)
        assert received.done["frames"] == len(received.frames) == await mp4_frames(server, session)
    finally:
        serve.delete(APP)
        ray_cluster.add_worker()  # the fixture's shape for whoever comes next
