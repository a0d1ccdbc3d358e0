"""A real server (the stream app on the tiny engine, serving `client/`) and headless Chromium."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "client"
OUTPUT_DIR = REPO / "test-output"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def running_server(model, settings):
    """Base URL of `create_app` over `model` in process, serving the page, on a free loopback port."""
    import uvicorn

    from framepack_live.stream.app import create_app
    from framepack_live.stream.local_backend import InProcessBackend

    backend = InProcessBackend(model)
    app = create_app(backend, settings, static_dir=CLIENT_DIR)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # proxy_headers=False: the app's `trusted_proxies` decide whose X-Forwarded-For counts.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", proxy_headers=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        backend.shutdown()
        sock.close()


def tiny_settings(**fields):
    """Stream settings of a server of the tiny model: its own defaults, and `fields`."""
    from framepack_live.stream.model_defaults import model_defaults
    from framepack_live.stream.settings import StreamSettings

    model, generation = model_defaults("tiny")
    return StreamSettings(**{"model": model, "generation": generation, **fields})


@pytest.fixture(scope="session")
def serve_page():
    """`with serve_page(model, settings) as url:` a server of its own, for tests that need other settings."""
    return running_server


@pytest.fixture(scope="session")
def tiny_server(tiny_model):
    """`with tiny_server(**stream_settings) as url:` the tiny model's server with other settings."""
    return lambda **fields: running_server(tiny_model, tiny_settings(**fields))


@pytest.fixture(scope="module")
def server_url(tiny_server):
    """The tiny model's server, as `framepack-live serve --model tiny` would set it up."""
    with tiny_server() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def console_errors():
    """Every console error and uncaught page error; a test ends by asserting it is empty."""
    return []


@pytest.fixture
def new_page(browser, console_errors):
    """Open pages in one fresh context (shared localStorage, as across a reload)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)

    def open_page():
        page = context.new_page()
        page.on("console", lambda message: message.type == "error" and console_errors.append(
            f"console: {message.text} ({message.location.get('url')})"))
        page.on("pageerror", lambda error: console_errors.append(f"pageerror: {error}"))
        return page

    yield open_page
    context.close()


@pytest.fixture(scope="session")
def output_dir():
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


# What the live view and the timeline show, in order: every step preview drawn in the view
# (with whether its picture is decoded and the badge is up), the preview leaving it, every
# preview on the card of the section in the making, and every section's card (its prompt).
RECORD_VIEW_EVENTS = """addEventListener("DOMContentLoaded", () => {
  window.viewEvents = [];
  const viewer = document.getElementById("viewer");
  const image = document.getElementById("preview");
  const badge = document.getElementById("preview-badge");
  new MutationObserver(() => {
    const value = viewer.dataset.preview;
    window.viewEvents.push(value === undefined ? { kind: "preview-gone" } : {
      kind: "preview", value, drawn: image.complete && image.naturalWidth > 0 && !image.hidden,
      badge: badge.hidden ? null : badge.textContent,
    });
  }).observe(viewer, { attributes: true, attributeFilter: ["data-preview"] });
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === "attributes") {
        window.viewEvents.push({ kind: "card-preview", section: Number(record.target.closest("li").dataset.section) });
      }
      for (const node of record.addedNodes) {
        if (node.matches && node.matches(".entry:not(.pending)")) {
          window.viewEvents.push({ kind: "section", section: Number(node.dataset.section),
                                   prompt: node.querySelector(".entry-prompt").textContent });
        }
      }
    }
  }).observe(document.getElementById("timeline"), { childList: true, subtree: true, attributes: true,
                                                     attributeFilter: ["data-step"] });
});"""


def view_events(page) -> list[dict]:
    """The events `RECORD_VIEW_EVENTS` (an init script) saw so far."""
    return page.evaluate("window.viewEvents")


def assert_previews_before_frames(events: list[dict]) -> None:
    """The first section was previewed in the view (picture decoded, badge up) and on its card
    before its card came, and the preview left the view when its frames came (never to return)."""
    first = next(i for i, event in enumerate(events) if event["kind"] == "section")
    previews = [event for event in events[:first] if event["kind"] == "preview" and event["value"].startswith("0:")]
    assert previews, f"no preview of section 0 drawn before its frames: {events[:first + 1]}"
    # The start image first (step 0, sent as the session begins), then the steps'.
    badges = ["preview · start image" if event["value"] == "0:0" else "preview · step " for event in previews]
    assert all(event["drawn"] and event["badge"].startswith(badge) for event, badge in zip(previews, badges)), previews
    assert any(event["kind"] == "card-preview" and event["section"] == 0 for event in events[:first])
    after = [event for event in events[first:] if event["kind"] in ("preview", "preview-gone")]
    assert after and after[0]["kind"] == "preview-gone", f"the preview stayed over the frames: {events}"
    assert not any(event["kind"] == "preview" and event["value"].startswith("0:") for event in after), events
