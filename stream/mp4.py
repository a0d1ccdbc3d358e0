"""H.264 MP4 with PyAV: incremental writing for files (`render`) and in-memory exports, and
reading a video's frames back (`render --extend`)."""

from __future__ import annotations

from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np

from framepack_live.engine.errors import InputError

#: H.264 encoders in order of preference; PyAV's wheels ship libx264, some FFmpeg builds only
#: Cisco's libopenh264.
H264_ENCODERS = ("libx264", "libopenh264")


def h264_encoder() -> str:
    """The H.264 encoder this FFmpeg build has; an error naming the problem if it has none."""
    for name in H264_ENCODERS:
        if name in av.codecs_available:
            return name
    raise RuntimeError(f"PyAV's FFmpeg has no H.264 encoder (looked for {', '.join(H264_ENCODERS)})")


class Mp4Writer:
    """Appends uint8 RGB frames to an H.264 MP4 (yuv420p, so every player takes it).

    The size is taken from the first frame; `crf` sets x264's quality (lower is better, 18 is
    visually lossless, 23 its default); `preset` trades encoding speed for size; `options` are
    the MP4 muxer's (e.g. `movflags`). `metadata` are container tags of any name
    (`stream.metadata`'s record among them), which needs the muxer's `use_metadata_tags`: by
    default MP4 keeps only a fixed set of names.
    """

    def __init__(
        self,
        target: str | BinaryIO,
        fps: int,
        crf: int = 18,
        preset: str = "medium",
        options: dict | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        options = dict(options or {})
        if metadata:
            options["movflags"] = "+".join(filter(None, (options.get("movflags"), "use_metadata_tags")))
        self._container = av.open(target, mode="w", format="mp4", options=options)
        self._container.metadata.update(metadata or {})
        self._fps = fps
        self._options = {"crf": str(crf), "preset": preset}
        self._stream = None
        self._count = 0

    def _open_stream(self, height: int, width: int) -> None:
        stream = self._container.add_stream(h264_encoder(), rate=self._fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, self._fps)
        if stream.codec_context.name == "libx264":
            stream.codec_context.options = self._options
        self._stream = stream

    def write(self, frames: np.ndarray) -> None:
        """Append `[T, H, W, 3]` uint8 frames."""
        for frame in frames:
            if self._stream is None:
                self._open_stream(frame.shape[0], frame.shape[1])
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = self._count
            video_frame.time_base = Fraction(1, self._fps)
            self._container.mux(self._stream.encode(video_frame))
            self._count += 1

    def close(self) -> None:
        if self._stream is not None:
            self._container.mux(self._stream.encode(None))
        self._container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_video(source: str | BinaryIO, max_pixels: int | None = None) -> tuple[np.ndarray, float]:
    """All frames of a video's first video stream as uint8 `[T, H, W, 3]`, and its frame rate.

    Anything PyAV's FFmpeg decodes is accepted; what it cannot read is an `InputError`. With
    `max_pixels`, a video whose frames are larger is refused before any frame is decoded.
    """
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise InputError("bad_request", f"{_name(source)} has no video stream")
            stream = container.streams.video[0]
            if max_pixels is not None and stream.width * stream.height > max_pixels:
                raise InputError("bad_request", f"the video is {stream.width}x{stream.height}; at most {max_pixels} "
                                                "pixels a frame are accepted")
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError("bad_request", f"cannot read the video {_name(source)}: {exc}") from None
    if not frames:
        raise InputError("bad_request", f"{_name(source)} has no frames")
    return np.stack(frames), rate


def _name(source: str | BinaryIO) -> str:
    return source if isinstance(source, str) else "the uploaded video"
