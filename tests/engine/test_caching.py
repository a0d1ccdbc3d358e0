"""Step caching through diffusers' hooks on the real transformer class (tiny size)."""

from __future__ import annotations

import pytest
import torch

from framepack_live.engine import caching
from framepack_live.engine.caching import CacheSpec
from framepack_live.engine.conditioning import encode_prompt, image_embeds
from framepack_live.engine.packing import pack_forward
from framepack_live.engine.sampling import Guidance, denoise_section
from framepack_live.engine.settings import GenerationSettings

SETTINGS = GenerationSettings(width=64, height=64, steps=6, window=2, cfg=2.0, scheduler="euler", sections=1)


def test_specs_parse_and_refuse():
    assert CacheSpec.parse("none") is None and CacheSpec.parse(None) is None
    assert CacheSpec.parse("first-block:0.1") == CacheSpec("first-block", 0.1)
    assert str(CacheSpec.parse("taylorseer:2")) == "taylorseer:2"
    for bad in ("teacache:0.1", "first-block", "taylorseer:0.5"):
        with pytest.raises(ValueError):
            CacheSpec.parse(bad)


@pytest.fixture
def section(tiny_model):
    """Denoise one section of the tiny model with real CFG; counts the last block's attention runs."""
    transformer = tiny_model.transformer
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(1, 16, 1, 8, 8, generator=generator)
    noise = torch.randn(1, 16, SETTINGS.window, 8, 8, generator=generator)
    guidance = Guidance(encode_prompt(tiny_model, "a red circle moves left"),
                        image_embeds(tiny_model, torch.zeros(1, 3, 64, 64)), negative=encode_prompt(tiny_model, ""))
    calls = []
    watched = transformer.single_transformer_blocks[-1].attn.to_q  # inside what every cache skips
    handle = watched.register_forward_hook(lambda *_: calls.append(1))

    def run() -> tuple[torch.Tensor, int]:
        calls.clear()
        latents = denoise_section(transformer, noise, pack_forward(start, start, SETTINGS.window), guidance, SETTINGS)
        return latents, len(calls)

    yield run
    handle.remove()
    caching.enable(transformer, None, SETTINGS.steps)


def test_a_zero_threshold_first_block_cache_changes_nothing(tiny_model, section):
    plain, evaluations = section()
    assert evaluations == 2 * SETTINGS.steps  # the prompt's and the negative prompt's, every step
    caching.enable(tiny_model.transformer, CacheSpec.parse("first-block:0"), SETTINGS.steps)
    cached, evaluations = section()
    assert evaluations == 2 * SETTINGS.steps
    torch.testing.assert_close(cached, plain)


@pytest.mark.parametrize("spec", ["first-block:1000", "taylorseer:3", "mag:1000"])
def test_caches_skip_blocks_and_reset_between_sections(tiny_model, section, spec):
    plain, _ = section()
    ratios = None
    if spec.startswith("mag"):
        ratios = caching.calibrate_mag_ratios(tiny_model.transformer, SETTINGS.steps, lambda: section())
        assert len(ratios) == SETTINGS.steps
    caching.enable(tiny_model.transformer, CacheSpec.parse(spec), SETTINGS.steps, ratios)
    first, evaluations = section()
    assert evaluations < 2 * SETTINGS.steps  # blocks were skipped
    assert torch.isfinite(first).all() and not torch.equal(first, plain)
    second, again = section()  # a fresh section: no state left from the first
    assert again == evaluations
    torch.testing.assert_close(second, first)


def test_a_model_loads_with_a_cache(tiny_model):
    from framepack_live.engine.model import FramePackModel

    model = FramePackModel.load("tiny", device="cpu", parts=("transformer",), cache="first-block:0.2")
    assert model.transformer.is_cache_enabled
    model.set_cache("none")
    assert not model.transformer.is_cache_enabled
