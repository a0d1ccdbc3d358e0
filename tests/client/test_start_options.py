"""The page's start options in headless Chromium: the LoRA chooser (the server's LoRAs offered
with their descriptions, the ticked ones sent with `start` by name and strength, no chooser on a
server that offers none), a start from the prompt alone, and a video to continue."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from framepack_live.engine.lora import list_loras
from framepack_live.stream.model_defaults import model_defaults
from framepack_live.stream.mp4 import Mp4Writer

pytestmark = pytest.mark.heavy

SECTION_TIMEOUT_MS = 120_000


def test_the_chosen_loras_go_with_start(tiny_server, tiny_loras, new_page, console_errors):
    info, _ = model_defaults("tiny")
    with tiny_server(model=dataclasses.replace(info, loras=tuple(list_loras(tiny_loras)))) as url:
        page = new_page()
        sent = []
        page.on("websocket", lambda ws: ws.on(
            "framesent", lambda payload: isinstance(payload, str) and sent.append(json.loads(payload))))
        page.goto(url + "/")
        expect(page.locator("#lora-field")).to_be_visible()
        items = page.locator("#lora-list .lora")
        expect(items).to_have_count(2)
        expect(items.first).to_contain_text("first")
        expect(items.first).to_contain_text("Random weights for tests.")
        strength = page.get_by_label("Strength of second")
        expect(strength).to_be_disabled()  # until its LoRA is ticked
        page.get_by_label("second", exact=True).check()
        strength.fill("0.5")
        page.fill("#prompt", "a red ball")
        page.fill("#sections", "1")
        page.click("#start")
        expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)
        expect(page.locator("#error")).to_be_hidden()
    (start,) = [message for message in sent if message["type"] == "start"]
    assert start["loras"] == [{"name": "second", "scale": 0.5}]
    assert console_errors == []


def test_no_chooser_without_loras(server_url, new_page, console_errors):
    page = new_page()
    page.goto(server_url + "/")
    expect(page.locator("#status")).to_have_text("Ready. Write a prompt and press Start.")
    expect(page.locator("#lora-field")).to_be_hidden()
    assert console_errors == []


def test_a_start_from_the_prompt_alone(server_url, new_page, console_errors):
    page = new_page()
    sent = []
    page.on("websocket", lambda ws: ws.on(
        "framesent", lambda payload: isinstance(payload, str) and sent.append(json.loads(payload))))
    page.goto(server_url + "/")
    expect(page.locator("#status")).to_have_text("Ready. Write a prompt and press Start.")
    page.get_by_label("Start from the prompt alone").check()
    expect(page.locator("#dropzone")).to_have_class("dropzone unused")
    page.fill("#prompt", "a red ball")
    page.fill("#sections", "1")
    page.click("#start")
    expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)
    expect(page.locator("#timeline .entry:not(.pending)")).to_have_count(1)
    (start,) = [message for message in sent if message["type"] == "start"]
    assert start["start"] == "text" and "image" not in start
    assert console_errors == []


def test_continuing_a_chosen_video(server_url, new_page, console_errors, tmp_path):
    """The file chosen is sent as `video`, at its own size (no width or height), the start image
    and the prompt-alone start are set aside, and the new section's frames follow the video's."""
    _, generation = model_defaults("tiny")
    frames = np.zeros((generation.frames_per_section + 4, generation.height, generation.width, 3), np.uint8)
    for index, frame in enumerate(frames):  # a square that moves right
        frame[40:72, 2 * index : 2 * index + 32] = (220, 40, 40)
    path = tmp_path / "walk.mp4"
    with Mp4Writer(str(path), fps=generation.fps) as writer:
        writer.write(frames)
    page = new_page()
    sent, sections = [], []
    page.on("websocket", lambda ws: (
        ws.on("framesent", lambda payload: isinstance(payload, str) and sent.append(json.loads(payload))),
        ws.on("framereceived", lambda payload: isinstance(payload, str) and '"section"' in payload
              and sections.append(json.loads(payload))),
    ))
    page.goto(server_url + "/")
    expect(page.locator("#status")).to_have_text("Ready. Write a prompt and press Start.")
    page.get_by_label("Continue a video (MP4)").set_input_files(str(path))
    expect(page.locator("#video-name")).to_have_text("walk.mp4")
    expect(page.locator("#dropzone")).to_have_class("dropzone unused")
    expect(page.get_by_label("Start from the prompt alone")).to_be_disabled()
    page.fill("#prompt", "the red square moves right")
    page.fill("#sections", "1")
    page.fill("#steps", "4")  # what is tested is the page, not the denoise
    page.click("#start")
    expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)
    card = page.locator("#timeline .entry:not(.pending)")
    expect(card).to_have_count(1)
    expect(card.locator("img.thumb")).to_have_attribute("src", re.compile("^data:image/"))  # its first frame came
    expect(page.locator("#error")).to_be_hidden()
    (start,) = [message for message in sent if message["type"] == "start"]
    assert start["video"].startswith("data:video/mp4;base64,")
    assert not {"image", "start", "width", "height"} & set(start)
    (section,) = [message for message in sections if message["type"] == "section"]
    assert 0 < section["first_frame"] < len(frames)  # after the video's kept frames
    assert console_errors == []
