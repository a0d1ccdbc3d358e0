"""The page while a first start downloads the model, in headless Chromium: `/healthz` is routed to
canned answers (this tests the page; tests/cluster/test_model_download.py tests the server's)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.heavy

DOWNLOADING = {"name": "framepack-f1", "state": "downloading", "total_bytes": 40_200_000_000,
               "done_bytes": 3_100_000_000, "bytes_per_second": 85_000_000, "seconds_left": 438, "error": None,
               "stages": {}}


def test_start_waits_for_the_download_with_its_figures_and_the_warm_up_then_the_normal_page(server_url, new_page, console_errors):
    answers = {"model": DOWNLOADING}

    def healthz(route):
        route.fulfill(content_type="application/json", body=json.dumps({"status": "ok", "sessions": 0, **answers}))

    page = new_page()
    page.route("**/healthz", healthz)
    page.goto(server_url + "/")
    expect(page.locator("#status")).to_have_text(
        "Downloading framepack-f1: 3.1 of 40.2 GB, 85.0 MB/s, about 7 min left")
    expect(page.locator("#start")).to_be_disabled()
    loaded = {**DOWNLOADING, "done_bytes": DOWNLOADING["total_bytes"], "bytes_per_second": None, "seconds_left": 0}
    answers["model"] = {**loaded, "state": "warming"}
    expect(page.locator("#status")).to_have_text("Warming up framepack-f1…", timeout=10_000)
    expect(page.locator("#start")).to_be_disabled()
    answers["model"] = {**loaded, "state": "ready"}
    expect(page.locator("#status")).to_have_text("Ready. Write a prompt and press Start.", timeout=10_000)
    expect(page.locator("#start")).to_be_enabled()
    assert console_errors == []
