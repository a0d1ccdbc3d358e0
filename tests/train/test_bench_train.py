"""`bench train` times the shipped model's training step in each mode it is asked for, side by side."""

import json

from framepack_live.bench import train as bench_train


def test_reports_each_modes_step_and_its_ratio_to_fp32(capsys):
    assert bench_train.main(["--batch", "2", "--clips", "1", "--steps", "1", "--rounds", "2",
                             "--modes", "fp32", "bf16", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["step_s"]) == set(report["first_round_step_s"]) == {"fp32", "bf16"}
    assert all(value > 0 for value in report["step_s"].values())
    assert report["speedup_vs_fp32"]["fp32"] == 1.0
    assert report["speedup_vs_fp32"]["bf16"] == report["step_s"]["fp32"] / report["step_s"]["bf16"]
