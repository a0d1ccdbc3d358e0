"""`SectionBackend` over the engine in this process: one worker thread, calls queued in order.

The engine's calls block for seconds (encoders, denoising, VAE decode) and release the GIL in
torch, so they run in a worker thread and the event loop keeps serving WebSockets and WebRTC.
One worker: a process has one model and one set of CPU cores or one GPU, and two sections at
once would only thrash it. Its FIFO queue interleaves sessions section by section.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from PIL import Image

from framepack_live.engine.generator import SectionGenerator
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.section import Section
from framepack_live.engine.settings import GenerationSettings

from .backend import ProgressCallback

T = TypeVar("T")


class InProcessBackend:
    """Runs every engine call of every session on one worker thread of this process."""

    def __init__(self, model: FramePackModel) -> None:
        self.model = model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Queue `fn` on the engine thread and await it without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def open(self, prompt: str, image: Image.Image | None, settings: GenerationSettings) -> LocalSource:
        generator = await self.run(SectionGenerator, self.model, prompt=prompt, image=image, settings=settings)
        return LocalSource(self, generator, prompt)

    def shutdown(self) -> None:
        """Stop the worker once the queued calls are done (for tests and command-line exits)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


class LocalSource:
    """One `SectionGenerator`; its calls go through the backend's queue."""

    def __init__(self, backend: InProcessBackend, generator: SectionGenerator, prompt: str) -> None:
        self._backend = backend
        self._generator: SectionGenerator | None = generator
        self._prompt = prompt

    async def next_section(self, prompt: str, progress: ProgressCallback) -> Section:
        return await self._backend.run(self._next, prompt, progress)

    def _next(self, prompt: str, progress: ProgressCallback) -> Section:
        if prompt != self._prompt:
            self._generator.set_prompt(prompt)  # checks the prompt before it changes anything
            self._prompt = prompt
        return self._generator.next_section(progress=progress)

    async def flush(self) -> Section | None:
        return await self._backend.run(self._generator.flush)

    async def close(self) -> None:
        # Nothing runs on it any more; dropping the reference frees the history latents.
        self._generator = None
