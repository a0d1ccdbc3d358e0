"""The record of how a video was made survives PyAV's MP4 writing and reading; frames read back."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from framepack_live.engine.errors import InputError
from framepack_live.engine.settings import GenerationSettings
from framepack_live.stream.metadata import TAG, Start, VideoRecord, read_record, software_versions
from framepack_live.stream.mp4 import Mp4Writer, read_video


def frames(count: int = 5, size: int = 32) -> np.ndarray:
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    return np.stack([np.stack([np.roll(ramp, 3 * t)[None].repeat(size, 0)] * 3, axis=-1) for t in range(count)])


def record() -> VideoRecord:
    return VideoRecord(
        model="toyworld",
        settings=GenerationSettings(width=32, height=32, seed=11, sections=2, loras=(("/x/a.safetensors", 0.5),)),
        timeline=[{"section": 0, "prompt": "a red circle moves left", "branch": 0},
                  {"section": 1, "prompt": "ein roter Kreis, é ü ✓", "branch": 1}],
        # A start image of nearly a megabyte of incompressible bytes: kept whole, not truncated.
        start=Start("image", image=os.urandom(900_000), name="start.png", sha256="0" * 64),
        lora_sha256=["1" * 64],
        runtime={"device": None, "crf": 18},
        software=software_versions(),
    )


def test_the_record_survives_an_mp4_file_and_an_in_memory_one(tmp_path):
    original = record()
    path = tmp_path / "video.mp4"
    with Mp4Writer(str(path), fps=30, metadata=original.container_metadata()) as writer:
        writer.write(frames())
    back = read_record(path)
    assert back == original
    assert back.settings.loras == (("/x/a.safetensors", 0.5),)
    buffer = io.BytesIO()
    with Mp4Writer(buffer, fps=30, preset="ultrafast", metadata=original.container_metadata()) as writer:
        writer.write(frames())
    assert read_record(io.BytesIO(buffer.getvalue())) == original
    decoded, fps = read_video(str(path))
    assert decoded.shape == (5, 32, 32, 3) and fps == 30
    assert np.abs(decoded.astype(int) - frames().astype(int)).mean() < 3  # H.264 at crf 18


def test_videos_without_a_record_and_bad_records(tmp_path):
    plain = tmp_path / "plain.mp4"
    with Mp4Writer(str(plain), fps=24) as writer:
        writer.write(frames())
    assert read_record(plain) is None
    wrong = tmp_path / "wrong.mp4"
    with Mp4Writer(str(wrong), fps=24, metadata={TAG: '{"format": 99}'}) as writer:
        writer.write(frames())
    with pytest.raises(InputError, match="layout 99"):
        read_record(wrong)
    broken = tmp_path / "broken.mp4"
    with Mp4Writer(str(broken), fps=24, metadata={TAG: "{not json"}) as writer:
        writer.write(frames())
    with pytest.raises(InputError, match="cannot be read"):
        read_record(broken)
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError, match="cannot read the video"):
        read_record(text)
    with pytest.raises(InputError, match="cannot read the video"):
        read_video(str(text))
