"""Stage 2a: toy-world clips encoded once with the trained VAE, with their conditioning.

Encoding a clip costs far more on a CPU than a transformer step, so the transformer trains on a
fixed set of encoded clips (posterior mean and std, sampled afresh each time a clip is used) and
the start frame's SigLIP tokens. The cache grows clip by clip and is saved every few hundred
clips, so the stage resumes after a kill.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..engine.conditioning import PromptEmbeds, encode_prompt, image_embeds, preprocess_images
from ..engine.model import FramePackModel
from . import checkpoint
from .runtime import Runtime
from .vae import to_pixels
from .world import Clip, WorldConfig, all_captions, render_clip


@dataclass
class LatentClip:
    mean: torch.Tensor  # [C, T, h, w], scaled like the engine's latents; float16 to halve the cache
    std: torch.Tensor
    image_embeds: torch.Tensor  # [N, D] SigLIP tokens of the start frame
    captions: list[str]  # one per section

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.mean.float() + self.std.float() * torch.randn(self.mean.shape, generator=generator)


def _rendered(render: Callable[[int, WorldConfig], Clip], world: WorldConfig, first_seed: int, chunk: int,
              index: int) -> list[tuple[np.ndarray, list[str]]]:
    clips = (render(first_seed + index * chunk + i, world) for i in range(chunk))
    return [(clip.frames, clip.captions) for clip in clips]


@torch.no_grad()
def encode_clips(model: FramePackModel, world: WorldConfig, count: int, run_dir: Path, runtime: Runtime,
                 vae_source: str, first_seed: int = 0, save_every: int = 1024,
                 render: Callable[[int, WorldConfig], Clip] = render_clip, data: str | None = None) -> list[LatentClip]:
    """Clips of seeds first_seed.. first_seed+count-1, encoded (resuming a partial cache).

    A copy of the VAE runs on the runtime's device; the pipeline, with the frozen image encoder,
    stays on the CPU as at inference. The workers render chunks of clips ahead. `vae_source` names
    the VAE (this run's, or the model a fine-tune starts from): a cache of other clips or another
    VAE's latents is refused. `render` makes the clip of a seed (the world's own by default);
    `data` names any other, so a cache of the world's clips is not resumed as another's (it is left
    out of the cache's record for the world's own, which earlier caches were written without).
    """
    path = run_dir / "latents.pt"
    about = {"world": asdict(world), "vae": vae_source, **({"data": data} if data is not None else {})}
    state = checkpoint.load(path, about) or {"clips": []}
    clips: list[LatentClip] = state["clips"]
    vae = copy.deepcopy(model.pipeline.vae).to(runtime.device)
    scale = vae.config.scaling_factor
    chunk = 16 if runtime.device.startswith("cuda") else 1  # whole clips at full resolution: memory-bound on a CPU
    done = len(clips) // chunk * chunk
    del clips[done:]
    rendered = runtime.batches(partial(_rendered, render, world, first_seed + done, chunk), start=0)
    bar = tqdm(total=count, initial=done, desc="encode clips", dynamic_ncols=True)
    while len(clips) < count:
        videos, captions = zip(*next(rendered)[: count - len(clips)])
        pixels = torch.stack([to_pixels(video) for video in videos]).to(runtime.device)
        posterior = vae.encode(pixels).latent_dist  # fp32, as the engine encodes start images
        means, stds = (t.float().mul(scale).half().cpu() for t in (posterior.mean, posterior.std))
        size = videos[0].shape[1]
        starts = preprocess_images(model, [Image.fromarray(video[0]) for video in videos], size, size)
        embeds = image_embeds(model, starts)
        clips.extend(LatentClip(*parts) for parts in zip(means, stds, embeds, captions))
        bar.update(len(videos))
        if len(clips) % save_every < len(videos) or len(clips) == count:
            checkpoint.save(path, clips=clips, about=about)
    bar.close()
    return clips[:count]


#: The caption of caption-dropped samples: the empty prompt, GenerationSettings' default negative prompt.
UNCONDITIONAL = ""


@dataclass
class PromptTable:
    """Every grammar caption's embeddings, cropped to the longest caption (masked tokens are inert)."""

    index: dict[str, int]
    embeds: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def lookup(self, captions: list[str]) -> PromptEmbeds:
        rows = torch.tensor([self.index[c] for c in captions], device=self.embeds.device)
        return PromptEmbeds(self.embeds[rows], self.mask[rows], self.pooled[rows])

    def to(self, device: str) -> PromptTable:
        return PromptTable(self.index, self.embeds.to(device), self.mask.to(device), self.pooled.to(device))


def prompt_table(model: FramePackModel, extra: Sequence[str] = ()) -> PromptTable:
    """Every grammar caption, the `extra` ones (a LoRA's new captions) and the empty prompt: the
    engine's default negative prompt, which the transformer learns as the unconditional input of
    classifier-free guidance."""
    captions = [*all_captions(), *extra, UNCONDITIONAL]
    encoded = [encode_prompt(model, c) for c in captions]
    length = int(max(e.mask.sum() for e in encoded))
    return PromptTable(
        index={c: i for i, c in enumerate(captions)},
        embeds=torch.cat([e.embeds[:, :length] for e in encoded]),
        mask=torch.cat([e.mask[:, :length] for e in encoded]),
        pooled=torch.cat([e.pooled for e in encoded]),
    )
