"""Fitting a model's step-preview map (engine.preview) to its own VAE.

The map is linear (a latent pixel's channels -> a patch of RGB), so it is fitted in closed form by
least squares: toy-world clips are encoded and decoded with the model's VAE, and each latent
frame's pixels are matched to the mean of the video frames it decodes to (one frame for the first
latent, four for the others), so a preview frame shows what the decode would show, averaged over
the moment it covers. The fit accumulates normal equations clip by clip, so memory stays flat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..engine.model import FramePackModel
from ..engine.preview import PREVIEW_FILE, LatentPreview
from ..engine.settings import VAE_SPATIAL_RATIO
from ..engine.tiny import PROJECT_FILE
from .vae import to_pixels
from .world import VIDEO_FRAMES_PER_LATENT, WorldConfig, render_clip

#: Clips of seeds from here on: past training's (0..) and the benchmarks' held-out starts.
FIT_SEED = 5_000_000
#: Ridge on the normal equations: the latents' channels are correlated, and a map that amplifies
#: noise would flicker on the noisy estimates of the first steps.
RIDGE = 1e-3


@dataclass
class PreviewFit:
    preview: LatentPreview
    #: Mean absolute error against the VAE's decode, RGB 0-255, on clips the fit did not see.
    error_rgb: float
    #: The same error for the best constant colour per clip, so the error has a scale.
    baseline_rgb: float


def latent_frame_targets(pixels: torch.Tensor) -> torch.Tensor:
    """Decoded pixels [3, T, H, W] in [-1, 1] -> one RGB frame per latent frame in [0, 1], [L, H, W, 3]."""
    rgb = (pixels / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0)
    groups = [rgb[:1]] + list(rgb[1:].split(VIDEO_FRAMES_PER_LATENT))
    return torch.stack([group.mean(dim=0) for group in groups])


@torch.no_grad()
def encode_decode(model: FramePackModel, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip's latents as the transformer sees them [1, C, L, h, w] and the targets [L, H, W, 3]."""
    vae = model.pipeline.vae
    pixels = to_pixels(frames)[None].to(vae.device, vae.dtype)
    latents = vae.encode(pixels).latent_dist.mean
    decoded = vae.decode(latents).sample[0].float().cpu()
    return latents.float().cpu() * vae.config.scaling_factor, latent_frame_targets(decoded)


def patch_rows(targets: torch.Tensor, patch: int) -> torch.Tensor:
    """Targets [L, H, W, 3] as one row per latent pixel, [L * h * w, 3 * patch * patch], in the
    output order of `LatentPreview.rgb` (channel-major, then the patch's rows and columns)."""
    frames, height, width, _ = targets.shape
    h, w = height // patch, width // patch
    rows = targets.reshape(frames, h, patch, w, patch, 3).permute(0, 1, 3, 5, 2, 4)
    return rows.reshape(frames * h * w, 3 * patch * patch)


def latent_rows(latents: torch.Tensor) -> torch.Tensor:
    """Latents [1, C, L, h, w] as one row per latent pixel, [L * h * w, C]."""
    return latents[0].permute(1, 2, 3, 0).reshape(-1, latents.shape[1])


def fit_preview(model: FramePackModel, world: WorldConfig, clips: int = 24, held_out: int = 4,
                patch: int = VAE_SPATIAL_RATIO) -> PreviewFit:
    """Least-squares map from `clips` clips, scored on `held_out` further ones."""
    channels = model.pipeline.vae.config.latent_channels
    outputs = 3 * patch * patch
    gram = torch.zeros(channels + 1, channels + 1, dtype=torch.float64)
    cross = torch.zeros(channels + 1, outputs, dtype=torch.float64)
    for seed in range(FIT_SEED, FIT_SEED + clips):
        latents, targets = encode_decode(model, render_clip(seed, world).frames)
        x = torch.cat([latent_rows(latents), torch.ones(latent_rows(latents).shape[0], 1)], dim=1).double()
        gram += x.T @ x
        cross += x.T @ patch_rows(targets, patch).double()
    gram += RIDGE * gram.diagonal().mean() * torch.eye(channels + 1, dtype=torch.float64)
    solution = torch.linalg.solve(gram, cross).float()
    preview = LatentPreview(solution[:-1].T.contiguous(), solution[-1].contiguous(), patch, "fitted")
    errors, baselines = [], []
    for seed in range(FIT_SEED + clips, FIT_SEED + clips + held_out):
        latents, targets = encode_decode(model, render_clip(seed, world).frames)
        predicted = preview.rgb(latents)[0]
        errors.append((predicted - targets).abs().mean().item() * 255)
        baselines.append((targets.mean(dim=(0, 1, 2)) - targets).abs().mean().item() * 255)
    return PreviewFit(preview, float(np.mean(errors)), float(np.mean(baselines)))


def write_preview(model: FramePackModel, world: WorldConfig, model_dir: Path, clips: int = 24) -> PreviewFit:
    """Fit the map of `model`'s VAE and write it into its directory, where the engine finds it."""
    fit = fit_preview(model, world, clips=clips)
    fit.preview.source = f"fitted to {model_dir.name}'s VAE on {clips} toy-world clips (train/preview.py)"
    fit.preview.save(model_dir / PREVIEW_FILE)
    return fit


def fit_and_save(model_dir: Path, clips: int = 24) -> PreviewFit:
    """`write_preview` for an exported toy-world model directory (the world it was trained on)."""
    extra_file = model_dir / PROJECT_FILE
    extra = json.loads(extra_file.read_text()) if extra_file.exists() else {}
    if "world" not in extra:
        raise SystemExit(f"{model_dir} has no toy-world description in {PROJECT_FILE}: the fit renders that world's clips")
    model = FramePackModel.load(str(model_dir), device="cpu", dtype=torch.float32, parts=("vae",))
    return write_preview(model, WorldConfig(**extra["world"]), model_dir, clips)
