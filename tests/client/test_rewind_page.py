"""Rewind from a timeline entry in headless Chromium: the new branch's sections appear, the old
branch stays reachable (shown, watched and downloaded), and no console errors."""

from __future__ import annotations

import av
import pytest
from playwright.sync_api import expect

from .test_live_view import PROMPT, SECTION_TIMEOUT_MS, start_session, wait_for_entry

REWOUND = "the ball turns green"
VISIBLE = "#timeline .entry:not(.pending):not([hidden])"


@pytest.mark.heavy
def test_rewind_from_a_timeline_entry(server_url, new_page, console_errors, tmp_path):
    page = new_page()
    page.goto(server_url + "/?transport=ws")
    start_session(page)
    wait_for_entry(page, "Number(e.dataset.section) >= 1")

    # "Rewind here" on section 2 with the steer box's prompt: a second branch, live, whose
    # section 2 is made again with that prompt, after branch 1's section 1.
    page.fill("#steer-prompt", REWOUND)
    page.locator("#timeline .entry[data-section='1'] button.rewind").click()
    expect(page.locator("#steer-hint")).to_contain_text(REWOUND)
    expect(page.locator("#branches button")).to_have_count(2, timeout=SECTION_TIMEOUT_MS)
    expect(page.locator("#branches button[aria-pressed='true']")).to_contain_text("Branch 2")
    wait_for_entry(page, "e.dataset.branch === '1' && !e.hidden")
    new_path = page.eval_on_selector_all(VISIBLE, "items => items.map(e => [e.dataset.branch, e.dataset.section, e.querySelector('.entry-prompt').textContent])")
    assert new_path[:2] == [["0", "0", PROMPT], ["1", "1", REWOUND]]

    page.click("#stop")
    expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)
    expect(page.locator("#timeline button.rewind").first).to_be_disabled()

    # The old branch is still there: its own sections, watched and downloaded.
    page.locator("#branches button", has_text="Branch 1").click()
    old_path = page.eval_on_selector_all(VISIBLE, "items => items.map(e => [e.dataset.branch, e.dataset.section])")
    assert old_path[:2] == [["0", "0"], ["0", "1"]] and {b for b, _ in old_path} == {"0"}
    page.click("#branch-watch")
    player = page.locator("#branch-player")
    expect(player).to_be_visible()
    assert "branch=0" in player.get_attribute("src")
    page.wait_for_function("document.querySelector('#branch-player').readyState >= 1", timeout=30_000)
    with page.expect_download() as download:
        page.click("#download")
    assert "branch=0" in download.value.url
    path = tmp_path / "branch.mp4"
    download.value.save_as(path)
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == page.eval_on_selector_all(VISIBLE, "items => Math.max(...items.map(e => Number(e.dataset.end)))")

    assert console_errors == []
