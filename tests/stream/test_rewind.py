"""Rewind and branch over a real WebSocket: a bad boundary is refused with nothing lost, a rewind
with the prompt a section was made with makes it again bit for bit, and every branch is exported."""

from __future__ import annotations

import httpx

from framepack_live.stream.client import Received, download, expect, receive, rewind, send

from .test_session_ws import decode_mp4


async def test_rewind_replays_bit_for_bit_and_keeps_every_branch(server):
    async with server.connect() as ws, httpx.AsyncClient(base_url=server.url) as http:
        await send(ws, type="start", prompt="a red ball", sections=0)
        session = await expect(ws, "session")
        received = await receive(ws, Received(), until_sections=2)

        await send(ws, type="rewind", section=99, prompt="a red ball")
        await receive(ws, received, until=lambda m: m["type"] == "error")
        assert [e["code"] for e in received.errors] == ["bad_request"]
        received.errors.clear()

        await rewind(ws, received, 1, "a red ball")
        await send(ws, type="stop")
        await receive(ws, received)
        token = (session["session_id"], session["token"])
        old, new, current = [
            decode_mp4((await download(http, *token, branch)).content) for branch in (0, 1, None)
        ]
        missing = await download(http, *token, 7)

    assert received.done is not None and not received.errors, received.errors
    assert received.branches == [{"type": "branch", "branch": 1, "parent": 0, "section": 1, "prompt": "a red ball"}]
    (original, original_jpegs), *_ = [s for s in received.branch(0) if s[0]["section"] == 1]
    replayed, replayed_jpegs = received.branch(1)[0]
    assert replayed["section"] == 1 and replayed["first_frame"] == original["first_frame"]
    assert replayed_jpegs == original_jpegs
    # The exports: branch 1 is branch 0's section 0, then its own, the first of them section 1 again.
    end = original["first_frame"] + original["frames"]
    assert all((a == b).all() for a, b in zip(old[:end], new[:end], strict=True))
    assert len(current) == len(new) == received.done["frames"]
    assert all((a == b).all() for a, b in zip(current, new, strict=True))
    branch0_frames = sum(m["frames"] for m, _ in received.branch(0))
    assert len(old) == branch0_frames
    assert missing.status_code == 400 and missing.json()["code"] == "bad_request"
