"""The `Encoder` deployment: prompts (LLaMA + CLIP), start images (VAE + SigLIP) and the history
of a video to continue (VAE)."""

from __future__ import annotations

import asyncio
import hashlib
from functools import partial

import numpy as np
import torch
from PIL import Image
from ray import serve

from framepack_live.engine import extension, text_start
from framepack_live.engine.conditioning import ImageEncoding, PromptEmbeds, encode_prompt, image_encoding
from framepack_live.engine.generator import start_video
from framepack_live.engine.images import default_start_image
from framepack_live.engine.recent import Recent
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import VideoHistory, VideoStart, VideoState

from .config import ClusterConfig
from .replica import ModelThread, load_model


@serve.deployment(name="Encoder", max_ongoing_requests=8)
class Encoder:
    """Keeps the most recent prompts' embeddings and start images' encodings: steering often returns
    to an earlier prompt, every session of a shared default prompt needs the same one, and most
    starts are of the built-in image or of one a creator starts again with another prompt (its
    encoding before the seeded draw, `ImageEncoding`, is the same for any seed). Model calls run
    one at a time on the replica's `ModelThread`; the prompt cache lives on the event loop (one
    thread), so a cached prompt is answered without waiting behind running encodes, and the image
    cache on the model thread, where images are encoded."""

    def __init__(self, config: ClusterConfig) -> None:
        self.model = load_model(config, ("text", "image", "vae"))
        self._prompts: Recent[PromptEmbeds] = Recent(config.prompt_cache_size)
        #: Prompts being encoded, for the callers that ask meanwhile.
        self._encoding: dict[str, asyncio.Future[PromptEmbeds]] = {}
        self._images: Recent[ImageEncoding] = Recent(config.image_cache_size)
        self._model_thread = ModelThread("encode")

    async def encode_prompt(self, prompt: str) -> PromptEmbeds:
        """Raises `InputError` (`prompt_too_long`, `bad_request`) for prompts the encoder refuses.
        Callers of a prompt being encoded share that encode: a session's prompt is asked for by
        the Ingress while the session is admitted (`RaySessions.create`), then by the session."""
        if (embeds := self._prompts.get(prompt)) is not None:
            return embeds
        if (encoding := self._encoding.get(prompt)) is None:
            encoding = self._encoding[prompt] = self._model_thread.submit(self._encode_prompt, prompt)
            encoding.add_done_callback(lambda _: self._encoding.pop(prompt, None))
        embeds = await asyncio.shield(encoding)  # one caller that gives up cancels it for none of the others
        self._prompts.put(prompt, embeds)
        return embeds

    async def encode_start(self, image: Image.Image | None, settings: GenerationSettings) -> VideoStart:
        encode_start = partial(start_video, encode=self._encode_image)
        return await self._model_thread.submit(encode_start, self.model, image or default_start_image(), settings)

    def _encode_image(self, image: Image.Image, width: int, height: int) -> ImageEncoding:
        """On the model thread."""
        key = (hashlib.sha256(image.tobytes()).digest(), image.mode, image.size, width, height)
        if (encoding := self._images.get(key)) is None:
            encoding = image_encoding(self.model, image, width, height)
            self._images.put(key, encoding)
        return encoding

    async def encode_history(self, frames: np.ndarray, settings: GenerationSettings) -> tuple[VideoStart, VideoHistory]:
        """The start and VAE-encoded history of a video to continue (`engine.extension`): the
        start image's encoding, for a video's first frame and its tail."""
        return await self._model_thread.submit(extension.encode_history, self.model, frames, settings)

    async def sketch_state(self, prompt: str, settings: GenerationSettings) -> VideoState:
        """The one-section video a start from the prompt alone is sketched in (`engine.text_start`)."""
        return await self._model_thread.submit(text_start.sketch_state, self.model, prompt, settings)

    async def start_after(self, sketch: VideoState, last_frame: np.ndarray) -> VideoStart:
        """The video's start from the sketch's last decoded frame."""
        return await self._model_thread.submit(text_start.start_after, self.model, sketch, last_frame)

    def _encode_prompt(self, prompt: str) -> PromptEmbeds:
        return encode_prompt(self.model, prompt).to(torch.device("cpu"))

