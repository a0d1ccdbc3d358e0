"""The page's controls and error handling in headless Chromium, without generating a video."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.heavy

ACCESSIBLE_NAMES = """() => [...document.querySelectorAll("input, select, textarea, button, a")]
  .filter((el) => !el.labels || el.labels.length === 0)
  .filter((el) => !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
  .filter((el) => !el.textContent.trim())
  .map((el) => el.outerHTML)"""


def image_bytes(fmt: str, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, fmt)
    return buffer.getvalue()


def open_page(new_page, server_url: str) -> Page:
    page = new_page()
    page.goto(server_url + "/")
    expect(page.locator("#status")).to_have_text("Ready. Write a prompt and press Start.")
    return page


def test_controls_are_labelled_and_start_idle(server_url, new_page, console_errors):
    page = open_page(new_page, server_url)
    assert page.evaluate(ACCESSIBLE_NAMES) == []
    for label in ("Prompt", "Start image", "Resolution", "Seed", "Steps", "Sections", "Until stopped", "Steer"):
        expect(page.get_by_label(label, exact=True)).to_have_count(1)
    # The built-in start image is shown (and loaded) while none is chosen.
    assert page.eval_on_selector("#image-preview", "img => img.complete && img.naturalWidth") > 0
    expect(page.locator("#image-name")).to_have_text("Built-in default")
    # Nothing to control yet.
    expect(page.locator("#start")).to_be_enabled()
    for control in ("#pause", "#stop", "#steer-prompt", "#steer-send"):
        expect(page.locator(control)).to_be_disabled()
    expect(page.locator("#download")).to_be_disabled()
    expect(page.locator("#transport")).to_have_text("No video yet")

    # Starting without a prompt says so and puts the cursor where it is needed.
    page.click("#start")
    expect(page.locator("#error-text")).to_have_text("Write a prompt first.")
    expect(page.locator("#prompt")).to_be_focused()
    page.click("#error-dismiss")
    expect(page.locator("#error")).to_be_hidden()
    assert console_errors == []


def test_start_image_by_picker_and_by_drop(server_url, new_page, console_errors):
    page = open_page(new_page, server_url)
    preview = page.locator("#image-preview")
    default_src = preview.get_attribute("src")

    page.set_input_files("#image-input", files=[
        {"name": "red.png", "mimeType": "image/png", "buffer": image_bytes("PNG", (200, 30, 30))},
    ])
    expect(page.locator("#image-name")).to_have_text("red.png")
    expect(preview).to_have_attribute("src", "data:image/png;base64," + base64.b64encode(
        image_bytes("PNG", (200, 30, 30))).decode())
    page.click("#image-reset")
    expect(preview).to_have_attribute("src", default_src)
    expect(page.locator("#image-reset")).to_be_hidden()

    # Drag and drop: a synthetic drop carrying a JPEG file.
    jpeg = base64.b64encode(image_bytes("JPEG", (30, 30, 200))).decode()
    page.evaluate(
        """(jpeg) => {
          const bytes = Uint8Array.from(atob(jpeg), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], "blue.jpg", { type: "image/jpeg" }));
          const zone = document.getElementById("dropzone");
          zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
          zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        jpeg,
    )
    expect(page.locator("#image-name")).to_have_text("blue.jpg")
    expect(preview).to_have_attribute("src", "data:image/jpeg;base64," + jpeg)

    # A format the server does not read (WebP) is re-encoded in the page as a JPEG.
    page.set_input_files("#image-input", files=[
        {"name": "green.webp", "mimeType": "image/webp", "buffer": image_bytes("WEBP", (30, 200, 30))},
    ])
    expect(page.locator("#image-name")).to_have_text("green.webp")
    expect(preview).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))

    # A file that is no image is refused in plain words; the last good image stays.
    page.set_input_files("#image-input", files=[
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"},
    ])
    expect(page.locator("#error-text")).to_have_text("That file could not be read as an image.")
    expect(page.locator("#image-name")).to_have_text("green.webp")
    assert console_errors == []


def test_server_errors_in_plain_words(server_url, new_page, console_errors):
    page = open_page(new_page, server_url)

    # The server refuses the start (its prompt limit is 2000 characters): no session.
    page.fill("#prompt", "a very long prompt " * 120)
    page.click("#start")
    expect(page.locator("#error-text")).to_contain_text("That prompt is too long.")
    expect(page.locator("#start")).to_be_enabled()
    expect(page.locator("#status")).to_have_text("Ready. Write a prompt and press Start.")
    assert page.evaluate("localStorage.getItem('framepack-live.session')") is None

    # A saved session the server no longer knows: the page says so and starts afresh.
    page.evaluate(
        """(saved) => {
          localStorage.setItem("framepack-live.session", saved.session);
          localStorage.setItem("framepack-live.timeline", saved.timeline);
        }""",
        {
            "session": json.dumps({"sessionId": "gone", "token": "stale"}),
            "timeline": json.dumps({"sessionId": "gone", "entries": [
                {"section": 0, "prompt": "old", "start": 0, "end": 4, "fps": 30, "thumbnail": None},
            ]}),
        },
    )
    page.reload()
    expect(page.locator("#error-text")).to_contain_text("That session no longer exists")
    expect(page.locator("#status")).to_have_text("Ready. Write a prompt and press Start.")
    expect(page.locator("#timeline .entry")).to_have_count(0)
    expect(page.locator("#download")).to_be_disabled()
    assert page.evaluate("localStorage.getItem('framepack-live.session')") is None
    # A video offer for the stale session would fail with a 404 (a console error) a moment
    # after the page gave up on it; give it that moment.
    page.wait_for_timeout(1500)
    assert console_errors == []
