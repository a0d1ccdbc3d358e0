"""The shipped few-step student `toyworld-fast`: small safetensors with its live decoder, sampled at
its own defaults (4 steps, no real CFG), and the live view's shape goes where the caption says."""

from pathlib import Path

import numpy as np
import pytest

from framepack_live.bench.toyworld import Start, generate
from framepack_live.engine.fast_decoder import SUBFOLDER
from framepack_live.engine.images import default_start_image, fit_to_size
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.presets import SHIPPED, resolve
from framepack_live.engine.settings import GenerationSettings
from framepack_live.train.export import directory_size
from framepack_live.train.tracking import displacement, follows
from framepack_live.train.world import COLOURS, OBJECT_MOTIONS, caption

FAST = SHIPPED["toyworld-fast"]


def test_weights_are_small_safetensors_with_their_live_decoder():
    assert directory_size(FAST) <= 25 * 2**20
    assert list(Path(FAST).rglob("*.safetensors")) and not list(Path(FAST).rglob("*.bin"))
    source = resolve("toyworld-fast")
    assert source.live_decoder == SUBFOLDER and (FAST / SUBFOLDER / "config.json").exists()
    assert source.defaults["steps"] <= 4 and source.defaults["cfg"] == 1.0  # no real CFG


@pytest.mark.heavy
def test_the_live_view_moves_the_default_shape_the_captioned_way():
    model = FramePackModel.load("toyworld-fast", device="cpu")
    assert model.fast_decoder is not None
    settings = GenerationSettings(**{**resolve("toyworld-fast").settings({}), "width": 128, "height": 128,
                                     "sections": 2, "seed": 0})
    image = fit_to_size(default_start_image(), 128, 128)
    truth = np.linalg.norm(np.asarray(image, np.float32) - np.array(COLOURS["red"], np.float32), axis=-1) < 40
    misses = {}
    for motion in OBJECT_MOTIONS:
        video = generate(model, image, [caption("red", "circle", motion)] * 2, settings)
        _, track = Start(image, "red", "circle", truth).track(video)
        if not follows(displacement(track, 1, len(track) - 1), motion):
            misses[motion] = track[::4].round(1).tolist()
    assert not misses, misses
