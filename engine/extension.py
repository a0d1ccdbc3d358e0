"""Continuing an existing video: its frames, encoded by the VAE, become the history.

The start frame, which FramePack anchors every section to and the image encoder sees, is the
video's first frame, as for a video this engine made itself. The newest frames, encoded by the VAE,
are the packed history, and the last `overlap` frames are pending, so the first new section is
cross-faded into the video as any section is into the one before (`video_state.begin_after`).
Only the latents later sections read are encoded, so a long video costs what a short one does.
Random draws follow diffusers' order: the start frame's VAE posterior, the history's, then each
section's noise, all from one generator seeded with `settings.seed`.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .conditioning import encode_image, preprocess_images
from .errors import InputError
from .model import FramePackModel
from .settings import VAE_TEMPORAL_RATIO, GenerationSettings
from .video_state import VideoHistory, VideoStart, latents_read


def check_video(frames: np.ndarray, settings: GenerationSettings) -> None:
    """Refuse a video the settings cannot continue, before any model work."""
    count, height, width = frames.shape[:3]
    if settings.sampling != "forward":
        raise InputError("bad_request", "a video is continued with forward sampling: the inverted order makes its end first")
    if width % 16 or height % 16:
        raise InputError("bad_request", f"the video is {width}x{height}; continuing it needs width and height that "
                                        "are multiples of 16 (crop or scale it first)")
    if (width, height) != (settings.width, settings.height):
        raise InputError("bad_request", f"the video is {width}x{height} and the new sections would be "
                                        f"{settings.width}x{settings.height}: a continuation keeps the video's size")
    least = settings.frames_per_section + 1
    if count < least:
        raise InputError("bad_request", f"the video has {count} frames; continuing needs at least {least} (one section)")


@torch.no_grad()
def encode_history(model: FramePackModel, frames: np.ndarray, settings: GenerationSettings) -> tuple[VideoStart, VideoHistory]:
    """The start and history of a video to continue: `frames` uint8 [T, H, W, 3] at the settings' size."""
    check_video(frames, settings)
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    start = encode_image(model, Image.fromarray(frames[0]), settings.width, settings.height, generator)
    latent_frames = min((len(frames) - 1) // VAE_TEMPORAL_RATIO, latents_read(settings) - 1)  # after the tail's first
    tail = frames[len(frames) - 1 - latent_frames * VAE_TEMPORAL_RATIO :]
    pixels = preprocess_images(model, [Image.fromarray(frame) for frame in tail], settings.width, settings.height)
    pixels = pixels.permute(1, 0, 2, 3).unsqueeze(0)  # [1, 3, T, H, W], as the VAE takes video
    vae = model.pipeline.vae
    # What diffusers' `prepare_image_latents` does for one frame, here for the tail of a video.
    posterior = vae.encode(pixels.to(device=model.pipeline._execution_device, dtype=vae.dtype)).latent_dist
    latents = posterior.sample(generator=generator).float().cpu() * vae.config.scaling_factor
    history = VideoHistory(latents=latents, pending=pixels[:, :, -settings.overlap_frames :].float(), frames=len(frames))
    return VideoStart(start=start.to(torch.device("cpu")), rng_state=generator.get_state()), history
