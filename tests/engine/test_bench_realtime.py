"""`bench realtime` in process: real-time factors per variant, quality beside them, decoder PSNR.

(Its server part starts its own local Ray, as `bench serve` does; it is run by hand, see
docs/benchmarks.md.)"""

import json

from framepack_live.bench import realtime


def test_reports_speed_quality_and_the_live_decoders_psnr(tiny_with_live_decoder, capsys):
    model = str(tiny_with_live_decoder)
    # (compiling the tiny model takes minutes on a busy 2-core machine: --compile off here)
    assert realtime.main(["--model", model, "--baseline", "none", "--size", "64", "--sections", "2", "--rounds", "1",
                          "--parts", "engine", "quality", "decoder", "--caches", "none", "first-block:0.5",
                          "--compile", "off", "--cases", "1", "--decoder-clips", "1", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    engine = report["engine"]
    assert set(engine) == {"eager", "eager+first-block:0.5"}
    assert engine["eager"]["live_decoder"] and engine["eager+first-block:0.5"]["cache"] == "first-block:0.5"
    for variant in engine.values():
        assert variant["realtime"] > 0 and variant["section_s_median"] > 0
    assert set(report["quality"]) == {"none", "first-block:0.5", "case_offset"}
    assert 0 <= report["quality"]["none"]["following"]["inverted"]["accuracy"] <= 1
    decoder = report["decoder"]
    assert decoder["clips"] == 1 and decoder["sections_each"] == realtime.DECODER_SECTIONS
    assert all(isinstance(decoder[key], float) for key in ("clips_vs_vae", "clips_fast_vs_truth", "generated_vs_vae"))
