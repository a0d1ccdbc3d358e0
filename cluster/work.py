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

from dataclasses import dataclass
from typing import Callable

import torch

from framepack_live.engine.conditioning import PromptEmbeds
from framepack_live.engine.denoising import denoise_plans
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.sampling import Guidance
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import SectionPlan

Progress = Callable[[int, int], None]


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


@dataclass
class DenoiseResult:
    latents: torch.Tensor
    #: Sections that shared the forward passes (1 when alone), for tests and metrics.
    batch_size: int


def denoise_batch(model: FramePackModel, requests: list[DenoiseRequest], progress: Progress | None) -> list[DenoiseResult]:
    """Denoise sections of several sessions (equal `batch_key`) in shared forward passes."""
    keys = {r.batch_key() for r in requests}
    if len(keys) != 1:
        raise ValueError(f"requests of different shapes or sampler settings cannot share a batch: {keys}")
    settings = requests[0].settings
    if settings.sampling != "forward":
        raise ValueError("the cluster serves forward sampling only")
    latents = denoise_plans(model, [r.plan for r in requests], [r.guidance for r in requests], settings, progress)
    return [DenoiseResult(latents=x, batch_size=len(requests)) for x in latents]
