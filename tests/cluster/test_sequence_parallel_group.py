"""A sequence-parallel group (2 ranks, gloo, weights sharded) on real Ray actors: an exception on
one rank mid-forward fails the batch on every rank within seconds, not after gloo's 30-minute
collective timeout, and the group then serves the next batch exactly."""

from __future__ import annotations

import time

import pytest
import ray
import torch
import torch.distributed as dist
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from framepack_live.cluster.config import ClusterConfig
from framepack_live.cluster.sequence_parallel import BatchFailed, SequenceParallelGroup
from framepack_live.cluster.batch import denoise_batch

pytestmark = pytest.mark.heavy
#: Far below gloo's default collective timeout (30 min): the failure must travel, not time out.
STOPPED_WITHIN_S = 20.0


@ray.remote
class GroupHost:
    """Rank 0, in bundle 0 of a placement group, as a Denoiser replica is."""

    def __init__(self, config: ClusterConfig) -> None:
        self.group = SequenceParallelGroup(config)

    def run(self, task, payload) -> tuple[str, object, float]:
        started = time.perf_counter()
        try:
            return "ok", self.group.run(task, payload), time.perf_counter() - started
        except BatchFailed as exc:
            return "failed", str(exc), time.perf_counter() - started


def failing_on(rank: int):
    """A denoising task that raises on `rank` only, inside the forward (between collectives)."""

    def task(model, requests, progress):
        def fail(module, args):
            if dist.get_rank() == rank:
                raise RuntimeError(f"injected failure on rank {rank}")

        hook = model.transformer.single_transformer_blocks[0].register_forward_pre_hook(fail)
        try:
            return denoise_batch(model, requests, progress)
        finally:
            hook.remove()

    return task


@pytest.fixture
def host(ray_cluster, generation):
    group = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
    ray.get(group.ready())
    config = ClusterConfig(model="tiny", sequence_parallel=2, shard_weights=True, generation=generation)
    strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)
    actor = GroupHost.options(num_cpus=1, scheduling_strategy=strategy).remote(config)
    yield actor
    ray.kill(actor)
    remove_placement_group(group)


def test_a_failing_rank_stops_the_batch_everywhere_and_the_group_recovers(host, requests, expected):
    for rank in (1, 0):  # a rank actor, then the replica's own rank
        status, message, seconds = ray.get(host.run.remote(failing_on(rank), requests[:2]))
        assert status == "failed"
        assert seconds < STOPPED_WITHIN_S, f"rank {rank}'s failure took {seconds:.1f} s to stop the batch"
        assert f"rank {rank}: RuntimeError: injected failure on rank {rank}" in message
        other = 1 - rank
        assert f"rank {other}:" in message  # the other rank's batch was failed too, by the closed group

    status, results, _ = ray.get(host.run.remote(denoise_batch, requests[:2]))
    assert status == "ok"
    for result, reference in zip(results, expected):
        torch.testing.assert_close(result.latents, reference, rtol=0, atol=1e-4)
