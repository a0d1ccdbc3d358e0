"""The page reads the server's config (GET /config) in headless Chromium: the model's defaults
preselected, the model named, limits honoured, and the server's ICE servers in its peer."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from framepack_live.engine.settings import GenerationSettings
from framepack_live.stream.settings import Limits, ModelInfo

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
    """What `make serve` gives a new user: the shipped toyworld model, and a start with the page's
    own resolution and steps asks for (and gets) its 128x128 at its 8 steps, not 256x256 at 25.
    Mid-session, after a steer, the page is photographed (docs/screenshots/live-view.png)."""
    from framepack_live.engine.model import FramePackModel
    from framepack_live.stream.model_defaults import model_defaults
    from framepack_live.stream.settings import StreamSettings

    model_info, generation = model_defaults(None)
    settings = StreamSettings(model=model_info, generation=generation)
    with serve_page(FramePackModel.load(None, device="cpu"), settings) as url:
        page = new_page()
        sent, received = [], []
        page.on("websocket", lambda ws: (
            ws.on("framesent", lambda payload: isinstance(payload, str) and sent.append(json.loads(payload))),
            ws.on("framereceived", lambda payload: isinstance(payload, str) and received.append(json.loads(payload))),
        ))
        page.goto(url + "/")
        expect(page.locator("#model-info")).to_have_text("Model: toyworld, made for 128 × 128 in 8 steps")
        page.fill("#prompt", "a red circle moves right")
        page.check("#until-stopped")
        page.click("#start")
        entries = page.locator("#timeline .entry:not(.pending)")
        expect(entries.first).to_be_visible(timeout=SECTION_TIMEOUT_MS)
        page.fill("#steer-prompt", "the red circle moves up")
        page.press("#steer-prompt", "Enter")
        steered = entries.filter(has_text="the red circle moves up")
        expect(steered.first).to_be_visible(timeout=SECTION_TIMEOUT_MS)
        expect(page.locator("#transport")).to_have_attribute("data-kind", "webrtc", timeout=SECTION_TIMEOUT_MS)
        page.wait_for_timeout(1000)  # a frame of the steered section on screen
        page.screenshot(path=output_dir / "live-toyworld-1280.png", full_page=True)
        page.click("#stop")
        expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)
    (start,) = [message for message in sent if message["type"] == "start"]
    assert (start["width"], start["height"], start["steps"]) == (128, 128, 8)
    sections = [message for message in received if message["type"] == "section"]
    assert sections and {(m["width"], m["height"]) for m in sections} == {(128, 128)}
    assert {m["steps"] for m in received if m["type"] == "progress"} == {8}
    assert console_errors == []


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
