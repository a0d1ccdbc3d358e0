"""A real preset's first run when the hub cannot be reached: one line naming the model and how to
fetch it, at once (no network is reached: offline mode, or a closed port on this machine)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framepack_live.engine.download import DownloadProgress, HubPart, hub_parts, select_files
from framepack_live.engine.presets import PRESETS


def render_real_preset(tmp_path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf"), **env}
    return subprocess.run(
        [sys.executable, "-m", "framepack_live.cluster.cli", "render", "--model", "framepack-f1", "--prompt", "a dog",
         "--sections", "1", "--width", "64", "--height", "64", "--out", str(tmp_path / "out.mp4")],
        capture_output=True, text=True, timeout=120, env=environment,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("env", [
    {"HF_HUB_OFFLINE": "1"},
    {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:{port}"},
], ids=["offline", "unreachable"])
def test_an_unreachable_hub_gives_one_line_naming_the_model_and_how_to_fetch_it(tmp_path, env):
    env = {k: v.format(port=closed_port()) for k, v in env.items()}
    began = time.monotonic()
    result = render_real_preset(tmp_path, **env)
    assert time.monotonic() - began < 60
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("framepack-live: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    line = lines[0]
    assert "framepack-f1" in line and "hf download lllyasviel/FramePack_F1_I2V_HY_20250503" in line
    assert "hf download hunyuanvideo-community/HunyuanVideo --include model_index.json" in line
    assert "'transformer/*'" not in line  # F1's own transformer replaces the base repository's
    assert "--model" in line


def test_the_files_fetched_are_what_the_stage_loads():
    source = PRESETS["framepack-f1"]
    base, transformer, image = hub_parts(source, ("text", "image", "transformer", "vae"))
    assert (base.repo, transformer.repo, image.repo) == (source.base, source.transformer, source.image_encoder)
    assert set(base.folders) == {"scheduler", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "vae"}
    (decoder_base,) = hub_parts(source, ("vae",))
    assert decoder_base.folders == ("scheduler", "vae")
    sizes = {"model_index.json": 1, "vae/config.json": 2, "vae/diffusion_pytorch_model.safetensors": 3,
             "vae/diffusion_pytorch_model.bin": 4, "transformer/x.safetensors": 5, "README.md": 6}
    assert select_files(decoder_base, sizes) == {"model_index.json": 1, "vae/config.json": 2,
                                                 "vae/diffusion_pytorch_model.safetensors": 3}
    root = HubPart("transformer", "owner/name", root=True)
    assert set(select_files(root, {"config.json": 1, "a.safetensors": 2, "sub/b.safetensors": 3})) == {"config.json", "a.safetensors"}


def test_download_progress_counts_the_hub_library_bytes_and_reports_rate_and_time_left():
    progress = DownloadProgress(show=False)
    progress.checking("framepack-f1")
    progress.start(total=1000, cached=200)
    bars = progress.bar_class()
    counted = bars(total=800, unit="B", name="huggingface_hub.snapshot_download")
    elsewhere = bars(total=800, unit="B", name="huggingface_hub.snapshot_download.transfer")
    time.sleep(0.05)
    counted.update(300)
    elsewhere.update(300)  # network bytes: the same data, not counted twice
    status = progress.status()
    assert (status.state, status.total_bytes, status.done_bytes) == ("downloading", 1000, 500)
    assert status.bytes_per_second > 0 and status.seconds_left == pytest.approx(500 / status.bytes_per_second)
    progress.finish()
    assert progress.status().to_dict()["state"] == "done"


def test_a_first_run_fetches_only_what_the_stage_loads_and_counts_every_byte(tmp_path, monkeypatch, local_hub):
    from huggingface_hub import constants

    from framepack_live.engine.download import ensure_local
    from framepack_live.engine.presets import ModelSource

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    files = {"model_index.json": b"{}", "scheduler/scheduler_config.json": b"{\"a\": 1}", "vae/config.json": b"[]",
             "vae/diffusion_pytorch_model.safetensors": b"v" * 300_000, "vae/diffusion_pytorch_model.bin": b"b" * 10,
             "transformer/diffusion_pytorch_model.safetensors": b"t" * 100}
    hub = local_hub(files)
    progress = DownloadProgress(show=False)
    source = ensure_local("fake", ModelSource(base="owner/fake"), ("vae",), progress, endpoint=hub.url)
    status = progress.status()
    expected = {"model_index.json", "scheduler/scheduler_config.json", "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors"}
    assert set(hub.served) == expected
    assert (status.state, status.total_bytes, status.done_bytes) == ("done", 300_012, 300_012)
    assert (Path(source.base) / "vae" / "diffusion_pytorch_model.safetensors").stat().st_size == 300_000
    again = DownloadProgress(show=False)
    assert ensure_local("fake", ModelSource(base="owner/fake"), ("vae",), again, endpoint=hub.url) == source
    assert len(hub.served) == 4  # all cached: nothing fetched twice
    assert again.status().done_bytes == again.status().total_bytes == 300_012
