"""Prompt and start-image encoding, through diffusers' pipeline methods.

Calling the pipeline's own `encode_prompt`, `encode_image` and VAE (with the posterior draw of its
`prepare_image_latents`) keeps the conditioning identical to diffusers' (our parity test depends on
it) and leaves the template, layer-skip and pooling details to the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
from PIL import Image

from .errors import InputError
from .images import fit_to_size

if TYPE_CHECKING:  # the data classes travel to processes that never load a model (a session's)
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from .model import FramePackModel

#: LLaMA tokens a prompt may use after the template, as in HunyuanVideo and diffusers.
MAX_PROMPT_TOKENS = 256


@dataclass
class PromptEmbeds:
    """LLaMA hidden states with their mask, and CLIP's pooled vector, for one prompt."""

    embeds: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> PromptEmbeds:
        return PromptEmbeds(**{f.name: _move(getattr(self, f.name), device, dtype) for f in fields(self)})

    def cropped(self, length: int) -> PromptEmbeds:
        """The first `length` tokens: the encoder pads every prompt to its maximum with masked tokens
        at the end, which the transformer ignores as keys but still carries through every block."""
        return PromptEmbeds(self.embeds[:, :length], self.mask[:, :length], self.pooled)

    @property
    def length(self) -> int:
        """Tokens up to the last unmasked one of any prompt in the batch."""
        return int(self.mask.sum(dim=1).max())

    @classmethod
    def cat(cls, embeds: list[PromptEmbeds]) -> PromptEmbeds:
        """Several prompts on the batch axis (equal lengths: the encoder pads to a fixed length)."""
        return cls(**{f.name: torch.cat([getattr(e, f.name) for e in embeds]) for f in fields(cls)})


@dataclass(frozen=True)
class PromptBlend:
    """The prompts that condition one section and their weights (summing to 1): a single prompt,
    or, during a transition, the old prompt(s) mixed with the new one. Plain data, so a driver that
    encodes prompts elsewhere (the cluster's Encoder) can build the conditioning from it."""

    prompts: tuple[str, ...]
    weights: tuple[float, ...]

    @classmethod
    def of(cls, prompt: str) -> PromptBlend:
        return cls((prompt,), (1.0,))

    def toward(self, prompt: str, weight: float) -> PromptBlend:
        """This mix moved `weight` (0..1) of the way to `prompt`."""
        mixed = {p: w * (1.0 - weight) for p, w in zip(self.prompts, self.weights)}
        mixed[prompt] = mixed.get(prompt, 0.0) + weight
        kept = {p: w for p, w in mixed.items() if w > 0}
        return PromptBlend(tuple(kept), tuple(kept.values()))


def blend_embeds(embeds: Sequence[PromptEmbeds], weights: Sequence[float]) -> PromptEmbeds:
    """The weighted mean of prompt embeddings (interpolated conditioning, as prompt-blending front
    ends of FramePack do). Every token position that any of the prompts uses stays visible (the
    masks' union): a position only one prompt fills carries that prompt's token, faded by its weight."""
    if len(embeds) == 1:
        return embeds[0]
    mixed = {
        name: sum(w * getattr(e, name) for e, w in zip(embeds, weights)) for name in ("embeds", "pooled")
    }
    mask = torch.stack([e.mask for e in embeds]).amax(dim=0)
    return PromptEmbeds(embeds=mixed["embeds"], mask=mask, pooled=mixed["pooled"])


@dataclass
class ImageConditioning:
    """The start image as SigLIP tokens (for cross-attention) and as VAE latents (the prefix frame)."""

    image_embeds: torch.Tensor
    image_latents: torch.Tensor

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> ImageConditioning:
        return ImageConditioning(
            image_embeds=_move(self.image_embeds, device, dtype), image_latents=self.image_latents.to(device)
        )


def _move(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(device=device, dtype=dtype if dtype is not None and tensor.is_floating_point() else None)


def prompt_token_count(model: FramePackModel, prompt: str) -> int:
    template = model.prompt_template
    ids = model.pipeline.tokenizer(template["template"].format(prompt))["input_ids"]
    return len(ids) - template["crop_start"]


def check_prompt(model: FramePackModel, prompt: str) -> None:
    """Refuse prompts the text encoder would silently truncate."""
    if not isinstance(prompt, str):
        raise InputError("bad_request", "the prompt must be a string")
    count = prompt_token_count(model, prompt)
    if count > MAX_PROMPT_TOKENS:
        raise InputError(
            "prompt_too_long", f"the prompt is {count} tokens long; the text encoder takes at most {MAX_PROMPT_TOKENS}"
        )


@torch.no_grad()
def encode_prompt(model: FramePackModel, prompt: str) -> PromptEmbeds:
    check_prompt(model, prompt)
    pipe = model.pipeline
    embeds, pooled, mask = pipe.encode_prompt(
        prompt=prompt,
        prompt_template=model.prompt_template,
        device=pipe._execution_device,
        max_sequence_length=MAX_PROMPT_TOKENS,
    )
    dtype = model.dtype
    return PromptEmbeds(embeds=embeds.to(dtype), mask=mask.to(dtype), pooled=pooled.to(dtype))


@dataclass(frozen=True)
class ImageEncoding:
    """A start image through the VAE's encoder and SigLIP, before the seeded draw from the VAE's
    posterior: the same for every seed and prompt, so an encoder can keep it for an image that
    comes again (the built-in start, a creator's image started again with another prompt)."""

    posterior: DiagonalGaussianDistribution
    image_embeds: torch.Tensor

    def sample(self, model: FramePackModel, generator: torch.Generator) -> ImageConditioning:
        """The conditioning with its latents drawn from `generator`. These two lines are what
        diffusers' `prepare_image_latents` does after its `vae.encode`, which it offers no way to
        skip; the parity tests compare the result with its pipeline's."""
        latents = self.posterior.sample(generator=generator) * model.pipeline.vae.config.scaling_factor
        return ImageConditioning(image_embeds=self.image_embeds, image_latents=latents.to(torch.float32))


@torch.no_grad()
def image_encoding(model: FramePackModel, image: Image.Image, width: int, height: int) -> ImageEncoding:
    pipe = model.pipeline
    pixels = preprocess_images(model, [image], width, height)
    posterior = pipe.vae.encode(pixels.unsqueeze(2).to(device=pipe._execution_device, dtype=pipe.vae.dtype)).latent_dist
    return ImageEncoding(posterior=posterior, image_embeds=image_embeds(model, pixels))


def encode_image(
    model: FramePackModel, image: Image.Image, width: int, height: int, generator: torch.Generator
) -> ImageConditioning:
    """Encode the start image; draws the VAE posterior sample from `generator` like diffusers does."""
    return image_encoding(model, image, width, height).sample(model, generator)


def preprocess_images(model: FramePackModel, images: list[Image.Image], width: int, height: int) -> torch.Tensor:
    """Start images fitted to the size and scaled as the pipeline expects, [N, 3, H, W] in [-1, 1]."""
    return model.pipeline.video_processor.preprocess([fit_to_size(image, width, height) for image in images], height, width)


@torch.no_grad()
def image_embeds(model: FramePackModel, pixels: torch.Tensor) -> torch.Tensor:
    """The image encoder's tokens of preprocessed start images alone, batched (training encodes thousands)."""
    pipe = model.pipeline
    return pipe.encode_image(pixels, device=pipe._execution_device).to(model.dtype)
