"""`stream.backend.SectionBackend` over the stage deployments: what sessions in the Ingress use.

A session's engine state (`engine.video_state.VideoState`, cut to the history tail) lives with the
session; the engine's transitions plan each section and take its results, and this module only
decides where the work runs. Every request carries what its stage needs and nothing comes back
but results, so a request that dies with its replica is simply sent again, and Serve routes it to
the replacement.

Decoding section k overlaps denoising section k+1: as soon as section k is denoised, section k+1
is planned with the same prompt and started while k decodes. If the next call brings a different
prompt (a steer), that speculative section is cancelled and planned again with the new prompt (its
plan's prompt blend is no longer `video_state.next_blend`); either way the result is what a
sequential run would give, since planning reads only the state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image
from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError
from ray.serve.exceptions import BackPressureError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from framepack_live.engine import video_state
from framepack_live.engine.conditioning import PromptEmbeds, blend_embeds
from framepack_live.engine.decoding import Decoded
from framepack_live.engine.errors import InputError
from framepack_live.engine.section import Section
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import SectionPlan, VideoStart
from framepack_live.stream.backend import PreviewCallback, ProgressCallback, worth_restarting

from .logs import log
from .metrics import SessionMetrics
from .work import DenoiseRequest, DenoiseResult, Preview, Progress

T = TypeVar("T")

#: How long a stage call keeps being retried while Serve replaces a dead replica (a model load).
RETRY_BUDGET_S = 300.0
_LOST = (RayActorError, WorkerCrashedError, ReplicaUnavailableError)


def _lost_replica(exc: BaseException) -> bool:
    """The replica (or a rank of its group) died: the request itself was fine, send it again."""
    if isinstance(exc, RayTaskError):
        return isinstance(exc.cause, _LOST)
    return isinstance(exc, _LOST)


async def call_stage(session_id: str, stage: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run one stage request, resending it while its replica is being replaced.

    `busy` when the stage's queue is full (Serve's `max_queued_requests`), and the engine's own
    `InputError`s unwrapped, so the session reports them with their codes.
    """
    deadline = time.monotonic() + RETRY_BUDGET_S
    delay = 0.25
    while True:
        try:
            return await attempt()
        except BackPressureError:
            raise InputError("busy", f"the {stage} is at capacity; try again later") from None
        except RayTaskError as exc:
            if isinstance(exc.cause, InputError):
                raise exc.cause from None
            if not _lost_replica(exc) or time.monotonic() > deadline:
                raise
            error = exc
        except _LOST as exc:
            if time.monotonic() > deadline:
                raise
            error = exc
        log.warning(
            "%s replica lost (%s); resending the request",
            stage,
            type(error).__name__,
            extra={"session_id": session_id, "stage": stage},
        )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


class RayBackend:
    """One session's way to the stage deployments (the session's id goes into their logs)."""

    def __init__(self, stages: Stages, session_id: str, metrics: SessionMetrics) -> None:
        self.encoder, self.denoiser, self.decoder = stages.encoder, stages.denoiser, stages.decoder
        self.session_id, self.metrics = session_id, metrics

    async def open(self, prompt: str, image: Image.Image | None, settings: GenerationSettings) -> RaySource:
        if settings.sampling != "forward":
            raise InputError("bad_request", "the server streams forward sampling only")
        opened = time.monotonic()
        embeds, start = await asyncio.gather(
            self.encode_prompt(prompt),
            call_stage(self.session_id, "encoder", lambda: self.encoder.encode_start.remote(image, settings)),
        )
        negative = await self.encode_prompt(settings.negative_prompt) if settings.cfg > 1.0 else None
        log.info("session opened", extra={"session_id": self.session_id, "settings": settings.to_dict()})
        return RaySource(self, settings, prompt, embeds, negative, start, opened)

    async def encode_prompt(self, prompt: str) -> PromptEmbeds:
        return await call_stage(self.session_id, "encoder", lambda: self.encoder.encode_prompt.remote(prompt))


@dataclass(frozen=True)
class Stages:
    """Handles of the stage deployments a session's sections run on."""

    encoder: DeploymentHandle
    denoiser: DeploymentHandle
    decoder: DeploymentHandle


class _Relay:
    """Forwards a section's progress and previews to whichever session callbacks wait for that
    section; a speculative section gets its callbacks only when the session asks for it, and then
    the latest of each at once."""

    def __init__(self, progress: ProgressCallback | None = None, preview: PreviewCallback | None = None) -> None:
        self.progress, self.preview = progress, preview
        self.last_progress: tuple | None = None
        self.last_preview: tuple | None = None

    def on_progress(self, step: int, steps: int) -> None:
        self.last_progress = (step, steps)
        if self.progress is not None:
            self.progress(step, steps)

    def on_preview(self, item: Preview) -> None:
        self.last_preview = (item.step, item.steps, item.frames)
        if self.preview is not None:
            self.preview(*self.last_preview)

    def attach(self, progress: ProgressCallback, preview: PreviewCallback | None) -> None:
        self.progress, self.preview = progress, preview
        if self.last_progress is not None:
            progress(*self.last_progress)
        if preview is not None and self.last_preview is not None:
            preview(*self.last_preview)


#: A section in denoising: its plan, where its progress goes, the task that returns its latents.
_Ahead = tuple[SectionPlan, _Relay, "asyncio.Task[DenoiseResult]"]


