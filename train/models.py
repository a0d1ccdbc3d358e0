"""The trainable components, at the size the toy world needs and a 2-core CPU can train.

Same classes as the `tiny` preset and the real checkpoints (so the engine loads the result with
`from_pretrained` like any other model), a bit wider where it pays: the transformer gets 32-dim
heads and four blocks, the VAE keeps 16 latent channels and HunyuanVideo's 8x/4x compression but
only 8 channels at full resolution, because full-resolution 3D convolutions are where a CPU spends
nearly all of the VAE's time, widening as the resolution drops (where channels are cheap), and one
normalisation group (see `VaeConfig`). The frozen text and image encoders are the tiny preset's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoFramepackTransformer3DModel

from ..engine.model import FramePackModel
from ..engine.tiny import framepack_transformer, hunyuan_vae


@dataclass(frozen=True)
class VaeConfig:
    block_out_channels: tuple[int, ...] = (8, 16, 32, 64)
    layers_per_block: int = 1
    #: One group: GroupNorm over all channels keeps the colour of flat regions (as the direction of
    #: the feature vector); with several groups a flat patch normalises to the same features
    #: whatever its colour, and the toy world is mostly flat patches.
    norm_num_groups: int = 1


@dataclass(frozen=True)
class TransformerConfig:
    #: Heads divisible by 2 and 4, so the sequence-parallel tests can split them.
    heads: int = 4
    head_dim: int = 32
    layers: int = 2
    single_layers: int = 2


def build_vae(config: VaeConfig = VaeConfig(), scaling_factor: float = 1.0) -> AutoencoderKLHunyuanVideo:
    return hunyuan_vae(
        block_out_channels=config.block_out_channels,
        norm_num_groups=config.norm_num_groups,
        scaling_factor=scaling_factor,
        layers_per_block=config.layers_per_block,
    )


def build_transformer(
    encoders: FramePackModel, config: TransformerConfig = TransformerConfig()
) -> HunyuanVideoFramepackTransformer3DModel:
    """A FramePack transformer whose input sizes match the (frozen) encoders of `encoders`."""
    pipe = encoders.pipeline
    if pipe.text_encoder.config.hidden_size != pipe.text_encoder_2.config.projection_dim:
        raise ValueError("the text encoders' widths differ; the transformer builder assumes one text width")
    return framepack_transformer(
        heads=config.heads,
        head_dim=config.head_dim,
        layers=config.layers,
        single_layers=config.single_layers,
        text_dim=pipe.text_encoder.config.hidden_size,
        image_dim=pipe.image_encoder.config.hidden_size,
        seed=None,
    ).train()
