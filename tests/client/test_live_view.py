"""The live-view page in headless Chromium against the real server on the tiny engine.

One scenario, run once over WebRTC and once with the WebSocket fallback forced: start a
session, see its step previews drawn (marked) and then changing frames, steer, take screenshots, reload and re-attach, stop,
download a playable MP4, and no console errors on the way.
"""

from __future__ import annotations

import json

import av
import pytest
from playwright.sync_api import Page, expect

from .conftest import RECORD_VIEW_EVENTS, assert_previews_before_frames, view_events

PROMPT = "a red ball rolls across the grass"
STEER = "the ball turns blue and bounces"
SECTION_TIMEOUT_MS = 120_000  # a section of the tiny model takes seconds on two busy cores

SAMPLE_PIXELS = """(selector) => {
  // 16x16 thumbnail of whatever the element shows right now, as RGBA bytes.
  const source = document.querySelector(selector);
  const ready = source instanceof HTMLVideoElement ? source.videoWidth > 0 : source.width > 0;
  if (!ready || source.hidden) return null;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 16;
  const context = canvas.getContext("2d");
  context.drawImage(source, 0, 0, 16, 16);
  return Array.from(context.getImageData(0, 0, 16, 16).data);
}"""

READ_ENTRIES = """(items) => items.map((item) => ({
  section: Number(item.dataset.section),
  prompt: item.querySelector(".entry-prompt").textContent,
  thumbnail: item.querySelector("img.thumb").getAttribute("src") || "",
}))"""


def entries(page: Page) -> list[dict]:
    return page.eval_on_selector_all("#timeline .entry:not(.pending)", READ_ENTRIES)


def wait_for_entry(page: Page, condition: str) -> None:
    """Wait until some finished timeline entry satisfies a JS condition on `e` (the <li>)."""
    page.wait_for_function(
        f"""() => [...document.querySelectorAll("#timeline .entry:not(.pending)")].some((e) => {condition})""",
        timeout=SECTION_TIMEOUT_MS,
    )


def assert_frames_change(page: Page, selector: str) -> None:
    """The element shows a non-blank picture, and later a different non-blank one."""
    first = None
    for _ in range(600):  # up to 120 s: the tiny model's next section may be that far off
        pixels = page.evaluate(SAMPLE_PIXELS, selector)
        if pixels is not None and max(pixels) - min(pixels) > 20:  # not one flat colour
            if first is None:
                first = pixels
            elif sum(abs(a - b) for a, b in zip(first, pixels)) / len(pixels) > 2:
                return
        page.wait_for_timeout(200)
    assert first is not None, f"{selector} never showed a non-blank picture"
    raise AssertionError(f"{selector} showed one picture and never changed")


def start_session(page: Page) -> None:
    page.fill("#prompt", PROMPT)
    page.select_option("#resolution", "64x64")
    page.fill("#seed", "7")
    page.fill("#steps", "2")
    page.check("#until-stopped")  # stopped by the test once it has seen what it needs
    expect(page.locator("#sections")).to_be_disabled()
    # Keyboard start, as the prompt's hint says.
    page.focus("#prompt")
    page.keyboard.press("Control+Enter")


