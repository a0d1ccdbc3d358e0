"""WebRTC viewing with aiortc: a video track that plays a session's frames, and offer/answer.

aiortc does the hard parts (ICE, DTLS-SRTP, RTP, VP8/H.264 encoding, codec negotiation: the
answer follows the offer's order, so Chromium gets VP8); this module only feeds it frames.
"""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError

from framepack_live.engine.errors import InputError

from .media import decode_jpeg
from .session import Session

#: A peer that has not connected this long after the answer (it gave up, or offered no video)
#: is closed, so that it neither holds a viewer slot nor keeps its session from being freed.
CONNECT_TIMEOUT_S = 30.0

_timers: set[asyncio.Task] = set()  # asyncio keeps only weak references to tasks


class SessionTrack(VideoStreamTrack):
    """Plays a session's video from frame `first`, in playback order, at the session's fps.

    When generation is slower than real time the track holds the last frame (the browser shows a
    still image, not a stutter, and never skips ahead); it ends after the last frame of a session
    that has ended.
    """

    def __init__(self, session: Session, first: int = 0) -> None:
        super().__init__()
        self._session = session
        self._ticks = VIDEO_CLOCK_RATE // session.settings.fps  # integer: no drift from rounding
        self._next = first
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
            jpeg = await self._session.frame(self._next)
            if jpeg is None:
                self._end()
            self._take(jpeg)
        pts, time_base = await self.next_timestamp()
        if pts:  # the first frame was taken above
            if self._next < len(self._session.frames):
                self._take(self._session.frames[self._next])
            elif not self._session.active:
                self._end()
        frame = av.VideoFrame.from_ndarray(self._last, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame

    def _take(self, jpeg: bytes) -> None:
        # Decoded on the loop: a frame of FramePack's sizes takes about a millisecond.
        self._last = decode_jpeg(jpeg)
        self._next += 1

    def _end(self) -> None:
        self.stop()
        raise MediaStreamError


async def answer_offer(session: Session, offer: RTCSessionDescription, ice_servers: tuple[dict, ...]) -> RTCSessionDescription:
    """Answer a browser's offer with a peer connection that sends `session`'s video.

    The connection is closed when the peer goes away (ICE fails or it hangs up) or the session
    is freed.
    """
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(**server) for server in ice_servers]))
    try:
        session.add_peer(pc)
    except InputError:
        await pc.close()
        raise

    async def close() -> None:
        session.remove_peer(pc)
        await pc.close()

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await close()

    async def close_unless_connected() -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if pc.connectionState != "connected":
            await close()

    # A viewer that joins (or re-joins after a reload) a running session starts at its newest
    # section, the live edge, rather than replaying the video from the start; the whole video
    # stays available as the MP4 export.
    pc.addTrack(SessionTrack(session, first=session.records[-1].first_frame if session.records else 0))
    try:
        await pc.setRemoteDescription(offer)
        await pc.setLocalDescription(await pc.createAnswer())
    except ValueError as exc:  # aiortc's error for SDP it cannot parse or answer
        await close()
        raise InputError("bad_request", f"cannot answer this offer: {exc}") from None
    timer = asyncio.create_task(close_unless_connected())
    _timers.add(timer)
    timer.add_done_callback(_timers.discard)
    return pc.localDescription
