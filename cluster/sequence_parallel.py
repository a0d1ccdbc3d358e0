"""The ranks 1..N-1 of a sequence-parallel Denoiser replica, as Ray actors in its placement group.

Serve reserves one placement-group bundle per rank for each Denoiser replica
(`placement_group_bundles`), and the replica itself, rank 0, runs in bundle 0. The other ranks
are actors in bundles 1..N-1: they are children of the replica, so they die with it, and the
placement group makes Serve schedule all N ranks together or not at all. They form one
`torch.distributed` group with the replica (NCCL on GPUs, gloo on CPU) and run every batch in
lockstep with it, as `engine.parallel` requires: same weights, same inputs, each rank computing
1/N of the video tokens (and, with `shard_weights`, keeping 1/N of the block weights).

Two things a long-running group must survive:

* **Health checks during long batches.** A rank actor answers `ping` and `abort` on its own
  `control` thread, so a health check never waits behind a batch that runs for minutes; a rank
  whose process died fails the ping at once.
* **A batch that fails on one rank.** The others would wait in their next collective for a
  partner that never comes (30 minutes with gloo's default timeout). So a rank whose batch
  raises destroys its process group at once, which closes its connections: every gloo peer
  waiting on it fails within milliseconds and does the same. NCCL peers do not notice a
  partner's abort, so rank 0 also watches the other ranks' calls and, on the first failure,
  aborts the group on every rank through their control threads. When every rank has stopped,
  they rendezvous on a fresh group and the next batch runs normally; the failed batch is
  reported to its callers. A group that cannot be rebuilt fails its health check, and Serve
  replaces the replica.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import ray
import torch
import torch.distributed as dist
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from framepack_live.engine.model import FramePackModel
from framepack_live.engine.parallel import enable_sequence_parallel, sharded_weights

from .config import ClusterConfig
from .replica import load_model
from .batch import denoise_reported
from .work import DenoiseRequest, DenoiseResult

_JOIN_TIMEOUT = timedelta(minutes=5)
#: How long every rank may take to stop after a failure before the group is declared broken.
_STOP_TIMEOUT_S = 60.0
#: A rank that does not answer a ping this fast is treated as gone.
PING_TIMEOUT_S = 10.0
#: Rank actors are named `DenoiserRank:<actor id of rank 0>:<rank>`.
RANK_NAME_PREFIX = "DenoiserRank:"

_ABORT_LOCK = threading.Lock()
T = TypeVar("T")
#: `task(model, payload, report)`: the same call on every rank; `report` (what rank 0's caller
#: passes to `run`: its progress callbacks) is None except on rank 0.
Task = Callable[[FramePackModel, Any, Any], T]


class BatchFailed(RuntimeError):
    """A batch raised on at least one rank; it was stopped on all of them."""


def join_group(config: ClusterConfig, rank: int, address: str) -> None:
    """Join the replica's process group as `rank` (rendezvous over TCP at rank 0's address)."""
    backend = "nccl" if config.device == "cuda" else "gloo"
    kwargs = {"device_id": torch.device("cuda", 0)} if backend == "nccl" else {}
    dist.init_process_group(
        backend, init_method=address, rank=rank, world_size=config.sequence_parallel, timeout=_JOIN_TIMEOUT, **kwargs
    )


def load_on_rank(config: ClusterConfig) -> FramePackModel:
    """A rank's model, once its group is up: with `shard_weights` it keeps only its share of the
    block weights (split on the host, so the GPU never holds them all). Sequence parallelism and
    the sharding look the process group up at every call, so a group re-created after a failure
    is used without touching the model again."""
    model = load_model(config, ("transformer",))
    enable_sequence_parallel(model.transformer)
    return model


def abort_group() -> None:
    """Destroy this rank's process group now, pending collectives or not.

    `_abort_process_group` is torch's recovery path (it resets the group counter so a new group
    can be made, see its source); the collection afterwards drops the last references, which is
    what makes gloo close the connections its peers are waiting on. Two threads may get here at
    once (the failing batch and the control thread or rank 0's watcher), hence the lock."""
    with _ABORT_LOCK:
        if dist.is_initialized():
            dist.distributed_c10d._abort_process_group()
        gc.collect()


def run_on_rank(model: FramePackModel, task: Task, payload: Any, report) -> Any:
    """Run this rank's share of a batch; on any error, tear the group down before raising.

    The error is re-raised as text: the original exception's frames may hold the process group
    (a collective's arguments), which would keep gloo's connections open.
    """
    try:
        return task(model, payload, report)
    except Exception as exc:  # every error must reach the peers, whatever it is
        failure = f"rank {dist.get_rank() if dist.is_initialized() else '?'}: " + "".join(
            traceback.format_exception_only(exc)
        ).strip()
        detail = "".join(traceback.format_exception(exc))
    if (weights := sharded_weights(model.transformer)) is not None:
        weights.discard()
    abort_group()
    raise BatchFailed(f"{failure}\n{detail}")


@ray.remote(concurrency_groups={"control": 1})
class DenoiserRank:
    """One rank beyond the first: joins the group, loads the same model, runs what rank 0 runs.

    Batches run on the actor's default thread, one at a time; `ping` and `abort` run on the
    `control` thread, so they are answered while a batch is running."""

    def __init__(self, config: ClusterConfig, rank: int) -> None:
        self.config, self.rank = config, rank
        self.model: FramePackModel | None = None

    def join(self, address: str) -> None:
        join_group(self.config, self.rank, address)
        self.model = load_on_rank(self.config)

    def rejoin(self, address: str) -> None:
        """Join a fresh group after a failed batch (the model keeps its parallel setup)."""
        join_group(self.config, self.rank, address)

    def run(self, task: Task, payload: Any) -> None:
        run_on_rank(self.model, task, payload, None)

    @ray.method(concurrency_group="control")
    def abort(self) -> None:
        abort_group()

    @ray.method(concurrency_group="control")
    def ping(self) -> bool:
        return True


class SequenceParallelGroup:
    """Rank 0's view of its group: starts the other ranks, loads its model, runs batches on all."""

    def __init__(self, config: ClusterConfig) -> None:
        group = get_current_placement_group()
        if group is None:
            raise RuntimeError("a sequence-parallel Denoiser replica must run in a placement group")
        address = _new_address()
        resources = {"num_cpus": config.cpus_per_rank, "num_gpus": 1 if config.device == "cuda" else 0}
        owner = ray.get_runtime_context().get_actor_id()
        self.ranks = [
            DenoiserRank.options(
                name=f"{RANK_NAME_PREFIX}{owner}:{rank}",  # `ray list actors` shows whose rank it is
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank),
                **resources,
            ).remote(config, rank)
            for rank in range(1, config.sequence_parallel)
        ]
        joined = [r.join.remote(address) for r in self.ranks]
        join_group(config, 0, address)
        self.model = load_on_rank(config)  # raises, on every rank, if N does not divide the heads
        ray.get(joined)
        self.config = config
        #: Why the group cannot run any more (a rank did not stop or rejoin); None while usable.
        self.broken: str | None = None

    def denoise(self, requests: list[DenoiseRequest], progress, preview) -> list[DenoiseResult]:
        """One Denoiser batch on every rank (see `run`); rank 0 alone reports progress and makes the
        previews (every rank holds the whole latents)."""
        return self.run(denoise_reported, requests, (progress, preview))

    def run(self, task: Task, payload: Any, report=None) -> Any:
        """Run `task` on every rank at once and return rank 0's result; blocks (call it from a
        worker thread). Raises `BatchFailed` on every rank if any rank raises, then rebuilds the
        group for the next call."""
        if self.broken:
            raise BatchFailed(f"the sequence-parallel group is broken: {self.broken}")
        others = [r.run.remote(task, payload) for r in self.ranks]
        finished = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(others, finished), daemon=True)
        watcher.start()
        try:
            result = run_on_rank(self.model, task, payload, report)
            ray.get(others)
            return result
        except Exception as exc:
            failure = _first_line(exc)
        finally:
            finished.set()
            watcher.join()  # returns at once: every call has ended, or rank 0's has failed
        failures = [failure, *self._stop(others)]
        self._rejoin()
        raise BatchFailed("; ".join(dict.fromkeys(failures)))

    def _watch(self, others: list[ray.ObjectRef], finished: threading.Event) -> None:
        """On the first rank that fails, abort the group everywhere (NCCL peers need it)."""
        pending = list(others)
        while pending and not finished.is_set():
            done, pending = ray.wait(pending, num_returns=1, timeout=0.1)
            for ref in done:
                try:
                    ray.get(ref)
                except Exception:
                    self._abort_all()
                    return

    def _abort_all(self) -> None:
        abort_group()
        try:
            ray.get([r.abort.remote() for r in self.ranks], timeout=PING_TIMEOUT_S)
        except Exception as exc:  # a dead rank: the health check will report it
            self.broken = f"a rank did not take the abort: {exc}"

    def _stop(self, others: list[ray.ObjectRef]) -> list[str]:
        """Make sure every rank has left the failed batch; returns the other ranks' errors."""
        self._abort_all()
        done, pending = ray.wait(others, num_returns=len(others), timeout=_STOP_TIMEOUT_S)
        if pending:
            self.broken = f"{len(pending)} rank(s) did not stop within {_STOP_TIMEOUT_S:.0f} s after a failure"
        errors = []
        for ref in done:
            try:
                ray.get(ref)
            except Exception as exc:
                errors.append(_first_line(exc))
        return errors

    def _rejoin(self) -> None:
        if self.broken:
            return
        address = _new_address()
        try:
            joined = [r.rejoin.remote(address) for r in self.ranks]
            join_group(self.config, 0, address)
            ray.get(joined, timeout=_JOIN_TIMEOUT.total_seconds())
        except Exception as exc:
            self.broken = f"the ranks could not form a new group: {exc}"

    async def check(self) -> None:
        """Raise if the group cannot run: broken, or a rank gone (dead or not answering)."""
        if self.broken:
            raise RuntimeError(f"the sequence-parallel group is broken: {self.broken}")
        await asyncio.wait_for(asyncio.gather(*(r.ping.remote() for r in self.ranks)), timeout=PING_TIMEOUT_S)


def _first_line(exc: Exception) -> str:
    """The message a rank raised, without Ray's wrapping and the traceback."""
    cause = getattr(exc, "cause", None) or exc
    return str(cause).strip().splitlines()[0]


def _new_address() -> str:
    return f"tcp://{ray.util.get_node_ip_address()}:{_free_port()}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]
