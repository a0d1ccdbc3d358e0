"""A small decoder for the live view: latents to frames at a fraction of the VAE's cost.

HunyuanVideo's VAE decodes with causal 3D convolutions at full frame rate and resolution; on the
toy model that is about 60 transformer evaluations' worth of work per section on a CPU, most of a
live section's budget. This decoder (the idea of TAESD/TAEHV: a small network trained to reproduce
a big VAE's decodes) works per latent frame with 2D convolutions at low resolution: latent frame t
and the `context - 1` before it (the VAE is causal too) become the 4 video frames that t stands for,
all four produced at once by the last layer, upsampled by nearest-neighbour steps and finally a
pixel shuffle. Every output frame depends on a fixed, short run of latents, so decoding a section
with its one preceding latent frame gives exactly the frames a whole-video decode gives.

It lives in a model directory's `fast_decoder/` folder (diffusers' `save_pretrained` layout) and is
named by `live_decoder` in its `framepack_live.json`; the full VAE stays in the directory for
exports. Trained by `python -m framepack_live.train --decoder-steps` (train/fast_decoder.py).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

#: The folder of a model directory that holds it, and the framepack_live.json key that names it.
SUBFOLDER = "fast_decoder"
LIVE_DECODER_KEY = "live_decoder"
#: Video frames per latent frame (HunyuanVideo's VAE: 4, the first latent frame alone gives 1).
FRAMES_PER_LATENT = 4


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FastDecoder(ModelMixin, ConfigMixin):
    """[B, C, T, h, w] engine latents (scaled as the transformer sees them) to [B, 3, 4 (T - 1) + 1,
    8 h, 8 w] pixels in [-1, 1], like `AutoencoderKLHunyuanVideo.decode` of the unscaled latents."""

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 16,
        channels: tuple[int, ...] = (48, 32, 16),
        context: int = 2,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        frames = FRAMES_PER_LATENT * out_channels
        layers: list[nn.Module] = [nn.Conv2d(latent_channels * context, channels[0], 3, padding=1), nn.SiLU(),
                                   _Residual(channels[0])]
        for before, after in zip(channels, channels[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(before, after, 3, padding=1), nn.SiLU(),
                       _Residual(after)]
        # The last 2x as a pixel shuffle: the full-resolution frames cost one convolution at half size.
        layers += [nn.Conv2d(channels[-1], frames * 4, 3, padding=1), nn.PixelShuffle(2)]
        self.layers = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        batch, channels, length, height, width = latents.shape
        context = self.config.context
        # Before the first latent frame the VAE's causal padding repeats it; so does this context.
        padded = torch.cat([latents[:, :, :1].expand(-1, -1, context - 1, -1, -1), latents], dim=2)
        windows = padded.unfold(2, context, 1)  # [B, C, T, h, w, context]
        stacked = windows.permute(0, 2, 5, 1, 3, 4).reshape(batch * length, context * channels, height, width)
        groups = self.layers(stacked)  # [B T, 4 * 3, H, W]: the 4 frames latent t stands for
        size = groups.shape[-2:]
        video = groups.view(batch, length, FRAMES_PER_LATENT, self.config.out_channels, *size)
        video = video.permute(0, 3, 1, 2, 4, 5).reshape(batch, self.config.out_channels, length * FRAMES_PER_LATENT,
                                                         *size)
        # The first latent frame stands for one frame (the start image): the last of its group.
        return video[:, :, FRAMES_PER_LATENT - 1 :]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [1, C, T, h, w] to pixels [1, 3, (T-1)*4+1, H, W] in [-1, 1], float32 on the CPU:
        the contract of `engine.decoding.decode_latents`, so the live path can call either."""
        pixels = self(latents.to(device=self.device, dtype=self.dtype))
        return pixels.float().clamp(-1, 1).cpu()

