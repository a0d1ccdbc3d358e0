"""The render queue in process: `POST /jobs` to the MP4 with its record, the same checks as a
`start`, cancelling, and the state on disk that a restarted server picks up."""

from __future__ import annotations

import io
import subprocess
import sys

import av
import httpx

from framepack_live.engine.video_state import total_frames
from framepack_live.stream.client import wait_for_job
from framepack_live.stream.jobs import Job, JobStore
from framepack_live.stream.metadata import read_record
from framepack_live.stream.settings import Limits


def _finished(status: dict) -> bool:
    return status["state"] not in ("queued", "running")


async def test_a_job_renders_its_schedule_into_an_mp4_with_its_record(server_factory, tmp_path):
    with server_factory(jobs_dir=tmp_path, limits=Limits(max_jobs_per_client=2)) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            for body, code in (({"prompt": "a ball"}, "bad_request"),  # no length: a job cannot run until stopped
                               ({"prompt": "a ball", "sections": 2, "steps": 500}, "bad_request"),
                               ({"prompt": "a ball", "sections": 2, "schedule": [{"section": 2, "prompt": "x"}]},
                                "bad_request"),
                               ({"prompt": "a ball", "sections": 2, "image": "not base64!"}, "bad_image")):
                refused = await http.post("/jobs", json=body)
                assert (refused.status_code, refused.json()["code"]) == (400, code), body
            made = await http.post("/jobs", json={
                "prompt": "a red ball", "sections": 2, "seed": 5, "schedule": [{"section": 1, "prompt": "a blue ball"}],
            })
            assert made.status_code == 201 and made.json()["state"] in ("queued", "running")
            job = made.json()
            other = (await http.post("/jobs", json={"prompt": "a dog", "sections": 3})).json()
            third = await http.post("/jobs", json={"prompt": "a cat", "sections": 1})
            assert third.status_code == 429 and third.json()["code"] == "busy"  # two unfinished per client
            wrong = await http.get(f"/jobs/{job['id']}", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            cancelled = await http.delete(f"/jobs/{other['id']}", headers={"Authorization": f"Bearer {other['token']}"})
            assert cancelled.json()["state"] == "cancelled"  # queued behind the first: at once

            done = await wait_for_job(http, job, _finished)
            assert (done["state"], done["sections_done"]) == ("done", 2), done
            video = await http.get(done["download"]["url"])
            forged = await http.get(f"/jobs/{job['id']}/video.mp4?expires=9999999999&signature=x")
            deleted = await http.delete(f"/jobs/{job['id']}", headers={"Authorization": f"Bearer {job['token']}"})
            gone = await http.get(f"/jobs/{job['id']}", headers={"Authorization": f"Bearer {job['token']}"})
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert forged.status_code == 401
    record = read_record(io.BytesIO(video.content))
    assert [entry["prompt"] for entry in record.timeline] == ["a red ball", "a blue ball"]
    assert (record.settings.seed, record.settings.sections, record.start.kind) == (5, 2, "default")
    with av.open(io.BytesIO(video.content)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == total_frames(record.settings)
    assert deleted.json()["state"] == "deleted" and gone.status_code == 404
    assert sorted(path.name for path in tmp_path.iterdir()) == [".lock", f"{other['id']}.json"]


def test_a_restarted_queue_finds_its_jobs_and_runs_the_unfinished_again(tmp_path):
    """What a server restart does to the files: a job that was running is queued again from its
    beginning (its partial MP4 dropped), unless it was being cancelled; finished ones stay as they
    were; one process at a time runs them."""
    store = JobStore(tmp_path)
    running = Job(id="a1", token_digest="00", client="c", request={"prompt": "p"}, sections=4, state="running",
                  sections_done=3, created=1.0)
    done = Job(id="b2", token_digest="00", client="c", request={"prompt": "q"}, sections=1, state="done",
               sections_done=1, created=2.0)
    stopping = Job(id="c3", token_digest="00", client="c", request={"prompt": "r"}, sections=4, state="running",
                   sections_done=2, created=3.0, cancelling=True)
    for job in (running, done, stopping):
        store.save(job)
    store.partial("a1").write_bytes(b"half a video")
    (tmp_path / "broken.json").write_text("{")

    restarted = JobStore(tmp_path)
    assert restarted.try_lock() and restarted.try_lock()
    reloaded = {job.id: job for job in restarted.recover()}
    assert (reloaded["a1"].state, reloaded["a1"].sections_done) == ("queued", 0)
    assert reloaded["b2"] == done
    assert (reloaded["c3"].state, reloaded["c3"].sections_done) == ("cancelled", 2)  # cancelled before it stopped
    assert not store.partial("a1").exists()
    assert {job.id: job for job in JobStore(tmp_path).load()} == reloaded
    assert not _lock_in_another_process(tmp_path)


def _lock_in_another_process(directory) -> bool:
    """Whether a second process could take the directory (flock is per open file, so a second
    store in this process would not tell)."""
    code = f"from framepack_live.stream.jobs import JobStore; print(JobStore(__import__('pathlib').Path({str(directory)!r})).try_lock())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"
