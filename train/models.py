"""The trainable components, at the size the toy world needs and a 2-core CPU can train.

Same classes as the `tiny` preset and the real checkpoints (so the engine loads the result with
`from_pretrained` like any other model), a bit wider where it pays: the transformer gets 32-dim
heads and four blocks, the VAE keeps 16 latent channels and HunyuanVideo's 8x/4x compression but
only 8 channels at full resolution, because full-resolution 3D convolutions are where a CPU spends
nearly all of the VAE's time, and one normalisation group (see `VaeConfig`). The frozen text and image encoders are the tiny preset's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoFramepackTransformer3DModel

from ..engine.model import FramePackModel


@dataclass(frozen=True)
class VaeConfig:
    block_out_channels: tuple[int, ...] = (8, 16, 16, 16)
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
    rope_axes_dim: tuple[int, int, int] = (8, 12, 12)


def build_vae(config: VaeConfig = VaeConfig(), scaling_factor: float = 1.0) -> AutoencoderKLHunyuanVideo:
    return AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        down_block_types=("HunyuanVideoDownBlock3D",) * len(config.block_out_channels),
        up_block_types=("HunyuanVideoUpBlock3D",) * len(config.block_out_channels),
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        act_fn="silu",
        norm_num_groups=config.norm_num_groups,
        scaling_factor=scaling_factor,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )


def build_transformer(encoders: FramePackModel, config: TransformerConfig = TransformerConfig()):
    """A FramePack transformer whose input sizes match the (frozen) encoders of `encoders`."""
    pipe = encoders.pipeline
    return HunyuanVideoFramepackTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=config.heads,
        attention_head_dim=config.head_dim,
        num_layers=config.layers,
        num_single_layers=config.single_layers,
        num_refiner_layers=1,
        patch_size=2,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=pipe.text_encoder.config.hidden_size,
        pooled_projection_dim=pipe.text_encoder_2.config.projection_dim,
        rope_axes_dim=config.rope_axes_dim,
        image_condition_type=None,
        has_image_proj=True,
        image_proj_dim=pipe.image_encoder.config.hidden_size,
        has_clean_x_embedder=True,
    )
