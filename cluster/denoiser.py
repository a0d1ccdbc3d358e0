"""The `Denoiser` deployment: the DiT, sections of different sessions batched together.

The packed context gives every section of one resolution the same shape, so concurrent sessions
share forward passes: `@serve.batch` collects the sections that arrive within
`batch_wait_timeout_s` (at most `max_batch_size`), they are grouped by `DenoiseRequest.batch_key`
and each group runs as one batch. Callers stream the result: `Progress` items per sampler step
(the session shows them), `Preview` items at the steps the request's settings ask for (a cheap
RGB preview of the section so far, engine.preview), then the `DenoiseResult`.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator

from ray import serve

from .batch import denoise_batch
from .config import ClusterConfig
from .logs import log
from .metrics import DenoiserMetrics
from .replica import ModelThread, load_model
from .sequence_parallel import SequenceParallelGroup
from .work import DenoiseRequest, DenoiseResult, Preview, Progress


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
        try:
            async for item in self._batched(request):
                if item is not None:
                    yield item
        finally:
            self._in_queue -= 1
            self.metrics.queue_depth.set(self._in_queue)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.02)
    async def _batched(self, requests: list[DenoiseRequest]) -> AsyncIterator[list]:
        """Yields one list per event, an entry per caller: `Progress`, the result, None (nothing for
        this caller yet) or StopIteration (its stream is over: Serve's batch protocol)."""
        done = [False] * len(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            groups[request.batch_key()].append(i)
        for members in groups.values():
            async for event in self._run_group([requests[i] for i in members]):
                out = [StopIteration if d else None for d in done]
                for i, item in zip(members, event):
                    out[i] = item
                yield out
            for i in members:
                done[i] = True

    async def _run_group(self, requests: list[DenoiseRequest]) -> AsyncIterator[list]:
        """Run one batch in the worker thread, relaying its progress as it happens."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def progress(step: int, steps: int) -> None:
            loop.call_soon_threadsafe(events.put_nowait, [Progress(step, steps)] * len(requests))

        def preview(step: int, steps: int, frames: list) -> None:
            event = [None if f is None else Preview(step, steps, f) for f in frames]
            loop.call_soon_threadsafe(events.put_nowait, event)

        started = time.perf_counter()
        run = self.group.denoise if self.group is not None else self._denoise_local
        future = self._model_thread.submit(run, requests, progress, preview)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(events.put_nowait, None))
        while (event := await events.get()) is not None:
            yield event
        results: list[DenoiseResult] = future.result()
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

    def _denoise_local(self, requests: list[DenoiseRequest], progress, preview) -> list[DenoiseResult]:
        return denoise_batch(self.model, requests, progress, preview)

    async def check_health(self) -> None:
        """Async and answered by the ranks' control threads: a running batch never delays it."""
        if self.group is not None:
            await self.group.check()
