"""Stage 1: the VAE, trained to reconstruct toy-world clips with a small KL term.

It trains on 5-frame snippets (one image frame plus one 4-frame latent step, the unit of
HunyuanVideo's causal temporal compression) of whole frames: GroupNorm's statistics over a crop
differ from a whole frame's, and a VAE trained on crops decodes whole frames with a colour cast.
Two things make the latents carry motion at all (see `current_frame_init` and `snippet_batch`):
frame-local initial temporal kernels and snippets whose first frame is unrelated to the rest.
Shapes cover little of a frame, yet they are all the evaluation looks at, so shape pixels (the
only saturated ones) weigh more in the loss. The posterior starts nearly deterministic
(log-variance bias -6) so early training is not drowned in sampling noise; the small KL term
keeps it a proper VAE. Afterwards the latent scale is measured on whole clips and written into the
config's `scaling_factor`, so the transformer sees unit-variance latents as the real model does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import HunyuanVideoCausalConv3d

from . import checkpoint
from .models import VaeConfig, build_vae
from .runtime import Budget, Clock, Runtime
from .world import WorldConfig, render_clip


@dataclass(frozen=True)
class VaeTrainConfig:
    batch: int = 12
    #: Side of square crops for the first `crop_share` of the budget (None: whole frames throughout).
    #: A 64-pixel crop costs a quarter of a whole frame, so the warm-up sees four times the edges,
    #: colours and motion; the rest trains on whole frames, which is what the VAE meets at inference:
    #: GroupNorm's statistics over a crop differ from a whole frame's, and a VAE trained on crops only
    #: decodes whole frames with a colour cast.
    crop: int | None = 64
    crop_share: float = 0.6
    snippet_frames: int = 5
    crops_per_clip: int = 3
    #: Share of snippets whose first frame is swapped for an unrelated crop (see `snippet_batch`).
    swap_first: float = 0.5
    lr: float = 2e-3
    #: Share of crops centred near the shape, and the loss weight of shape pixels.
    shape_crops: float = 0.5
    shape_weight: float = 8.0
    kl_weight: float = 1e-5
    checkpoint_every: int = 100
    seed: int = 0
    #: Clips used to measure the latent scale at the end.
    scale_clips: int = 2


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] to float [3, T, H, W] in [-1, 1], the VAE's input range."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def snippet_batch(world: WorldConfig, config: VaeTrainConfig, crop: int | None, step: int) -> torch.Tensor:
    """Short snippets (whole frames, or `crop`-sided crops) of fresh clips, `crops_per_clip` from each (rendering a
    clip costs more than cutting it); a pure function of (seed, step), see `runtime.Runtime.batches`.

    In a `swap_first` share of them the first frame is an unrelated one (another time, another
    place). Without that the VAE learns to decode every frame as a copy of the first latent frame:
    in a real snippet frames 1-4 differ from frame 0 by a few moved pixels. With unrelated first
    frames, frames 1-4 can only come from the second latent frame.
    """
    rng = np.random.default_rng([config.seed, step])
    short = replace(world, sections=2)  # a snippet needs 5 frames; rendering all of a long clip would cost more than the step
    side = min(crop or world.size, world.size)
    limit = world.size - side
    items = []
    for index in range(config.batch):
        if index % config.crops_per_clip == 0:
            clip = render_clip(int(rng.integers(1 << 30)), short)
        t0 = int(rng.integers(0, clip.frames.shape[0] - config.snippet_frames + 1))
        if rng.random() < config.shape_crops:
            centre = clip.positions[t0] + rng.uniform(-side / 3, side / 3, size=2)
            x0, y0 = (int(np.clip(round(v - side / 2), 0, limit)) for v in centre)
        else:
            y0, x0 = (int(v) for v in rng.integers(0, limit + 1, size=2))
        snippet = clip.frames[t0 : t0 + config.snippet_frames, y0 : y0 + side, x0 : x0 + side].copy()
        if rng.random() < config.swap_first:
            t1 = int(rng.integers(0, clip.frames.shape[0]))
            y1, x1 = (int(v) for v in rng.integers(0, limit + 1, size=2))
            snippet[0] = clip.frames[t1, y1 : y1 + side, x1 : x1 + side]
        items.append(to_pixels(snippet))
    return torch.stack(items)


def shape_weights(pixels: torch.Tensor, weight: float) -> torch.Tensor:
    """`weight` on saturated pixels (the shapes: every background palette is dull), 1 elsewhere."""
    saturation = (pixels.amax(dim=1, keepdim=True) - pixels.amin(dim=1, keepdim=True)) / 2
    return 1.0 + (weight - 1.0) * (saturation > 0.5).float()


def current_frame_init(vae) -> None:
    """Start every causal 3D convolution looking at the current frame only (other temporal taps zero,
    the current one scaled to keep the output variance), as video VAEs inflated from image VAEs start.

    With the default init, each causal convolution mixes the replicated first frame into the next
    ones, layer after layer, and the fresh decoder hears latent frame 0 about 30x louder than
    latent frame 1 even in output frames 1-4: training then settles on decoding every frame as a
    copy of the first, and the latents carry no motion. Starting frame-local, frames 1-4 depend on
    latent frame 1 alone, and training adds the temporal mixing it needs.
    """
    with torch.no_grad():
        for module in vae.modules():
            if isinstance(module, HunyuanVideoCausalConv3d) and module.conv.kernel_size[0] > 1:
                weight = module.conv.weight
                weight[:, :, -1] *= math.sqrt(weight.shape[2])
                weight[:, :, :-1] = 0


def near_deterministic_posterior(vae) -> None:
    """Start the log-variance near -6 (std 0.05) instead of 0, so reconstructions are not noise-bound early."""
    with torch.no_grad():
        channels = vae.config.latent_channels
        vae.quant_conv.weight[channels:].mul_(0.1)
        vae.quant_conv.bias[channels:].fill_(-6.0)


def vae_loss(vae, pixels: torch.Tensor, kl_weight: float, shape_weight: float) -> tuple[torch.Tensor, dict]:
    posterior = vae.encode(pixels).latent_dist
    reconstruction = vae.decode(posterior.sample()).sample
    weights = shape_weights(pixels, shape_weight)
    error = reconstruction - pixels
    squared = error.pow(2)
    l1 = (weights * error.abs()).mean()
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    metrics = {"l1": l1.item(), "mse": squared.mean().item(), "kl": kl.item()}
    return l1 + (weights * squared).mean() + kl_weight * kl, metrics


@torch.no_grad()
def latent_scale(vae, world: WorldConfig, clips: int, seed: int, device: str = "cpu") -> float:
    """1 / std of the posterior means over whole clips: the factor that gives unit-variance latents."""
    pixels = (to_pixels(render_clip(seed + i, world).frames)[None].to(device) for i in range(clips))
    means = [vae.encode(p).latent_dist.mean.float() for p in pixels]
    return float(1.0 / torch.cat([m.flatten() for m in means]).std())


def train_vae(run_dir: Path, world: WorldConfig, config: VaeTrainConfig, runtime: Runtime, budget: Budget,
              model_config: VaeConfig = VaeConfig()):
    """Train (or resume) the VAE in `run_dir`; returns it (on the CPU) with its scaling factor set, its
    last metrics and the stage's `Progress`."""
    path = run_dir / "vae.pt"
    torch.manual_seed(config.seed)
    vae = build_vae(model_config)
    current_frame_init(vae)
    near_deterministic_posterior(vae)
    vae.to(runtime.device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=0.0)
    state = checkpoint.load(path) or {"step": 0, "elapsed": 0.0}
    if "model" in state:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    metrics = state.get("metrics", {})
    clock = Clock("vae", budget, state["step"], state.get("elapsed", 0.0))
    already_trained = clock.done  # then the saved scale belongs to these very weights
    streams = {}  # one step-seeded batch stream per snippet size, started when first needed
    while not clock.done:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, 0.5 * (1 + np.cos(np.pi * clock.progress)) + 0.05)
        crop = config.crop if clock.progress < config.crop_share else None
        if crop not in streams:
            streams[crop] = runtime.batches(partial(snippet_batch, world, config, crop), start=clock.step)
        with runtime.autocast():
            loss, metrics = vae_loss(vae, next(streams[crop]).to(runtime.device), config.kl_weight, config.shape_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        clock.tick(loss=f"{loss.item():.4f}", mse=f"{metrics['mse']:.4f}")
        if clock.step % config.checkpoint_every == 0 or clock.done:
            checkpoint.save(path, step=clock.step, elapsed=clock.elapsed, model=vae.state_dict(),
                            optimizer=optimizer.state_dict(), metrics=metrics)
    progress = clock.close()
    vae.eval()
    scale = state.get("scaling_factor") if already_trained else None
    if scale is None:
        scale = latent_scale(vae, world, config.scale_clips, seed=10_000_000, device=runtime.device)
        checkpoint.save(path, step=clock.step, elapsed=clock.elapsed, model=vae.state_dict(),
                        optimizer=optimizer.state_dict(), metrics=metrics, scaling_factor=scale)
    vae.register_to_config(scaling_factor=scale)
    vae.requires_grad_(False)
    return vae.cpu(), metrics, progress
