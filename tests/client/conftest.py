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
