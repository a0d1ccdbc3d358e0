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

from . import video_state
from .conditioning import check_prompt, encode_image, preprocess_images
from .generator import SectionGenerator
from .model import FramePackModel
from .settings import VAE_TEMPORAL_RATIO, GenerationSettings
from .video_state import VideoHistory, VideoStart, check_video, latents_read


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


def generator_after(model: FramePackModel, frames: np.ndarray, settings: GenerationSettings, prompt: str) -> SectionGenerator:
    """The generator of a video that continues `frames` with `prompt`, before its first new section
    (what `render --extend` and the server's in-process backend both start from). The prompt is
    checked first, so a refused one costs no VAE encode."""
    check_prompt(model, prompt)
    start, history = encode_history(model, frames, settings)
    return SectionGenerator.from_state(model, video_state.begin_after(start, history, settings, prompt))
