"""Every bad input gets its stable error code; the connection, the server and others go on."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import struct
import zlib
from collections.abc import Awaitable, Callable

import httpx

from framepack_live.stream.client import Received, expect, receive, recv_json, send
from framepack_live.stream.settings import Limits

LIMITS = Limits(max_sessions_per_client=3, steer_burst=5, steer_rate=1.0)


def huge_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG of width x height pixels that compresses to about 50 kB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte, then the packed bits of one row
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


async def first_error(ws) -> str:
    return (await expect(ws, "error"))["code"]


async def send_raw(ws, text: str) -> str:
    await ws.send(text)
    return await first_error(ws)


async def steer_flood(ws, server) -> str:
    await send(ws, type="start", prompt="a red ball", sections=0, media="none")
    await expect(ws, "session")
    for i in range(LIMITS.steer_burst * 4):
        await send(ws, type="steer", prompt=f"prompt {i}")
    code = await first_error(ws)
    await send(ws, type="stop")
    while (message := await recv_json(ws))["type"] != "done":  # the flooded session itself is fine
        assert message["type"] == "progress" or message["code"] == "busy", message
    return code


async def too_many_sessions(ws, server) -> str:
    # The background session runs too: with it, the client is at its cap after these.
    others = [server.connect() for _ in range(LIMITS.max_sessions_per_client - 1)]
    connections = [await connection.__aenter__() for connection in others]
    try:
        for connection in connections:
            await send(connection, type="start", prompt="a red ball", sections=0, media="none")
            await expect(connection, "session")
        await send(ws, type="start", prompt="a red ball", sections=0, media="none")
        code = await first_error(ws)
        for connection in connections:
            await send(connection, type="stop")
            await expect(connection, "done")
    finally:
        for connection, manager in zip(connections, others):
            await manager.__aexit__(None, None, None)
    return code


Case = Callable[..., Awaitable[str]]
CASES: list[tuple[str, Case, str]] = [
    ("malformed JSON", lambda ws, _: send_raw(ws, '{"type": "start", "prompt": '), "bad_request"),
    ("unknown type", lambda ws, _: send_raw(ws, json.dumps({"type": "dance"})), "bad_request"),
    ("10 MB message", lambda ws, _: send_raw(ws, json.dumps({"type": "start", "prompt": "x" * 10_000_000})), "bad_request"),
    ("non-image bytes", lambda ws, _: send_raw(ws, json.dumps({"type": "start", "prompt": "a", "image": data_url(b"GIF89a, not really")})), "bad_image"),
    ("20000x20000 PNG", lambda ws, _: send_raw(ws, json.dumps({"type": "start", "prompt": "a", "image": data_url(huge_png())})), "bad_image"),
    ("over-long prompt", lambda ws, _: send_raw(ws, json.dumps({"type": "start", "prompt": "a" * (LIMITS.max_prompt_chars + 1)})), "prompt_too_long"),
    ("rewind to a negative section", lambda ws, _: send_raw(ws, json.dumps({"type": "rewind", "section": -1, "prompt": "a"})), "bad_request"),
    ("rewind without a session", lambda ws, _: send_raw(ws, json.dumps({"type": "rewind", "section": 0, "prompt": "a"})), "bad_request"),
    ("unknown session", lambda ws, _: send_raw(ws, json.dumps({"type": "resume_session", "session_id": "nope", "token": "x"})), "not_found"),
    ("steer flood", steer_flood, "busy"),
    ("too many sessions", too_many_sessions, "busy"),
]


async def test_bad_inputs_get_their_codes_while_another_session_completes(server_factory):
    with server_factory(limits=LIMITS) as server:
        async with server.connect() as bystander:
            await send(bystander, type="start", prompt="a red ball", sections=0)
            await expect(bystander, "session")
            watching = asyncio.create_task(receive(bystander, Received()))

            codes = {}
            for name, case, _ in CASES:
                async with server.connect() as ws:
                    codes[name] = await case(ws, server)
                    # Still usable: a well-formed message gets its normal answer.
                    await send(ws, type="resume_session", session_id=secrets.token_hex(8), token="x")
                    assert (await recv_json(ws))["code"] == "not_found", name
            assert codes == {name: code for name, _, code in CASES}

            await send(bystander, type="stop")
            received = await asyncio.wait_for(watching, 120)

        assert not received.errors
        assert not received.gaps(), received.gaps()
        assert len(received.frames) == received.done["frames"] > 0
        async with httpx.AsyncClient(base_url=server.url) as http:
            health = (await http.get("/healthz")).json()
            assert (health["status"], health["sessions"]) == ("ok", 0)
