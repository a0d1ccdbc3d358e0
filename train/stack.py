"""The whole pipeline during training: the tiny preset's frozen encoders around our VAE and transformer.

Training conditions through the engine's own `encode_prompt`/`encode_image` on this pipeline, so
the prompt template, the text-encoder layer and the image preprocessing are exactly what the
engine uses at inference; a train/serve mismatch there would be invisible and fatal.
"""

from __future__ import annotations

import torch

from ..engine.model import FramePackModel


def frozen_stack(vae: torch.nn.Module, transformer: torch.nn.Module | None = None) -> FramePackModel:
    """The tiny preset loaded on the CPU in fp32, with `vae` (and `transformer`, if given) swapped in."""
    model = FramePackModel.load("tiny", device="cpu", dtype=torch.float32)
    pipe = model.pipeline
    for module in (pipe.text_encoder, pipe.text_encoder_2, pipe.image_encoder):
        module.requires_grad_(False).eval()
    pipe.vae = vae
    if transformer is not None:
        pipe.transformer = transformer
    return model
