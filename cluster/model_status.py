"""How far the stages' replicas are in getting their model, for `/healthz`, the page and the
terminal of `framepack-live serve`.

A real model's first start downloads about 40 GB in the stage replicas' constructors, and Serve
says nothing but "DEPLOYING" meanwhile. So each stage replica reports its `DownloadProgress`
(checking, downloading with bytes, rate and time left, then loading, ready, or failed with
`ModelUnavailable`'s line) to the `SessionRegistry` from a thread of its own while its
constructor loads, and every few seconds after (a heartbeat, so a replica that died is
forgotten). Serve's HTTP proxy routes to the Ingress as soon as its replica runs, before the
stages are up, so its `/healthz` can show the summary (`ModelBoard.summary`) all along.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

from framepack_live.engine.download import DownloadProgress
from framepack_live.engine.errors import InputError

from .logs import log

#: The registry's deployment name, which the stage replicas report to.
REGISTRY = "SessionRegistry"
#: Seconds between a replica's reports while it loads, and after (its heartbeat).
REPORT_EVERY_S = 1.0
HEARTBEAT_S = 10.0
#: A replica not heard of for this long is gone (Serve replaced it, or the application went).
FORGET_AFTER_S = 3.5 * HEARTBEAT_S
#: From furthest behind to ready, for the stage's slowest replica; `starting`: none reported yet.
STATES = ("failed", "starting", "checking", "downloading", "loading", "ready")
#: What a replica's `DownloadProgress` state means for its model: after `done` it still loads.
FROM_DOWNLOAD = {"idle": "loading", "checking": "checking", "downloading": "downloading", "done": "loading",
                 "failed": "failed"}


@dataclass
class ReplicaReport:
    """One replica's model, as it last said."""

    stage: str
    replica: str
    model: str
    state: str
    total_bytes: int = 0
    done_bytes: int = 0
    bytes_per_second: float | None = None
    seconds_left: float | None = None
    error: str | None = None

    def behind(self) -> tuple[int, float]:
        """Sorts replicas from the one a stage waits for longest to the readiest."""
        fraction = self.done_bytes / self.total_bytes if self.total_bytes else 0.0
        return STATES.index(self.state), fraction


def report_of(stage: str, replica: str, model: str, progress: DownloadProgress, state: str | None = None,
              error: str | None = None) -> ReplicaReport:
    status = progress.status()
    return ReplicaReport(
        stage=stage, replica=replica, model=model, state=state or FROM_DOWNLOAD[status.state],
        total_bytes=status.total_bytes, done_bytes=status.done_bytes, bytes_per_second=status.bytes_per_second,
        seconds_left=status.seconds_left, error=error or status.error,
    )


