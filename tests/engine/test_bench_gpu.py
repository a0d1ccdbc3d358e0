"""`bench gpu` at toy size on CPU: the counts it reports must match the architecture's arithmetic.

The benchmark is meant for one GPU run at the released model's size, so the run must not fail
there; this checks its whole code path (one rank, plain and sequence-parallel steps, FLOP count)
on a model small enough for CI.
"""

from __future__ import annotations

import json

import pytest

from framepack_live.bench.gpu import main

HEADS, HEAD_DIM, BLOCKS, TEXT, IMAGE = 2, 16, 2, 8, 4
HIDDEN = HEADS * HEAD_DIM
# 64 px -> 8x8 latents -> 4x4 tokens a frame: window 2 + clean 2 at 1x, 1 frame 2x2 at 2x, 4 frames 1x1 at 4x.
VIDEO_TOKENS = 4 * 16 + 4 + 4
SEQUENCE = VIDEO_TOKENS + TEXT + IMAGE
REFINER_LAYERS = 2  # diffusers' default, which the released config keeps
TINY = (
    f"--device cpu --size 64 --window 2 --heads {HEADS} --head-dim {HEAD_DIM} --layers 1 --single-layers 1 "
    f"--text-dim 32 --image-dim 32 --text-tokens {TEXT} --image-tokens {IMAGE} --steps 1"
)


def test_tiny_run_reports_consistent_counts(capsys) -> None:
    assert main(TINY.split()) == 0
    result = json.loads(capsys.readouterr().out)

    assert result["sequence_tokens"] == SEQUENCE and result["video_tokens"] == VIDEO_TOKENS
    # Joint attention in every block, plus the text refiner's self-attention over the text alone.
    assert result["flops_attention"] == 4 * HEADS * HEAD_DIM * (BLOCKS * SEQUENCE**2 + REFINER_LAYERS * TEXT**2)
    # Every block applies q, k, v, out and the 4x MLP (12 C^2 weights) to every token of the sequence;
    # no weight sees more tokens than the sequence has.
    assert 2 * 12 * HIDDEN**2 * SEQUENCE * BLOCKS < result["flops_matmul"] < 2 * result["params"] * SEQUENCE
    assert result["flops_per_step"] == result["flops_matmul"] + result["flops_attention"]
    assert result["step_s"] > 0 and result["step_s_sp_path"] > 0 and result["achieved_tflops"] > 0
    assert result["matmul_tflops_reference"] > 0
    assert result["max_abs_diff_sp_vs_plain"] <= 1e-5


@pytest.mark.heavy
def test_tiny_sharded_run_reports_the_gathered_weights(capsys) -> None:
    """`--ranks 2 --shard-weights 1` on CPU (gloo): the mode a multi-GPU lease measures at full size."""
    assert main([*TINY.split(), "--ranks", "2", "--shard-weights", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ranks"] == 2 and result["step_s"] > 0
    assert result["gathered_gib_per_step_per_rank"] > 0  # half of the blocks came from the other rank
