"""The ranks 1..N-1 of a sequence-parallel Denoiser replica, as Ray actors in its placement group.

Serve reserves one placement-group bundle per rank for each Denoiser replica
(`placement_group_bundles`), and the replica itself, rank 0, runs in bundle 0. The other ranks
are actors in bundles 1..N-1: they are children of the replica, so they die with it, and the
placement group makes Serve schedule all N ranks together or not at all. They form one
`torch.distributed` group with the replica (NCCL on GPUs, gloo on CPU) and run every batch in
lockstep with it, as `engine.parallel` requires: same weights, same inputs, each rank computing
1/N of the video tokens.
"""

from __future__ import annotations

import socket
from datetime import timedelta

import ray
import torch
import torch.distributed as dist
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from framepack_live.engine.model import FramePackModel
from framepack_live.engine.parallel import check_degree, enable_sequence_parallel

from .config import ClusterConfig
from .replica import load_model
from .work import DenoiseRequest, denoise_batch

_JOIN_TIMEOUT = timedelta(minutes=5)


def join_group(config: ClusterConfig, rank: int, address: str) -> None:
    """Join the replica's process group as `rank` (rendezvous over TCP at rank 0's address)."""
    backend = "nccl" if config.device == "cuda" else "gloo"
    kwargs = {"device_id": torch.device("cuda", 0)} if backend == "nccl" else {}
    dist.init_process_group(
        backend, init_method=address, rank=rank, world_size=config.sequence_parallel, timeout=_JOIN_TIMEOUT, **kwargs
    )


@ray.remote
class DenoiserRank:
    """One rank beyond the first: loads the same model, joins the group, denoises what rank 0 does."""

    def __init__(self, config: ClusterConfig, rank: int, address: str) -> None:
        self.config, self.rank, self.address = config, rank, address
        self.model = load_model(config, ("transformer",))

    def join(self) -> None:
        join_group(self.config, self.rank, self.address)
        enable_sequence_parallel(self.model.transformer)

    def denoise(self, requests: list[DenoiseRequest]) -> None:
        denoise_batch(self.model, requests, None)

    def ping(self) -> bool:
        return True


class SequenceParallelGroup:
    """Rank 0's view of its group: starts the other ranks, runs batches on all of them."""

    def __init__(self, config: ClusterConfig, model: FramePackModel) -> None:
        check_degree(model.transformer.config.num_attention_heads, config.sequence_parallel)
        group = get_current_placement_group()
        if group is None:
            raise RuntimeError("a sequence-parallel Denoiser replica must run in a placement group")
        address = f"tcp://{ray.util.get_node_ip_address()}:{_free_port()}"
        resources = {"num_cpus": config.cpus_per_rank, "num_gpus": 1 if config.device == "cuda" else 0}
        self.ranks = [
            DenoiserRank.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank),
                **resources,
            ).remote(config, rank, address)
            for rank in range(1, config.sequence_parallel)
        ]
        joined = [r.join.remote() for r in self.ranks]
        join_group(config, 0, address)
        ray.get(joined)
        enable_sequence_parallel(model.transformer)
        self.model = model

    def denoise(self, requests: list[DenoiseRequest], progress, preview) -> list:
        """Run one batch on every rank; blocks (call it from the Denoiser's worker thread). Rank 0
        alone reports progress and makes the previews (every rank holds the whole latents)."""
        others = [r.denoise.remote(requests) for r in self.ranks]
        results = denoise_batch(self.model, requests, progress, preview)
        ray.get(others)
        return results

    def check(self) -> None:
        """Raise if a rank is gone: the group cannot run without it, so the replica must be replaced."""
        ray.get([r.ping.remote() for r in self.ranks], timeout=30)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]
