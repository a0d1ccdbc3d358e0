"""Render jobs: videos made on the server's stages while nobody watches them live.

    queued ──► running ──► done
       │          │  └───► failed
       └──────────┴──────► cancelled      (a running job stops at its next section boundary)

A job is a `JobRequest` (what a `start` takes, a length in sections, and prompts scheduled for
later sections). `JobQueue` runs one job at a time as the same section loop a session runs, over
the same `SectionBackend` (the cluster's marks its stage requests as background work, which the
Denoiser serves after live sessions' sections: docs/jobs.md), writing each section into an MP4
that carries the video's record (`stream.metadata`) from the start, since a job's timeline is
known before it begins.

Every change of a job's state is written to `jobs_dir/<id>.json` at once, so a server that
restarts finds every job again: the finished ones with their MP4s, and the unfinished ones, which
start again from their beginning (a job's engine state lives in the backend's process and is not
kept; with the same seed the video comes out the same). One process at a time runs a directory's
jobs (a lock file): a replica that replaces another waits for the old one to let go.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from framepack_live.engine.errors import InputError
from framepack_live.engine.images import decode_image
from framepack_live.engine.settings import GenerationSettings

from . import fmp4
from .admission import generation_settings
from .backend import SectionBackend
from .metadata import VideoRecord, software_versions
from .mp4 import Mp4Writer
from .protocol import JobRequest, image_bytes
from .session import made_from, token_hash
from .settings import StreamSettings

log = logging.getLogger(__name__)

#: How often a queue whose directory another process holds tries again (`JobStore.try_lock`).
LOCK_RETRY_S = 1.0
#: States in which a job still has work to do (and counts against the caps).
UNFINISHED = ("queued", "running")


@dataclass
class Job:
    """A job as `jobs_dir/<id>.json` keeps it."""

    id: str
    #: SHA-256 of the job's token (hex): whoever holds the token may read, cancel and download it.
    token_digest: str
    client: str
    #: The `JobRequest` as JSON, its API key removed.
    request: dict
    sections: int
    state: str = "queued"
    sections_done: int = 0
    created: float = field(default_factory=time.time)
    #: `{"code", "message"}` of a failed job.
    error: dict | None = None
    #: Cancelled while running: it ends at its next section boundary (or at the restart, if one
    #: comes first).
    cancelling: bool = False

    @property
    def unfinished(self) -> bool:
        return self.state in UNFINISHED


class JobStore:
    """The jobs' files: a JSON file per job and its MP4. Blocking file I/O, small files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = None

    def save(self, job: Job) -> None:
        """Written to a temporary file and renamed over the old one, so a crash mid-write leaves
        the previous state, never half a file."""
        path = self._path(job.id)
        partial = path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(asdict(job)))
        os.replace(partial, path)

    def load(self) -> list[Job]:
        """Every job on disk, oldest first; a file that cannot be read is skipped and logged."""
        jobs = []
        for path in self.directory.glob("*.json"):
            try:
                jobs.append(Job(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as exc:
                log.error("skipping the unreadable job file %s: %s", path, exc)
        return sorted(jobs, key=lambda job: job.created)

    def recover(self) -> list[Job]:
        """Every job, after a server stopped: one that was running is queued again, from its
        beginning (its half-written MP4 dropped)."""
        jobs = self.load()
        for job in jobs:
            if job.state == "running":
                job.state, job.sections_done = ("cancelled", job.sections_done) if job.cancelling else ("queued", 0)
                job.cancelling = False
                self.save(job)
                self.partial(job.id).unlink(missing_ok=True)
        return jobs

    def try_lock(self) -> bool:
        """Take the directory for this process, if no other process (an old replica still shutting
        down, a second server on the same directory) has it: only one may run its jobs. Held
        until `unlock` or the process's end."""
        if self._lock is None:
            self._lock = open(self.directory / ".lock", "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def result(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.mp4"

    def partial(self, job_id: str) -> Path:
        """Where a running job's MP4 is written; renamed to `result` when the job is done."""
        return self.directory / f"{job_id}.part.mp4"

    def delete(self, job_id: str) -> None:
        for path in (self._path(job_id), self.result(job_id), self.partial(job_id)):
            path.unlink(missing_ok=True)

    def _path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.json"


class JobQueue:
    """Accepts, runs, reports and cancels render jobs; lives on one event loop. The web side's
    `JobDirectory` in this process; the cluster runs one as its `RenderQueue` deployment."""

    def __init__(self, backend_for: Callable[[str], SectionBackend], settings: StreamSettings) -> None:
        #: The backend a job's sections are made with, by job id (the cluster's names it in logs).
        self._backend_for = backend_for
        self.settings = settings
        self._store = JobStore(settings.jobs_dir)
        #: As on disk when made (to answer at once); taken over from disk when the worker starts.
        self._jobs: dict[str, Job] = {job.id: job for job in self._store.load()}
        #: The running job's step in its current section.
        self._step: tuple[int, int] | None = None
        self._wake = asyncio.Event()
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        """Run the queue (the jobs found on disk first) on the current event loop; idempotent."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="render-jobs")
            self._wake.set()

    async def submit(self, client: str, request: JobRequest) -> tuple[dict, str]:
        """Queue `request` for `client`: the job's status and its secret token. Checked as a `start`
        is (settings, LoRAs, image) before it is queued, so a job that is accepted can run."""
        generation_settings(self.settings, request)
        if request.image is not None:
            data = image_bytes(request.image)
            await asyncio.to_thread(decode_image, data, self.settings.limits.max_image_pixels)
        limits = self.settings.limits
        waiting = [job for job in self._jobs.values() if job.unfinished]
        if len(waiting) >= limits.max_jobs_total:
            raise InputError("busy", "the render queue is full; try again later")
        if sum(job.client == client for job in waiting) >= limits.max_jobs_per_client:
            raise InputError("busy", f"at most {limits.max_jobs_per_client} queued or running jobs per client")
        token = secrets.token_urlsafe(32)
        job = Job(
            id=secrets.token_hex(8),
            token_digest=token_hash(token).hex(),
            client=client,
            request=request.model_dump(mode="json", exclude={"api_key"}),
            sections=request.sections,
        )
        await asyncio.to_thread(self._store.save, job)
        self._jobs[job.id] = job
        self.start()
        self._wake.set()
        log.info("job %s queued (%d sections)", job.id, job.sections)
        return self._status(job), token

    async def status(self, job_id: str, token: str) -> dict:
        return self._status(self._get(job_id, token))

    async def cancel(self, job_id: str, token: str) -> dict:
        """A queued job ends at once, a running one at its next section boundary (its state says
        `running` until then); a finished one is deleted with its MP4 (`not_found` afterwards)."""
        job = self._get(job_id, token)
        if job.state == "queued":
            await self._finish(job, "cancelled")
        elif job.state == "running":
            job.cancelling = True
            await asyncio.to_thread(self._store.save, job)
        else:
            del self._jobs[job.id]
            await asyncio.to_thread(self._store.delete, job.id)
            return {**self._status(job), "state": "deleted"}
        return self._status(job)

    async def result_size(self, job_id: str) -> int:
        """Bytes of a done job's MP4, for a caller that proved its right (a signed link)."""
        job = self._jobs.get(job_id)
        if job is None or job.state != "done":
            raise InputError("not_found", "no such finished job")
        return (await asyncio.to_thread(self._store.result(job_id).stat)).st_size

    async def result_chunk(self, job_id: str, offset: int, size: int) -> bytes:
        """`size` bytes of a done job's MP4 from `offset`: a download reads it a piece at a time."""
        await self.result_size(job_id)

        def read() -> bytes:
            with open(self._store.result(job_id), "rb") as f:
                f.seek(offset)
                return f.read(size)

        return await asyncio.to_thread(read)

    async def close(self) -> None:
        """Stop the worker and let the directory go; a running job stays `running` on disk and
        starts again next time."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._store.unlock()

    def _get(self, job_id: str, token: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise InputError("not_found", "no such job")
        if not secrets.compare_digest(bytes.fromhex(job.token_digest), token_hash(token)):
            raise InputError("unauthorized", "wrong token for this job")
        return job

    def _status(self, job: Job) -> dict:
        running = job.state == "running"
        return {
            "id": job.id,
            "state": job.state,
            "prompt": job.request["prompt"],
            "sections": job.sections,
            "sections_done": job.sections_done,
            "step": self._step if running else None,
            "cancelling": job.cancelling,
            "created": job.created,
            "error": job.error,
        }

    async def _work(self) -> None:
        while not await asyncio.to_thread(self._store.try_lock):
            await asyncio.sleep(LOCK_RETRY_S)
        self._jobs = {job.id: job for job in await asyncio.to_thread(self._store.recover)}
        while True:
            job = next((job for job in self._jobs.values() if job.state == "queued"), None)
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._run(job)
            except asyncio.CancelledError:
                raise
            except InputError as exc:
                await self._finish(job, "failed", {"code": exc.code, "message": exc.message})
            except Exception:
                log.exception("job %s failed", job.id)
                await self._finish(job, "failed", {"code": "internal", "message": "the render failed"})

    async def _run(self, job: Job) -> None:
        request = JobRequest.model_validate(job.request)
        settings = generation_settings(self.settings, request)
        image = None
        if request.image is not None:
            image = await asyncio.to_thread(decode_image, image_bytes(request.image), self.settings.limits.max_image_pixels)
        job.state, job.sections_done = "running", 0
        await asyncio.to_thread(self._store.save, job)
        log.info("job %s running", job.id)
        record = await asyncio.to_thread(self._record, request, settings, image)
        partial = self._store.partial(job.id)
        source = await self._backend_for(job.id).open(request.prompt, image, settings, request.start == "text")
        try:
            writer = await asyncio.to_thread(
                Mp4Writer, str(partial), settings.fps, fmp4.CRF, metadata=record.container_metadata()
            )
            try:
                for index in range(job.sections):
                    if job.cancelling:
                        break
                    self._step = (0, settings.steps)
                    section = await source.next_section(request.prompt_for(index), self._progress)
                    await asyncio.to_thread(writer.write, section.frames)
                    job.sections_done = index + 1
                    await asyncio.to_thread(self._store.save, job)
                else:
                    tail = await source.flush()
                    if tail is not None:
                        await asyncio.to_thread(writer.write, tail.frames)
            finally:
                self._step = None
                await asyncio.to_thread(writer.close)
        finally:
            await source.close()
        if job.cancelling:
            await self._finish(job, "cancelled")
            return
        await asyncio.to_thread(os.replace, partial, self._store.result(job.id))
        await self._finish(job, "done")

    def _progress(self, step: int, steps: int) -> None:
        self._step = (step, steps)  # from any thread: one assignment

    def _record(self, request: JobRequest, settings: GenerationSettings, image) -> VideoRecord:
        """The record the MP4 carries: a job's timeline is its schedule, known before it starts."""
        start, lora_sha256 = made_from(image, request.start == "text", None, settings)
        model = self.settings.model
        return VideoRecord(
            model=model.source if model is not None else None,
            settings=settings,
            timeline=[{"section": i, "prompt": request.prompt_for(i), "branch": 0} for i in range(settings.sections)],
            start=start,
            lora_sha256=lora_sha256,
            runtime={"crf": fmp4.CRF},
            software=software_versions(),
        )

    async def _finish(self, job: Job, state: str, error: dict | None = None) -> None:
        job.state, job.error, job.cancelling = state, error, False
        if state != "done":
            await asyncio.to_thread(self._store.partial(job.id).unlink, missing_ok=True)
        await asyncio.to_thread(self._store.save, job)
        log.info("job %s %s", job.id, state)

