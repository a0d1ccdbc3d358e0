"""`bench toyworld`'s drift summary: means over videos, the shape's colour only where the shape survived."""

from framepack_live.bench.toyworld import summarise


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
