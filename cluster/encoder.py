"""The `Encoder` deployment: prompts (LLaMA + CLIP) and start images (VAE + SigLIP)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from PIL import Image
from ray import serve

from framepack_live.engine import text_start
from framepack_live.engine.conditioning import PromptEmbeds, encode_prompt
from framepack_live.engine.generator import start_video
from framepack_live.engine.images import default_start_image
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import VideoStart, VideoState

from .config import ClusterConfig
from .replica import ModelThread, load_model


@serve.deployment(name="Encoder", max_ongoing_requests=8)
class Encoder:
    """Keeps the most recent prompts' embeddings: steering often returns to an earlier prompt, and
    every session of a shared default prompt needs the same one. Model calls run one at a time
    on the replica's `ModelThread`; the cache lives on the event loop (one thread), and a cached
    prompt is answered without waiting behind running encodes."""

    def __init__(self, config: ClusterConfig) -> None:
        self.model = load_model(config, ("text", "image", "vae"))
        self._cache: OrderedDict[str, PromptEmbeds] = OrderedDict()
        self._cache_size = config.prompt_cache_size
        self._model_thread = ModelThread("encode")

    async def encode_prompt(self, prompt: str) -> PromptEmbeds:
        """Raises `InputError` (`prompt_too_long`, `bad_request`) for prompts the encoder refuses."""
        if prompt in self._cache:
            self._cache.move_to_end(prompt)
            return self._cache[prompt]
        embeds = await self._model_thread.submit(self._encode_prompt, prompt)
        self._cache[prompt] = embeds
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return embeds

    async def encode_start(self, image: Image.Image | None, settings: GenerationSettings) -> VideoStart:
        return await self._model_thread.submit(start_video, self.model, image or default_start_image(), settings)

    async def sketch_state(self, prompt: str, settings: GenerationSettings) -> VideoState:
        """The one-section video a start from the prompt alone is sketched in (`engine.text_start`)."""
        return await self._model_thread.submit(text_start.sketch_state, self.model, prompt, settings)

    async def start_after(self, sketch: VideoState, last_frame: np.ndarray) -> VideoStart:
        """The video's start from the sketch's last decoded frame."""
        return await self._model_thread.submit(text_start.start_after, self.model, sketch, last_frame)

    def _encode_prompt(self, prompt: str) -> PromptEmbeds:
        return encode_prompt(self.model, prompt).to(torch.device("cpu"))

