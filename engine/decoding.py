"""VAE decoding of one section at a time, blended with its neighbour so no seam shows.

Each section is decoded together with the previous section's latents (the VAE is temporal, so it
needs that context), and the frames both decodes cover are cross-faded linearly, as diffusers'
pipeline and the original do. A cross-fade needs both sides: the frames at the growing edge of
the video stay *pending* until the next section (or `flush`) makes them final.

Sections decode through `FramePackModel.decode_live`: the model's small live decoder where it has
one and it was loaded (`engine.fast_decoder`; each of its frames depends on its latent and the
one before, so the overlapping frames of two decodes agree and the cross-fade changes nothing but
the first), else the full VAE, which `render` (the export) always loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # plans and results travel to processes that never load a model (a session's)
    from .model import FramePackModel


@dataclass
class Decoded:
    """Frames made final by one decode, and the pending edge to blend with the next one."""

    first_frame: int
    frames: np.ndarray
    pending: torch.Tensor


@dataclass
class DecodePlan:
    """One section's decode: its latents with the context the VAE needs, and the frames to blend.

    Plain data (CPU tensors), so it can be decoded by another process.
    """

    forward: bool
    latents: torch.Tensor
    pending: torch.Tensor | None
    #: Forward: frames final before this decode. Inverted: where the pending frames end.
    cursor: int
    overlap: int
    #: Inverted only: the decode that reaches the start of the video, after which all is final.
    last: bool


def decode_section(model: FramePackModel, plan: DecodePlan) -> Decoded:
    if plan.forward:
        return decode_forward(model, plan.latents, plan.pending, plan.cursor, plan.overlap)
    return decode_inverted(model, plan.latents, plan.pending, plan.cursor, plan.overlap, plan.last)


@torch.no_grad()
def decode_latents(model: FramePackModel, latents: torch.Tensor) -> torch.Tensor:
    """Latents [1, C, T, h, w] to pixels [1, 3, (T-1)*4+1, H, W] in [-1, 1], float32 on the CPU, by the full VAE."""
    vae = model.pipeline.vae
    pixels = vae.decode(latents.to(device=model.pipeline._execution_device, dtype=vae.dtype) / vae.config.scaling_factor)
    return pixels.sample.float().cpu()


def cross_fade(earlier: torch.Tensor, later: torch.Tensor, overlap: int) -> torch.Tensor:
    """Join two decodes whose last/first `overlap` frames show the same moment (diffusers' soft append)."""
    weights = torch.linspace(1, 0, overlap, dtype=earlier.dtype).view(1, 1, -1, 1, 1)
    blended = weights * earlier[:, :, -overlap:] + (1 - weights) * later[:, :, :overlap]
    return torch.cat([earlier[:, :, :-overlap], blended, later[:, :, overlap:]], dim=2)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """[1, 3, T, H, W] in [-1, 1] to [T, H, W, 3] uint8 (rounded, as diffusers' PIL output)."""
    video = (pixels[0] / 2 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8)
    return video.permute(1, 2, 3, 0).contiguous().numpy()


def decode_forward(
    model: FramePackModel, latents: torch.Tensor, pending: torch.Tensor | None, final_so_far: int, overlap: int
) -> Decoded:
    """Decode the newest section of a forward video and advance its final frames.

    `latents` is the start frame plus the first section the first time, afterwards the previous
    section plus the new one.
    """
    current = model.decode_live(latents)
    region = current if pending is None else cross_fade(pending, current, overlap)
    return Decoded(first_frame=final_so_far, frames=to_uint8(region[:, :, :-overlap]), pending=region[:, :, -overlap:])


def decode_inverted(
    model: FramePackModel,
    latents: torch.Tensor,
    pending: torch.Tensor | None,
    region_end: int,
    overlap: int,
    last: bool,
) -> Decoded:
    """Decode the newest (earliest in playback) section of an inverted video.

    The decoded region grows toward the start of the video; `region_end` is the playback index
    where the pending frames end. At the last step everything is final.
    """
    current = model.decode_live(latents)
    region = current if pending is None else cross_fade(current, pending, overlap)
    final = region if last else region[:, :, overlap:]
    keep = region[:, :, :0] if last else region[:, :, :overlap]
    first = region_end - region.shape[2] + (0 if last else overlap)
    return Decoded(first_frame=first, frames=to_uint8(final), pending=keep)
