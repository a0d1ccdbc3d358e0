"""Rewind and branch over a real WebSocket: a bad boundary is refused with nothing lost, a rewind
with the prompt a section was made with makes it again bit for bit, a rewind can start from
another branch than the current one, and every branch is exported."""

from __future__ import annotations

import io

import httpx

from framepack_live.stream.client import Received, download, expect, receive, rewind, send
from framepack_live.stream.metadata import read_record

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
        # From the first branch's start, while the second is being made: a third branch.
        await send(ws, type="rewind", section=0, prompt="a blue cube", branch=0)
        await receive(ws, received, until=lambda m: m["type"] == "section" and m["branch"] == 2)
        await send(ws, type="stop")
        await receive(ws, received)
        token = (session["session_id"], session["token"])
        old, new, third, current = [
            decode_mp4((await download(http, *token, branch)).content) for branch in (0, 1, 2, None)
        ]
        missing = await download(http, *token, 7)
        record = read_record(io.BytesIO((await download(http, *token, 1)).content))
        # A player of the first branch (a WebRTC track) is moved to where the current one forked.
        handle = await server.app.state.directory.get(*token)
        moved = await handle.frames(len(old), 4, 0, None, 0)

    assert received.done is not None and not received.errors, received.errors
    assert received.branches == [
        {"type": "branch", "branch": 1, "parent": 0, "section": 1, "prompt": "a red ball"},
        {"type": "branch", "branch": 2, "parent": 0, "section": 0, "prompt": "a blue cube"},
    ]
    (original, original_jpegs), *_ = [s for s in received.branch(0) if s[0]["section"] == 1]
    replayed, replayed_jpegs = received.branch(1)[0]
    assert replayed["section"] == 1 and replayed["first_frame"] == original["first_frame"]
    assert replayed_jpegs == original_jpegs
    # The exports: branch 1 is branch 0's section 0, then its own, the first of them section 1 again.
    end = original["first_frame"] + original["frames"]
    assert all((a == b).all() for a, b in zip(old[:end], new[:end], strict=True))
    assert len(new) == original["first_frame"] + sum(m["frames"] for m, _ in received.branch(1))
    assert len(old) == sum(m["frames"] for m, _ in received.branch(0))
    # Its export says so: section 0 of branch 0, then branch 1's own.
    assert [(e["section"], e["branch"]) for e in record.timeline] == [(0, 0)] + [
        (m["section"], 1) for m, _ in received.branch(1)
    ]
    # The third branch is all its own (from section 0, another prompt), and the current one.
    assert [m["first_frame"] for m, _ in received.branch(2)][0] == 0
    assert {m["prompt"] for m, _ in received.branch(2)} == {"a blue cube"}
    assert len(current) == len(third) == received.done["frames"] == sum(m["frames"] for m, _ in received.branch(2))
    assert all((a == b).all() for a, b in zip(current, third, strict=True))
    assert any(not (a == b).all() for a, b in zip(third, old))  # another prompt, other frames
    assert (moved.branch, moved.first) == (2, 0) and moved.jpegs == received.branch(2)[0][1][:4]
    assert missing.status_code == 400 and missing.json()["code"] == "bad_request"
