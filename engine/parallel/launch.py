"""Start N ranks on this machine, each with `torch.distributed` ready, and return rank 0's result.

`render --sequence-parallel N` and the benchmark must work without torchrun, so the processes
are spawned here: one per rank, rendezvous on a free loopback port, NCCL when the ranks run on
CUDA (one GPU each) and gloo on CPU. CPU ranks default to one torch thread each, because N
ranks that each use every core would fight over them and hide the speedup being bought.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

T = TypeVar("T")
Device = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class RankSetup:
    """Everything a spawned rank needs to join the group."""

    world_size: int
    port: int
    device: Device
    threads: int | None
    result_path: str


def run_parallel(
    n: int, fn: Callable[..., T], *args: Any, device: Device | None = None, threads: int | None = None
) -> T:
    """Run `fn(*args)` on `n` fresh processes forming one process group; return what rank 0 returned.

    `fn` must be importable by name (a module-level function), as spawn requires. `device`
    defaults to CUDA (one GPU per rank) when available, else CPU; in a rank, `rank_device()`
    says where to put tensors. `threads` is torch's intra-op thread count per
    rank (default 1 on CPU, left alone on CUDA). The result comes back through `torch.save`,
    loaded onto the CPU. If any rank raises, the others are stopped and a
    `torch.multiprocessing.ProcessRaisedException` carrying that rank's traceback is raised.
    """
    if n < 1:
        raise ValueError(f"need at least one rank, got {n}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and torch.cuda.device_count() < n:
        raise ValueError(f"{n} ranks on CUDA need {n} GPUs, this machine has {torch.cuda.device_count()}")
    if threads is None and device == "cpu":
        threads = 1
    with tempfile.TemporaryDirectory(prefix="framepack-sp-") as tmp:
        setup = RankSetup(n, _free_port(), device, threads, str(Path(tmp) / "result.pt"))
        mp.spawn(_rank_main, args=(setup, fn, args), nprocs=n, join=True)
        return torch.load(setup.result_path, map_location="cpu", weights_only=False)


def rank_device() -> torch.device:
    """The device of the calling rank: its own GPU under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _rank_main(rank: int, setup: RankSetup, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(setup.port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(setup.world_size),
    )
    if setup.threads is not None:
        torch.set_num_threads(setup.threads)
    if setup.device == "cuda":
        torch.cuda.set_device(rank)
        dist.init_process_group("nccl", rank=rank, world_size=setup.world_size, device_id=torch.device("cuda", rank))
    else:
        dist.init_process_group("gloo", rank=rank, world_size=setup.world_size)
    result = fn(*args)
    if rank == 0:
        torch.save(result, setup.result_path)
    # Only on success: after a failure the peers are being terminated, and tearing down a group
    # with collectives still pending can block; the process exit releases everything anyway.
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
