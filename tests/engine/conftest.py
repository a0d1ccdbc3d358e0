"""Engine test helpers: a render job parsed exactly as the command line parses it."""

from __future__ import annotations

import argparse
import copy
import json
import shutil

import pytest
import torch

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


def write_lora(transformer: torch.nn.Module, out, seed: int, rank: int = 2) -> None:
    """A LoRA for `transformer`'s architecture with random (non-zero) B matrices, written in
    diffusers' format by the training's own export."""
    from framepack_live.train.lora import add_lora, export_lora

    trained = copy.deepcopy(transformer)
    config = add_lora(trained, rank)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in trained.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    export_lora(trained, config, out, "# test LoRA\n\nRandom weights for tests.\n")


@pytest.fixture
def make_lora():
    """`write_lora`, for tests that need a LoRA of another architecture."""
    return write_lora


@pytest.fixture(scope="session")
def tiny_loras(tiny_model, tmp_path_factory):
    """A directory of two LoRAs for the tiny model (`first`, `second`) and a file that is none."""
    root = tmp_path_factory.mktemp("loras")
    write_lora(tiny_model.transformer, root / "first", seed=1)
    write_lora(tiny_model.transformer, root / "second", seed=2)
    (root / "notes.txt").write_text("not a LoRA")
    return root
