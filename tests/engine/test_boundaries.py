"""`Boundaries` without a model: branches share their parent's boundaries, a rewind's state is a
copy, and snapshots past the memory budget go to disk and come back the same."""

from __future__ import annotations

import pytest
import torch

from framepack_live.engine import video_state
from framepack_live.engine.boundaries import Boundaries
from framepack_live.engine.conditioning import ImageConditioning
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import VideoStart


def _state(step: int) -> video_state.VideoState:
    settings = GenerationSettings(width=64, height=64, window=2, decode="causal")
    start = ImageConditioning(image_embeds=torch.zeros(1, 4, 8), image_latents=torch.zeros(1, 16, 1, 8, 8))
    state = video_state.begin(VideoStart(start, torch.Generator().manual_seed(step).get_state()), settings, "p")
    state.video = torch.full((1, 16, 1 + 2 * step, 8, 8), float(step))
    state.step = step
    return state


@pytest.mark.parametrize("memory_bytes", [2**30, 0], ids=["memory", "disk"])
def test_branches_share_boundaries_and_rewinds_return_copies(memory_bytes):
    boundaries = Boundaries(memory_bytes)
    for step in range(3):
        boundaries.keep(_state(step))
    restored = boundaries.rewind(1)
    assert boundaries.branch == 1 and boundaries.sections(1) == 1 and boundaries.sections(0) == 2
    assert torch.equal(restored.video, _state(1).video[:, :, -video_state.latents_read(restored.settings) :])
    assert torch.equal(restored.rng_state, _state(1).rng_state)
    restored.video.add_(100)  # the kept boundary is not the state handed out
    boundaries.keep(_state(2))  # branch 1 goes on; branch 0's boundary 2 stays its own
    assert torch.equal(boundaries.rewind(2, branch=0).video, _state(2).video)
    assert torch.equal(boundaries.rewind(1, branch=1).video, _state(1).video)
    with pytest.raises(ValueError, match="not a boundary"):
        boundaries.rewind(4, branch=0)
    with pytest.raises(ValueError, match="no branch"):
        boundaries.rewind(0, branch=9)
    boundaries.close()


@pytest.mark.parametrize("memory_bytes", [2**30, 0], ids=["memory", "disk"])
def test_latest_is_a_copy_of_the_last_boundary_and_starts_no_branch(memory_bytes):
    """What a steer that drops the section being decoded goes back to."""
    boundaries = Boundaries(memory_bytes)
    with pytest.raises(ValueError, match="no boundary"):
        boundaries.latest()
    for step in range(2):
        boundaries.keep(_state(step))
    latest = boundaries.latest()
    assert latest.step == 1 and torch.equal(latest.video, _state(1).video)
    latest.video.add_(100)
    assert torch.equal(boundaries.latest().video, _state(1).video)
    assert boundaries.branches == 1 and boundaries.sections(0) == 1
    boundaries.close()


def test_a_replaced_boundary_gives_its_memory_back():
    sizes = [video_state.snapshot_bytes(video_state.snapshot(_state(step))) for step in (0, 1)]
    # Room for boundary 0 and two boundaries 1 (one per branch), not for the restarted attempts.
    boundaries = Boundaries(memory_bytes=sizes[0] + 2 * sizes[1])
    boundaries.keep(_state(0))
    for _ in range(5):  # attempts of section 1 that were restarted: one boundary each time
        boundaries.keep(_state(1))
    boundaries.rewind(1)
    boundaries.keep(_state(1))  # the new branch's own boundary 1; branch 0 keeps the shared one
    assert boundaries._disk is None, "a boundary went to disk: replaced ones kept their memory"
    assert torch.equal(boundaries.rewind(1, branch=0).video, _state(1).video)


def test_bench_rewind_remakes_a_section_bit_for_bit_on_the_tiny_model(tiny_model):
    """What `bench rewind` reports, on the tiny model with causal decoding (the session tests
    cover blend): the section made again from its kept boundary with its prompt has the same
    frames, and the boundary is no larger than its computed steady size."""
    from framepack_live.bench.rewind import toy_figures

    settings = GenerationSettings(width=64, height=64, steps=2, window=2, decode="causal", seed=3)
    figures = toy_figures(tiny_model, settings, sections=2)
    assert figures["replay_identical"]
    assert 0 < figures["bytes_per_boundary_measured"] <= figures["bytes_per_boundary_steady"]
