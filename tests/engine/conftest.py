"""Engine test helpers: a render job parsed exactly as the command line parses it."""

from __future__ import annotations

import argparse

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
