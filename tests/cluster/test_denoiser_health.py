"""A sequence-parallel Denoiser (2 ranks, gloo) on real Serve with a 1 s health-check period and
a 2 s timeout: it stays healthy through a section that runs several times longer than the
timeout, and a rank whose process is killed gets the replica replaced."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace

import pytest
import ray
import torch
from ray import serve

from framepack_live.cluster.config import ClusterConfig
from framepack_live.cluster.sequence_parallel import RANK_NAME_PREFIX
from framepack_live.cluster.work import DenoiseRequest, DenoiseResult
from framepack_live.engine import video_state
from framepack_live.engine.generator import start_video
from framepack_live.engine.images import default_start_image

pytestmark = pytest.mark.heavy
HEALTH = {"health_check_period_s": 1.0, "health_check_timeout_s": 2.0}
#: The slow section must outlast the health-check timeout this many times.
TIMEOUTS_PER_SECTION = 4


def _denoiser_replicas(app: str) -> set[str]:
    return {
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(f"SERVE_REPLICA::{app}#Denoiser#")
    }


async def _section(app: str, request: DenoiseRequest) -> DenoiseResult:
    handle = serve.get_deployment_handle("Denoiser", app_name=app)
    async for item in handle.options(stream=True).section.remote(request):
        if isinstance(item, DenoiseResult):
            return item
    raise AssertionError("no result")


@pytest.fixture(scope="module")
def big_request(tiny_model, requests) -> DenoiseRequest:
    """A section four times the size of the others (256x256): each step takes longer."""
    settings = replace(requests[0].settings, width=256, height=256)
    start = start_video(tiny_model, default_start_image(), settings)
    return replace(
        requests[0],
        settings=settings,
        plan=video_state.plan_section(video_state.begin(start, settings, "a red ball")),
        image_embeds=start.start.image_embeds,
    )


def _timed(app: str, request: DenoiseRequest) -> tuple[DenoiseResult, float]:
    began = time.perf_counter()
    result = asyncio.run(_section(app, request))
    return result, time.perf_counter() - began


def test_long_section_keeps_the_denoiser_healthy_and_a_dead_rank_replaces_it(
    deploy, generation, big_request, requests, expected
):
    config = ClusterConfig(model="tiny", generation=generation, sequence_parallel=2)
    with deploy(config, HEALTH) as server:
        (replica,) = _denoiser_replicas(server.app)
        # Steps timed on this replica, then enough of them for a section 1.5 times the bound below:
        # slow on any machine, and a real section, not an injected sleep.
        probe = replace(big_request, settings=replace(big_request.settings, steps=10))
        _timed(server.app, probe)  # warm-up
        per_step = _timed(server.app, probe)[1] / 10
        long_enough = TIMEOUTS_PER_SECTION * HEALTH["health_check_timeout_s"]
        steps = math.ceil(1.5 * long_enough / per_step)
        for _ in range(3):
            slow_request = replace(big_request, settings=replace(big_request.settings, steps=steps))
            result, seconds = _timed(server.app, slow_request)
            if seconds >= long_enough:
                break
            # Faster than the probe said (the suite's other worker had loaded the cores then): longer.
            steps = math.ceil(steps * 1.5 * long_enough / seconds)
        assert seconds >= long_enough, f"a {seconds:.1f} s section proves nothing about a {long_enough} s bound"
        assert result.latents.shape[2] == slow_request.settings.window
        assert _denoiser_replicas(server.app) == {replica}, "the replica was replaced during a healthy batch"
        assert serve.status().applications[server.app].deployments["Denoiser"].status == "HEALTHY"

        (rank,) = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(RANK_NAME_PREFIX)]
        ray.kill(ray.get_actor(rank["name"], namespace=rank["namespace"]), no_restart=True)  # its process ends
        killed = time.perf_counter()
        # Our check fails at the first health check after the death (within one period); Serve
        # replaces a replica after 3 consecutive failed checks.
        deadline = killed + 3 * HEALTH["health_check_period_s"] + HEALTH["health_check_timeout_s"] + 20
        while replica in _denoiser_replicas(server.app):
            assert time.perf_counter() < deadline, "the replica with a dead rank was not replaced"
            time.sleep(0.2)
        after = asyncio.run(_section(server.app, requests[0]))  # the new replica serves
    torch.testing.assert_close(after.latents, expected[0], rtol=0, atol=1e-4)
