"""`framepack-live render` end to end: a playable MP4, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from framepack_live.cluster.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "framepack_live.cluster.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.heavy
def test_render_on_the_default_model_writes_playable_mp4(tmp_path):
    """Every setting the default model's but the length (its 5 s take minutes on 2 cores)."""
    out, latents = tmp_path / "video.mp4", tmp_path / "latents.pt"
    result = run_cli("render", "--prompt", "a red circle moves left", "--seconds", "1", "--out", str(out),
                     "--latents-out", str(latents))
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


def tiny_render(tmp_path, name: str, *extra: str) -> Path:
    out = tmp_path / name
    small = ["--model", "tiny", "--device", "cpu", "--width", "64", "--height", "64", "--steps", "2", "--window", "2",
             "--scheduler", "euler"]
    args = ["render", *([] if "--from" in extra else small), "--out", str(out), *extra]
    assert main(args) == 0
    return out


def decoded(path) -> list:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_render_from_a_video_makes_it_again_bit_for_bit(tmp_path, tiny_loras):
    from PIL import Image

    from framepack_live.stream.metadata import read_record

    image = tmp_path / "start.png"
    Image.new("RGB", (80, 64), (40, 120, 200)).save(image)
    first = tiny_render(tmp_path, "first.mp4", "--image", str(image), "--prompt", "a red circle moves left",
                        "--prompt-at", "0.2=the camera pans right", "--sections", "2", "--seed", "9",
                        "--lora", f"{tiny_loras / 'first'}:0.7")
    record = read_record(first)
    assert record.start.kind == "image" and record.start.image == image.read_bytes()
    assert record.settings.seed == 9 and record.settings.loras[0][1] == 0.7
    assert [(e["section"], e["prompt"], e["branch"]) for e in record.timeline] == [
        (0, "a red circle moves left", 0), (1, "the camera pans right", 0)]
    image.unlink()  # the video carries its start image
    again = tiny_render(tmp_path, "again.mp4", "--from", str(first))
    assert again.read_bytes() == first.read_bytes()


def test_text_to_video_and_extension_carry_their_start_and_replay(tmp_path):
    from framepack_live.stream.metadata import read_record

    made = tiny_render(tmp_path, "t2v.mp4", "--t2v", "--prompt", "a red circle moves left", "--sections", "1")
    assert read_record(made).start.kind == "text"
    original = decoded(made)
    longer = tiny_render(tmp_path, "longer.mp4", "--extend", str(made), "--prompt", "the camera pans left",
                         "--sections", "2")
    frames = decoded(longer)
    assert len(frames) == len(original) + 2 * 8
    record = read_record(longer)
    assert record.start.kind == "video" and record.start.frames == len(original)
    assert tiny_render(tmp_path, "longer-again.mp4", "--from", str(longer)).read_bytes() == longer.read_bytes()
    assert tiny_render(tmp_path, "t2v-again.mp4", "--from", str(made)).read_bytes() == made.read_bytes()


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--lora", "/nonexistent/lora"], "no LoRA at"),
        (["--t2v", "--end-image", "x.png"], "drop it with --t2v"),
        (["--extend", "/nonexistent.mp4"], "cannot read the video"),
        (["--from", "/nonexistent.mp4"], "cannot read the video"),
    ],
)
def test_bad_input_of_the_new_start_options(tmp_path, capsys, extra, needle):
    if "--end-image" in extra:
        from PIL import Image

        Image.new("RGB", (16, 16)).save(tmp_path / "x.png")
        extra = [e.replace("x.png", str(tmp_path / "x.png")) for e in extra]
    args = ["render", "--out", str(tmp_path / "x.mp4"), *extra]
    if "--from" not in extra:
        args += ["--prompt", "a red circle"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_from_refuses_settings_beside_it_and_videos_without_a_record(tmp_path, capsys):
    from framepack_live.stream.mp4 import Mp4Writer

    plain = tmp_path / "plain.mp4"
    with Mp4Writer(str(plain), fps=30) as writer:
        writer.write(np.zeros((9, 64, 64, 3), np.uint8))
    assert main(["render", "--from", str(plain), "--out", str(tmp_path / "x.mp4")]) == 2
    assert "carries no framepack-live settings" in capsys.readouterr().err
    assert main(["render", "--from", str(plain), "--seed", "3", "--prompt", "p", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "drop --prompt, --seed" in capsys.readouterr().err
    assert main(["render", "--extend", str(plain), "--prompt", "p", "--model", "tiny", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "at least" in capsys.readouterr().err