def screenshots(page: Page, output_dir, transport: str) -> None:
    page.screenshot(path=output_dir / f"live-{transport}-1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    # Nothing may stick out sideways on a phone-sized screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=output_dir / f"live-{transport}-390.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def record_done(page: Page) -> list[dict]:
    """Every `done` message the page receives over its WebSockets, reloads included."""
    done = []

    def on_frame(payload) -> None:
        if isinstance(payload, str):
            message = json.loads(payload)
            if message.get("type") == "done":
                done.append(message)

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
    return done


@pytest.mark.heavy
@pytest.mark.parametrize("transport", ["webrtc", "ws"])
def test_live_session(transport, server_url, new_page, console_errors, output_dir, tmp_path):
    page = new_page()
    page.add_init_script(RECORD_VIEW_EVENTS)
    done = record_done(page)
    urls = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(server_url + ("/?transport=ws" if transport == "ws" else "/"))
    view = "#video" if transport == "webrtc" else "#canvas"
    badge = page.locator("#transport")

    # Start: previews of the first section while it is made (in the view, marked, and on its
    # card), then frames that change.
    start_session(page)
    expect(badge).to_have_attribute("data-kind", transport, timeout=SECTION_TIMEOUT_MS)
    assert_frames_change(page, view)
    assert_previews_before_frames(view_events(page))

    # Steer: an entry made after the steer carries the new prompt; earlier ones the old.
    wait_for_entry(page, "true")
    before_steer = max(entry["section"] for entry in entries(page))
    page.fill("#steer-prompt", STEER)
    page.press("#steer-prompt", "Enter")
    expect(page.locator("#steer-hint")).to_contain_text(STEER)
    wait_for_entry(page, f"e.querySelector('.entry-prompt').textContent === {json.dumps(STEER)}")
    made = entries(page)
    steered = [entry["section"] for entry in made if entry["prompt"] == STEER]
    assert min(steered) > before_steer
    assert all(entry["prompt"] == PROMPT for entry in made if entry["section"] <= before_steer)

    # Pause and resume from the keyboard: focus moves to the button that replaces the other.
    page.focus("#pause")
    page.keyboard.press("Enter")
    expect(page.locator("#resume")).to_be_focused()
    expect(page.locator("#status")).to_contain_text("Paused")
    page.keyboard.press("Enter")
    expect(page.locator("#pause")).to_be_focused()

    screenshots(page, output_dir, transport)

    # Reload: the page re-attaches, the timeline (with thumbnails) comes back, and sections
    # made after the reload keep arriving.
    before_reload = entries(page)
    assert all(entry["thumbnail"].startswith("data:image/jpeg") for entry in before_reload)
    page.reload()
    expect(page.locator("#timeline .entry:not(.pending)")).to_have_count(
        len(before_reload), timeout=10_000
    )
    restored = {entry["section"]: entry for entry in entries(page)}
    for entry in before_reload:
        assert restored[entry["section"]] == entry
    last = max(entry["section"] for entry in before_reload)
    wait_for_entry(page, f"Number(e.dataset.section) > {last}")
    expect(badge).to_have_attribute("data-kind", transport, timeout=SECTION_TIMEOUT_MS)
    assert_frames_change(page, view)

    # Stop; the session ends and the download is the whole video, playable, through a signed
    # link: the session's token is in no URL the page asks for.
    token = json.loads(page.evaluate("localStorage.getItem('framepack-live.session')"))["token"]
    page.click("#stop")
    expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)
    assert done, "no done message reached the page"
    download_button = page.locator("#download")
    expect(download_button).to_be_enabled()
    with page.expect_download() as download:
        download_button.click()
    path = tmp_path / "video.mp4"
    download.value.save_as(path)
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == done[-1]["frames"]
    assert "/video.mp4?expires=" in download.value.url
    assert not [url for url in [*urls, download.value.url] if token in url or "token" in url]

    assert console_errors == []


@pytest.mark.heavy
def test_falls_back_when_webrtc_fails(server_url, new_page, console_errors):
    """Without the query flag, an unusable WebRTC answer switches the page to the WebSocket frames."""
    page = new_page()
    page.route("**/webrtc/offer", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps({"sdp": "not sdp", "type": "answer"})))
    page.goto(server_url + "/")
    start_session(page)
    expect(page.locator("#transport")).to_have_attribute("data-kind", "ws", timeout=SECTION_TIMEOUT_MS)
    expect(page.locator("#transport")).to_have_text("WebSocket fallback")
    assert_frames_change(page, "#canvas")
    page.click("#stop")
    expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)
    assert console_errors == []


def close_server_peers() -> int:
    """Close every WebRTC peer of the in-process server, as if the process holding them had died.

    The server runs on its own event loop in another thread; its peers are found through their
    tracks (whose frame feed runs on that loop)."""
    import asyncio
    import gc

    from aiortc import RTCPeerConnection

    from framepack_live.stream.webrtc import SessionTrack

    peers = {}  # peer -> the loop its track's feed runs on; earlier tests' peers (loops closed) left out
    for peer in gc.get_objects():
        if type(peer) is RTCPeerConnection and peer.connectionState != "closed":  # not isinstance: weak proxies
            for sender in peer.getSenders():
                if isinstance(sender.track, SessionTrack) and sender.track._feed._task.get_loop().is_running():
                    peers[peer] = sender.track._feed._task.get_loop()
    for peer, loop in peers.items():
        asyncio.run_coroutine_threadsafe(peer.close(), loop).result(timeout=30)
    return len(peers)


@pytest.mark.heavy
def test_re_offers_when_the_servers_peer_goes(server_url, new_page, console_errors):
    """A peer lives in one server process; when it goes, the page shows the WebSocket frames and
    offers again (in a cluster, through whichever Ingress replica answers), back to WebRTC."""
    page = new_page()
    offers = []
    page.on("request", lambda request: request.url.endswith("/webrtc/offer") and offers.append(request))
    page.goto(server_url + "/")
    start_session(page)
    badge = page.locator("#transport")
    expect(badge).to_have_attribute("data-kind", "webrtc", timeout=SECTION_TIMEOUT_MS)
    assert close_server_peers() >= 1
    expect(badge).not_to_have_attribute("data-kind", "webrtc", timeout=60_000)
    expect(badge).to_have_attribute("data-kind", "webrtc", timeout=SECTION_TIMEOUT_MS)
    assert len(offers) >= 2
    assert_frames_change(page, "#video")
    page.click("#stop")
    expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)
    assert console_errors == []
