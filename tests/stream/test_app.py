"""The app factory's hook for the browser client."""

from __future__ import annotations

import httpx

from framepack_live.stream.app import create_app
from framepack_live.stream.local_backend import InProcessBackend


async def test_the_client_is_served_at_the_root_beside_the_api(model, tmp_path):
    (tmp_path / "index.html").write_text("<title>framepack-live</title>")
    backend = InProcessBackend(model)
    app = create_app(backend, static_dir=tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        assert "<title>framepack-live</title>" in (await http.get("/")).text
        health = (await http.get("/healthz")).json()
        assert (health["status"], health["sessions"], health["model"]) == ("ok", 0, None)  # loaded before serving
        assert isinstance(health["held_frame_bytes"], int) and health["rss_bytes"] > 0
        assert (await http.post("/sessions/nope/download", json={"token": "x"})).status_code == 404
        # The export needs a signed link; the session token alone no longer opens it.
        assert (await http.get("/sessions/nope/video.mp4", params={"token": "x"})).status_code == 401
    backend.shutdown()
