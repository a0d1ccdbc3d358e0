"""Engine test helpers: a render job parsed exactly as the command line parses it."""

from __future__ import annotations

import argparse
import copy

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
