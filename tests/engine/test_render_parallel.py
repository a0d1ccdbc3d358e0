"""`render --sequence-parallel N` gives the latents of one process (issue: sequence parallelism),
with the block weights sharded over the ranks too (`--shard-weights`)."""

from __future__ import annotations

import pytest

from framepack_live.engine import rendering
from framepack_live.engine.errors import InputError
from framepack_live.engine.parallel import run_parallel


@pytest.mark.heavy
@pytest.mark.parametrize("sampling", ["forward", "inverted"])
def test_two_ranks_match_one(tiny_model, render_job, sampling):
    job = render_job(sampling, sections=2, scheduler="unipc")
    single = rendering.generate(job, show=False).latents
    rendered = run_parallel(2, rendering.generate_on_rank, job)
    frames, parallel = rendered.frames, rendered.latents
    assert parallel.shape == single.shape
    assert (parallel - single).abs().max().item() <= 1e-4
    assert frames.shape[0] == (single.shape[2] - 1) * 4 + 1


@pytest.mark.heavy
def test_sharded_weights_match_the_plain_path(tiny_model, render_job):
    plain = render_job("forward", sections=2, scheduler="unipc")
    sharded = render_job("forward", 2, "unipc", "--sequence-parallel", "2", "--shard-weights")
    expected = rendering.generate(plain, show=False).latents
    latents = run_parallel(2, rendering.generate_on_rank, sharded).latents
    assert (latents - expected).abs().max().item() <= 1e-4


def test_shard_weights_needs_ranks(render_job):
    with pytest.raises(InputError, match="--sequence-parallel N >= 2"):
        render_job("forward", 1, "euler", "--shard-weights")
