"""The WebRTC track, received by a real aiortc peer playing the browser."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from framepack_live.stream.client import Received, expect, receive, send


async def connect_peer(server, session: dict) -> tuple[RTCPeerConnection, asyncio.Future]:
    """A receive-only peer that negotiated with the server; the future gives the remote track.
    It uses no STUN/TURN server itself (aiortc's default is Google's), so any that is used is the server's."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
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


async def test_the_servers_peers_use_the_configured_ice_servers(server_factory, stun_server):
    """The server's aiortc peer asks the STUN server for its public address (and offers it as a
    server-reflexive candidate) and the TURN server for a relay, with the configured username."""
    ice = ({"urls": f"stun:{stun_server.url}"}, {"urls": f"turn:{stun_server.url}", "username": "alice", "credential": "pw"})
    with server_factory(ice_servers=ice) as server:
        async with server.connect() as ws:
            await send(ws, type="start", prompt="a red ball", sections=1, media="none")
            session = await expect(ws, "session")
            pc, _ = await connect_peer(server, session)
            answer = pc.remoteDescription.sdp
            await pc.close()
            await receive(ws, Received(), media=False)
    assert f"{stun_server.MAPPED_HOST} " in answer and "typ srflx" in answer
    assert "BINDING" in stun_server.methods()
    assert any(r["method"] == "ALLOCATE" and r["username"] == "alice" for r in stun_server.requests), stun_server.requests
