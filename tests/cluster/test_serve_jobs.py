"""The render queue on local Ray: a job made on the stages the sessions use, its MP4 with its record
behind a signed link, a running job cancelled at a section boundary, and a job whose `RenderQueue`
replica was SIGKILLed picked up by the replica Serve starts in its place, from the jobs directory.
(A restart of the whole application reads the directory the same way: tests/stream/test_jobs.py.)"""

from __future__ import annotations

import io
import os
import signal

import av
import httpx
import pytest

from framepack_live.cluster.config import ClusterConfig
from framepack_live.engine.video_state import total_frames
from framepack_live.stream.client import wait_for_job
from framepack_live.stream.metadata import read_record

from .conftest import replica

pytestmark = pytest.mark.heavy


def _auth(job: dict) -> dict:
    return {"Authorization": f"Bearer {job['token']}"}


def _finished(status: dict) -> bool:
    return status["state"] not in ("queued", "running")


async def test_jobs_run_on_the_stages_are_cancelled_and_survive_their_replica(ray_cluster, deploy, generation, tmp_path):
    config = ClusterConfig(generation=generation, jobs_dir=str(tmp_path), spare_sessions=0)
    with deploy(config) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            made = await http.post("/jobs", json={
                "prompt": "a red ball", "sections": 2, "seed": 4, "schedule": [{"section": 1, "prompt": "a dog runs"}],
            })
            assert made.status_code == 201, made.text
            first = made.json()
            long = (await http.post("/jobs", json={"prompt": "a blue sea", "sections": 30})).json()
            seen = await wait_for_job(http, first, lambda s: s["sections_done"] >= 1 or _finished(s))
            assert seen["state"] == "running" and seen["sections"] == 2, seen
            done = await wait_for_job(http, first, _finished)
            assert done["state"] == "done", done
            video = await http.get(done["download"]["url"])

            await wait_for_job(http, long, lambda s: s["sections_done"] >= 1)
            cancelling = await http.delete(f"/jobs/{long['id']}", headers=_auth(long))
            assert cancelling.json()["cancelling"] is True
            cancelled = await wait_for_job(http, long, _finished)
            interrupted = (await http.post("/jobs", json={"prompt": "a red ball", "sections": 2, "seed": 4})).json()
            await wait_for_job(http, interrupted, lambda s: s["state"] == "running")
            os.kill(replica(ray_cluster, "RenderQueue")["pid"], signal.SIGKILL)
            resumed = await wait_for_job(http, interrupted, _finished)
            again = await http.get(f"/jobs/{first['id']}", headers=_auth(first))
            redone = await http.get(resumed["download"]["url"])
    assert video.status_code == 200
    record = read_record(io.BytesIO(video.content))
    assert [entry["prompt"] for entry in record.timeline] == ["a red ball", "a dog runs"]
    assert (record.settings.seed, record.settings.width, record.model) == (4, generation["width"], "toyworld-fast")
    with av.open(io.BytesIO(video.content)) as container:
        assert sum(1 for _ in container.decode(video=0)) == total_frames(record.settings)
    assert cancelled["state"] == "cancelled" and 1 <= cancelled["sections_done"] < 30, cancelled
    assert resumed["state"] == "done", resumed
    assert again.json()["state"] == "done" and again.json()["download"]["url"]
    # Made again from its beginning: the same settings and seed as the first job's first section.
    assert read_record(io.BytesIO(redone.content)).timeline == [
        {"section": 0, "prompt": "a red ball", "branch": 0}, {"section": 1, "prompt": "a red ball", "branch": 0}]
