"""The `tiny` preset: the real FramePack architectures at toy size, built offline.

Tests and the CPU default need every component class that the real presets use (so the loading,
encoding, packing and decoding code is the real code), but no weights can be downloaded. This
module builds the components deterministically from a seed, including byte-level BPE tokenizers
trained on a small built-in corpus, and saves them once in the layout that
`HunyuanVideoFramepackPipeline.save_pretrained` writes. Everything then loads them back with
`from_pretrained`, exactly like a real checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

#: Bump when the architecture or the tokenizer corpus changes, so stale caches are not reused.
TINY_VERSION = 2
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CLIP_SPECIALS = ["<|startoftext|>", "<|endoftext|>"]
PROJECT_FILE = "framepack_live.json"

_CORPUS_WORDS = (
    "a an the one two three red green blue yellow orange purple white black grey pink circle square "
    "triangle ball box shape shapes object camera moves move moving slides slide bounces bounce jumps "
    "spins rotates turns falls rises floats drifts runs walks flies swims left right up down toward "
    "away forward backward slowly quickly fast slow and with on in over under across through behind "
    "front of background sky sea grass field room street city forest snow rain sun night day light "
    "dark bright soft warm cold small large big tiny huge man woman girl boy dog cat bird fish car "
    "dance dances dancing smile smiles looks at into out pans zooms tilts still scene video style "
    "cinematic realistic anime cartoon describe detailing following aspects main content theme color "
    "texture quantity text spatial relationships objects actions events behaviors temporal physical "
    "movement changes environment atmosphere angles movements transitions used system user"
).split()


def tiny_cache_dir(seed: int = 0) -> Path:
    root = Path(os.environ.get("FRAMEPACK_LIVE_CACHE", Path.home() / ".cache" / "framepack-live"))
    return root / f"tiny-v{TINY_VERSION}-seed{seed}"


def ensure_tiny(seed: int = 0) -> Path:
    """Return the tiny model's directory, building it on first use.

    Built in a temporary directory and renamed into place, so concurrent processes (test workers,
    Ray replicas) never see a half-written model.
    """
    target = tiny_cache_dir(seed)
    if (target / "model_index.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        build_tiny(staging, seed)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _corpus() -> list[str]:
    words = _CORPUS_WORDS
    sentences = [" ".join(words[i : i + 6]) for i in range(0, len(words), 3)]
    return sentences + [w.capitalize() for w in words] + [", . ! ? : ; - ' \" 0 1 2 3 4 5 6 7 8 9 ( )"]


def _bpe(specials: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer


def build_tokenizers(vocab_size: int = 768):
    """Byte-level BPE tokenizers: every string encodes, so no prompt is ever rejected as unknown."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    llama = _bpe(LLAMA_SPECIALS, vocab_size)
    llama.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", llama.token_to_id("<|begin_of_text|>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=llama,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|end_of_text|>",
        model_max_length=1024,
    )
    clip = _bpe(CLIP_SPECIALS, vocab_size)
    start, end = clip.token_to_id("<|startoftext|>"), clip.token_to_id("<|endoftext|>")
    clip.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", start), ("<|endoftext|>", end)]
    )
    tokenizer_2 = PreTrainedTokenizerFast(
        tokenizer_object=clip,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=77,
    )
    return tokenizer, tokenizer_2


def tiny_prompt_template(tokenizer) -> dict:
    """HunyuanVideo's system template, with `crop_start` counted for this tokenizer.

    The real template's crop_start (95) is a property of the real LLaMA tokenizer; the number of
    template tokens before the user's prompt must be counted again for any other tokenizer.
    """
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import DEFAULT_PROMPT_TEMPLATE

    template = DEFAULT_PROMPT_TEMPLATE["template"]
    prefix = template.split("{}")[0]
    crop_start = len(tokenizer(prefix)["input_ids"])
    return {"template": template, "crop_start": crop_start}


def framepack_transformer(
    heads: int = 4,
    head_dim: int = 16,
    layers: int = 1,
    single_layers: int = 1,
    text_dim: int = 32,
    image_dim: int = 32,
    seed: int | None = 0,
):
    """A randomly initialised FramePack transformer of the real architecture at a chosen size.

    The RoPE splits each head like the real model does in spirit (height and width about three
    eighths each, rounded to even sizes, time the rest; the real 128-dim heads use 16/56/56);
    history and image projections are on, as in the released checkpoints. `seed=None` leaves torch's RNG alone
    (a training run seeds once for everything).
    """
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    if seed is not None:
        torch.manual_seed(seed)
    spatial = head_dim * 3 // 8 // 2 * 2
    return HunyuanVideoFramepackTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        num_layers=layers,
        num_single_layers=single_layers,
        num_refiner_layers=1,
        patch_size=2,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=text_dim,
        pooled_projection_dim=text_dim,
        rope_axes_dim=(head_dim - 2 * spatial, spatial, spatial),
        image_condition_type=None,
        has_image_proj=True,
        image_proj_dim=image_dim,
        has_clean_x_embedder=True,
    ).eval()


def hunyuan_vae(
    block_out_channels: tuple[int, ...],
    norm_num_groups: int,
    scaling_factor: float,
    layers_per_block: int = 1,
):
    """HunyuanVideo's VAE class at a chosen width, keeping its 16 latent channels and 8x/4x
    compression so every latent shape in the engine is the real model's."""
    from diffusers import AutoencoderKLHunyuanVideo

    return AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        down_block_types=("HunyuanVideoDownBlock3D",) * len(block_out_channels),
        up_block_types=("HunyuanVideoUpBlock3D",) * len(block_out_channels),
        block_out_channels=block_out_channels,
        layers_per_block=layers_per_block,
        act_fn="silu",
        norm_num_groups=norm_num_groups,
        scaling_factor=scaling_factor,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )


def build_tiny(directory: Path, seed: int = 0) -> None:
    """Build and save the tiny components with `save_pretrained`."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoFramepackPipeline
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        LlamaConfig,
        LlamaModel,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    tokenizer, tokenizer_2 = build_tokenizers()
    template = tiny_prompt_template(tokenizer)
    hidden = 32
    transformer = framepack_transformer(seed=seed, text_dim=hidden, image_dim=hidden)
    torch.manual_seed(seed + 1)
    vae = hunyuan_vae(block_out_channels=(16, 16, 16, 16), norm_num_groups=4, scaling_factor=0.476986)
    torch.manual_seed(seed + 2)
    text_encoder = LlamaModel(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=1024,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer_2),
            hidden_size=hidden,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=hidden,
            bos_token_id=tokenizer_2.bos_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
            pad_token_id=tokenizer_2.pad_token_id,
        )
    )
    torch.manual_seed(seed + 4)
    image_encoder = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=hidden, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=64, patch_size=8
        )
    )
    feature_extractor = SiglipImageProcessor(size={"height": 64, "width": 64})
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
    pipeline = HunyuanVideoFramepackPipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        image_encoder=image_encoder,
        feature_extractor=feature_extractor,
    )
    pipeline.save_pretrained(directory)
    (directory / PROJECT_FILE).write_text(
        json.dumps(
            {"preset": "tiny", "seed": seed, "sampling": "forward", "resolution": 128, "prompt_template": template},
            indent=2,
        )
    )
