"""Loading FramePack's components with `from_pretrained` and choosing device and dtype."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import HunyuanVideoFramepackPipeline, HunyuanVideoFramepackTransformer3DModel
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import DEFAULT_PROMPT_TEMPLATE
from diffusers.utils import logging as diffusers_logging
from transformers import AutoImageProcessor, SiglipVisionModel
from transformers.utils import logging as transformers_logging

from . import caching
from .download import DownloadProgress, ensure_local
from .fast_decoder import FastDecoder
from .presets import DEFAULT_MODEL, ModelSource, resolve
from .preview import LatentPreview

#: The pipeline's components by the job they do; a stage loads only the parts it runs.
PARTS: dict[str, tuple[str, ...]] = {
    "text": ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"),
    "image": ("image_encoder", "feature_extractor"),
    "transformer": ("transformer",),
    "vae": ("vae",),
}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the hardware has fast bf16 matmuls; fp32 on CPU, where bf16 is slow and inexact."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


@dataclass
class FramePackModel:
    """The loaded components, held in diffusers' own pipeline object.

    We keep the pipeline (rather than loose modules) so that its prompt/image encoders, VAE
    helpers and offload hooks are diffusers' code, not copies of it; our engine replaces only the
    sampling loop, which diffusers runs all at once and we need section by section.
    """

    pipeline: HunyuanVideoFramepackPipeline
    source: ModelSource
    device: torch.device
    dtype: torch.dtype
    #: The live view's small decoder (`engine.fast_decoder`), when the model has one and it was asked for.
    fast_decoder: FastDecoder | None = None
    #: The latent -> RGB map of step previews (engine.preview); None when the model has none.
    preview: LatentPreview | None = None

    @classmethod
    def load(
        cls,
        model: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        cpu_offload: bool = False,
        vae_tiling: bool = False,
        parts: tuple[str, ...] = tuple(PARTS),
        live_decoder: bool = True,
        cache: str | None = None,
        compile: bool = False,
        shard_weights: bool = False,
        download: DownloadProgress | None = None,
    ) -> FramePackModel:
        """Load a preset, a local pipeline directory or a hub id.

        `cpu_offload` keeps each component on the CPU until it runs (diffusers' model offload), for
        GPUs with too little memory for the 13 B transformer; `vae_tiling` decodes in tiles.
        `parts` (keys of `PARTS`) loads only what a stage runs: a cluster's decoder needs the VAE,
        not the 13 B transformer. Start-image encoding needs `image` and `vae`.
        `live_decoder` loads the model's small decoder with the VAE where it names one
        (`decode_live`); `cache` is a step cache (`engine.caching.CacheSpec`, `none` for none; by
        default the model's own, its framepack_live.json `cache`, usually none); `compile` runs the transformer and the small decoder through
        `torch.compile` (a first section that compiles, faster ones after: docs/benchmarks.md).
        `shard_weights` keeps only this rank's share of the transformer's block weights
        (`engine.parallel.shard_weights`; `torch.distributed` must be up): they are split on the
        host, so the device never holds them all.
        Hub components are fetched first (engine.download), their progress in `download` (a
        terminal bar by default); a hub that cannot be reached raises `ModelUnavailable`.
        """
        if shard_weights and cpu_offload:
            raise ValueError("shard_weights and cpu_offload do not go together: offloading moves whole components")
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown model parts {sorted(unknown)}; choose from {sorted(PARTS)}")
        source = ensure_local(model or DEFAULT_MODEL, resolve(model), parts, download)
        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        extra = {name: None for part, names in PARTS.items() if part not in parts for name in names}
        if source.transformer and "transformer" in parts:
            extra["transformer"] = HunyuanVideoFramepackTransformer3DModel.from_pretrained(
                source.transformer, dtype=dtype
            )
        if "image" in parts:
            # Always PIL's resampling (FramePack's own preprocessing), never the torchvision variant
            # transformers picks when torchvision happens to be installed: the image tokens must not
            # depend on the machine, or a trainer and a server would condition differently.
            extra["feature_extractor"] = AutoImageProcessor.from_pretrained(
                source.image_encoder or source.base, subfolder="feature_extractor", backend="pil"
            )
        if source.image_encoder and "image" in parts:
            extra["image_encoder"] = SiglipVisionModel.from_pretrained(
                source.image_encoder, subfolder="image_encoder", dtype=dtype
            )
        pipeline = HunyuanVideoFramepackPipeline.from_pretrained(source.base, dtype=dtype, **extra)
        pipeline.set_progress_bar_config(disable=True)
        if vae_tiling and pipeline.vae is not None:
            pipeline.vae.enable_tiling()
        if shard_weights and pipeline.transformer is not None:
            from .parallel import shard_weights as shard

            shard(pipeline.transformer, device=device)
        if cpu_offload and device.type != "cpu":
            pipeline.enable_model_cpu_offload(device=device)
        else:
            pipeline.to(device)
        fast_decoder = None
        if live_decoder and source.live_decoder and "vae" in parts:
            fast_decoder = FastDecoder.from_pretrained(source.base, subfolder=source.live_decoder).to(device).eval()
        loaded = cls(pipeline=pipeline, source=source, device=device, dtype=dtype, fast_decoder=fast_decoder,
                     preview=_preview(pipeline, source))
        if "transformer" in parts:
            loaded.set_cache(cache or source.cache)
        if compile:
            loaded.compile()
        return loaded

    def set_cache(self, spec: str | None, mag_ratios: list[float] | None = None) -> None:
        """Use step cache `spec` (`engine.caching.CacheSpec`; None or `none`: no cache) from now on;
        MagCache with `mag_ratios`, or the model's own (its framepack_live.json)."""
        steps = int(self.source.defaults.get("steps", 25))
        caching.enable(self.transformer, caching.CacheSpec.parse(spec), steps, mag_ratios or self.source.mag_ratios)

    def compile(self) -> None:
        """`torch.compile` the transformer and the small decoder in place (after any `set_cache`:
        the hooks are part of what is compiled)."""
        for module in (self.pipeline.transformer, self.fast_decoder):
            if module is not None:
                module.compile()

    def decode_live(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [1, C, T, h, w] to pixels [1, 3, (T-1)*4+1, H, W] in [-1, 1] for the live view:
        by the small decoder when the model has one loaded, else by the full VAE (which exports use)."""
        if self.fast_decoder is not None:
            return self.fast_decoder.decode(latents)
        from .decoding import decode_latents  # here: decoding imports this module

        return decode_latents(self, latents)

    @property
    def transformer(self) -> HunyuanVideoFramepackTransformer3DModel:
        return self.pipeline.transformer

    @property
    def prompt_template(self) -> dict:
        return self.source.prompt_template or DEFAULT_PROMPT_TEMPLATE

    @property
    def latent_channels(self) -> int:
        """Channels of the latents the transformer denoises (the VAE's latent channels)."""
        return int(self.transformer.config.in_channels)


def _preview(pipeline: HunyuanVideoFramepackPipeline, source: ModelSource) -> LatentPreview | None:
    """The model directory's fitted preview map, else the one for the latents' channel count."""
    if pipeline.transformer is not None:
        channels = pipeline.transformer.config.in_channels
    elif pipeline.vae is not None:
        channels = pipeline.vae.config.latent_channels
    else:
        return None  # an encoder stage makes no latents to preview
    directory = source.base if Path(source.base).is_dir() else None
    return LatentPreview.for_model(directory, channels)
