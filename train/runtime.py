"""Where a training stage runs and for how long: device, mixed precision, compilation, data workers, budget.

Batches are pure functions of the step number (`batches`), so a resumed run sees exactly the
batches an uninterrupted one would, with no RNG state to checkpoint, and data workers can build
them ahead in parallel: on a GPU the small models train far faster than one CPU core renders and
packs their data.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    device: str = "cpu"
    #: bf16 autocast. The default on CUDA; on a CPU only where it has bf16 matrix units (AMX), and
    #: only for the transformer: the development CPU's transformer step is then 1.1x faster alone
    #: and 1.4-1.5x with `compile` (`framepack-live bench train`), while its VAE step on whole frames
    #: is many times slower than in fp32 (its backward pass); other CPUs: measure first.
    bf16: bool = False
    #: `torch.compile` the transformer's training step: it fuses the many small elementwise
    #: kernels of a 3 M-parameter model, a large share of its step, at a minute of compiling first.
    compile: bool = False
    #: Processes building batches ahead of the training step (0: in the training process).
    workers: int = 0

    @classmethod
    def detect(cls, device: str | None = None, workers: int | None = None, bf16: bool | None = None,
               compile: bool = False) -> Runtime:
        """CUDA with bf16 and most of the cores feeding it when there is a GPU; else the CPU, inline,
        in fp32 unless `bf16` asks for it."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cuda = device.startswith("cuda")
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        default_workers = max(1, min(12, (os.cpu_count() or 2) - 2)) if cuda else 0
        return cls(device, cuda if bf16 is None else bf16, compile, default_workers if workers is None else workers)

    @property
    def device_type(self) -> str:
        return torch.device(self.device).type

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def for_vae(self) -> Runtime:
        """The VAE stage's runtime: without bf16 on a CPU, where its whole-frame 3D convolutions'
        backward pass is many times slower in bf16 than in fp32."""
        return self if self.device_type == "cuda" else replace(self, bf16=False)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the training step calls: `model` compiled when asked (it shares `model`'s
        parameters, so checkpoints and the EMA keep using `model` itself)."""
        return torch.compile(model) if self.compile else model

    def batches(self, make: Callable[[int], T], start: int) -> Iterator[T]:
        """make(start), make(start + 1), ... built by the workers (forked: they share the parent's data)."""
        if self.workers == 0:
            return map(make, itertools.count(start))
        loader = DataLoader(
            _Steps(make),
            batch_size=None,
            sampler=itertools.count(start),
            num_workers=self.workers,
            collate_fn=_identity,
            worker_init_fn=_one_thread,
            multiprocessing_context="fork",
            prefetch_factor=4,
        )
        return iter(loader)


class _Steps(Dataset, Generic[T]):
    def __init__(self, make: Callable[[int], T]):
        self.make = make

    def __getitem__(self, step: int) -> T:
        return self.make(step)


def _identity(item):
    return item


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)


@dataclass(frozen=True)
class Budget:
    """A stage's length: `steps`, or wall-clock `seconds` when given (the learning-rate schedule
    then follows the clock, so a run of any speed ends with its schedule complete)."""

    steps: int
    seconds: float | None = None

    def progress(self, step: int, elapsed: float) -> float:
        return elapsed / self.seconds if self.seconds else step / self.steps


@dataclass(frozen=True)
class Progress:
    """What a stage has run, over all the invocations that resumed it: the model card reports this,
    not the last invocation's share."""

    steps: int
    seconds: float


class Clock:
    """A training stage's steps and training time (both resumed from its checkpoint), its progress
    through the budget, and the progress bar, in steps or in seconds as the budget counts."""

    def __init__(self, name: str, budget: Budget, step: int, elapsed: float):
        self.budget, self.step, self.elapsed = budget, step, elapsed
        self._began = time.monotonic() - elapsed
        timed = budget.seconds is not None
        self._bar = tqdm(total=budget.seconds if timed else budget.steps, initial=min(elapsed, budget.seconds) if timed else step,
                         desc=f"{name} (s)" if timed else name, dynamic_ncols=True)

    @property
    def progress(self) -> float:
        return self.budget.progress(self.step, self.elapsed)

    @property
    def done(self) -> bool:
        return self.progress >= 1.0

    def tick(self, **postfix: str) -> None:
        """One step more; the bar shows `postfix` (loss figures)."""
        self.step += 1
        now = time.monotonic() - self._began
        self._bar.update(now - self.elapsed if self.budget.seconds is not None else 1)
        self.elapsed = now
        self._bar.set_postfix(step=self.step, **postfix)

    def close(self) -> Progress:
        self._bar.close()
        return Progress(self.step, self.elapsed)
