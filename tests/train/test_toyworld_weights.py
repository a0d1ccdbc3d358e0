"""The shipped toy-world weights: they load as a pipeline directory and the shape goes where the caption says."""

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from framepack_live.bench.toyworld import DEFAULT_WEIGHTS, Start
from framepack_live.engine.images import default_start_image, fit_to_size
from framepack_live.train.export import directory_size
from framepack_live.train.tracking import displacement, follows
from framepack_live.train.world import COLOURS, OBJECT_MOTIONS, caption


def test_weights_are_small_safetensors_with_the_engine_metadata():
    assert directory_size(DEFAULT_WEIGHTS) <= 25 * 2**20
    assert list(Path(DEFAULT_WEIGHTS).rglob("*.safetensors")) and not list(Path(DEFAULT_WEIGHTS).rglob("*.bin"))
    assert (DEFAULT_WEIGHTS / "framepack_live.json").exists() and (DEFAULT_WEIGHTS / "README.md").exists()


def render_default(tmp_path: Path, prompt: str) -> np.ndarray:
    """`framepack-live render` with no --model and no --image: the shipped default model and start image."""
    out = tmp_path / "video.mp4"
    result = subprocess.run([sys.executable, "-m", "framepack_live.cluster.cli", "render", "--prompt", prompt,
                             "--sections", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def default_track(tmp_path: Path, motion: str) -> np.ndarray:
    """Render the default shape (the start image's red disc) with `motion` and track it per frame."""
    video = render_default(tmp_path, caption("red", "circle", motion))
    image = fit_to_size(default_start_image(), video.shape[2], video.shape[1])
    truth = np.linalg.norm(np.asarray(image, np.float32) - np.array(COLOURS["red"], np.float32), axis=-1) < 40  # the red disc
    _, track = Start(image, "red", "circle", truth).track(video)
    return track


@pytest.mark.heavy
def test_rendered_default_shape_moves_the_captioned_way(tmp_path):
    misses = {}
    for motion in OBJECT_MOTIONS:
        track = default_track(tmp_path, motion)
        if not follows(displacement(track, 1, len(track) - 1), motion):
            misses[motion] = track[::4].round(1).tolist()
    assert not misses, misses
