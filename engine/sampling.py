"""Flow-matching sampling of one section: schedulers, FramePack's shift, guidance.

The loop is ours (diffusers' pipeline samples the whole video in one call), but every numeric
piece is diffusers': its schedulers, its `calculate_shift` and its `rescale_noise_cfg`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import calculate_shift
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

from .conditioning import PromptEmbeds
from .packing import PackedContext
from .settings import GenerationSettings

#: FramePack caps the resolution-dependent shift at exp(mu) = 7 (the original's `exp_max`).
MAX_SHIFT_EXP = 7.0
Progress = Callable[[int, int], None]
#: `estimate(step, steps, x0)`: the clean latents the model predicts at a step, [B, C, T, h, w] on
#: the sampling device; what step previews show.
Estimate = Callable[[int, int, torch.Tensor], None]


def shift_mu(latent_frames: int, latent_height: int, latent_width: int, patch_size: int) -> float:
    """The original's resolution-dependent shift: Flux's mu from the token count, capped."""
    tokens = latent_frames * latent_height * latent_width / patch_size**2
    return min(calculate_shift(tokens, 256, 4096, 0.5, 1.15), math.log(MAX_SHIFT_EXP))


def make_scheduler(settings: GenerationSettings, mu: float, device: torch.device):
    """A fresh scheduler with its timesteps set for one section.

    Both use dynamic exponential shifting, which is the original's `exp(mu)` time shift. UniPC
    runs in flow-prediction mode; where it differs from the original's `sample_unipc` (the `bh2`
    variant, integer timesteps) is written down in docs/engine.md.
    """
    sigmas = np.linspace(1.0, 0.0, settings.steps + 1)[:-1]
    if settings.scheduler == "euler":
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
    else:
        scheduler = UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            use_dynamic_shifting=True,
            time_shift_type="exponential",
            final_sigmas_type="zero",
        )
    scheduler.set_timesteps(sigmas=sigmas, mu=mu, device=device)
    return scheduler


@dataclass
class Guidance:
    """What steers a prediction: the prompt, an optional negative prompt for real CFG, the image."""

    prompt: PromptEmbeds
    image_embeds: torch.Tensor
    negative: PromptEmbeds | None = None


def predict_velocity(
    transformer: torch.nn.Module,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    context: PackedContext,
    guidance: Guidance,
    settings: GenerationSettings,
) -> torch.Tensor:
    """One model evaluation (two with real CFG), batch-agnostic so sessions can share it."""
    dtype = transformer.dtype
    batch = latents.shape[0]
    distilled = torch.full((batch,), settings.guidance * 1000.0, dtype=dtype, device=latents.device)

    def run(prompt: PromptEmbeds) -> torch.Tensor:
        return transformer(
            hidden_states=latents.to(dtype),
            timestep=timestep,
            encoder_hidden_states=prompt.embeds,
            encoder_attention_mask=prompt.mask,
            pooled_projections=prompt.pooled,
            image_embeds=guidance.image_embeds,
            guidance=distilled,
            return_dict=False,
            **context.model_kwargs(dtype),
        )[0]

    velocity = run(guidance.prompt)
    if guidance.negative is not None and settings.cfg > 1.0:
        negative = run(guidance.negative)
        guided = negative + settings.cfg * (velocity - negative)
        if settings.guidance_rescale > 0:
            guided = rescale_noise_cfg(guided, velocity, settings.guidance_rescale)
        velocity = guided
    return velocity


@torch.no_grad()
def denoise_section(
    transformer: torch.nn.Module,
    noise: torch.Tensor,
    context: PackedContext,
    guidance: Guidance,
    settings: GenerationSettings,
    progress: Progress | None = None,
    estimate: Estimate | None = None,
) -> torch.Tensor:
    """Sample one window of latents from `noise` (float32, [B, C, window, h, w]).

    `estimate` gets the flow-matching estimate of the clean latents at each step: with
    x_t = (1 - sigma) x0 + sigma * noise and the velocity v = noise - x0, x0 = x_t - sigma * v.
    """
    patch = transformer.config.patch_size
    mu = shift_mu(noise.shape[2], noise.shape[3], noise.shape[4], patch)
    scheduler = make_scheduler(settings, mu, noise.device)
    latents = noise
    for i, t in enumerate(scheduler.timesteps):
        velocity = predict_velocity(transformer, latents, t.expand(latents.shape[0]), context, guidance, settings).float()
        if estimate is not None:
            estimate(i + 1, len(scheduler.timesteps), latents - scheduler.sigmas[i].to(latents.device) * velocity)
        latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
        if progress is not None:
            progress(i + 1, len(scheduler.timesteps))
    return latents
