"""`bench toyworld`'s statistics: drift measured on ground-truth world videos, means over videos
(the shape's colour only where it survived), Wilson intervals."""

import numpy as np
import pytest

from framepack_live.bench.toyworld import (PART_SPACING, Start, drift_motions, drift_stats, main, start_clip, start_image, start_of,
                                           summarise, wilson_interval)
from framepack_live.train.world import Clip, WorldConfig

MOTIONS = ["left", "up", "right", "down"] * 2
WORLD = WorldConfig(size=128)


def true_drift_video(motions: list[str] = MOTIONS, case: int = 0) -> tuple[Clip, Start]:
    """The world's own video of the benchmark's drift start `case` under `motions` (what a perfect
    model would generate) and the start."""
    clip = start_clip(2 * PART_SPACING + case, WORLD, motions)
    return clip, start_of(clip)


def test_drift_of_the_true_video_is_nil_and_every_section_follows():
    truth, start = true_drift_video()
    assert np.array_equal(truth.frames[0], np.asarray(start_image(200, WORLD).image))
    stats = drift_stats(truth.frames, start, WORLD.window, truth)
    assert stats["following"] == 1.0
    assert stats["shape_present"] == 1.0
    assert abs(stats["shape_area_last5"] - 1.0) < 0.1
    assert stats["background_shift_last5"] < 1.0
    assert stats["shape_colour_shift_last5"] < 1.0


@pytest.mark.parametrize("captions, case", [("cycle", 1), ("single", 7)])
def test_the_background_of_the_true_video_does_not_shift_when_the_shape_moves_over_another_colour(captions, case):
    # The two drift starts where a mean over each section's own background pixels moved most
    # (up to 5.8 RGB), because the shape covered sky in one section and ground in another.
    truth, start = true_drift_video(drift_motions(captions, 12, case), case)
    stats = drift_stats(truth.frames, start, WORLD.window, truth)
    assert max(stats["background_shift_per_section"]) < 0.1


def test_a_shape_that_vanishes_is_neither_present_nor_following():
    truth, start = true_drift_video()
    video = truth.frames.copy()
    video[1 + 3 * WORLD.window * 4:] = truth.background  # gone from the first frame of section 3 on
    stats = drift_stats(video, start, WORLD.window, truth)
    assert stats["following"] == stats["shape_present"] == 3 / 8
    assert stats["shape_area_last5"] == 0.0
    assert stats["shape_colour_shift_last5"] is None


def test_following_is_scored_only_where_the_true_shape_moves():
    truth, start = true_drift_video(drift_motions("single", 8, case=0))
    assert set(truth.motions) == {"left"}
    stats = drift_stats(truth.frames, start, WORLD.window, truth)
    assert stats["following"] == 1.0  # the sections pressed against the border are not scored
    still = truth.frames.copy()
    still[1:] = truth.frames[0]
    assert drift_stats(still, start, WORLD.window, truth)["following"] == 0.0


def run(present: float, background: float, colour: float | None) -> dict:
    return {"shape_present": present, "shape_present_last5": present, "shape_area_last5": present,
            "following": present, "background_shift_last5": background,
            "shape_colour_shift_last5": colour, "background_shift_per_section": [0.0, background]}


def test_drift_summary_averages_the_videos_and_skips_lost_shapes_for_colour():
    summary = summarise([run(1.0, 2.0, 4.0), run(0.0, 6.0, None)])
    assert summary["videos"] == 2
    assert summary["shape_present"] == summary["shape_present_last5"] == 0.5
    assert summary["background_shift_last5"] == 4.0
    assert summary["shape_colour_shift_last5"] == 4.0
    assert len(summary["per_video"]) == 2


def test_drift_summary_has_no_colour_shift_when_every_shape_is_lost():
    assert summarise([run(0.0, 1.0, None)])["shape_colour_shift_last5"] is None


def test_wilson_interval_matches_the_textbook_values_and_stays_inside_0_1():
    assert wilson_interval(31, 32) == [0.843, 0.994]
    low, high = wilson_interval(0, 8)
    assert low == 0.0 and 0.3 < high < 0.4
    assert wilson_interval(8, 8)[1] == 1.0


@pytest.mark.parametrize("argv", [["--case-offset", "500"], ["--case-offset", "-1000"], ["--cases", "101"]])
def test_held_out_ranges_never_overlap(argv):
    # Following, steering and drift take starts 100 apart from the offset: a validation range
    # (offset 1000) must not share a start with the reported one, nor one part with another.
    with pytest.raises(SystemExit):
        main(argv)


def test_a_caption_switched_at_once_jumps_at_the_seam_and_steady_motion_does_not():
    """The transition measure on the world's own videos: reversing at section 2 makes the
    velocity jump there far beyond any change within sections; a steady motion has no jump (in a
    world large enough that the shape never reaches the border, where it would stop)."""
    from framepack_live.bench.toyworld import velocity_jumps

    world = WorldConfig(size=256)
    for motions, jumps in ((["left", "left", "right", "right"], True), (["left"] * 4, False)):
        clip = start_clip(3 * PART_SPACING, world, motions)
        _, track = start_of(clip).track(clip.frames)
        seam, within = velocity_jumps(track, WORLD.window, range(2, 3))
        assert (seam > 3 * within) if jumps else (seam < 0.5 and within < 0.5), (motions, seam, within)


def test_seam_stats_split_frame_steps_at_section_seams():
    from framepack_live.bench.seams import seam_stats

    window, sections = 2, 3
    steps = np.ones(sections * window * 4)
    steps[window * 4 :: window * 4] = 3  # the step into each later section's first frame
    frames = np.cumsum(np.concatenate([[0], steps]))[:, None, None, None] * np.ones((1, 2, 2, 3))
    assert seam_stats(frames.astype(np.uint8), window) == (3.0, 1.0)
