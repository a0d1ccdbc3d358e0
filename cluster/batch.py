"""Denoising a batch of `DenoiseRequest`s on this process's model: the engine call behind the
Denoiser deployment and its sequence-parallel ranks."""

from __future__ import annotations

from collections.abc import Callable

from framepack_live.engine.denoising import denoise_plans
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.sampling import Guidance

from .work import DenoiseRequest, DenoiseResult


def denoise_batch(
    model: FramePackModel, requests: list[DenoiseRequest], progress: Callable[[int, int], None] | None
) -> list[DenoiseResult]:
    """Denoise sections of several sessions (equal `batch_key`) in shared forward passes."""
    keys = {r.batch_key() for r in requests}
    if len(keys) != 1:
        raise ValueError(f"requests of different shapes or sampler settings cannot share a batch: {keys}")
    settings = requests[0].settings
    if settings.sampling != "forward":
        raise ValueError("the cluster serves forward sampling only")
    guidances = [Guidance(prompt=r.prompt, image_embeds=r.image_embeds, negative=r.negative) for r in requests]
    latents = denoise_plans(model, [r.plan for r in requests], guidances, settings, progress)
    return [DenoiseResult(latents=x, batch_size=len(requests)) for x in latents]
