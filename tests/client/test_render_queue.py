"""The page's render queue panel in headless Chromium: the form's video queued as a job, its
progress until done, its MP4 downloaded with its record, a job cancelled, the list kept across a
reload, a finished job removed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from framepack_live.stream.metadata import read_record

pytestmark = pytest.mark.heavy

JOB_TIMEOUT_MS = 120_000


def test_the_render_queue_panel(tiny_server, new_page, console_errors, tmp_path):
    with tiny_server(jobs_dir=tmp_path / "jobs") as url:
        page = new_page()
        page.goto(url + "/")
        expect(page.locator("#status")).to_have_text("Ready. Write a prompt and press Start.")
        expect(page.locator("#jobs-empty")).to_be_visible()
        page.fill("#prompt", "a red ball")
        page.fill("#sections", "2")
        page.fill("#seed", "7")
        page.select_option("#resolution", "64x64")  # small and few steps: two shared cores
        page.fill("#steps", "2")
        page.click("#queue-job")
        jobs = page.locator("#jobs .job")
        expect(jobs).to_have_count(1)
        expect(page.locator("#jobs-empty")).to_be_hidden()
        first = jobs.first
        expect(first.locator(".job-prompt")).to_have_text("a red ball")
        expect(first.locator(".job-state")).to_have_text("Done: 2 sections", timeout=JOB_TIMEOUT_MS)
        with page.expect_download() as download:
            first.get_by_role("button", name="Download").click()
        path = tmp_path / "job.mp4"
        download.value.save_as(path)

        page.fill("#prompt", "a blue sea")
        page.fill("#sections", "40")
        page.click("#queue-job")
        expect(jobs).to_have_count(2)
        newest = jobs.first  # the newest job is listed first
        expect(newest.locator(".job-prompt")).to_have_text("a blue sea")
        newest.get_by_role("button", name="Cancel").click()
        expect(newest.locator(".job-state")).to_contain_text("Cancelled", timeout=JOB_TIMEOUT_MS)

        page.reload()  # the jobs this browser queued, as the server has them now
        expect(jobs).to_have_count(2)
        expect(jobs.nth(1).locator(".job-state")).to_have_text("Done: 2 sections")
        jobs.nth(1).get_by_role("button", name="Remove").click()
        expect(jobs).to_have_count(1)
        expect(jobs.first.locator(".job-prompt")).to_have_text("a blue sea")
        page.click("#until-stopped")
        page.click("#queue-job")
        expect(page.locator("#error")).to_contain_text("A render job needs a length")
    record = read_record(path)
    assert [entry["prompt"] for entry in record.timeline] == ["a red ball", "a red ball"]
    assert (record.settings.seed, record.settings.width, record.settings.steps) == (7, 64, 2)
    assert console_errors == []
