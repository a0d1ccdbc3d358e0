"""MP4 export of a session's video so far."""

from __future__ import annotations

import io
from collections.abc import Sequence

from .media import decode_jpeg
from .mp4 import Mp4Writer


def encode_mp4(jpegs: Sequence[bytes], fps: int) -> bytes:
    """All frames, in order, as one H.264 MP4.

    The whole file is encoded again per request rather than kept growing: an MP4 only becomes
    playable once its index (`moov`) is written at the end, and x264's `ultrafast` preset makes
    re-encoding cheap next to generating the frames.
    """
    if not jpegs:
        raise ValueError("no frames to export")
    buffer = io.BytesIO()
    with Mp4Writer(buffer, fps, preset="ultrafast") as writer:
        for jpeg in jpegs:
            writer.write(decode_jpeg(jpeg)[None])
    return buffer.getvalue()
