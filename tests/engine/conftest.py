"""Engine test helpers: a render job parsed exactly as the command line parses it."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from framepack_live.cluster import render
from framepack_live.engine.rendering import RenderJob


@pytest.fixture
def render_job():
    """`render.plan` of a small command line, so tests run render's own code path."""

    def make(sampling: str, sections: int, scheduler: str = "euler", *extra: str) -> RenderJob:
        parser = argparse.ArgumentParser()
        render.add_arguments(parser)
        args = parser.parse_args(
            ["--prompt", "a red circle moves left", "--out", "unused.mp4", "--model", "tiny", "--width", "64",
             "--height", "64", "--steps", "2", "--window", "3", "--seed", "7", "--sampling", sampling,
             "--scheduler", scheduler, "--sections", str(sections), "--device", "cpu", *extra]
        )
        return render.plan(args).job

    return make


@pytest.fixture
def tiny_with_live_decoder(tmp_path):
    """A copy of the tiny model whose framepack_live.json names a (random) small live decoder, and
    samples 2 Euler steps of 3-frame windows by default (what the toy models' benchmarks use, made short)."""
    from framepack_live.engine.fast_decoder import LIVE_DECODER_KEY, SUBFOLDER, FastDecoder
    from framepack_live.engine.tiny import PROJECT_FILE, ensure_tiny

    directory = tmp_path / "model"
    shutil.copytree(ensure_tiny(), directory)
    FastDecoder(channels=(16, 8, 8)).save_pretrained(directory / SUBFOLDER)
    settings = json.loads((directory / PROJECT_FILE).read_text())
    defaults = {"steps": 2, "window": 3, "scheduler": "euler", LIVE_DECODER_KEY: SUBFOLDER}
    (directory / PROJECT_FILE).write_text(json.dumps({**settings, **defaults}))
    return directory