class RaySource:
    """One video: its engine state, and at most one speculative denoise of its next section."""

    def __init__(
        self,
        backend: RayBackend,
        settings: GenerationSettings,
        prompt: str,
        embeds: PromptEmbeds,
        negative: PromptEmbeds | None,
        start: VideoStart,
        opened: float,
    ) -> None:
        self.backend, self.session_id, self.settings = backend, backend.session_id, settings
        #: Embeddings of the prompts the state's blends may use: the current one, and during a
        #: transition the ones it blends from.
        self._embeds: dict[str, PromptEmbeds] = {prompt: embeds}
        self._negative = negative
        self._state = video_state.begin(start, settings, prompt)
        self._opened: float | None = opened
        #: The section the session waits for, while it is denoised; and the next one, planned
        #: ahead while the current one decodes.
        self._current: _Ahead | None = None
        self._ahead: _Ahead | None = None

    async def next_section(
        self,
        prompt: str,
        progress: ProgressCallback,
        preview: PreviewCallback | None = None,
        transition: int | None = None,
    ) -> Section:
        """The next section with `prompt`, blended in over `transition` sections when it is new
        (default: the settings'); `preview` gets the section's step previews as they come."""
        state = self._state
        if prompt != state.prompt:
            self._steer(prompt, await self.backend.encode_prompt(prompt), transition)  # refuses before changing
        self._current = self._take_ahead(progress, preview) or self._start_denoise(_Relay(progress, preview))
        try:
            plan, result = await self._denoised()
        finally:
            self._current = None
        decode = video_state.accept_section(state, plan, result.latents)
        video_state.compact(state)
        if not state.finished:
            self._ahead = self._start_denoise(_Relay())
        decoded: Decoded = await call_stage(
            self.session_id, "decoder", lambda: self.backend.decoder.decode.remote(decode)
        )
        section = video_state.finish_section(state, plan, decoded)
        self._delivered(section)
        return section

    async def _denoised(self) -> tuple[SectionPlan, DenoiseResult]:
        """The current section's plan and latents, following any restarts."""
        while True:
            current = self._current
            try:
                return current[0], await current[2]
            except asyncio.CancelledError:
                if current is self._current:  # not restarted: this call itself is cancelled
                    raise

    async def restart(self, prompt: str, transition: int | None = None) -> bool:
        """Start the section being denoised over with `prompt`: the current one when at most half
        done (`worth_restarting`), or the speculative next one (dropped at the next call anyway)."""
        if prompt == self._state.prompt or (self._current is None and self._ahead is None):
            return False
        try:
            embeds = await self.backend.encode_prompt(prompt)
        except InputError:  # refused: the session reports it at the next section boundary
            return False
        # From here on nothing awaits: the state is steered only while no planned section of the
        # old prompt can still be accepted.
        current = self._current
        if current is not None:
            if current[2].done() or not worth_restarting(*(current[1].last_progress or (0, 1))):
                return False
            current[2].cancel()
            self._steer(prompt, embeds, transition)
            self._current = self._start_denoise(_Relay(current[1].progress, current[1].preview))
            return True
        if self._ahead is None:
            return False
        self._cancel_ahead()
        self._steer(prompt, embeds, transition)
        self._ahead = self._start_denoise(_Relay())
        return True

    def _steer(self, prompt: str, embeds: PromptEmbeds, transition: int | None) -> None:
        state = self._state
        video_state.steer(state, prompt, transition)
        used = {state.prompt, *(state.blend_from.prompts if state.blend_from is not None else ())}
        self._embeds = {p: e for p, e in self._embeds.items() if p in used} | {prompt: embeds}

    async def flush(self) -> Section | None:
        self._cancel_ahead()
        section = video_state.flush(self._state)
        if section is not None:
            self._delivered(section)
        return section

    async def close(self) -> None:
        self._cancel_ahead()
        log.info("session closed", extra={"session_id": self.session_id, "sections": self._state.step})

    def _take_ahead(self, progress: ProgressCallback, preview: PreviewCallback | None) -> _Ahead | None:
        """The speculative denoise of the next section, if it was planned with the current prompt blend."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        plan, relay, task = ahead
        if plan.blend != video_state.next_blend(self._state):
            task.cancel()
            return None
        relay.attach(progress, preview)
        return ahead

    def _cancel_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead[2].cancel()
            self._ahead = None

    def _start_denoise(self, relay: _Relay) -> _Ahead:
        """Plan the next section from the state as it is now and start denoising it."""
        plan = video_state.plan_section(self._state)
        request = DenoiseRequest(
            session_id=self.session_id,
            settings=self.settings,
            plan=plan,
            prompt=blend_embeds([self._embeds[p] for p in plan.blend.prompts], plan.blend.weights),
            negative=self._negative,
            image_embeds=self._state.start.image_embeds,
        )
        task = asyncio.ensure_future(call_stage(self.session_id, "denoiser", lambda: self._stream(request, relay)))
        return plan, relay, task

    async def _stream(self, request: DenoiseRequest, relay: _Relay) -> DenoiseResult:
        async for item in self.backend.denoiser.options(stream=True).section.remote(request):
            if isinstance(item, Progress):
                relay.on_progress(item.step, item.steps)
            elif isinstance(item, Preview):
                relay.on_preview(item)
            else:
                return item
        raise RuntimeError("the denoiser's stream ended without a result")

    def _delivered(self, section: Section) -> None:
        metrics = self.backend.metrics
        metrics.sections.inc()
        metrics.frames.inc(section.num_frames)
        if self._opened is not None and section.num_frames:
            metrics.time_to_first_frame.observe(time.monotonic() - self._opened)
            self._opened = None
        log.info(
            "section %d: %d frames",
            section.index,
            section.num_frames,
            extra={"session_id": self.session_id, "section": section.index, "first_frame": section.first_frame},
        )
