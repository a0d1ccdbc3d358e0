"""Denoising planned sections, one or several at once, on the model's device.

The packed context gives every section of one size the same shape, so sections of different
videos (a server's sessions) can share the transformer's forward passes: their noise, context
and conditioning ride the batch axis. Each section's noise was drawn from its own video's
generator when it was planned and the sampler's arithmetic is per sample, so a section comes out
the same alone or in company, up to float rounding in the matmuls.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .conditioning import PromptEmbeds
from .lora import use_loras
from .model import FramePackModel
from .packing import PackedContext
from .preview import PreviewCallback
from .sampling import Estimate, Guidance, Progress, denoise_section
from .settings import GenerationSettings
from .video_state import SectionPlan


@torch.no_grad()
def denoise_plans(
    model: FramePackModel,
    plans: Sequence[SectionPlan],
    guidances: Sequence[Guidance],
    settings: GenerationSettings,
    progress: Progress | None = None,
    preview: PreviewCallback | None = None,
    preview_every: int = 1,
) -> list[torch.Tensor]:
    """The denoised latents of each plan (CPU, float32), `guidances[i]` conditioning `plans[i]`.

    All plans must share `settings`' size, sampler settings and LoRAs (a server groups them so).
    `preview(step, steps, frames)` gets a cheap RGB preview of every plan's current estimate after
    every `preview_every`-th step (and the last), `frames[i]` for `plans[i]`; a model without a
    preview map (`FramePackModel.preview` None) gives none.
    """
    use_loras(model, settings.loras)
    device, dtype = model.pipeline._execution_device, model.transformer.dtype
    guidance = Guidance(
        prompt=PromptEmbeds.cat([g.prompt for g in guidances]).to(device, dtype),
        image_embeds=torch.cat([g.image_embeds for g in guidances]).to(device, dtype),
        negative=PromptEmbeds.cat([g.negative for g in guidances]).to(device, dtype) if settings.cfg > 1.0 else None,
    )
    latents = denoise_section(
        model.transformer,
        torch.cat([p.noise for p in plans]).to(device),
        PackedContext.cat([p.context for p in plans]).to(device),
        guidance,
        settings,
        progress,
        _previews(model, preview, preview_every),
    ).cpu()
    return [latents[i : i + 1].clone() for i in range(len(plans))]


def _previews(model: FramePackModel, preview: PreviewCallback | None, every: int) -> Estimate | None:
    """The sampler's estimate hook that turns the chosen steps' estimates into preview frames."""
    if preview is None or model.preview is None or every < 1:
        return None

    def estimate(step: int, steps: int, latents: torch.Tensor) -> None:
        if step % every == 0 or step == steps:
            preview(step, steps, model.preview.frames(latents))

    return estimate
