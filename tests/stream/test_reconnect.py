"""Dropping the connection and re-attaching; the token guards every way into a session."""

from __future__ import annotations

import asyncio

import httpx

from framepack_live.stream.client import Received, download, expect, receive, send


async def test_reattach_gets_every_missed_section_and_a_wrong_token_changes_nothing(server):
    async with server.connect() as ws:
        await send(ws, type="start", prompt="a red ball", sections=4)
        session = await expect(ws, "session")
        received = await receive(ws, Received(), until_sections=1)
    # The connection is gone; the session goes on generating for whoever re-attaches.

    session_id, wrong = session["session_id"], session["token"][::-1]
    async with server.connect() as intruder, httpx.AsyncClient(base_url=server.url) as http:
        await send(intruder, type="resume_session", session_id=session_id, token=wrong)
        assert (await expect(intruder, "error"))["code"] == "unauthorized"
        await send(intruder, type="steer", prompt="a green ball")  # not attached: nothing to steer
        assert (await expect(intruder, "error"))["code"] == "bad_request"
        export = await download(http, session_id, wrong)
        assert (export.status_code, export.json()["code"]) == (401, "unauthorized")
        offer = await http.post("/webrtc/offer", json={"session_id": session_id, "token": wrong, "sdp": "v=0", "type": "offer"})
        assert (offer.status_code, offer.json()["code"]) == (401, "unauthorized")

    async with server.connect() as ws:
        await send(ws, type="resume_session", session_id=session_id, token=session["token"])
        assert (await expect(ws, "session"))["session_id"] == session_id
        await receive(ws, received)

    assert not received.gaps(), received.gaps()
    assert [m["section"] for m, _ in received.sections] == [0, 1, 2, 3]
    assert {m["prompt"] for m, _ in received.sections} == {"a red ball"}


async def test_a_session_nobody_watches_is_freed(server_factory):
    with server_factory(idle_timeout_s=0.5) as server:
        async with server.connect() as ws:
            await send(ws, type="start", prompt="a red ball", sections=0)
            session = await expect(ws, "session")
        async with httpx.AsyncClient(base_url=server.url) as http:
            for _ in range(100):
                if (await http.get("/healthz")).json()["sessions"] == 0:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get("/healthz")).json()["sessions"] == 0
            export = await download(http, session["session_id"], session["token"])
            assert export.json()["code"] == "not_found"
