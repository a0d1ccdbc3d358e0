"""WebRTC viewing with aiortc: a video track that plays a session's frames, and offer/answer.

aiortc does the hard parts (ICE, DTLS-SRTP, RTP, VP8/H.264 encoding, codec negotiation: the
answer follows the offer's order, so Chromium gets VP8); this module only feeds it frames.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError

from framepack_live.engine.errors import InputError

from . import memory
from .handle import SessionHandle
from .media import decode_jpeg

log = logging.getLogger(__name__)

#: A peer that has not connected this long after the answer (it gave up, or offered no video)
#: is closed, so that it neither holds a viewer slot nor keeps its session from being freed.
CONNECT_TIMEOUT_S = 30.0

_timers: set[asyncio.Task] = set()  # asyncio keeps only weak references to tasks


#: Frames a track fetches from its session at once, and how many it keeps ahead of playback:
#: what one WebRTC viewer holds of a session's video.
FETCH_FRAMES = 36
BUFFER_FRAMES = 2 * FETCH_FRAMES
#: Longest wait for frames in one fetch; a fetch also renews the peer's presence lease.
FETCH_WAIT_S = 1.0


class FrameFeed:
    """Keeps a few of a session's JPEG frames ahead of playback, fetched in the background."""

    def __init__(self, session: SessionHandle, peer: str, first: int) -> None:
        self._session, self._peer, self._next = session, peer, first
        self._branch: int | None = None  # the session's branch the buffered frames belong to
        self.buffer: deque[bytes] = deque()
        self.ended = False
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._fetch())
        memory.register(self)

    @property
    def held_bytes(self) -> int:
        return sum(len(jpeg) for jpeg in self.buffer)

    async def _fetch(self) -> None:
        try:
            while not self.ended:
                if len(self.buffer) >= BUFFER_FRAMES:
                    await asyncio.sleep(FETCH_WAIT_S / 2)  # playback is behind; still renew the lease
                    count = 0
                else:
                    count = FETCH_FRAMES
                batch = await self._session.frames(self._next, count, FETCH_WAIT_S, self._peer, self._branch)
                if batch.first != self._next:  # a rewind: play the new branch from its fork at once
                    self.buffer.clear()
                self._branch = batch.branch
                self.buffer.extend(batch.jpegs)
                self._next = batch.first + len(batch.jpegs)
                self.ended = batch.ended
                self._arrived.set()
        except Exception:  # the session is gone (freed, or its process lost): the video ends here
            log.warning("a WebRTC track lost its session's frames", exc_info=True)
            self.ended = True
            self._arrived.set()

    async def first(self) -> bytes | None:
        """The first frame, however long it takes; None when the session ended without one."""
        while not self.buffer and not self.ended:
            self._arrived.clear()
            await self._arrived.wait()
        return self.buffer.popleft() if self.buffer else None

    def stop(self) -> None:
        self._task.cancel()


class SessionTrack(VideoStreamTrack):
    """Plays a session's video from frame `first`, in playback order, at the session's fps.

    When generation is slower than real time the track holds the last frame (the browser shows a
    still image, not a stutter, and never skips ahead); it ends after the last frame of a session
    that has ended.
    """

    def __init__(self, session: SessionHandle, peer: str, first: int = 0) -> None:
        super().__init__()
        self._ticks = VIDEO_CLOCK_RATE // session.settings.fps  # integer: no drift from rounding
        self._feed = FrameFeed(session, peer, first)
        self._last: np.ndarray | None = None

    async def next_timestamp(self) -> tuple[int, object]:
        # VideoStreamTrack's own pacing, with the session's fps instead of its fixed 30 fps.
        if self.readyState != "live":
            raise MediaStreamError
        if hasattr(self, "_timestamp"):
            self._timestamp += self._ticks
            await asyncio.sleep(self._start + self._timestamp / VIDEO_CLOCK_RATE - time.time())
        else:
            self._start = time.time()
            self._timestamp = 0
        return self._timestamp, VIDEO_TIME_BASE

    async def recv(self) -> av.VideoFrame:
        if self._last is None:  # the clock starts with the first frame, however long it takes
            jpeg = await self._feed.first()
            if jpeg is None:
                self._end()
            self._take(jpeg)
        pts, time_base = await self.next_timestamp()
        if pts:  # the first frame was taken above
            if self._feed.buffer:
                self._take(self._feed.buffer.popleft())
            elif self._feed.ended:
                self._end()
        frame = av.VideoFrame.from_ndarray(self._last, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame

    def _take(self, jpeg: bytes) -> None:
        # Decoded on the loop: a frame of FramePack's sizes takes about a millisecond.
        self._last = decode_jpeg(jpeg)

    def _end(self) -> None:
        self.stop()
        raise MediaStreamError

    def stop(self) -> None:
        self._feed.stop()
        super().stop()


async def answer_offer(
    session: SessionHandle, offer: RTCSessionDescription, ice_servers: tuple[dict, ...]
) -> RTCSessionDescription:
    """Answer a browser's offer with a peer connection that sends `session`'s video.

    The connection is closed when the peer goes away (ICE fails or it hangs up), when it has not
    connected within `CONNECT_TIMEOUT_S`, and at once when answering fails for any reason or the
    offer's request is cancelled, so no half-made peer keeps a viewer slot or its session alive.
    """
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(**server) for server in ice_servers]))
    peer = secrets.token_hex(8)
    tracks: list[SessionTrack] = []
    closed = False

    async def close() -> None:
        nonlocal closed
        if not closed:
            closed = True
            for track in tracks:
                track.stop()
            await pc.close()
            await session.remove_peer(peer)

    try:
        await session.add_peer(peer)
        # A viewer that joins (or re-joins after a reload, or through another server process) a
        # running session starts at its newest section, the live edge, rather than replaying the
        # video from the start; the whole video stays available as the MP4 export.
        tracks.append(SessionTrack(session, peer, first=await session.live_edge()))
        pc.addTrack(tracks[0])
        await pc.setRemoteDescription(offer)
        await pc.setLocalDescription(await pc.createAnswer())
    except BaseException as exc:
        await asyncio.shield(close())
        if isinstance(exc, ValueError) and not isinstance(exc, InputError):  # aiortc's error for SDP it cannot answer
            raise InputError("bad_request", f"cannot answer this offer: {exc}") from None
        raise

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await close()

    async def close_unless_connected() -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if pc.connectionState != "connected":
            await close()

    timer = asyncio.create_task(close_unless_connected())
    _timers.add(timer)
    timer.add_done_callback(_timers.discard)
    return pc.localDescription