class ModelBoard:
    """The registry's record of the replicas' reports, and their summary for `/healthz`."""

    def __init__(self, model: str, stages: tuple[str, ...]) -> None:
        self.model = model
        self.stages = stages
        self._reports: dict[str, tuple[float, ReplicaReport]] = {}

    def report(self, report: ReplicaReport, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if report.state != "failed":
            # A replica of the stage that works again replaces the ones that failed before it.
            for replica, (_, old) in list(self._reports.items()):
                if old.stage == report.stage and old.state == "failed":
                    del self._reports[replica]
        self._reports[report.replica] = (now, report)

    def summary(self, now: float | None = None, warm: bool = True) -> dict:
        """The model's state over all stages (the worst that matters: `failed` first, then a
        download still running), its bytes and rate summed over the stages, its time left the
        longest of theirs; and per stage the figures of the replica it waits for longest. Loaded
        everywhere but not `warm` (the registry's first section through the stages and its spare
        session actors still to come): `warming`.

        A file two stages load (the VAE: Encoder and Decoder) counts in both: each stage's
        replicas fetch it into the cache of their own node."""
        now = time.monotonic() if now is None else now
        self._reports = {replica: (at, r) for replica, (at, r) in self._reports.items()
                         if r.state == "failed" or now - at < FORGET_AFTER_S}
        stages = {}
        for stage in self.stages:
            replicas = [r for _, r in self._reports.values() if r.stage == stage]
            if not replicas:
                stages[stage] = {"state": "starting", "replicas": 0, "total_bytes": 0, "done_bytes": 0,
                                 "bytes_per_second": None, "seconds_left": None, "error": None}
                continue
            slowest = asdict(min(replicas, key=ReplicaReport.behind))
            stages[stage] = {"replicas": len(replicas),
                             **{k: v for k, v in slowest.items() if k not in ("stage", "replica", "model")}}
        states = {s["state"] for s in stages.values()}
        state = next(s for s in ("failed", "downloading", "checking", "starting", "loading", "ready") if s in states)
        if state == "ready" and not warm:  # loaded everywhere, not yet through a first section
            state = "warming"
        rates = [s["bytes_per_second"] for s in stages.values() if s["bytes_per_second"] is not None]
        lefts = [s["seconds_left"] for s in stages.values() if s["seconds_left"] is not None]
        return {
            "name": self.model,
            "state": state,
            "total_bytes": sum(s["total_bytes"] for s in stages.values()),
            "done_bytes": sum(s["done_bytes"] for s in stages.values()),
            "bytes_per_second": sum(rates) if rates else None,
            "seconds_left": max(lefts) if lefts else None,
            "error": next((s["error"] for s in stages.values() if s["state"] == "failed"), None),
            "stages": stages,
        }


class Reporter:
    """A stage replica's thread that sends its model's state to the registry: every
    `REPORT_EVERY_S` while loading, every `HEARTBEAT_S` once ready (or failed)."""

    def __init__(self, registry, stage: str, replica: str, model: str, progress: DownloadProgress) -> None:
        self._registry = registry
        self._stage, self._replica, self._model, self._progress = stage, replica, model, progress
        self._final: tuple[str, str | None] | None = None
        self._changed, self._final_sent = threading.Event(), threading.Event()
        self._warned = False
        threading.Thread(target=self._run, name=f"model-status-{stage}", daemon=True).start()

    def finish(self, state: str, error: str | None = None) -> None:
        """`ready`, or `failed` with the line people should read; a failure is sent before this
        returns (a replica whose constructor raises is gone soon after)."""
        self._final = (state, error)
        self._changed.set()
        if state == "failed":
            self._final_sent.wait(HEARTBEAT_S)

    def _run(self) -> None:
        while True:
            final = self._final
            state, error = final if final else (None, None)
            self._send(report_of(self._stage, self._replica, self._model, self._progress, state, error))
            if final:
                self._final_sent.set()
            if self._changed.wait(HEARTBEAT_S if final else REPORT_EVERY_S):
                self._changed.clear()

    def _send(self, report: ReplicaReport) -> None:
        try:
            self._registry.report_model.remote(report).result(timeout_s=HEARTBEAT_S)
        except Exception as exc:  # the registry restarting: the next report tells it again
            if not self._warned:
                log.warning("reporting the model's state to the registry failed (%s); retrying", exc)
                self._warned = True


@contextmanager
def reported(model: str, progress: DownloadProgress) -> Iterator[None]:
    """Report `progress` to the registry while the block loads the model, then `ready`, or
    `failed` with the error's line (re-raised). Outside a Serve replica (a sequence-parallel
    rank, a test), or in an application without a registry (a stage deployed alone), nothing is
    reported."""
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        context = serve.get_replica_context()
        registry = serve.get_deployment_handle(REGISTRY, context.app_name)
    except (RayServeException, KeyError):
        yield
        return
    reporter = Reporter(registry, context.deployment, context.replica_tag, model, progress)
    try:
        yield
    except Exception as exc:
        reporter.finish("failed", exc.message if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}")
        raise
    reporter.finish("ready")


def describe(summary: dict) -> str:
    """One line for people: "downloading framepack-f1: 3.1 of 40.2 GB, 85 MB/s, about 8 min left"
    (the page words it the same way, client/js/model-status.js)."""
    name, state = summary["name"], summary["state"]
    if state == "failed":
        return f"{name} failed to load: {summary['error']}"
    if state == "downloading":
        total = size(summary["total_bytes"])
        unit = total.split()[1]
        line = f"downloading {name}: {size(summary['done_bytes'], unit).split()[0]} of {total}"
        if summary["bytes_per_second"]:
            line += f", {size(summary['bytes_per_second'])}/s"
        if summary["seconds_left"] is not None:
            line += f", about {duration(summary['seconds_left'])} left"
        return line
    return {"starting": f"starting the stages of {name}", "checking": f"checking the hub for {name}",
            "loading": f"loading {name}", "warming": f"warming up {name}", "ready": f"{name} is ready"}[state]


UNITS = {"GB": 1e9, "MB": 1e6, "kB": 1e3, "B": 1}


def size(count: float, unit: str | None = None) -> str:
    """Bytes in decimal units (as the hub and download tools show them): `unit`, else the largest
    that keeps the figure at least 1; one decimal below 100 of it."""
    unit = unit or next((u for u, scale in UNITS.items() if count >= scale), "B")
    value = count / UNITS[unit]
    return f"{value:.1f} {unit}" if value < 100 and unit != "B" else f"{value:.0f} {unit}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min"
