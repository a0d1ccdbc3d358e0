"""`framepack-live render` end to end: a playable MP4, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import av
import pytest
import torch

from framepack_live.cluster.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "framepack_live.cluster.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.heavy
def test_render_with_defaults_writes_playable_mp4(tmp_path):
    out, latents = tmp_path / "video.mp4", tmp_path / "latents.pt"
    result = run_cli("render", "--prompt", "a red circle moves left", "--out", str(out), "--latents-out", str(latents))
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert (stream.width, stream.height) == (128, 128)
    frames = len(decoded)
    assert max(frame.std() for frame in decoded) > 1.0, "every frame is flat"
    saved = torch.load(latents)
    assert saved.dtype == torch.float32 and saved.shape[:2] == (1, 16)
    assert torch.isfinite(saved).all()
    assert frames == (saved.shape[2] - 1) * 4 + 1


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--image", "/nonexistent.png"], "cannot read image"),
        (["--model", "no-such-preset"], "unknown model"),
        (["--width", "100", "--height", "64"], "multiples of 16"),
        (["--prompt", "word " * 400], "tokens long"),
        (["--sections", "3", "--prompt-at", "1=" + "word " * 400], "tokens long"),
        (["--sections", "1", "--prompt-at", "60=later"], "outside the video"),
        (["--prompt-at", "soon"], "SECONDS=TEXT"),
        (["--sequence-parallel", "3"], "valid degrees: 1, 2, 4"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, extra, needle):
    args = ["render", "--prompt", "a red circle", "--out", str(tmp_path / "x.mp4"), *extra]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert needle in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_image_that_is_not_an_image(tmp_path, capsys):
    bad = tmp_path / "fake.png"
    bad.write_bytes(b"this is text, not a PNG")
    assert main(["render", "--prompt", "x", "--image", str(bad), "--out", str(tmp_path / "x.mp4")]) == 2
    assert "not a PNG, JPEG or WebP" in capsys.readouterr().err
