"""Stopping a model call part-way once nobody wants its result.

A steer starts the section in the making over with the new prompt. On a server the denoise or
decode already running for the old prompt would otherwise hold the stage's one model thread
until it ends, and the steer's frames would wait behind work that is thrown away. PyTorch cannot
stop a running forward from another thread, so the call checks between its modules: a forward
pre-hook on every submodule raises `Interrupted` once `stop()` is true. That is one Python call
per module forward, nothing beside the convolutions and attention it sits between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

#: Asked between modules: True once the call's result is no longer wanted.
Stop = Callable[[], bool]


class Interrupted(Exception):
    """A model call stopped because `stop()` turned true; nothing it made is kept."""


@contextmanager
def interruptible(module: torch.nn.Module, stop: Stop | None) -> Iterator[None]:
    """Within the block, `module` and its submodules raise `Interrupted` before any forward once
    `stop()` is true. The hooks go again on leaving, so the module is as it was for the next call
    (the stage runs one call at a time on it: `cluster.replica.ModelThread`)."""
    if stop is None:
        yield
        return
    if stop():
        raise Interrupted

    def check(_module: torch.nn.Module, _inputs: tuple) -> None:
        if stop():
            raise Interrupted

    handles = [m.register_forward_pre_hook(check) for m in module.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
