"""A fragmented MP4 made section by section: each section is encoded once, a download only reads.

ffmpeg's MP4 muxer writes a fragment when the next one begins, and PyAV cannot write the NULL
packet that would flush one on demand, so a growing file would always lack its newest section.
Instead each section is encoded alone into a small fragmented MP4 of its own. The encoder
settings never change, so every such segment starts with the same `ftyp` and `moov` (the same
H.264 parameter sets), and the whole video is the first segment's header followed by every
segment's fragment (`moof` + `mdat`), once two fields of each fragment say where it belongs: the
movie fragment's sequence number and the track fragment's base decode time. Those two fields are
written here by hand, on the few bytes of the ISO BMFF box headers; nothing else is touched.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .mp4 import Mp4Writer

#: Fragmented output: an empty `moov` first, then everything in one fragment when the segment is
#: closed (no fragment per keyframe: a scene cut must not split a section), with offsets relative
#: to the `moof` so the fragment can sit anywhere in a file.
FRAGMENTED = {"movflags": "empty_moov+default_base_moof"}


@dataclass(frozen=True)
class Segment:
    """One section's encoded video: the file header every segment shares, and its own fragment."""

    header: bytes
    fragment: bytes


#: x264's quality for sessions' video: visually lossless, as a download should be.
CRF = 18


def encode_segment(frames: np.ndarray, fps: int, first_frame: int, sequence: int, crf: int = CRF) -> Segment:
    """uint8 `[T, H, W, 3]` frames as the fragment that sits at `first_frame` of the video, numbered
    `sequence` (1-based, increasing along the file)."""
    buffer = io.BytesIO()
    with Mp4Writer(buffer, fps, crf=crf, preset="ultrafast", options=FRAGMENTED) as writer:
        writer.write(frames)
    data = buffer.getvalue()
    boxes = dict(_boxes(data))  # a segment holds one of each: ftyp, moov, moof, mdat (and mfra)
    header = boxes["ftyp"] + boxes["moov"]
    moof = bytearray(boxes["moof"])
    ticks = Fraction(_timescale(boxes["moov"]), fps) * first_frame
    if ticks.denominator != 1:
        raise ValueError(f"the track's timescale does not divide into frames of 1/{fps} s")
    _write_field(moof, ("mfhd",), ">I", sequence)
    _write_field(moof, ("traf", "tfdt"), ">Q", int(ticks))
    return Segment(header=header, fragment=bytes(moof) + boxes["mdat"])


def with_metadata(header: bytes, metadata: dict[str, str]) -> bytes:
    """`header` (a segment's `ftyp` + `moov`) carrying `metadata` as container tags.

    The tags live in the `moov` box's `udta` child. FFmpeg writes it (a one-frame MP4 muxed with
    the tags, see `Mp4Writer`) and it replaces the header's own; the track's boxes stay as they
    are, so the fragments encoded with the first header play on.
    """
    donor = io.BytesIO()
    with Mp4Writer(donor, 1, preset="ultrafast", options=FRAGMENTED, metadata=metadata) as writer:
        writer.write(np.zeros((1, 16, 16, 3), dtype=np.uint8))
    udta = dict(_children(dict(_boxes(donor.getvalue()))["moov"]))["udta"]
    boxes = dict(_boxes(header))
    body = b"".join(child for kind, child in _children(boxes["moov"]) if kind != "udta") + udta
    return boxes["ftyp"] + struct.pack(">I4s", 8 + len(body), b"moov") + body


def _children(box: bytes):
    """(type, bytes) of the boxes inside a container box (one without version and flags)."""
    return _boxes(box, 8, len(box))


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, bytes) of the boxes between `start` and `end`, in order."""
    end = len(data) if end is None else end
    offset = start
    while offset < end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size < 8:  # 0 (to the end of file) and 1 (64-bit size) never occur in a section's segment
            raise ValueError(f"unexpected MP4 box size {size} for {kind!r}")
        yield kind.decode("latin-1"), data[offset : offset + size]
        offset += size


def _find(box: bytes | bytearray, path: tuple[str, ...]) -> int:
    """Offset in `box` (a whole box) of the child box at `path`."""
    offset = 0
    for name in path:
        inner = offset + 8
        for kind, child in _boxes(box, inner, offset + struct.unpack_from(">I", box, offset)[0]):
            if kind == name:
                offset = inner
                break
            inner += len(child)
        else:
            raise ValueError(f"no {'/'.join(path)} box in the segment")
    return offset


def _write_field(box: bytearray, path: tuple[str, ...], fmt: str, value: int) -> None:
    """Set the first field of a full box (after its size, type, version and flags)."""
    offset = _find(box, path)
    if fmt == ">Q" and box[offset + 8] != 1:  # tfdt version 0 has a 32-bit decode time
        fmt = ">I"
    struct.pack_into(fmt, box, offset + 12, value)


def _timescale(moov: bytes) -> int:
    """The video track's timescale (ticks per second), from its media header."""
    offset = _find(moov, ("trak", "mdia", "mdhd"))
    version = moov[offset + 8]
    return struct.unpack_from(">I", moov, offset + 12 + (16 if version else 8))[0]
