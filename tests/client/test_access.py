"""Who may use the server, in headless Chromium: the page asks for an API key once and keeps it,
and pages of other sites cannot open a WebSocket or make offers unless the operator allows them."""

from __future__ import annotations

import http.server
import json
import threading
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

from framepack_live.stream.access import Access, key_digest

pytestmark = pytest.mark.heavy

SECTION_TIMEOUT_MS = 120_000
KEY = "k-7f3a9c"


def start_small_video(page) -> None:
    page.fill("#prompt", "a red ball")
    page.select_option("#resolution", "64x64")
    page.fill("#steps", "2")
    page.check("#until-stopped")
    page.click("#start")


def stop(page) -> None:
    page.click("#stop")
    expect(page.locator("#status")).to_contain_text("Finished", timeout=SECTION_TIMEOUT_MS)


def test_the_page_asks_for_an_api_key_once_and_keeps_it(tiny_server, new_page, console_errors):
    with tiny_server(access=Access(api_key_digests=frozenset({key_digest(KEY)}))) as url:
        page = new_page()
        starts = []
        page.on("websocket", lambda ws: ws.on("framesent", lambda payload: (
            isinstance(payload, str) and json.loads(payload)["type"] == "start" and starts.append(json.loads(payload)))))
        page.goto(url + "/")
        field = page.locator("#api-key")
        expect(field).to_be_visible()

        # No key: the page says so before asking the server.
        page.fill("#prompt", "a red ball")
        page.click("#start")
        expect(page.locator("#error-text")).to_have_text("This server needs an API key to start a video. Enter yours.")
        expect(field).to_be_focused()
        assert starts == []

        # A wrong key: the server refuses it, the page forgets it and asks again.
        field.fill("not-the-key")
        start_small_video(page)
        expect(page.locator("#error-text")).to_contain_text("The server did not accept that API key.")
        expect(field).to_be_focused()
        expect(page.locator("#status")).to_have_text("Ready. Write a prompt and press Start.")
        assert page.evaluate("localStorage.getItem('framepack-live.api-key')") is None

        field.fill(KEY)
        start_small_video(page)
        expect(page.locator("#timeline .entry:not(.pending)").first).to_be_visible(timeout=SECTION_TIMEOUT_MS)
        stop(page)
        assert page.evaluate("localStorage.getItem('framepack-live.api-key')") == KEY

        # After a reload the kept key is sent without asking.
        page.reload()
        expect(page.locator("#status")).to_contain_text("Finished")  # the last session, re-attached
        expect(page.locator("#api-key-field")).to_be_hidden()
        start_small_video(page)
        expect(page.locator("#timeline .entry:not(.pending)").first).to_be_visible(timeout=SECTION_TIMEOUT_MS)
        stop(page)
    assert [start.get("api_key") for start in starts] == ["not-the-key", KEY, KEY]
    # The refused start logs nothing in the console: it is an `error` message, not a failed request.
    assert console_errors == []


@contextmanager
def foreign_site():
    """Another web site on this machine: a static page server on its own port. As
    http://localhost:<port> and http://127.0.0.1:<port> it is two different origins."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>another site</title><p>another site"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# From another site's page: open the server's WebSocket and start a session; POST an offer as
# a form would (text/plain needs no CORS preflight, so the browser does send it).
TRY_THE_SERVER = """async (server) => {
  const socket = await new Promise((resolve) => {
    const ws = new WebSocket(server.replace("http", "ws") + "/ws");
    ws.onopen = () => resolve(ws);
    ws.onerror = () => resolve(null);
  });
  let reply = null;
  if (socket) {
    reply = await new Promise((resolve) => {
      socket.onmessage = (event) => resolve(JSON.parse(event.data).type);
      socket.send(JSON.stringify({ type: "start", prompt: "from another site", sections: 1, media: "none",
                                   width: 64, height: 64, steps: 2 }));
    });
    socket.close();
  }
  await fetch(server + "/webrtc/offer", {
    method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" },
    body: JSON.stringify({ session_id: "x", token: "y", sdp: "v=0", type: "offer" }),
  });
  return { opened: socket !== null, reply };
}"""


def test_pages_of_other_sites_are_refused_unless_allowed(tiny_server, new_page):
    with foreign_site() as port:
        friend, stranger = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
        with tiny_server(access=Access(allowed_origins=(friend,))) as url:
            results = {}
            for origin in (friend, stranger):
                page = new_page()
                statuses = []
                page.on("response", lambda response: response.url.endswith("/webrtc/offer") and statuses.append(
                    response.status))
                page.goto(origin + "/")
                results[origin] = page.evaluate(TRY_THE_SERVER, url)
                results[origin]["offer"] = statuses
            # The server's own page still works (the other browser tests use it throughout).
            own = new_page()
            own.goto(url + "/")
            expect(own.locator("#status")).to_have_text("Ready. Write a prompt and press Start.")

    assert results[stranger] == {"opened": False, "reply": None, "offer": [401]}
    # An allowed site gets a session; its offer reaches the session lookup (no such session).
    assert results[friend] == {"opened": True, "reply": "session", "offer": [404]}
