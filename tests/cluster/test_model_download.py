"""A hub model's first start on local Ray: while the stage replicas download it from a (local,
slow) hub, `/healthz` says `downloading` with bytes, rate and time left, and the terminal of
`framepack-live serve` shows the same; then `ready`. And the summary's rules, without Ray."""

from __future__ import annotations

import io
import threading
import time

import httpx
import pytest

from framepack_live.cluster.model_status import ModelBoard, ReplicaReport, describe
from framepack_live.engine.presets import ensure_tiny

APP = "framepack-live"
STAGES = ("Encoder", "Denoiser", "Decoder")


def test_the_summary_waits_for_the_slowest_replica_and_shows_a_failure_first():
    board = ModelBoard("framepack-f1", STAGES)
    assert board.summary()["state"] == "starting"
    board.report(ReplicaReport("Encoder", "e1", "framepack-f1", "downloading", 16_000, 4_000, 1_000.0, 12.0), now=0)
    board.report(ReplicaReport("Denoiser", "d1", "framepack-f1", "downloading", 26_000, 2_000, 2_000.0, 12.5), now=0)
    board.report(ReplicaReport("Denoiser", "d2", "framepack-f1", "loading", 26_000, 26_000), now=0)
    board.report(ReplicaReport("Decoder", "c1", "framepack-f1", "ready", 500, 500), now=0)
    summary = board.summary(now=1)
    assert summary["state"] == "downloading"
    assert summary["stages"]["Denoiser"] == {"replicas": 2, "state": "downloading", "total_bytes": 26_000,
                                                  "done_bytes": 2_000, "bytes_per_second": 2_000.0,
                                                  "seconds_left": 12.5, "error": None}
    assert (summary["total_bytes"], summary["done_bytes"]) == (42_500, 6_500)
    assert (summary["bytes_per_second"], summary["seconds_left"]) == (3_000.0, 12.5)
    assert describe(summary) == "downloading framepack-f1: 6.5 of 42.5 kB, 3.0 kB/s, about 12 s left"

    line = "model framepack-f1 is not in the local cache and the hub is offline (HF_HUB_OFFLINE): ..."
    board.report(ReplicaReport("Encoder", "e1", "framepack-f1", "failed", error=line), now=2)
    failed = board.summary(now=100)  # a failed replica stays shown after its heartbeats stop
    assert (failed["state"], failed["error"]) == ("failed", line)
    assert failed["stages"]["Denoiser"]["state"] == "starting"  # its replicas are forgotten
    board.report(ReplicaReport("Encoder", "e2", "framepack-f1", "checking"), now=101)
    assert board.summary(now=101)["stages"]["Encoder"]["state"] == "checking"  # a new try replaces it


def test_a_model_loaded_everywhere_is_warming_until_the_registry_is_warm():
    board = ModelBoard("toyworld-fast", STAGES)
    for stage in STAGES:
        board.report(ReplicaReport(stage, stage.lower(), "toyworld-fast", "ready", 500, 500), now=0)
    assert board.summary(now=1, warm=False)["state"] == "warming"
    assert describe(board.summary(now=1, warm=False)) == "warming up toyworld-fast"
    assert board.summary(now=1, warm=True)["state"] == "ready"
    board.report(ReplicaReport("Decoder", "c2", "toyworld-fast", "loading", 500, 500), now=1)
    assert board.summary(now=1, warm=False)["state"] == "loading"  # warming only once loaded everywhere


@pytest.mark.heavy
def test_healthz_shows_the_download_while_the_stages_fetch_the_model_then_ready(
        ray_cluster, server_for, generation, local_hub, tmp_path):
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    from framepack_live.cluster.serve import deploy_schema

    tiny = ensure_tiny()
    files = {str(path.relative_to(tiny)): path.read_bytes() for path in tiny.rglob("*") if path.is_file()}
    total = sum(len(data) for data in files.values())
    hub = local_hub(files, bytes_per_second=total / 20)  # each stage's share takes seconds, even late
    schema = ServeDeploySchema.model_validate({"applications": [{
        "name": APP,
        "route_prefix": "/",
        "import_path": "framepack_live.cluster.app:build_app",
        "args": {"model": "owner/tiny", "generation": generation},
        # As an operator points a cluster at a mirror and a cache: the replicas' environment.
        "runtime_env": {"env_vars": {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}},
    }]})
    terminal = io.StringIO()
    deploying = threading.Thread(target=deploy_schema, args=(schema, terminal), daemon=True)
    deploying.start()
    seen = []
    try:
        with httpx.Client(base_url=server_for().url, timeout=10) as http:
            began = time.monotonic()
            while deploying.is_alive() and time.monotonic() - began < 300:
                try:
                    answer = http.get("/healthz")
                except httpx.TransportError:  # the proxy or the Ingress not up yet
                    answer = None
                if answer is not None and answer.status_code == 200:
                    seen.append(answer.json()["model"])
                time.sleep(0.3)
            deploying.join(timeout=1)
            assert not deploying.is_alive()
            for _ in range(50):  # the last replica's `ready` may come just after Serve says RUNNING
                final = http.get("/healthz").json()["model"]
                if final["state"] == "ready":
                    break
                time.sleep(0.2)
    finally:
        serve.delete(APP)
    downloading = [m for m in seen if m["state"] == "downloading" and 0 < m["done_bytes"] < m["total_bytes"]]
    assert downloading, [m["state"] for m in seen]
    moving = [m for m in downloading if m["bytes_per_second"]]
    assert moving and all(m["seconds_left"] >= 0 and m["name"] == "owner/tiny" for m in moving)
    assert final["state"] == "ready" and final["done_bytes"] == final["total_bytes"] > 0
    assert {stage: s["state"] for stage, s in final["stages"].items()} == dict.fromkeys(STAGES, "ready")
    # Each stage fetched only its own parts: the Denoiser not the encoders, the Decoder only the VAE.
    stages = final["stages"]
    assert stages["Decoder"]["total_bytes"] < stages["Encoder"]["total_bytes"] < total
    assert stages["Denoiser"]["total_bytes"] < total
    assert "downloading owner/tiny: " in terminal.getvalue()
    assert not [path for path in hub.missed if "/resolve/" in path]  # (the hub library asks other things too)
