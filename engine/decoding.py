"""VAE decoding of one section at a time, so no seam shows between sections.

Each section is decoded together with the previous section's latents (the VAE is temporal, so it
needs that context). Two modes (`GenerationSettings.decode`):

* `blend`: the frames both decodes cover are cross-faded linearly, as diffusers' pipeline and the
  original do. A cross-fade needs both sides: the newest `overlap_frames` of the video stay
  *pending* (float pixels) until the next section (or `flush`) makes them final.
* `causal` (forward only): HunyuanVideo's VAE is causal in time (causal convolutions, causally
  masked attention), so decoding the previous section's latents as context and keeping only the
  new latents' frames makes every frame final at once. What differs from a decode of the whole
  video is the context's first latent being decoded as a lone image frame; the new decode's
  version of the last frame already shown therefore differs a little from what was shown, and
  that difference is added to the first `SEAM_FADE_FRAMES` new frames, fading out, so the video
  goes on from exactly the frame the viewer saw. Only latents and one uint8 frame go in, only
  uint8 frames come out.

Either mode decodes through `FramePackModel.decode_live`: the model's small live decoder where it
has one and it was loaded (`engine.fast_decoder`; causal too, each of its frames depends on its
latent and the one before, so the overlapping frames of two decodes agree), else the full VAE,
which `render` (the export) always loads. Which decoder is a property of the loaded model, which
mode a per-video setting: the two choices are independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # plans and results travel to processes that never load a model (a session's)
    from .model import FramePackModel
from .interrupt import Stop, interruptible
from .settings import VAE_TEMPORAL_RATIO

#: Causal decoding: new frames over which the seam's correction fades out (one latent frame's worth).
SEAM_FADE_FRAMES = VAE_TEMPORAL_RATIO


@dataclass
class Decoded:
    """Frames made final by one decode (uint8 [T, H, W, 3]), and in `blend` mode the pending edge
    (float pixels) to cross-fade with the next one."""

    first_frame: int
    frames: np.ndarray
    pending: torch.Tensor | None


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
    #: `causal` mode: `latents` starts with this many latent frames of context, whose frames were
    #: shown already (0 for the first section, whose every frame is new) ...
    causal: bool = False
    context: int = 0
    #: ... and the last frame shown, uint8 [H, W, 3], that the new frames continue from.
    shown: np.ndarray | None = None


def decode_section(model: FramePackModel, plan: DecodePlan, stop: Stop | None = None) -> Decoded:
    """`stop`: raises `engine.interrupt.Interrupted` part-way once it is true (a steer made the
    section's frames unwanted)."""
    with interruptible(model.pipeline.vae, stop):
        if plan.causal:
            return decode_causal(model, plan.latents, plan.context, plan.shown, plan.cursor)
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


def context_frames(context: int) -> int:
    """Video frames that `context` leading latent frames decode to (the first one is a lone frame)."""
    return 0 if context == 0 else 1 + (context - 1) * VAE_TEMPORAL_RATIO


def decode_causal(
    model: FramePackModel, latents: torch.Tensor, context: int, shown: np.ndarray | None, final_so_far: int
) -> Decoded:
    """Decode the newest section of a forward video after `context` latent frames already shown;
    all its frames are final. See the module docstring for the seam's correction."""
    pixels = model.decode_live(latents)
    skip = context_frames(context)
    new = pixels[:, :, skip:]
    if shown is not None and skip > 0:
        shown_pixels = torch.from_numpy(shown).permute(2, 0, 1).float().div(127.5).sub(1)
        offset = shown_pixels - pixels[0, :, skip - 1]
        fade = min(SEAM_FADE_FRAMES, new.shape[2])
        weights = 1 - torch.arange(1, fade + 1, dtype=new.dtype) / (fade + 1)
        new[:, :, :fade] += weights.view(1, 1, -1, 1, 1) * offset.view(1, 3, 1, *offset.shape[1:])
    return Decoded(first_frame=final_so_far, frames=to_uint8(new), pending=None)


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
