"""`bench toyworld`'s statistics: drift means over videos (the shape's colour only where it survived), Wilson intervals."""

from framepack_live.bench.toyworld import summarise, wilson_interval


def run(present: float, background: float, colour: float | None) -> dict:
    return {"shape_present": present, "shape_present_last5": present, "background_shift_last5": background,
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
