"""The whole pipeline during training: frozen encoders (and VAE) around the transformer being trained.

Training conditions through the engine's own `encode_prompt`/`encode_image` on this pipeline, so
the prompt template, the text-encoder layer and the image preprocessing are exactly what the
engine uses at inference; a train/serve mismatch there would be invisible and fatal.
"""

from __future__ import annotations

import torch

from ..engine.model import FramePackModel


def frozen_stack(vae: torch.nn.Module | None = None, source: str = "tiny") -> FramePackModel:
    """`source` loaded on the CPU in fp32 with everything but the transformer frozen, `vae` swapped in if given.

    From scratch `source` is the tiny preset (its random encoders) and `vae` the one just trained; a
    fine-tune loads the exported model it starts from, whose own encoders and VAE its transformer
    learned to read (a freshly built `tiny` preset may differ: SigLIP's seeded initialisation
    changes between torch versions).
    """
    model = FramePackModel.load(source, device="cpu", dtype=torch.float32)
    pipe = model.pipeline
    if vae is not None:
        pipe.vae = vae
    for module in (pipe.text_encoder, pipe.text_encoder_2, pipe.image_encoder, pipe.vae):
        module.requires_grad_(False).eval()
    return model
