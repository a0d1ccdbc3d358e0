"""`render --sequence-parallel N` gives the latents of one process (issue: sequence parallelism)."""

from __future__ import annotations

import pytest

from framepack_live.engine import rendering
from framepack_live.engine.parallel import run_parallel


@pytest.mark.heavy
@pytest.mark.parametrize("sampling", ["forward", "inverted"])
def test_two_ranks_match_one(tiny_model, render_job, sampling):
    job = render_job(sampling, sections=2, scheduler="unipc")
    _, single = rendering.generate(job, show=False)
    frames, parallel = run_parallel(2, rendering.generate_on_rank, job)
    assert parallel.shape == single.shape
    assert (parallel - single).abs().max().item() <= 1e-4
    assert frames.shape[0] == (single.shape[2] - 1) * 4 + 1
