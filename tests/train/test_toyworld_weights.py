"""The shipped toy-world weights: they load as a pipeline directory and the shape goes where the caption says."""

from pathlib import Path

import numpy as np
import pytest

from framepack_live.bench.toyworld import DEFAULT_WEIGHTS, generate, section_bounds, start_image
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.settings import GenerationSettings
from framepack_live.train.export import directory_size
from framepack_live.train.tracking import displacement, follows
from framepack_live.train.world import OBJECT_MOTIONS, WorldConfig, caption

WORLD = WorldConfig()


@pytest.fixture(scope="module")
def model() -> FramePackModel:
    return FramePackModel.load(str(DEFAULT_WEIGHTS))


def test_weights_are_small_safetensors_with_the_engine_metadata():
    assert directory_size(DEFAULT_WEIGHTS) <= 25 * 2**20
    assert list(Path(DEFAULT_WEIGHTS).rglob("*.safetensors")) and not list(Path(DEFAULT_WEIGHTS).rglob("*.bin"))
    assert (DEFAULT_WEIGHTS / "framepack_live.json").exists() and (DEFAULT_WEIGHTS / "README.md").exists()


@pytest.mark.xfail(strict=True, reason="the shipped weights do not follow captions yet (docs/toyworld.md)")
def test_rendered_shape_moves_the_captioned_way(model):
    settings = GenerationSettings(width=WORLD.size, height=WORLD.size, steps=8, scheduler="euler",
                                  window=WORLD.window, sampling="forward", sections=2)
    hits = []
    for case, motion in enumerate(OBJECT_MOTIONS):
        start = start_image(case, WORLD)
        video = generate(model, start.image, [caption(start.colour, start.shape, motion)] * 2, settings)
        _, track = start.track(video)
        first, _ = section_bounds(0, WORLD.window)
        _, last = section_bounds(1, WORLD.window)
        hits.append(follows(displacement(track, first, last), motion))
    assert np.mean(hits) >= 0.75, hits
