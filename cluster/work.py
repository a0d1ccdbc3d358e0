"""The units of work the stage deployments exchange, and the engine calls that carry them out.

Every request holds all a stage needs (conditioning, the history tail, the random generator's
state, settings) as CPU tensors and plain values; every result holds the new state. No replica
keeps session state, so a request is retryable on any replica and gives the same result there.

The cluster serves the forward order only: live streaming plays sections as they are made, which
the inverted order cannot do (it makes the end of the video first).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from framepack_live.engine.conditioning import PromptEmbeds
from framepack_live.engine.decoding import Decoded, decode_forward
from framepack_live.engine.generator import draw_noise
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.packing import HISTORY_FRAMES, PackedContext, pack_forward
from framepack_live.engine.sampling import Guidance, denoise_section
from framepack_live.engine.settings import GenerationSettings

Progress = Callable[[int, int], None]


@dataclass
class DenoiseRequest:
    """One section of one session. `history` is the video's newest latents (start frame first
    while the video is short): all that packing reads, so the request does not grow with the video."""

    session_id: str
    settings: GenerationSettings
    prompt: PromptEmbeds
    negative: PromptEmbeds | None
    image_embeds: torch.Tensor
    start_latents: torch.Tensor
    history: torch.Tensor
    rng_state: torch.Tensor

    def batch_key(self) -> tuple:
        """Requests with equal keys have equal tensor shapes and sampler settings, so they can share
        forward passes: the per-session parts (prompt, image, history, noise) ride the batch axis."""
        s = self.settings
        return (s.width, s.height, s.window, s.steps, s.scheduler, s.guidance, s.cfg, s.guidance_rescale, s.sampling)


@dataclass
class DenoiseResult:
    latents: torch.Tensor
    rng_state: torch.Tensor
    #: Sections that shared the forward passes (1 when alone), for tests and metrics.
    batch_size: int


@dataclass
class DecodeRequest:
    session_id: str
    #: The previous section's latents plus the new one (start frame plus the first section at first).
    latents: torch.Tensor
    pending: torch.Tensor | None
    frame_cursor: int
    overlap: int


def history_tail(video: torch.Tensor, window: int) -> torch.Tensor:
    """The newest latents a session must keep: what packing reads and what the next decode re-reads."""
    return video[:, :, -max(HISTORY_FRAMES, 2 * window) :]


@torch.no_grad()
def denoise_batch(model: FramePackModel, requests: list[DenoiseRequest], progress: Progress | None) -> list[DenoiseResult]:
    """Denoise sections of several sessions (equal `batch_key`) in shared forward passes.

    Each session draws its noise from its own generator state, exactly as the engine's
    `SectionGenerator` does alone, and the sampler's arithmetic is per sample, so a session's
    latents do not depend on its batch companions beyond float rounding in the matmuls.
    """
    keys = {r.batch_key() for r in requests}
    if len(keys) != 1:
        raise ValueError(f"requests of different shapes or sampler settings cannot share a batch: {keys}")
    settings = requests[0].settings
    if settings.sampling != "forward":
        raise ValueError("the cluster serves forward sampling only")
    device, dtype = model.pipeline._execution_device, model.transformer.dtype
    noises, rng_states, contexts = [], [], []
    for r in requests:
        noise, rng_state = draw_noise(model, settings, r.rng_state, device)
        noises.append(noise)
        rng_states.append(rng_state)
        contexts.append(pack_forward(r.history.to(device), r.start_latents.to(device), settings.window))
    guidance = Guidance(
        prompt=_cat_embeds([r.prompt for r in requests], device, dtype),
        image_embeds=torch.cat([r.image_embeds for r in requests]).to(device, dtype),
        negative=_cat_embeds([r.negative for r in requests], device, dtype) if settings.cfg > 1.0 else None,
    )
    latents = denoise_section(
        model.transformer, torch.cat(noises), _cat_contexts(contexts), guidance, settings, progress
    ).cpu()
    return [
        DenoiseResult(latents=latents[i : i + 1].clone(), rng_state=rng_states[i], batch_size=len(requests))
        for i in range(len(requests))
    ]


def decode(model: FramePackModel, request: DecodeRequest) -> Decoded:
    """Decode one section, cross-faded with the pending frames of the previous one."""
    return decode_forward(model, request.latents, request.pending, request.frame_cursor, request.overlap)


def _cat_embeds(embeds: list[PromptEmbeds], device: torch.device, dtype: torch.dtype) -> PromptEmbeds:
    return PromptEmbeds(
        embeds=torch.cat([e.embeds for e in embeds]),
        mask=torch.cat([e.mask for e in embeds]),
        pooled=torch.cat([e.pooled for e in embeds]),
    ).to(device, dtype)


def _cat_contexts(contexts: list[PackedContext]) -> PackedContext:
    """Stack the latents on the batch axis; the frame indices are shared (equal windows)."""
    first = contexts[0]
    return replace(
        first,
        latents_clean=torch.cat([c.latents_clean for c in contexts]),
        latents_2x=torch.cat([c.latents_2x for c in contexts]),
        latents_4x=torch.cat([c.latents_4x for c in contexts]),
    )
