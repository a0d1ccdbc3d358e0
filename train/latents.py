"""Stage 2a: toy-world clips encoded once with the trained VAE, with their conditioning.

Encoding a clip costs far more on a CPU than a transformer step, so the transformer trains on a
fixed set of encoded clips (posterior mean and std, sampled afresh each time a clip is used) and
the start frame's SigLIP tokens. The cache grows clip by clip and is saved as it goes, so the
stage resumes after a kill.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from ..engine.conditioning import PromptEmbeds, encode_image, encode_prompt
from ..engine.model import FramePackModel
from . import checkpoint
from .vae import to_pixels
from .world import WorldConfig, all_captions, render_clip


@dataclass
class LatentClip:
    mean: torch.Tensor  # [C, T, h, w], scaled like the engine's latents
    std: torch.Tensor
    image_embeds: torch.Tensor  # [N, D] SigLIP tokens of the start frame
    captions: list[str]  # one per section

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.mean + self.std * torch.randn(self.mean.shape, generator=generator)


@torch.no_grad()
def encode_clip(model: FramePackModel, frames, captions: list[str]) -> LatentClip:
    vae = model.pipeline.vae
    posterior = vae.encode(to_pixels(frames)[None]).latent_dist
    scale = vae.config.scaling_factor
    size = frames.shape[1]
    start = encode_image(model, Image.fromarray(frames[0]), size, size, torch.Generator().manual_seed(0))
    return LatentClip(posterior.mean[0] * scale, posterior.std[0] * scale, start.image_embeds[0], captions)


def encode_clips(model: FramePackModel, world: WorldConfig, count: int, run_dir: Path, first_seed: int = 0) -> list[LatentClip]:
    """Clips of seeds first_seed.. first_seed+count-1, encoded (resuming a partial cache)."""
    path = run_dir / "latents.pt"
    state = checkpoint.load(path) or {"clips": []}
    clips: list[LatentClip] = state["clips"]
    for index in tqdm(range(len(clips), count), desc="encode clips", dynamic_ncols=True):
        clip = render_clip(first_seed + index, world)
        clips.append(encode_clip(model, clip.frames, clip.captions))
        checkpoint.save(path, clips=clips)
    return clips[:count]


@dataclass
class PromptTable:
    """Every grammar caption's embeddings, cropped to the longest caption (masked tokens are inert)."""

    index: dict[str, int]
    embeds: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def lookup(self, captions: list[str]) -> PromptEmbeds:
        rows = torch.tensor([self.index[c] for c in captions])
        return PromptEmbeds(self.embeds[rows], self.mask[rows], self.pooled[rows])


def prompt_table(model: FramePackModel) -> PromptTable:
    captions = all_captions()
    encoded = [encode_prompt(model, c) for c in captions]
    length = int(max(e.mask.sum() for e in encoded))
    return PromptTable(
        index={c: i for i, c in enumerate(captions)},
        embeds=torch.cat([e.embeds[:, :length] for e in encoded]),
        mask=torch.cat([e.mask[:, :length] for e in encoded]),
        pooled=torch.cat([e.pooled for e in encoded]),
    )
