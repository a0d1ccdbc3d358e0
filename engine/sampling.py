"""Flow-matching sampling of one section: schedulers, FramePack's shift, guidance.

The loop is ours (diffusers' pipeline samples the whole video in one call), but every numeric
piece is diffusers': its schedulers, its `calculate_shift` and its `rescale_noise_cfg`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
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
#: Prompt tokens come in multiples of this after `Guidance.cropped`.
PROMPT_BUCKET = 64
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

    def cropped(self) -> Guidance:
        """The prompts without most of their padding: the same predictions (padding is masked) from
        fewer tokens (a toy model's 256 padded text tokens are 40 % of its sequence). Cut to a
        multiple of `PROMPT_BUCKET` tokens, so a compiled transformer meets few shapes and a steer
        to a longer prompt does not recompile it mid-stream."""
        prompts = [self.prompt] + ([self.negative] if self.negative is not None else [])
        padded = self.prompt.embeds.shape[1]
        length = min(padded, -(-max(prompt.length for prompt in prompts) // PROMPT_BUCKET) * PROMPT_BUCKET)
        negative = self.negative.cropped(length) if self.negative is not None else None
        return Guidance(self.prompt.cropped(length), self.image_embeds, negative)


def predict_velocity(
    transformer: torch.nn.Module,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    context: PackedContext,
    guidance: Guidance,
    settings: GenerationSettings,
    step: int | None = None,
) -> torch.Tensor:
    """One model evaluation (two with real CFG), batch-agnostic so sessions can share it.

    `step` (the sampler step's index) is what diffusers' step-caching hooks read from their cache
    context (`engine.caching`); without hooks it is unused.
    """
    dtype = transformer.dtype
    batch = latents.shape[0]
    distilled = torch.full((batch,), settings.guidance * 1000.0, dtype=dtype, device=latents.device)

    def run(prompt: PromptEmbeds, branch: str) -> torch.Tensor:
        with _cache_context(transformer, branch, step, settings.steps, timestep):
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

    velocity = run(guidance.prompt, "cond")
    if guidance.negative is not None and settings.cfg > 1.0:
        negative = run(guidance.negative, "uncond")
        guided = negative + settings.cfg * (velocity - negative)
        if settings.guidance_rescale > 0:
            guided = rescale_noise_cfg(guided, velocity, settings.guidance_rescale)
        velocity = guided
    return velocity


def _cache_context(transformer: torch.nn.Module, branch: str, step: int | None, steps: int, timestep: torch.Tensor):
    """diffusers' cache context for one call: the hooks keep one state per branch (the prompt's and
    the negative prompt's predictions must not share cached residuals) and read the step from it."""
    if not getattr(transformer, "is_cache_enabled", False):
        return contextlib.nullcontext()
    return transformer.cache_context(branch, step_index=step, num_inference_steps=steps, timestep=timestep[0])


@torch.no_grad()
def sample_steps(
    transformer: torch.nn.Module,
    noise: torch.Tensor,
    context: PackedContext,
    guidance: Guidance,
    settings: GenerationSettings,
    estimate: Estimate | None = None,
) -> Iterator[torch.Tensor]:
    """The sampler's latents after each step, from `noise` (float32, [B, C, window, h, w]).

    One loop for the engine (which keeps the last) and for distillation (which keeps the
    teacher's whole trajectory). Step caches are reset before and after: their state belongs to one
    section's trajectory, and a stale residual would leak into the next section or session.

    `estimate` gets the flow-matching estimate of the clean latents at each step: with
    x_t = (1 - sigma) x0 + sigma * noise and the velocity v = noise - x0, x0 = x_t - sigma * v.
    """
    patch = transformer.config.patch_size
    mu = shift_mu(noise.shape[2], noise.shape[3], noise.shape[4], patch)
    scheduler = make_scheduler(settings, mu, noise.device)
    guidance = guidance.cropped()
    cached = getattr(transformer, "is_cache_enabled", False)
    if cached:
        transformer._reset_stateful_cache()
    try:
        latents = noise
        for i, t in enumerate(scheduler.timesteps):
            velocity = predict_velocity(transformer, latents, t.expand(latents.shape[0]), context, guidance, settings, i).float()
            if estimate is not None:
                estimate(i + 1, len(scheduler.timesteps), latents - scheduler.sigmas[i].to(latents.device) * velocity)
            latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
            yield latents
    finally:
        if cached:
            transformer._reset_stateful_cache()


def denoise_section(
    transformer: torch.nn.Module,
    noise: torch.Tensor,
    context: PackedContext,
    guidance: Guidance,
    settings: GenerationSettings,
    progress: Progress | None = None,
    estimate: Estimate | None = None,
) -> torch.Tensor:
    """Sample one window of latents from `noise` (float32, [B, C, window, h, w])."""
    latents = noise
    for i, latents in enumerate(sample_steps(transformer, noise, context, guidance, settings, estimate)):
        if progress is not None:
            progress(i + 1, settings.steps)
    return latents
