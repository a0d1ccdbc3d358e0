"""The `Denoiser` deployment: the DiT, sections of different sessions batched together.

The packed context gives every section of one resolution the same shape, so concurrent sessions
share forward passes: `@serve.batch` collects the sections that arrive within
`batch_wait_timeout_s` (at most `max_batch_size`), they are grouped by `DenoiseRequest.batch_key`
and each group runs as one batch. Callers stream the result: `Progress` items per sampler step
(the session shows them), `Preview` items at the steps the request's settings ask for (a cheap
RGB preview of the section so far, engine.preview), then the `DenoiseResult`. A caller that gives
its request up (a steer dropped the section) has Serve cancel it; a batch whose every caller did
so stops at its next module (`engine.interrupt`), so the next request does not wait behind it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ray import serve

from framepack_live.engine.interrupt import Interrupted

from .batch import denoise_batch
from .config import ClusterConfig
from .logs import log
from .metrics import DenoiserMetrics
from .replica import ModelThread, load_model
from .sequence_parallel import SequenceParallelGroup
from .work import DenoiseRequest, DenoiseResult, Preview, Progress


@dataclass
class _Job:
    """A request in this replica, and whether its caller still waits for it."""

    request: DenoiseRequest
    abandoned: threading.Event = field(default_factory=threading.Event)


@serve.deployment(name="Denoiser", max_ongoing_requests=16, health_check_period_s=5)
class Denoiser:
    def __init__(self, config: ClusterConfig) -> None:
        self.group = SequenceParallelGroup(config) if config.sequence_parallel > 1 else None
        self.model = self.group.model if self.group is not None else load_model(config, ("transformer",))
        # One thread: the model runs one batch at a time; the event loop stays free to collect the next.
        self._model_thread = ModelThread("denoise")
        self._batched.set_max_batch_size(config.max_batch_size)
        self._batched.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        self.metrics = DenoiserMetrics()
        self._in_queue = 0

    async def section(self, request: DenoiseRequest) -> AsyncIterator[Progress | Preview | DenoiseResult]:
        """Denoise one section; call with `handle.options(stream=True)`."""
        self._in_queue += 1
        self.metrics.queue_depth.set(self._in_queue)
        job = _Job(request)
        try:
            async for item in self._batched(job):
                if item is not None:
                    yield item
        except asyncio.CancelledError:
            job.abandoned.set()
            raise
        finally:
            self._in_queue -= 1
            self.metrics.queue_depth.set(self._in_queue)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.02)
    async def _batched(self, jobs: list[_Job]) -> AsyncIterator[list]:
        """Yields one list per event, an entry per caller: `Progress`, the result, None (nothing for
        this caller yet) or StopIteration (its stream is over: Serve's batch protocol)."""
        done = [False] * len(jobs)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            groups[job.request.batch_key()].append(i)
        for members in groups.values():
            async for event in self._run_group([jobs[i] for i in members]):
                out = [StopIteration if d else None for d in done]
                for i, item in zip(members, event):
                    out[i] = item
                yield out
            for i in members:
                done[i] = True

    async def _run_group(self, jobs: list[_Job]) -> AsyncIterator[list]:
        """Run one batch in the worker thread, relaying its progress as it happens."""
        requests = [job.request for job in jobs]
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def progress(step: int, steps: int) -> None:
            loop.call_soon_threadsafe(events.put_nowait, [Progress(step, steps)] * len(requests))

        def preview(step: int, steps: int, frames: list) -> None:
            event = [None if f is None else Preview(step, steps, f) for f in frames]
            loop.call_soon_threadsafe(events.put_nowait, event)

        def abandoned() -> bool:
            return all(job.abandoned.is_set() for job in jobs)

        started = time.perf_counter()
        if self.group is not None:  # its ranks meet in collectives: none may stop alone
            future = self._model_thread.submit(self.group.denoise, requests, progress, preview)
        else:
            future = self._model_thread.submit(denoise_batch, self.model, requests, progress, preview, abandoned)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(events.put_nowait, None))
        while (event := await events.get()) is not None:
            yield event
        try:
            results: list[DenoiseResult] = future.result()
        except Interrupted:
            log.info("dropped %d section(s) their sessions gave up", len(requests),
                     extra={"session_ids": [r.session_id for r in requests]})
            return
        elapsed = time.perf_counter() - started
        self.metrics.batch_size.observe(len(requests))
        self.metrics.section_seconds.observe(elapsed)
        log.info(
            "denoised %d section(s) in %.2f s",
            len(requests),
            elapsed,
            extra={"session_ids": [r.session_id for r in requests], "batch_size": len(requests)},
        )
        yield results

    async def check_health(self) -> None:
        """Async and answered by the ranks' control threads: a running batch never delays it."""
        if self.group is not None:
            await self.group.check()
