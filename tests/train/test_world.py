"""The procedural world: deterministic by seed, and its captions describe what its frames show."""

import numpy as np
import pytest

from framepack_live.train.tracking import calibrate, centroids, colour_mask, displacement, follows
from framepack_live.train.world import (
    COLOURS,
    DIRECTIONS,
    PAN_MOTIONS,
    WorldConfig,
    all_captions,
    caption,
    parse_motion,
    render_clip,
    shape_mask,
)

WORLD = WorldConfig(size=64, window=2, sections=4, distractor_probability=0.0)


def test_same_seed_same_clip_and_different_seed_different_clip():
    a, b, c = render_clip(7, WORLD), render_clip(7, WORLD), render_clip(8, WORLD)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.positions, b.positions)
    assert a.captions == b.captions
    assert not np.array_equal(a.frames, c.frames)


def test_every_grammar_caption_parses_back_to_its_motion():
    captions = all_captions()
    assert len(set(captions)) == len(captions) == len(COLOURS) * 3 * 4 * 2 + len(PAN_MOTIONS)
    for text in captions:
        motion = parse_motion(text)
        words = text.split()
        assert motion in PAN_MOTIONS or caption(words[1], words[2], motion, words[0]) == text
    assert parse_motion("the camera pans left") == "pan left"
    assert parse_motion("a blue square moves up") == "up"


@pytest.mark.parametrize("seed", range(12))
def test_positions_follow_the_caption_of_each_section(seed):
    clip = render_clip(seed, WORLD)
    per_section = WORLD.frames_per_section
    assert len(clip.captions) == WORLD.sections == len(clip.motions)
    for section, (text, motion) in enumerate(zip(clip.captions, clip.motions)):
        assert parse_motion(text) == motion
        first, last = section * per_section, (section + 1) * per_section
        step = clip.positions[last] - clip.positions[first]
        if motion in PAN_MOTIONS:
            assert np.allclose(step, 0)
            continue
        wanted = np.array(DIRECTIONS[motion])
        assert step @ wanted >= 0 and np.allclose(step @ wanted[::-1], 0)
        low, high = clip.radius + 1, WORLD.size - clip.radius - 1
        at_border = np.any(np.isclose(clip.positions[last], low) | np.isclose(clip.positions[last], high))
        assert step @ wanted > 0 or at_border


def test_the_tracker_finds_the_shape_where_the_ground_truth_says():
    clip = render_clip(3, WORLD, motions=["right"] * 4, start=(16.0, 32.0), colour="blue", shape="square")
    track = centroids(colour_mask(clip.frames, COLOURS["blue"]))
    assert np.abs(track - clip.positions).max() < 1.0
    truth = shape_mask(64, "square", *clip.positions[0], clip.radius)
    rgb, tolerance = calibrate(clip.frames[0], truth)
    assert np.allclose(rgb, COLOURS["blue"]) and tolerance > 20
    assert np.array_equal(colour_mask(clip.frames[:1], rgb, tolerance)[0], truth)
    assert follows(displacement(track, 1, 8), "right")
    assert not follows(displacement(track, 1, 8), "left")


def test_camera_pan_moves_the_background_not_the_shape():
    clip = render_clip(5, WorldConfig(size=64, window=2, sections=2, distractor_probability=0.0),
                       motions=["pan right", "pan right"])
    assert np.allclose(clip.positions, clip.positions[0])
    assert not np.array_equal(clip.frames[0], clip.frames[-1])


def test_the_new_motion_is_rendered_and_scored_against_eight_directions():
    from framepack_live.train.world import NEW_MOTIONS, all_captions

    clip = render_clip(4, WorldConfig(size=64, window=2, sections=2, distractor_probability=0.0),
                       motions=["diagonally"] * 2, start=(20.0, 44.0))
    step = clip.positions[-1] - clip.positions[0]
    assert step[0] > 0 and step[1] < 0 and abs(step[0] + step[1]) < 1e-3  # up and right, equally
    assert clip.captions[0].endswith("moves diagonally")
    assert not any(motion in caption for caption in all_captions() for motion in NEW_MOTIONS)  # the base data
    assert follows(np.array([10.0, -10.0]), "diagonally")
    assert follows(np.array([10.0, -5.0]), "diagonally")  # 26.6 degrees from the x axis: nearest the diagonal
    assert not follows(np.array([10.0, -3.0]), "diagonally")  # nearer to "right"
    assert not follows(np.array([-10.0, 10.0]), "diagonally")
    assert follows(np.array([10.0, -9.0]), "right") and not follows(np.array([9.0, -10.0]), "right")
