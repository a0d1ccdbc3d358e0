"""The Denoiser deployment (tiny preset) against the engine in this process: batching across
sessions and a replica spanning two CPU bundles (sequence parallel, gloo) must not change any
section."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import torch
from ray import serve

from framepack_live.cluster.batch import denoise_batch
from framepack_live.cluster.config import ClusterConfig
from framepack_live.cluster.work import DenoiseRequest, DenoiseResult, Preview

pytestmark = pytest.mark.heavy


PREVIEWS: dict[str, list[Preview]] = {}


async def _denoise(handle, request: DenoiseRequest) -> DenoiseResult:
    PREVIEWS[request.session_id] = []
    async for item in handle.options(stream=True).section.remote(request):
        if isinstance(item, Preview):
            PREVIEWS[request.session_id].append(item)
        if isinstance(item, DenoiseResult):
            return item
    raise AssertionError("no result")


async def _run(app: str, requests: list[DenoiseRequest]) -> list[DenoiseResult]:
    handle = serve.get_deployment_handle("Denoiser", app_name=app)
    return list(await asyncio.gather(*(_denoise(handle, r) for r in requests)))


def test_batched_sections_equal_sections_alone(deploy, generation, requests, expected):
    config = ClusterConfig(model="tiny", generation=generation, max_batch_size=4, batch_wait_timeout_s=1.0)
    with deploy(config) as server:
        alone = asyncio.run(_run(server.app, requests[:1]))
        together = asyncio.run(_run(server.app, requests))
    assert alone[0].batch_size == 1
    assert [r.batch_size for r in together] == [3, 3, 3]
    assert torch.equal(alone[0].latents, expected[0])
    for result, reference in zip(together, expected):
        torch.testing.assert_close(result.latents, reference, rtol=0, atol=1e-5)
    assert not torch.allclose(together[0].latents, together[1].latents)  # really different sessions
    for request in requests:  # each session's step previews came through the stream, its own
        steps = [(p.step, p.steps) for p in PREVIEWS[request.session_id]]
        assert steps == [(step, 4) for step in range(1, 5)]
        assert PREVIEWS[request.session_id][-1].frames.shape == (2, 16, 16, 3)


def test_batched_previews_follow_each_request_cadence(tiny_model, requests):
    cadenced = [replace(r, settings=replace(r.settings, preview_every=every)) for r, every in zip(requests, (2, 3, 0))]
    shown: dict[int, list[int]] = {0: [], 1: [], 2: []}

    def preview(step, steps, frames):
        for i, frame in enumerate(frames):
            if frame is not None:
                shown[i].append(step)

    denoise_batch(tiny_model, cadenced, None, preview)
    assert shown == {0: [2, 4], 1: [3, 4], 2: []}


def test_two_bundle_sequence_parallel_replica_equals_one(deploy, generation, requests, expected):
    config = ClusterConfig(model="tiny", generation=generation, sequence_parallel=2, max_batch_size=4, batch_wait_timeout_s=1.0)
    with deploy(config) as server:
        results = asyncio.run(_run(server.app, requests[:2]))
    assert [r.batch_size for r in results] == [2, 2]
    for result, reference in zip(results, expected):
        torch.testing.assert_close(result.latents, reference, rtol=0, atol=1e-4)
