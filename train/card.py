"""The model card written beside the exported weights: what the model is, how it was made, its limits."""

from __future__ import annotations

import argparse

import torch

from .export import DEFAULT_CFG
from .runtime import Progress, Runtime
from .vae import VaeTrainConfig

CARD = """# framepack-live toyworld

A small FramePack model (HunyuanVideoFramepackTransformer3DModel + AutoencoderKLHunyuanVideo, the
real classes at toy size) trained from scratch by this project on its procedural toy world:
coloured shapes (red, yellow, blue, purple; circle, square, triangle) on sky/ground backgrounds,
moving as the caption says: "a red circle moves left", "the blue square moves up",
"the camera pans right". Captions may change between sections, and the motion changes with them.

* Resolution {size}x{size}, section window {window} latent frames ({frames} video frames).
* Text and image encoders: the `tiny` preset's, frozen at their random initialisation (they still
  give every caption a distinct embedding); the transformer learned to read them. The directory
  ships the encoders it was trained with: SigLIP's seeded initialisation differs between torch
  versions, so a `tiny` preset built with another torch may not match.
* VAE: {vae_steps} steps of batch {vae_batch} on 5-frame snippets ({crop}, then whole frames),
  L1 + MSE + 1e-5 KL, {vae_minutes:.1f} minutes; final batch MSE {vae_mse:.4f} (pixels in [-1, 1]).
* Transformer: {steps} steps of batch {batch} on {clips} encoded clips, flow matching (v = noise - x0) on next-section
  prediction with the engine's packed 1x/2x/4x history, forward (F1) and inverted anti-drifting
  layouts half each, distilled guidance input 10, the caption dropped (empty prompt) in 10 % of
  samples so that sampling can use real CFG (default scale {cfg}); EMA weights, {minutes:.1f}
  minutes. Smoothed final loss {loss:.4f}.
* Trained on {device}. Minutes are training time over every invocation that resumed a stage;
  encoding the clips comes on top.

Reproduce the same steps (from the repository root, after `pip install -e .`):

    python -m framepack_live.train {command}

Evaluate: `framepack-live bench toyworld` (figures in docs/toyworld.md).

Limits: it knows only this world. Any other prompt or start image gives toy-world-like motion at
best. It is a demonstration that the pipeline, steering and anti-drifting sampling work, not a
video model.
"""


def model_card(args: argparse.Namespace, runtime: Runtime, vae_config: VaeTrainConfig, vae: Progress, vae_metrics: dict,
               transformer: Progress, loss: float, command: str) -> str:
    """`vae_config` is the VAE stage's settings, `vae`/`transformer` what each stage ran, `command` the
    arguments that reproduce it."""
    return CARD.format(
        size=args.size,
        window=args.window,
        frames=args.window * 4,
        vae_steps=vae.steps,
        vae_minutes=vae.seconds / 60,
        vae_batch=vae_config.batch,
        crop=f"{vae_config.crop}-pixel crops for the first {vae_config.crop_share:.0%} of the budget"
        if vae_config.crop else "whole frames",
        cfg=DEFAULT_CFG,
        vae_mse=vae_metrics.get("mse", float("nan")),
        steps=transformer.steps,
        batch=args.batch,
        clips=args.clips,
        loss=loss,
        device=_device_name(runtime),
        minutes=transformer.seconds / 60,
        command=command,
    )


def _device_name(runtime: Runtime) -> str:
    if runtime.device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} ({'bf16 autocast' if runtime.bf16 else 'fp32'}, {runtime.workers} data workers)"
    return f"the CPU ({torch.get_num_threads()} threads)"
