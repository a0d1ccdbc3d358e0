"""The page's start options in headless Chromium: the LoRA chooser (the server's LoRAs offered
with their descriptions, the ticked ones sent with `start` by name and strength, no chooser on a
server that offers none) and a start from the prompt alone."""

from __future__ import annotations

import dataclasses
import json

import pytest
from playwright.sync_api import expect

from framepack_live.engine.lora import list_loras
from framepack_live.stream.model_defaults import model_defaults

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
