"""Denoising a batch of `DenoiseRequest`s on this process's model: the engine call behind the
Denoiser deployment and its sequence-parallel ranks."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from framepack_live.engine.denoising import denoise_plans
from framepack_live.engine.interrupt import Stop, interruptible
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.sampling import Guidance

from .work import DenoiseRequest, DenoiseResult

Progress = Callable[[int, int], None]
#: `preview(step, steps, frames)`: a preview per request of the batch, None for a request that
#: asked for none at this step (`GenerationSettings.preview_every`).
BatchPreview = Callable[[int, int, list[np.ndarray | None]], None]


def denoise_batch(
    model: FramePackModel,
    requests: list[DenoiseRequest],
    progress: Progress | None,
    preview: BatchPreview | None = None,
    stop: Stop | None = None,
) -> list[DenoiseResult]:
    """Denoise sections of several sessions (equal `batch_key`) in shared forward passes.

    Previews are made at the steps any request wants one (the gcd of their cadences) and handed
    only to the requests that want one then; sessions' cadences need not match to share a batch.
    `stop`: the batch ends part-way with `engine.interrupt.Interrupted` once it is true (no caller
    wants a result any more).
    """
    keys = {r.batch_key() for r in requests}
    if len(keys) != 1:
        raise ValueError(f"requests of different shapes or sampler settings cannot share a batch: {keys}")
    settings = requests[0].settings
    if settings.sampling != "forward":
        raise ValueError("the cluster serves forward sampling only")
    every = math.gcd(*(r.settings.preview_every for r in requests))
    relay = None
    if preview is not None and every > 0:

        def relay(step: int, steps: int, frames: list[np.ndarray]) -> None:
            preview(step, steps, [f if r.wants_preview(step, steps) else None for r, f in zip(requests, frames)])

    guidances = [Guidance(prompt=r.prompt, image_embeds=r.image_embeds, negative=r.negative) for r in requests]
    with interruptible(model.transformer, stop):
        latents = denoise_plans(model, [r.plan for r in requests], guidances, settings, progress, relay, every)
    return [DenoiseResult(latents=x, batch_size=len(requests)) for x in latents]


def denoise_reported(
    model: FramePackModel, requests: list[DenoiseRequest], report: tuple[Progress, BatchPreview] | None
) -> list[DenoiseResult]:
    """`denoise_batch` as a sequence-parallel group's task: rank 0 gets its caller's progress and
    preview callbacks as `report`, the other ranks None."""
    return denoise_batch(model, requests, *(report or (None, None)))
