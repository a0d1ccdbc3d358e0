"""The WebRTC track, received by a real aiortc peer playing the browser."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription

from framepack_live.stream.client import Received, expect, receive, send


async def connect_peer(server, session: dict) -> tuple[RTCPeerConnection, asyncio.Future]:
    """A receive-only peer that negotiated with the server; the future gives the remote track."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    track = asyncio.get_running_loop().create_future()
    pc.on("track", track.set_result)
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=server.url) as http:
        reply = await http.post(
            "/webrtc/offer",
            json={"session_id": session["session_id"], "token": session["token"], "sdp": pc.localDescription.sdp, "type": "offer"},
        )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert "VP8" in answer["sdp"]
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    return pc, track


async def test_webrtc_track_plays_the_session_at_its_fps(server):
    async with server.connect() as ws:
        await send(ws, type="start", prompt="a red ball", sections=3, media="none")
        session = await expect(ws, "session")
        pc, track_future = await connect_peer(server, session)
        try:
            track = await asyncio.wait_for(track_future, 30)
            received = await receive(ws, Received(), until_sections=2, media=False)
            wanted = sum(m["frames"] for m, _ in received.sections)
            frames = [await asyncio.wait_for(track.recv(), 30) for _ in range(wanted)]
        finally:
            await pc.close()
        assert wanted > 0
        assert {(f.width, f.height) for f in frames} == {(server.generation.width, server.generation.height)}
        # RTP's 90 kHz clock: one frame every 90000/fps ticks (the receiving decoder's rescaling
        # may round a timestamp by one tick).
        assert all(f.time_base == Fraction(1, 90000) for f in frames)
        steps = [b.pts - a.pts for a, b in zip(frames, frames[1:])]
        tick = 90000 // server.generation.fps
        assert all(abs(step - tick) <= 1 for step in steps), steps

        session_object = await server.app.state.directory.get(session["session_id"], session["token"])
        for _ in range(100):  # the server closes its side once the peer has hung up
            if not await session_object.peer_count():
                break
            await asyncio.sleep(0.1)
        assert not await session_object.peer_count()
