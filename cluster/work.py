"""The units of work the stage deployments exchange: plain data, imported by every process that
sends or runs them (a session's process too, so nothing here loads a model or a sampler).

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

import numpy as np
import torch

from framepack_live.engine.conditioning import PromptEmbeds
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import SectionPlan


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
        """Requests with equal keys have equal tensor shapes, sampler settings and LoRAs, so they can
        share forward passes: the per-session parts (prompt, image, history, noise) ride the batch axis."""
        s = self.settings
        return (s.width, s.height, s.window, s.steps, s.scheduler, s.guidance, s.cfg, s.guidance_rescale, s.sampling,
                s.loras)

    def wants_preview(self, step: int, steps: int) -> bool:
        every = self.settings.preview_every
        return every > 0 and (step % every == 0 or step == steps)


@dataclass(frozen=True)
class Progress:
    """A denoiser's progress through one section, streamed to the caller before the result."""

    step: int
    steps: int


@dataclass(frozen=True)
class Preview:
    """A cheap RGB preview of a section being denoised (engine.preview), streamed like `Progress`."""

    step: int
    steps: int
    #: uint8 [T, h, w, 3], one frame per latent frame (engine.preview.LatentPreview.frames).
    frames: np.ndarray


@dataclass
class DenoiseResult:
    latents: torch.Tensor
    #: Sections that shared the forward passes (1 when alone), for tests and metrics.
    batch_size: int
