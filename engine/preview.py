"""Cheap RGB previews of latents, for showing a section while it is still being denoised.

A VAE decode costs about as much as a denoising step, so a preview after every step uses a linear
map instead: every latent pixel (C channels) becomes a `patch` x `patch` block of RGB, one frame
per latent frame. It is what FramePack's own demo shows while it samples (`vae_decode_fake`: a
16 -> 3 map, `patch` 1); the shipped toy model has a map fitted to its own VAE
(`python -m framepack_live.train --fit-preview DIR`, see train/preview.py) with `patch` 8, which
gives previews at full resolution because its frames are small.

The map lives beside the model as `preview.safetensors`; a model without one (the real presets,
which come from the hub, and `tiny`) uses HunyuanVideo's published factors when its latents have
HunyuanVideo's 16 channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

PREVIEW_FILE = "preview.safetensors"

#: HunyuanVideo's latent -> RGB factors (16 x 3, rows are latent channels) and bias, for latents as
#: the transformer makes them (scaled by the VAE's scaling factor), giving RGB in [0, 1]. Published
#: in FramePack's `diffusers_helper/hunyuan.py` (`vae_decode_fake`, github.com/lllyasviel/FramePack),
#: which took them from ComfyUI's `latent_formats.HunyuanVideo`.
HUNYUAN_VIDEO_FACTORS = (
    (-0.0395, -0.0331, 0.0445),
    (0.0696, 0.0795, 0.0518),
    (0.0135, -0.0945, -0.0282),
    (0.0108, -0.0250, -0.0765),
    (-0.0209, 0.0032, 0.0224),
    (-0.0804, -0.0254, -0.0639),
    (-0.0991, 0.0271, -0.0669),
    (-0.0646, -0.0422, -0.0400),
    (-0.0696, -0.0595, -0.0894),
    (-0.0799, -0.0208, -0.0375),
    (0.1166, 0.1627, 0.0962),
    (0.1165, 0.0432, 0.0407),
    (-0.2315, -0.1920, -0.1355),
    (-0.0270, 0.0401, -0.0821),
    (-0.0616, -0.0997, -0.0727),
    (0.0249, -0.0469, -0.1703),
)
HUNYUAN_VIDEO_BIAS = (0.0259, -0.0192, -0.0761)

#: `preview(step, steps, frames)`: after a denoising step, one uint8 [T, h, w, 3] array per section
#: in the batch (T latent frames; h, w the latent size times the map's patch).
PreviewCallback = Callable[[int, int, list[np.ndarray]], None]


@dataclass
class LatentPreview:
    """A linear latent -> RGB map: `weight` [3 * patch * patch, C], `bias` [3 * patch * patch]."""

    weight: torch.Tensor
    bias: torch.Tensor
    patch: int
    #: Where the map comes from, for logs and docs.
    source: str

    @classmethod
    def hunyuan_video(cls) -> LatentPreview:
        weight = torch.tensor(HUNYUAN_VIDEO_FACTORS, dtype=torch.float32).T.contiguous()
        return cls(weight, torch.tensor(HUNYUAN_VIDEO_BIAS), 1, "HunyuanVideo latent RGB factors (FramePack, ComfyUI)")

    @classmethod
    def load(cls, path: Path) -> LatentPreview:
        with safe_open(str(path), "pt") as file:
            weight, bias = file.get_tensor("weight"), file.get_tensor("bias")
            source = (file.metadata() or {}).get("source", str(path))
        patch = int(round((weight.shape[0] / 3) ** 0.5))
        return cls(weight, bias, patch, source)

    def save(self, path: Path) -> None:
        save_file({"weight": self.weight.contiguous(), "bias": self.bias.contiguous()}, str(path),
                  metadata={"source": self.source})

    @classmethod
    def for_model(cls, directory: str | None, latent_channels: int) -> LatentPreview | None:
        """The model directory's fitted map, else HunyuanVideo's for 16-channel latents, else None."""
        if directory is not None and (Path(directory) / PREVIEW_FILE).is_file():
            return cls.load(Path(directory) / PREVIEW_FILE)
        return cls.hunyuan_video() if latent_channels == len(HUNYUAN_VIDEO_FACTORS) else None

    def rgb(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, T, h, w] -> RGB in [0, 1], [B, T, h * patch, w * patch, 3], float32 on their device."""
        weight = self.weight.to(latents.device)
        out = torch.einsum("bcthw,oc->bthwo", latents.float(), weight) + self.bias.to(latents.device)
        b, t, h, w, _ = out.shape
        p = self.patch
        out = out.view(b, t, h, w, 3, p, p).permute(0, 1, 2, 5, 3, 6, 4).reshape(b, t, h * p, w * p, 3)
        return out.clamp(0, 1)

    def frames(self, latents: torch.Tensor) -> list[np.ndarray]:
        """One uint8 [T, h * patch, w * patch, 3] array per batch entry, on the CPU."""
        pixels = self.rgb(latents).mul(255).round().to(torch.uint8).cpu().numpy()
        return list(pixels)
