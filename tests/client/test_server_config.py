"""The page reads the server's config (GET /config) in headless Chromium: the model's defaults
preselected, the model named, limits honoured, and the server's ICE servers in its peer."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from framepack_live.engine.settings import GenerationSettings
from framepack_live.stream.settings import Limits, ModelInfo

from .conftest import RECORD_VIEW_EVENTS, assert_previews_before_frames, view_events

pytestmark = pytest.mark.heavy

SECTION_TIMEOUT_MS = 120_000

# Every RTCPeerConnection the page makes, for the test to read its configuration and stats.
RECORD_PEERS = """(() => {
  const Native = window.RTCPeerConnection;
  window.peers = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    window.peers.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})()"""


def open_page(new_page, url: str) -> Page:
    page = new_page()
    page.goto(url + "/")
    expect(page.locator("#status")).to_have_text("Ready. Write a prompt and press Start.")
    return page


def server_config(page: Page) -> dict:
    return page.evaluate("fetch('/config').then((response) => response.json())")


def test_the_form_starts_from_the_models_defaults(server_url, new_page, console_errors):
    page = open_page(new_page, server_url)
    config = server_config(page)
    model = config["model"]
    resolution = page.locator("#resolution")
    expect(resolution).to_have_value(f"{model['width']}x{model['height']}")
    marked = page.locator("#resolution option[data-model]")
    expect(marked).to_have_count(1)
    expect(marked).to_have_text(f"{model['width']} × {model['height']} · the model's")
    expect(page.locator("#steps")).to_have_value(str(config["defaults"]["steps"]))
    expect(page.locator("#steps")).to_have_attribute("max", str(config["limits"]["max_steps"]))
    expect(page.locator("#model-info")).to_have_text(
        f"Model: tiny, made for {model['width']} × {model['height']} in {model['steps']} steps")
    # Other choices stay available.
    assert len(page.eval_on_selector_all("#resolution option:not([disabled])", "options => options")) >= 9
    expect(page.locator("#api-key-field")).to_be_hidden()
    assert console_errors == []


def test_a_models_resolution_missing_from_the_list_is_added(serve_page, tiny_model, new_page, console_errors):
    from framepack_live.stream.settings import StreamSettings

    trained = GenerationSettings(width=96, height=96, steps=6)
    settings = StreamSettings(
        model=ModelInfo("custom", trained), generation=trained, limits=Limits(max_video_pixels=300_000, max_steps=20)
    )
    with serve_page(tiny_model, settings) as url:
        page = open_page(new_page, url)
        expect(page.locator("#resolution")).to_have_value("96x96")
        values = page.eval_on_selector_all("#resolution option", "options => options.map((o) => o.value)")
        assert values.index("64x64") < values.index("96x96") < values.index("128x128")
        expect(page.locator("#resolution option[data-model]")).to_have_text("96 × 96 · the model's")
        expect(page.locator("#steps")).to_have_value("6")
        # Sizes over the server's pixel limit are offered no more (640x640 is 409,600 pixels).
        disabled = page.eval_on_selector_all("#resolution option[disabled]", "options => options.map((o) => o.value)")
        assert set(disabled) == {"640x640", "704x544", "832x480", "480x832", "544x704"}
    assert console_errors == []


def test_the_pages_defaults_on_the_default_model(serve_page, new_page, console_errors, output_dir):
    """What `make serve` gives a new user: the shipped toyworld-fast model, and a start with the
    page's own resolution and steps asks for (and gets) its 128x128 at its 4 steps, not 256x256 at 25.
    Live: previews of the first section are drawn (marked) before its frames; a steer sent as a
    section arrives is on screen with the next section when it came in the first half of that
    section's steps (the server restarts it), else with the one after: within 1.5 section periods.
    Mid-session, after the steer, the page is photographed (docs/screenshots/live-view.png)."""
    from framepack_live.engine.model import FramePackModel
    from framepack_live.engine.presets import LIVE_MODEL
    from framepack_live.stream.model_defaults import model_defaults
    from framepack_live.stream.settings import StreamSettings

    model_info, generation = model_defaults(LIVE_MODEL)
    settings = StreamSettings(model=model_info, generation=generation)
    with serve_page(FramePackModel.load(LIVE_MODEL, device="cpu"), settings) as url:
        page = new_page()
        page.add_init_script(RECORD_VIEW_EVENTS)
        sent, received, socket = [], [], []  # socket: both directions, in order
        page.on("websocket", lambda ws: (
            ws.on("framesent", lambda payload: isinstance(payload, str) and (
                sent.append(json.loads(payload)), socket.append(sent[-1]))),
            ws.on("framereceived", lambda payload: isinstance(payload, str) and (
                received.append(json.loads(payload)), socket.append(received[-1]))),
        ))
        page.goto(url + "/")
        expect(page.locator("#model-info")).to_have_text("Model: toyworld-fast, made for 128 × 128 in 4 steps")
        page.fill("#prompt", "a red circle moves right")
        page.check("#until-stopped")
        page.click("#start")
        entries = page.locator("#timeline .entry:not(.pending)")
        expect(entries.first).to_be_visible(timeout=SECTION_TIMEOUT_MS)
        expect(page.locator("#transition")).to_have_value("0")  # the server's default
        page.fill("#steer-prompt", "the red circle moves up")
        page.press("#steer-prompt", "Enter")
        steered = entries.filter(has_text="the red circle moves up")
        expect(steered.first).to_be_visible(timeout=2 * SECTION_TIMEOUT_MS)  # the next section or the one after
        events = view_events(page)
        expect(page.locator("#transport")).to_have_attribute("data-kind", "webrtc", timeout=SECTION_TIMEOUT_MS)
        # Photographed while the next section is previewed over the steered one's last frame.
        expect(page.locator("#preview-badge")).to_be_visible(timeout=SECTION_TIMEOUT_MS)
        page.screenshot(path=output_dir / "live-toyworld-1280.png", full_page=True)
        page.click("#stop")
        expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)
    (start,) = [message for message in sent if message["type"] == "start"]
    assert (start["width"], start["height"], start["steps"], start["transition"]) == (128, 128, 4, 0)
    assert_previews_before_frames(events)
    assert_steer_within_target(socket, events)
    sections = [message for message in received if message["type"] == "section"]
    assert sections and {(m["width"], m["height"]) for m in sections} == {(128, 128)}
    assert {m["steps"] for m in received if m["type"] == "progress"} == {4}
    assert console_errors == []


def assert_steer_within_target(socket: list[dict], events: list[dict]) -> None:
    """The steer's first section is the one being made when it was sent, if at most half of its
    steps were done by then (with a step to spare for the time the steer takes to arrive), else
    the next one; and the timeline showed the sections in that order."""
    at = next(i for i, message in enumerate(socket) if message["type"] == "steer")
    steer = socket[at]
    assert steer["transition"] == 0
    made = max(m["section"] for m in socket[:at] if m["type"] == "section")
    done = max([m["step"] for m in socket[:at] if m["type"] == "progress" and m["section"] == made + 1], default=0)
    first = min(m["section"] for m in socket[at:] if m["type"] == "section" and m["prompt"] == steer["prompt"])
    steps = next(m["steps"] for m in socket if m["type"] == "progress")
    assert first <= made + 2, f"the steer sent after section {made} came only with section {first}"
    if 2 * (done + 1) <= steps:
        assert first == made + 1, f"sent at step {done} of section {made + 1}, yet not restarted: section {first}"
    cards = [event["section"] for event in events if event["kind"] == "section"]
    assert cards == sorted(cards) and first in cards


def test_the_pages_peer_uses_the_servers_ice_servers(tiny_server, stun_server, new_page, console_errors):
    """The page's RTCPeerConnection gets the server's STUN and TURN servers (with the TURN
    credentials) and really asks the STUN server for its address; the video still plays."""
    ice = (
        {"urls": f"stun:{stun_server.url}"},
        {"urls": [f"turn:{stun_server.url}"], "username": "alice", "credential": "secret"},
    )
    with tiny_server(ice_servers=ice) as url:
        page = new_page()
        page.add_init_script(RECORD_PEERS)
        page.goto(url + "/")
        page.fill("#prompt", "a red ball")
        page.select_option("#resolution", "64x64")
        page.fill("#steps", "2")
        page.fill("#sections", "2")
        page.click("#start")
        expect(page.locator("#transport")).to_have_attribute("data-kind", "webrtc", timeout=SECTION_TIMEOUT_MS)
        configured = page.evaluate("window.peers[0].getConfiguration().iceServers")
        candidates = page.evaluate("""async () => {
          const found = [];
          (await window.peers[0].getStats()).forEach((s) => {
            if (s.type === "local-candidate") found.push({ type: s.candidateType, address: s.address, url: s.url });
          });
          return found;
        }""")
        expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)

    assert [server["urls"] for server in configured] == [[f"stun:{stun_server.url}"], [f"turn:{stun_server.url}"]]
    assert (configured[1]["username"], configured[1]["credential"]) == ("alice", "secret")
    assert {"type": "srflx", "address": stun_server.MAPPED_HOST, "url": f"stun:{stun_server.url}"} in candidates
    assert any(r["method"] == "ALLOCATE" and r["username"] == "alice" for r in stun_server.requests)
    assert console_errors == []
