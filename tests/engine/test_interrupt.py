"""`engine.interrupt` on the tiny model: a decode and a denoise stop part-way once asked, and the
model is as before for the next call (its hooks are gone)."""

from __future__ import annotations

import pytest
import torch

from framepack_live.engine import video_state
from framepack_live.engine.decoding import decode_section
from framepack_live.engine.denoising import denoise_plans
from framepack_live.engine.generator import SectionGenerator
from framepack_live.engine.interrupt import Interrupted, interruptible
from framepack_live.engine.settings import GenerationSettings


class After:
    """A `stop` that turns true after `calls` questions: part-way through a model call."""

    def __init__(self, calls: int) -> None:
        self.calls, self.asked = calls, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.asked > self.calls


@pytest.fixture(scope="module")
def section(tiny_model):
    """A video one section in, and the plan of its second section: what a stage gets."""
    generator = SectionGenerator(tiny_model, "a red ball", settings=GenerationSettings(
        width=64, height=64, steps=2, window=2, decode="causal", seed=1))
    generator.next_section()
    return generator, video_state.plan_section(generator.state)


def _denoise(generator, plan):
    return denoise_plans(generator.model, [plan], [generator.guidance(plan.blend)], generator.settings)[0]


@pytest.fixture(scope="module")
def decode_plan(section):
    generator, plan = section
    return video_state.accept_section(video_state.snapshot(generator.state), plan, _denoise(generator, plan))


def test_a_denoise_stops_part_way_and_the_next_one_is_whole(section):
    generator, plan = section
    expected = _denoise(generator, plan)
    stop = After(20)
    with pytest.raises(Interrupted), interruptible(generator.model.transformer, stop):
        _denoise(generator, plan)
    assert torch.equal(_denoise(generator, plan), expected)
    assert not any(m._forward_pre_hooks for m in generator.model.transformer.modules())


def test_a_decode_stops_part_way_and_the_next_one_is_whole(tiny_model, decode_plan):
    expected = decode_section(tiny_model, decode_plan).frames
    stop = After(5)
    with pytest.raises(Interrupted):
        decode_section(tiny_model, decode_plan, stop)
    modules = sum(1 for _ in tiny_model.pipeline.vae.modules())
    assert 5 < stop.asked < modules, "it stopped at once or ran to the end"
    assert (decode_section(tiny_model, decode_plan, lambda: False).frames == expected).all()
    assert not any(m._forward_pre_hooks for m in tiny_model.pipeline.vae.modules())


def test_a_stop_already_true_runs_nothing(tiny_model):
    calls = []
    handle = tiny_model.transformer.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(Interrupted), interruptible(tiny_model.transformer, lambda: True):
            tiny_model.transformer(torch.zeros(1))
    finally:
        handle.remove()
    assert calls == []
