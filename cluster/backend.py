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
sequential run would give, since planning reads only the state. A steer may also drop the section
being decoded, before its frames are out (`stream.backend.worth_redoing`): the state goes back to
the boundary kept before it and the section is made again with the new prompt. Work given up is
cancelled at its stage too (`cancelling`), which stops it part-way (`engine.interrupt`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
from PIL import Image
from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError, RayTaskError, WorkerCrashedError
from ray.serve.exceptions import BackPressureError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from framepack_live.engine import video_state
from framepack_live.engine.boundaries import Boundaries
from framepack_live.engine.conditioning import PromptEmbeds, blend_embeds
from framepack_live.engine.decoding import Decoded
from framepack_live.engine.errors import InputError
from framepack_live.engine.section import Section
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import SectionPlan, VideoStart, VideoState
from framepack_live.stream.backend import PreviewCallback, ProgressCallback, worth_redoing, worth_restarting

from .logs import log
from .metrics import SessionMetrics
from .work import DenoiseRequest, DenoiseResult, Preview, Progress

T = TypeVar("T")

#: How long a stage call keeps being retried while Serve replaces a dead replica (a model load).
RETRY_BUDGET_S = 300.0
#: The replica (or a rank of its group, or the node under it) died; or the answer it made was on
#: that node's object store and went with it.
_LOST = (RayActorError, WorkerCrashedError, ReplicaUnavailableError, NodeDiedError, ObjectLostError)


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


async def cancelling(response: DeploymentResponse) -> T:
    """Await a stage's answer; when the waiting is cancelled, cancel the request at the stage too
    (Serve leaves it running otherwise, and the stage's model thread busy with it)."""
    try:
        return await response
    except asyncio.CancelledError:
        response.cancel()
        raise


class RayBackend:
    """One session's way to the stage deployments (the session's id goes into their logs);
    `background`: a render job's, whose sections the Denoiser serves after live ones; `metrics`
    None: a video no viewer sees (`warm_up`), not counted."""

    def __init__(
        self, stages: Stages, session_id: str, metrics: SessionMetrics | None, background: bool = False
    ) -> None:
        self.encoder, self.denoiser, self.decoder = stages.encoder, stages.denoiser, stages.decoder
        self.session_id, self.metrics, self.background = session_id, metrics, background

    async def open(
        self,
        prompt: str,
        image: Image.Image | None,
        settings: GenerationSettings,
        from_text: bool = False,
        video: np.ndarray | None = None,
    ) -> RaySource:
        if settings.sampling != "forward":
            raise InputError("bad_request", "the server streams forward sampling only")
        opened = time.monotonic()
        if video is not None:
            (embeds, negative), (start, history) = await asyncio.gather(
                self._prompts(prompt, settings),
                call_stage(self.session_id, "encoder", lambda: self.encoder.encode_history.remote(video, settings)),
            )
            state = video_state.begin_after(start, history, settings, prompt)
        elif from_text:
            embeds, negative = await self._prompts(prompt, settings)
            state = video_state.begin(await self._start_from_text(prompt, embeds, negative, settings), settings, prompt)
        else:
            (embeds, negative), start = await asyncio.gather(
                self._prompts(prompt, settings),
                call_stage(self.session_id, "encoder", lambda: self.encoder.encode_start.remote(image, settings)),
            )
            state = video_state.begin(start, settings, prompt)
        log.info("session opened", extra={"session_id": self.session_id, "settings": settings.to_dict()})
        return RaySource(self, settings, prompt, embeds, negative, state, opened)

    async def _prompts(self, prompt: str, settings: GenerationSettings) -> tuple[PromptEmbeds, PromptEmbeds | None]:
        """The prompt's embeddings, and the negative prompt's where real CFG uses one."""
        embeds = await self.encode_prompt(prompt)
        return embeds, await self.encode_prompt(settings.negative_prompt) if settings.cfg > 1.0 else None

    async def _start_from_text(
        self, prompt: str, embeds: PromptEmbeds, negative: PromptEmbeds | None, settings: GenerationSettings
    ) -> VideoStart:
        """`engine.text_start.start_from_text` across the stages, with the same numbers: the sketch
        state on the Encoder, its one section denoised and decoded like any section, the start
        image from its last frame on the Encoder."""
        state = await call_stage(self.session_id, "encoder", lambda: self.encoder.sketch_state.remote(prompt, settings))
        sketch = RaySource(self, state.settings, prompt, embeds, negative, state, None)
        try:
            section = await sketch.next_section(prompt, lambda step, steps: None)
            tail = await sketch.flush()
        finally:
            await sketch.close()
        last_frame = (tail or section).frames[-1]
        return await call_stage(
            self.session_id, "encoder", lambda: self.encoder.start_after.remote(sketch.state, last_frame)
        )

    async def encode_prompt(self, prompt: str) -> PromptEmbeds:
        return await call_stage(self.session_id, "encoder", lambda: self.encoder.encode_prompt.remote(prompt))


@dataclass(frozen=True)
class Stages:
    """Handles of the stage deployments a session's sections run on."""

    encoder: DeploymentHandle
    denoiser: DeploymentHandle
    decoder: DeploymentHandle

    @property
    def handles(self) -> tuple[DeploymentHandle, DeploymentHandle, DeploymentHandle]:
        """The three, in the order a section passes them."""
        return self.encoder, self.denoiser, self.decoder

    async def warm(self) -> None:
        await warm_handles(self.handles)


async def warm_handles(handles: Iterable[DeploymentHandle], timeout_s: float = 10.0) -> None:
    """Give each handle its router and wait (at most `timeout_s`) until every router knows its
    deployment's running replicas, as Serve's proxy does for its own handles. A handle otherwise
    does both at its first call, in this process: a session's first section waited for that once
    per stage (about 50 ms each on a 2-core machine, `bench live`)."""
    handles = list(handles)
    for handle in handles:
        if not handle.is_initialized:
            handle._init()  # Serve's handles have no public way to start their router early
    deadline = time.monotonic() + timeout_s
    while not all(handle.running_replicas_populated() for handle in handles) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


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
        state: VideoState,
        opened: float | None,
    ) -> None:
        self.backend, self.session_id, self.settings = backend, backend.session_id, settings
        #: Embeddings of the prompts the state's blends may use: the current one, and during a
        #: transition the ones it blends from.
        self._embeds: dict[str, PromptEmbeds] = {prompt: embeds}
        self._negative = negative
        self._state = state
        #: When the session was opened, until its first frames are out (None: not measured).
        self._opened = opened
        #: The section the session waits for, while it is denoised; and the next one, planned
        #: ahead while the current one decodes.
        self._current: _Ahead | None = None
        self._ahead: _Ahead | None = None
        #: The decode of the section the session waits for, and when it began.
        self._decoding: tuple[asyncio.Task[Decoded], float] | None = None
        #: The session's callbacks for the section it waits for (a section made again gets them).
        self._callbacks: tuple[ProgressCallback, PreviewCallback | None] | None = None
        #: Seconds the last section's denoise and decode took, for `worth_redoing`.
        self._denoise_s: float | None = None
        self._decode_s: float | None = None
        #: The state each accepted section was planned from, for rewinds.
        self._boundaries = Boundaries()

    async def next_section(
        self,
        prompt: str,
        progress: ProgressCallback,
        preview: PreviewCallback | None = None,
        transition: int | None = None,
    ) -> Section:
        """The next section with `prompt`, blended in over `transition` sections when it is new
        (default: the settings'); `preview` gets the section's step previews as they come."""
        if prompt != self._state.prompt:
            self._steer(prompt, await self.backend.encode_prompt(prompt), transition)  # refuses before changing
        self._callbacks = (progress, preview)
        self._current = self._take_ahead(progress, preview) or self._start_denoise(_Relay(progress, preview))
        while True:
            state = self._state
            try:
                plan, result = await self._denoised()
            finally:
                self._current = None
            # Restarts and stale plans were replaced before this one was taken: the state is the one
            # this plan was made from, the boundary before it.
            self._boundaries.keep(state)
            decode = video_state.accept_section(state, plan, result.latents)
            video_state.compact(state)
            if not state.finished:
                self._ahead = self._start_denoise(_Relay())
            began = time.monotonic()
            task = asyncio.ensure_future(call_stage(
                self.session_id, "decoder", lambda: cancelling(self.backend.decoder.decode.remote(decode))
            ))
            self._decoding = (task, began)
            try:
                decoded = await task
            except asyncio.CancelledError:
                if self._current is None:  # not made again: this call itself is cancelled
                    raise
                continue
            finally:
                self._decoding = None
            self._decode_s = time.monotonic() - began
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
        """Start the section being made over with `prompt`: the one being decoded when that pays
        (`worth_redoing`, see `_redo_from`), the one being denoised when at most half done
        (`worth_restarting`), or the speculative next one (dropped at the next call anyway)."""
        if prompt == self._state.prompt or not (self._current or self._ahead or self._decoding):
            return False
        try:
            embeds = await self.backend.encode_prompt(prompt)
        except InputError:  # refused: the session reports it at the next section boundary
            return False
        # From here on nothing awaits: the state is steered only while no planned section of the
        # old prompt can still be accepted.
        boundary = self._redo_from()
        if boundary is not None:
            decoding = self._decoding[0]
            self._cancel_ahead()
            self._state = boundary
            self._steer(prompt, embeds, transition)
            self._current = self._start_denoise(_Relay(*self._callbacks))
            decoding.cancel()
            return True
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

    def _redo_from(self) -> VideoState | None:
        """The boundary to make the section being decoded again from, when dropping it pays
        (`worth_redoing`) and the prompts that boundary blends are still encoded here (an earlier
        steer during the same decode may have let them go); else None."""
        if self._decoding is None:
            return None
        decoding, began = self._decoding
        if decoding.done() or not worth_redoing(time.monotonic() - began, self._decode_s, self._denoise_s):
            return None
        boundary = self._boundaries.latest()
        return boundary if _prompts_used(boundary) <= set(self._embeds) else None

    def _steer(self, prompt: str, embeds: PromptEmbeds, transition: int | None) -> None:
        state = self._state
        video_state.steer(state, prompt, transition)
        self._embeds = {p: e for p, e in self._embeds.items() if p in _prompts_used(state)} | {prompt: embeds}

    async def rewind(self, section: int, prompt: str, transition: int | None = None, branch: int | None = None) -> int:
        """See `SectionSource.rewind`: the state kept for the boundary replaces this one; the
        prompts its blend uses are encoded again where they were dropped meanwhile."""
        embeds = await self.backend.encode_prompt(prompt)  # refuses before anything changes
        self._cancel_ahead()
        self._boundaries.keep(self._state)  # the end of the branch left, to come back to
        try:
            state = self._boundaries.rewind(section, branch)
        except ValueError as exc:
            raise InputError("bad_request", str(exc)) from None
        missing = sorted(_prompts_used(state) - set(self._embeds))
        encoded = await asyncio.gather(*(self.backend.encode_prompt(p) for p in missing))
        self._embeds |= dict(zip(missing, encoded))
        self._state = state
        self._steer(prompt, embeds, transition)
        return self._boundaries.branch

    async def flush(self) -> Section | None:
        self._cancel_ahead()
        section = video_state.flush(self._state)
        if section is not None:
            self._delivered(section)
        return section

    @property
    def state(self) -> VideoState:
        return self._state

    async def close(self) -> None:
        self._cancel_ahead()
        self._boundaries.close()
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
            background=self.backend.background,
        )
        task = asyncio.ensure_future(self._timed_denoise(request, relay))
        return plan, relay, task

    async def _timed_denoise(self, request: DenoiseRequest, relay: _Relay) -> DenoiseResult:
        began = time.monotonic()
        result = await call_stage(self.session_id, "denoiser", lambda: self._stream(request, relay))
        self._denoise_s = time.monotonic() - began
        return result

    async def _stream(self, request: DenoiseRequest, relay: _Relay) -> DenoiseResult:
        stream = self.backend.denoiser.options(stream=True).section.remote(request)
        try:
            async for item in stream:
                if isinstance(item, Progress):
                    relay.on_progress(item.step, item.steps)
                elif isinstance(item, Preview):
                    relay.on_preview(item)
                else:
                    return item
        except asyncio.CancelledError:
            stream.cancel()  # as `cancelling` does for a plain answer
            raise
        raise RuntimeError("the denoiser's stream ended without a result")

    def _delivered(self, section: Section) -> None:
        metrics = self.backend.metrics
        if metrics is not None:
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


async def warm_up(stages: Stages, settings: GenerationSettings) -> None:
    """One section from the built-in start through every stage at `settings` with one step, thrown
    away. A replica's first calls pay for allocations and lazy set-up (a Denoiser's first section
    took 1.25 s here against 0.25-0.45 s after, the first session's first frame 0.9-1.7 s against
    0.4-0.9 s), which the first viewer after a start would otherwise wait for; the Encoder keeps
    the built-in image's encoding for the sessions that start from it."""
    settings = replace(settings, steps=1)
    source = await RayBackend(stages, "warm-up", metrics=None).open("", None, settings)
    try:
        await source.next_section("", lambda step, steps: None, lambda step, steps, frames: None)
        await source.flush()
    finally:
        await source.close()


def _prompts_used(state: video_state.VideoState) -> set[str]:
    """The prompts whose embeddings the state's next sections need: its own, and during a
    transition the ones it blends from."""
    return {state.prompt, *(state.blend_from.prompts if state.blend_from is not None else ())}
