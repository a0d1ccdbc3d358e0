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

from framepack_live.engine import video_state
from framepack_live.engine.boundaries import Boundaries
from framepack_live.engine.conditioning import check_prompt
from framepack_live.engine.errors import InputError
from framepack_live.engine.generator import SectionGenerator
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.section import Section
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.text_start import start_from_text

from .backend import PreviewCallback, ProgressCallback, worth_restarting

T = TypeVar("T")


class InProcessBackend:
    """Runs every engine call of every session on one worker thread of this process."""

    def __init__(self, model: FramePackModel) -> None:
        self.model = model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Queue `fn` on the engine thread and await it without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def open(
        self, prompt: str, image: Image.Image | None, settings: GenerationSettings, from_text: bool = False
    ) -> LocalSource:
        if from_text:
            generator = await self.run(_from_text, self.model, prompt, settings)
        else:
            generator = await self.run(SectionGenerator, self.model, prompt=prompt, image=image, settings=settings)
        return LocalSource(self, generator, prompt)

    def shutdown(self) -> None:
        """Stop the worker once the queued calls are done (for tests and command-line exits)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def _from_text(model: FramePackModel, prompt: str, settings: GenerationSettings) -> SectionGenerator:
    check_prompt(model, prompt)  # before the sketch section is spent on it
    return SectionGenerator.from_state(model, video_state.begin(start_from_text(model, prompt, settings), settings, prompt))


class Restart(Exception):
    """Raised from the engine's progress callback to abandon a section a steer restarts."""


class LocalSource:
    """One `SectionGenerator`; its calls go through the backend's queue.

    A restart abandons the section at its next denoising step (from the progress callback, in the
    worker thread): planning is pure, so nothing of the abandoned section stays in the state. The
    state each section is planned from is kept (`Boundaries`) for rewinds.
    """

    def __init__(self, backend: InProcessBackend, generator: SectionGenerator, prompt: str) -> None:
        self._backend = backend
        self._generator: SectionGenerator | None = generator
        self._prompt = prompt
        #: (step, steps) of the section being denoised; (0, steps) while its call waits in the
        #: queue; None between calls.
        self._denoising: tuple[int, int] | None = None
        self._restart: tuple[str, int | None] | None = None
        self._boundaries = Boundaries()

    async def next_section(
        self,
        prompt: str,
        progress: ProgressCallback,
        preview: PreviewCallback | None = None,
        transition: int | None = None,
    ) -> Section:
        self._denoising = (0, self._generator.settings.steps)
        return await self._backend.run(self._next, prompt, progress, preview, transition)

    def _next(self, prompt: str, progress: ProgressCallback, preview: PreviewCallback | None, transition: int | None) -> Section:
        self._steer(prompt, transition)  # checks the prompt before it changes anything
        self._take_restart()  # a steer that came while the call waited in the queue

        def on_step(step: int, steps: int) -> None:
            self._denoising = (step, steps)
            if self._restart is not None:
                raise Restart
            progress(step, steps)

        on_preview = None if preview is None else (lambda step, steps, frames: preview(step, steps, frames[0]))
        try:
            while True:
                self._boundaries.keep(self._generator.state)
                try:
                    return self._generator.next_section(on_step, on_preview)
                except Restart:
                    self._take_restart()
                    self._denoising = (0, self._generator.settings.steps)
        finally:
            self._denoising = self._restart = None

    def _take_restart(self) -> None:
        restart, self._restart = self._restart, None
        if restart is not None:
            try:
                self._steer(*restart)
            except InputError:  # refused: the session reports it at the next section boundary
                pass

    def _steer(self, prompt: str, transition: int | None) -> None:
        if prompt != self._prompt:
            self._generator.set_prompt(prompt, transition)
            self._prompt = prompt

    async def restart(self, prompt: str, transition: int | None = None) -> bool:
        denoising = self._denoising
        if denoising is None or not worth_restarting(*denoising):
            return False
        self._restart = (prompt, transition)
        return True

    async def rewind(self, section: int, prompt: str, transition: int | None = None, branch: int | None = None) -> int:
        return await self._backend.run(self._rewind, section, prompt, transition, branch)

    def _rewind(self, section: int, prompt: str, transition: int | None, branch: int | None) -> int:
        generator = self._generator
        check_prompt(generator.model, prompt)
        self._boundaries.keep(generator.state)  # the end of the branch left, to come back to
        try:
            state = self._boundaries.rewind(section, branch)
        except ValueError as exc:
            raise InputError("bad_request", str(exc)) from None
        generator.state, self._prompt = state, state.prompt
        self._steer(prompt, transition)
        return self._boundaries.branch

    async def flush(self) -> Section | None:
        return await self._backend.run(self._generator.flush)

    async def close(self) -> None:
        # Nothing runs on it any more; dropping the reference frees the history latents.
        self._generator = None
        self._boundaries.close()
