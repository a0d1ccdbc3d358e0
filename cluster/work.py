"""The units of work the stage deployments exchange, and the engine calls that carry them out.

A denoise request is an engine `SectionPlan` (packed history, noise, the random generator's state
after it) with the section's conditioning; a decode request is the engine's `DecodePlan`. Both are
CPU tensors and plain values, so a request is retryable on any replica and gives the same result
there: no replica keeps session state. What a session's state becomes is the engine's business
(`engine.video_state`); these are only its remote calls.

The cluster serves the forward order only: live streaming plays sections as they are made, which
the inverted order cannot do (it makes the end of the video first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from framepack_live.engine.conditioning import PromptEmbeds
from framepack_live.engine.denoising import denoise_plans
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.sampling import Guidance
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import SectionPlan

Progress = Callable[[int, int], None]
#: `preview(step, steps, frames)`: a preview per request of the batch, None for a request that
#: asked for none at this step (`GenerationSettings.preview_every`).
BatchPreview = Callable[[int, int, list[np.ndarray | None]], None]


@dataclass
class DenoiseRequest:
    """One section of one session: the engine's plan and its conditioning."""

    session_id: str
    settings: GenerationSettings
    plan: SectionPlan
    prompt: PromptEmbeds
    negative: PromptEmbeds | None
    image_embeds: torch.Tensor

    def batch_key(self) -> tuple:
        """Requests with equal keys have equal tensor shapes and sampler settings, so they can share
        forward passes: the per-session parts (prompt, image, history, noise) ride the batch axis."""
        s = self.settings
        return (s.width, s.height, s.window, s.steps, s.scheduler, s.guidance, s.cfg, s.guidance_rescale, s.sampling)

    @property
    def guidance(self) -> Guidance:
        return Guidance(prompt=self.prompt, image_embeds=self.image_embeds, negative=self.negative)

    def wants_preview(self, step: int, steps: int) -> bool:
        every = self.settings.preview_every
        return every > 0 and (step % every == 0 or step == steps)


@dataclass
class DenoiseResult:
    latents: torch.Tensor
    #: Sections that shared the forward passes (1 when alone), for tests and metrics.
    batch_size: int


def denoise_batch(
    model: FramePackModel, requests: list[DenoiseRequest], progress: Progress | None, preview: BatchPreview | None = None
) -> list[DenoiseResult]:
    """Denoise sections of several sessions (equal `batch_key`) in shared forward passes.

    Previews are made at the steps any request wants one (the gcd of their cadences) and handed
    only to the requests that want one then; sessions' cadences need not match to share a batch.
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

    latents = denoise_plans(
        model, [r.plan for r in requests], [r.guidance for r in requests], settings, progress, relay, every
    )
    return [DenoiseResult(latents=x, batch_size=len(requests)) for x in latents]
