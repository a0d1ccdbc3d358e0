"""Who may use the server, over real sockets: pages of other sites, API keys, signed download
links, and the client address behind trusted proxies."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from framepack_live.stream.access import Access, read_api_keys
from framepack_live.stream.client import Received, download, expect, receive, send
from framepack_live.stream.settings import Limits

FRIEND = "https://friend.example"


async def start_and_pause(ws, **start) -> dict:
    """A session that stays active (it counts against the caps) without using the CPU; its `session` message."""
    await send(ws, type="start", prompt="a red ball", sections=0, media="none", **start)
    session = await expect(ws, "session")
    await send(ws, type="pause")
    return session


async def stop(ws) -> None:
    await send(ws, type="stop")
    assert (await receive(ws, Received(), media=False)).done is not None


async def test_pages_of_other_sites_are_refused(server_factory):
    with server_factory(access=Access(allowed_origins=(FRIEND,))) as server:
        own = server.url  # the page the server serves itself: Origin is http://127.0.0.1:<port>
        with pytest.raises(InvalidStatus) as refused:
            async with server.connect(origin="https://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus):
            async with server.connect(origin="null"):  # sandboxed frames and files: not a site we know
                pass

        for origin in (own, FRIEND, None):  # its own page, a listed site, a script (no Origin)
            async with server.connect(**({"origin": origin} if origin else {})) as ws:
                await send(ws, type="start", prompt="a red ball", sections=1, media="none")
                session = await expect(ws, "session")
                received = await receive(ws, Received(), media=False)
                assert received.done is not None, origin

        # The POSTs that act on a session are refused from another site's page, even with the token.
        async with httpx.AsyncClient(base_url=server.url) as http:
            evil = {"Origin": "https://evil.example"}
            offer = await http.post("/webrtc/offer", headers=evil, json={
                "session_id": session["session_id"], "token": session["token"], "sdp": "v=0", "type": "offer"})
            link = await http.post(f"/sessions/{session['session_id']}/download", headers=evil,
                                   json={"token": session["token"]})
            for reply in (offer, link):
                assert (reply.status_code, reply.json()["code"]) == (401, "unauthorized")
            allowed = await http.post(f"/sessions/{session['session_id']}/download", headers={"Origin": FRIEND},
                                      json={"token": session["token"]})
            assert allowed.status_code == 200


async def test_api_keys_are_needed_to_start_a_session(server_factory, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# framepack-live keys\nkey-of-alice\n\n  key-of-bob  \n")
    with server_factory(access=Access(api_key_digests=read_api_keys(keys))) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/config")).json()["api_key_required"] is True
        async with server.connect() as ws:
            for key in (None, "", "key-of-eve", "# framepack-live keys"):
                await send(ws, type="start", prompt="a red ball", sections=1, media="none",
                           **({"api_key": key} if key is not None else {}))
                error = await expect(ws, "error")
                assert error["code"] == "unauthorized", key
            # Still usable: the right key starts a session, and re-attaching needs only its token.
            await send(ws, type="start", prompt="a red ball", sections=1, media="none", api_key="key-of-bob")
            session = await expect(ws, "session")
            await receive(ws, Received(), media=False)
        async with server.connect() as ws:
            await send(ws, type="resume_session", session_id=session["session_id"], token=session["token"])
            assert (await expect(ws, "session"))["session_id"] == session["session_id"]
    with pytest.raises(ValueError, match="holds no key"):
        (tmp_path / "empty.txt").write_text("# nothing yet\n")
        read_api_keys(tmp_path / "empty.txt")


async def test_downloads_take_a_short_lived_signed_link_not_the_token(server_factory):
    with server_factory(access=Access(link_lifetime_s=2.0)) as server:
        async with server.connect() as ws:
            await send(ws, type="start", prompt="a red ball", sections=1, media="none")
            session = await expect(ws, "session")
            received = await receive(ws, Received(), media=False)
        session_id, token = session["session_id"], session["token"]
        async with httpx.AsyncClient(base_url=server.url) as http:
            wrong = await http.post(f"/sessions/{session_id}/download", json={"token": token[::-1]})
            assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthorized")
            link = (await http.post(f"/sessions/{session_id}/download", json={"token": token})).json()
            assert token not in link["url"] and link["url"].startswith(f"/sessions/{session_id}/video.mp4?")
            assert time.time() < link["expires"] <= time.time() + 3

            video = await http.get(link["url"])
            assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
            assert video.headers["content-disposition"].startswith("attachment")
            assert len(video.content) > 1000 and received.done["frames"] > 0

            # The token in the URL, as before, no longer opens the export; nor does a changed link.
            old_style = await http.get(f"/sessions/{session_id}/video.mp4", params={"token": token})
            later = link["url"].replace(f"expires={link['expires']}", f"expires={link['expires'] + 3600}")
            other = link["url"].replace(session_id, "0" * len(session_id))
            forged = link["url"][:-4] + ("AAAA" if not link["url"].endswith("AAAA") else "BBBB")
            for url in (later, other, forged):
                reply = await http.get(url)
                assert (reply.status_code, reply.json()["code"]) == (401, "unauthorized"), url
            assert (old_style.status_code, old_style.json()["code"]) == (401, "unauthorized")

            await asyncio.sleep(link["expires"] - time.time() + 1.1)
            expired = await http.get(link["url"])
            assert expired.status_code == 401 and "expired" in expired.json()["message"]

    # Another server (another key) does not honour this server's links.
    with server_factory() as other_server:
        async with other_server.connect() as ws:
            await send(ws, type="start", prompt="a red ball", sections=1, media="none")
            theirs = await expect(ws, "session")
            await receive(ws, Received(), media=False)
        async with httpx.AsyncClient(base_url=other_server.url) as http:
            assert (await download(http, theirs["session_id"], theirs["token"])).status_code == 200
            ours = link["url"].replace(session_id, theirs["session_id"])
            assert (await http.get(ours)).status_code == 401


async def test_the_per_client_cap_counts_forwarded_clients_only_behind_trusted_proxies(server_factory):
    """One session per client. The proxy at 127.0.0.2 is trusted: its X-Forwarded-For names the
    client (the rightmost hop that is not a trusted proxy). 127.0.0.1 is not: its header is ignored."""
    access = Access(trusted_proxies=("127.0.0.2/32",))
    with server_factory(limits=Limits(max_sessions_per_client=1), access=access) as server:

        def via(peer: str, forwarded: str):
            return server.connect(local_addr=(peer, 0), additional_headers={"X-Forwarded-For": forwarded})

        async with (
            via("127.0.0.2", "198.51.100.1") as a,
            via("127.0.0.2", "198.51.100.2") as b,
            via("127.0.0.2", "203.0.113.66, 198.51.100.1") as a_again,
            via("127.0.0.1", "198.51.100.3") as direct,
            via("127.0.0.1", "198.51.100.4") as direct_again,
        ):
            for ws in (a, b, direct):  # three different clients: each gets its session
                await start_and_pause(ws)
            for ws in (a_again, direct_again):
                # The same client as `a` (the made-up leftmost hop does not count), and the same
                # as `direct` (its header is not believed): over the cap.
                await send(ws, type="start", prompt="a red ball", sections=0, media="none")
                error = await expect(ws, "error")
                assert error["code"] == "busy" and "per client" in error["message"]
            for ws in (a, b, direct):
                await stop(ws)
