"""GPU memory each stage needs: weights counted from the model's configs, working memory by formula.

Weights: every component is built on PyTorch's `meta` device from its `config.json` (no memory,
no download) and its parameters and buffers are counted, times the bytes of the dtype the stage
loads it in (bf16 on CUDA). The configs come from the model's directory, else the local Hugging
Face cache, else the copies of the released configs in `released_configs.py`.

Working memory (activations at the peak of one call), in bytes:

* **Denoiser, per rank** (b sections batched, L packed video tokens, E conditioning tokens,
  C = heads x head_dim, s bytes per value, N sequence-parallel ranks):

      b * C * s * (18 * ceil(L / N) + 16 * E)

  Where it comes from: the peak of a forward is inside a single-stream block, while RoPE is
  applied to the video queries (diffusers' `apply_rotary_emb` works in float32). Alive then, in
  C-wide rows: the block's input and the joined [video; conditioning] sequence, its normalised
  copy, the MLP branch (4 wide, after GELU), q, k and v, the previous block's residual: about
  10 rows per token of the joined sequence; and, per video token only, RoPE's float32 copies
  (the query upcast and two products: 2 rows each in bf16 units) and the rotated half: about 8.
  So 18 per video token and 10-11 per conditioning token in one process. Under Ulysses a rank
  holds 1/N of the video tokens in all of that, but the whole conditioning, its share of every
  head's attention over all tokens, and the all-to-all send/receive buffers; a live-bytes trace
  of the real code (both blocks of the released architecture, tests/cluster/test_memory.py) gives
  18.1 per video token / N and 15.6 per conditioning token over N = 1, 2, 4, within 4 %. Rounded
  up: 18 and 16. At 640x640, window 9 (L = 18,400, E = 985), N = 1, bf16 this is 2.0 GiB;
  with the 24.0 GiB of weights, 26.0 GiB against the 26.1 GiB peak `bench gpu` measured on an
  H200. Batches of several sections (`max_batch_size`) scale it by b; the attention over a
  batch > 1 is masked, which this assumes runs in a memory-efficient kernel (no L x L matrix).
* **Decoder**: `vae.decode` of one section (the previous section's latents and the new ones)
  decodes 5 latent frames (17 video frames) at a time at full resolution (diffusers' frame-wise
  decoding), and the peak is in the full-resolution up-block, 128 channels wide: the trace of
  the released VAE gives 1,153 values per pixel of that 17-frame tile (about 9 full-resolution
  128-channel tensors at once), plus the decoded output, 4 float32 values per pixel per frame:

      s * H * W * 1153 * tile_frames + 4 * 4 * H * W * output_frames

  15.2 GiB at 640x640 in bf16: the Decoder is not a small stage.
* **Encoder**: the larger of the VAE encoding the start image (900 values per pixel, traced)
  and the text encoder, which keeps every layer's hidden states (diffusers' `encode_prompt`
  reads a middle layer): tokens * s * (hidden * (layers + 1) + 3 * intermediate).

Every process using CUDA also holds a context, cuBLAS workspaces, NCCL buffers and allocator
slack: `RUNTIME_OVERHEAD_GIB` per GPU process, on top.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from framepack_live.engine.conditioning import MAX_PROMPT_TOKENS
from framepack_live.engine.packing import HISTORY_1X, HISTORY_2X, HISTORY_4X
from framepack_live.engine.presets import resolve
from framepack_live.engine.settings import VAE_SPATIAL_RATIO, VAE_TEMPORAL_RATIO

from .released_configs import RELEASED

GIB = 2**30
#: CUDA context, cuBLAS/NCCL workspaces and caching-allocator slack of one GPU process.
RUNTIME_OVERHEAD_GIB = 1.0
#: Working-memory coefficients (see the module docstring): C-wide rows per token at the peak.
ROWS_PER_VIDEO_TOKEN = 18
ROWS_PER_CONDITIONING_TOKEN = 16
#: VAE values per pixel at the peak of decoding one tile / encoding one frame (traced).
VAE_DECODE_VALUES_PER_TILE_PIXEL = 1153
VAE_ENCODE_VALUES_PER_PIXEL = 900
#: Latent frames diffusers' HunyuanVideo VAE decodes at once (`tile_sample_min_num_frames` 16 -> 4 + 1).
VAE_TILE_LATENT_FRAMES = 5
#: Tokens of the prompt template around the prompt (LLaMA's chat template; cropped afterwards).
PROMPT_TEMPLATE_TOKENS = 95


@dataclass(frozen=True)
class ComponentConfigs:
    """The `config.json` of each component, and where they were read."""

    transformer: dict
    text_encoder: dict
    text_encoder_2: dict
    image_encoder: dict
    vae: dict
    origin: str


def component_configs(model: str | None) -> ComponentConfigs:
    """Read the configs of `model` (preset, directory or hub id) without loading any weights."""
    source = resolve(model)
    found = {
        "transformer": _config(source.transformer or source.base, "" if source.transformer else "transformer"),
        "text_encoder": _config(source.base, "text_encoder"),
        "text_encoder_2": _config(source.base, "text_encoder_2"),
        "image_encoder": _config(source.image_encoder or source.base, "image_encoder"),
        "vae": _config(source.base, "vae"),
    }
    origins = sorted({origin for _, origin in found.values()})
    return ComponentConfigs(**{name: config for name, (config, _) in found.items()}, origin=", ".join(origins))


def _config(repo: str, subfolder: str) -> tuple[dict, str]:
    path = Path(repo) / subfolder / "config.json"
    if path.is_file():
        return json.loads(path.read_text()), "the model's files"
    try:
        from huggingface_hub import hf_hub_download

        cached = hf_hub_download(repo, "config.json", subfolder=subfolder or None, local_files_only=True)
        return json.loads(Path(cached).read_text()), "the Hugging Face cache"
    except Exception:  # not downloaded (any hub error means the same here)
        pass
    if (repo, subfolder) in RELEASED:
        return RELEASED[(repo, subfolder)], "the released configs shipped in cluster/released_configs.py"
    raise FileNotFoundError(f"no config.json for {repo}/{subfolder}: not local, not in the Hugging Face cache")


def _meta_module(kind: str, config: dict) -> torch.nn.Module:
    """The component built on the meta device from its config: shapes without memory."""
    from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoFramepackTransformer3DModel
    from transformers import AutoConfig, AutoModel

    with torch.device("meta"):
        if kind == "transformer":
            return HunyuanVideoFramepackTransformer3DModel.from_config(config)
        if kind == "vae":
            return AutoencoderKLHunyuanVideo.from_config(config)
        settings = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
        return AutoModel.from_config(AutoConfig.for_model(config["model_type"], **settings))


def _values(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in (*module.parameters(), *module.buffers()))


@dataclass(frozen=True)
class ModelSizes:
    """Values (parameters and buffers) per component, and the transformer's block layout."""

    transformer: int
    transformer_blocks: int
    largest_block: int
    text_encoder: int
    text_encoder_2: int
    image_encoder: int
    vae: int
    hidden: int
    heads: int
    patch_size: int
    text_layers: int
    text_hidden: int
    text_intermediate: int
    image_tokens: int

    @classmethod
    def from_configs(cls, configs: ComponentConfigs) -> ModelSizes:
        transformer = _meta_module("transformer", configs.transformer)
        blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
        text = configs.text_encoder
        image = configs.image_encoder
        return cls(
            transformer=_values(transformer),
            transformer_blocks=sum(_values(b) for b in blocks),
            largest_block=max(_values(b) for b in blocks),
            text_encoder=_values(_meta_module("text", text)),
            text_encoder_2=_values(_meta_module("text", configs.text_encoder_2)),
            image_encoder=_values(_meta_module("image", image)),
            vae=_values(_meta_module("vae", configs.vae)),
            hidden=transformer.config.num_attention_heads * transformer.config.attention_head_dim,
            heads=transformer.config.num_attention_heads,
            patch_size=transformer.config.patch_size,
            text_layers=text["num_hidden_layers"],
            text_hidden=text["hidden_size"],
            text_intermediate=text["intermediate_size"],
            image_tokens=(image["image_size"] // image["patch_size"]) ** 2,
        )


@dataclass(frozen=True)
class Section:
    """The shape of the work: pixels of a section and latent frames per section."""

    width: int
    height: int
    window: int

    @property
    def latent_height(self) -> int:
        return self.height // VAE_SPATIAL_RATIO

    @property
    def latent_width(self) -> int:
        return self.width // VAE_SPATIAL_RATIO

    def video_tokens(self, patch: int) -> int:
        """Packed tokens of one forward section: the window and the start frame plus 1x history
        at the patch size, the 2x and 4x history at 2x and 4x the patch in every axis."""

        def tokens(frames: int, scale: int) -> int:
            size = patch * scale
            return -(-frames // scale) * -(-self.latent_height // size) * -(-self.latent_width // size)

        return tokens(self.window + 1 + HISTORY_1X, 1) + tokens(HISTORY_2X, 2) + tokens(HISTORY_4X, 4)


@dataclass(frozen=True)
class Need:
    """GPU memory of one process of a stage, in bytes, with how it was reckoned."""

    stage: str
    weights: int
    working: int
    detail: str
    overhead: int = int(RUNTIME_OVERHEAD_GIB * GIB)

    @property
    def total(self) -> int:
        return self.weights + self.working + self.overhead


def denoiser_need(
    sizes: ModelSizes, section: Section, ranks: int, batch: int, shard_weights: bool, value_bytes: int
) -> Need:
    """One Denoiser rank (the replica itself when `ranks` is 1)."""
    video = section.video_tokens(sizes.patch_size)
    conditioning = MAX_PROMPT_TOKENS + sizes.image_tokens
    rows = ROWS_PER_VIDEO_TOKEN * math.ceil(video / ranks) + ROWS_PER_CONDITIONING_TOKEN * conditioning
    working = batch * sizes.hidden * value_bytes * rows
    if shard_weights:
        outside = sizes.transformer - sizes.transformer_blocks
        weights = value_bytes * (outside + math.ceil(sizes.transformer_blocks / ranks) + 2 * sizes.largest_block)
        how = f"1/{ranks} of the block weights + the rest + 2 gathered blocks"
    else:
        weights = value_bytes * sizes.transformer
        how = "all weights on every rank"
    detail = f"{how}; {video:,} video + {conditioning} conditioning tokens x batch {batch}, {ranks} rank(s)"
    return Need("Denoiser", weights, working, detail)


def shard_traffic_bytes(sizes: ModelSizes, ranks: int, value_bytes: int) -> int:
    """Bytes each rank receives per transformer call when the block weights are sharded."""
    return value_bytes * math.ceil(sizes.transformer_blocks / ranks) * (ranks - 1)


def decoder_need(sizes: ModelSizes, section: Section, value_bytes: int) -> Need:
    """One Decoder replica: the previous section's latents plus the new ones, decoded."""
    latent_frames = 2 * section.window
    tile_frames = (min(latent_frames, VAE_TILE_LATENT_FRAMES) - 1) * VAE_TEMPORAL_RATIO + 1
    output_frames = (latent_frames - 1) * VAE_TEMPORAL_RATIO + 1
    pixels = section.width * section.height
    working = value_bytes * pixels * VAE_DECODE_VALUES_PER_TILE_PIXEL * tile_frames + 4 * 4 * pixels * output_frames
    detail = f"VAE; decode of {latent_frames} latent frames at {section.width}x{section.height}, {tile_frames} frames at a time"
    return Need("Decoder", value_bytes * sizes.vae, working, detail)


def encoder_need(sizes: ModelSizes, section: Section, value_bytes: int) -> Need:
    """One Encoder replica: LLaMA + CLIP text encoders, SigLIP, the VAE (encodes the start image)."""
    weights = value_bytes * (sizes.text_encoder + sizes.text_encoder_2 + sizes.image_encoder + sizes.vae)
    tokens = MAX_PROMPT_TOKENS + PROMPT_TEMPLATE_TOKENS
    text = tokens * value_bytes * (sizes.text_hidden * (sizes.text_layers + 1) + 3 * sizes.text_intermediate)
    image = value_bytes * section.width * section.height * VAE_ENCODE_VALUES_PER_PIXEL
    detail = "LLaMA + CLIP text encoders, SigLIP, VAE; working: the larger of the start image's VAE encode and the text encoder"
    return Need("Encoder", weights, max(text, image), detail)


def value_bytes(device: str) -> int:
    """What `FramePackModel.load` picks: bf16 on CUDA, float32 on the CPU."""
    return 2 if device == "cuda" else 4

