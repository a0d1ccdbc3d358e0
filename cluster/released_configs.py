"""The `config.json` of each component of the released FramePack checkpoints, shipped as data.

The memory plan counts weights from a model's configs. For a hub model they are read from the
local Hugging Face cache when its files are there; a machine that has not downloaded the model
(a laptop planning a cluster, this project's CI, which never reaches the network) uses these
copies instead, and the plan says which source it used. Only the keys that decide parameter
shapes are kept; they are copied from the files on the hub (repo / subfolder / config.json) as
published for diffusers 0.33-0.42 and transformers 4.4x-5.x. The transformer's count is checked
against the 12,874,314,816 parameters `bench gpu` built on an H200 (docs/benchmarks.md).
"""

from __future__ import annotations

FRAMEPACK_TRANSFORMER = {
    "attention_head_dim": 128,
    "guidance_embeds": True,
    "has_clean_x_embedder": True,
    "has_image_proj": True,
    "image_condition_type": None,
    "image_proj_dim": 1152,
    "in_channels": 16,
    "mlp_ratio": 4.0,
    "num_attention_heads": 24,
    "num_layers": 20,
    "num_refiner_layers": 2,
    "num_single_layers": 40,
    "out_channels": 16,
    "patch_size": 2,
    "patch_size_t": 1,
    "pooled_projection_dim": 768,
    "qk_norm": "rms_norm",
    "rope_axes_dim": [16, 56, 56],
    "rope_theta": 256.0,
    "text_embed_dim": 4096,
}

#: (repo, subfolder or "" for the repo root) -> config.json keys.
RELEASED: dict[tuple[str, str], dict] = {
    ("lllyasviel/FramePackI2V_HY", ""): FRAMEPACK_TRANSFORMER,
    ("lllyasviel/FramePack_F1_I2V_HY_20250503", ""): FRAMEPACK_TRANSFORMER,
    # LLaVA-LLaMA-3-8B's language model, as HunyuanVideo uses it (no LM head).
    ("hunyuanvideo-community/HunyuanVideo", "text_encoder"): {
        "model_type": "llama",
        "architectures": ["LlamaModel"],
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128320,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-05,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
    },
    # CLIP ViT-L/14's text tower.
    ("hunyuanvideo-community/HunyuanVideo", "text_encoder_2"): {
        "model_type": "clip_text_model",
        "architectures": ["CLIPTextModel"],
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "vocab_size": 49408,
        "projection_dim": 768,
    },
    ("hunyuanvideo-community/HunyuanVideo", "vae"): {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 16,
        "down_block_types": ["HunyuanVideoDownBlock3D"] * 4,
        "up_block_types": ["HunyuanVideoUpBlock3D"] * 4,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "act_fn": "silu",
        "norm_num_groups": 32,
        "scaling_factor": 0.476986,
        "spatial_compression_ratio": 8,
        "temporal_compression_ratio": 4,
        "mid_block_add_attention": True,
    },
    # SigLIP so400m/14 at 384 px, FLUX Redux's image encoder.
    ("lllyasviel/flux_redux_bfl", "image_encoder"): {
        "model_type": "siglip_vision_model",
        "architectures": ["SiglipVisionModel"],
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 384,
        "patch_size": 14,
        "num_channels": 3,
    },
}
