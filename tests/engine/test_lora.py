"""LoRA adapters through diffusers' own loader: per-video choice, scales, listing, bad input."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from framepack_live.engine.errors import InputError
from framepack_live.engine.generator import SectionGenerator
from framepack_live.engine.lora import WEIGHT_NAME, list_loras, loaded_adapters, parse_lora, use_loras
from framepack_live.engine.settings import GenerationSettings

SETTINGS = GenerationSettings(width=64, height=64, steps=2, window=2, sections=1, scheduler="euler", seed=3)


def latents(model, settings: GenerationSettings) -> torch.Tensor:
    generator = SectionGenerator(model, "a red circle moves left", None, settings)
    generator.next_section()
    return generator.video_latents()


def test_a_video_runs_with_exactly_its_loras(tiny_loras):
    from framepack_live.engine.model import FramePackModel

    # A model of its own: the shared one carries whatever LoRAs other tests of this worker loaded.
    tiny_model = FramePackModel.load("tiny", device="cpu")
    first, second = str(tiny_loras / "first"), str(tiny_loras / "second" / WEIGHT_NAME)
    base = latents(tiny_model, SETTINGS)
    with_first = latents(tiny_model, replace(SETTINGS, loras=((first, 1.0),)))
    assert not torch.allclose(base, with_first, atol=1e-4)
    assert len(loaded_adapters(tiny_model)) == 1
    # Another video without LoRA on the same model is the base model again, bit for bit.
    assert torch.equal(latents(tiny_model, SETTINGS), base)
    # Scale 0 is the base model; scales and combinations are honoured, and loading happens once.
    assert torch.allclose(latents(tiny_model, replace(SETTINGS, loras=((first, 0.0),))), base, atol=1e-6)
    both = latents(tiny_model, replace(SETTINGS, loras=((first, 1.0), (second, 0.5))))
    assert not torch.allclose(both, with_first, atol=1e-4)
    assert len(loaded_adapters(tiny_model)) == 2
    assert torch.equal(latents(tiny_model, replace(SETTINGS, loras=((first, 1.0),))), with_first)
    use_loras(tiny_model, ())


def test_listing_a_directory_names_each_lora_and_reads_its_card(tiny_loras):
    found = list_loras(tiny_loras)
    assert [info.name for info in found] == ["first", "second"]
    assert found[0].path == str((tiny_loras / "first" / WEIGHT_NAME).resolve())
    assert found[0].description == "Random weights for tests."


def test_lora_arguments_and_bad_loras(tiny_model, tiny_loras, make_lora, tmp_path):
    assert parse_lora("dir/x") == ("dir/x", 1.0)
    assert parse_lora("dir/x:0.7") == ("dir/x", 0.7)
    assert parse_lora("c:/odd:name") == ("c:/odd:name", 1.0)
    with pytest.raises(InputError, match="no LoRA at"):
        use_loras(tiny_model, ((str(tmp_path / "missing"), 1.0),))
    # A LoRA of another architecture (wider attention) is refused and leaves the model as it was.
    wider = copy.deepcopy(tiny_model.transformer)
    layer = wider.transformer_blocks[0].attn.to_q
    wider.transformer_blocks[0].attn.to_q = torch.nn.Linear(layer.in_features + 8, layer.out_features)
    make_lora(wider, tmp_path / "other", seed=4)
    before = loaded_adapters(tiny_model)
    with pytest.raises(InputError, match="cannot load the LoRA"):
        use_loras(tiny_model, ((str(tmp_path / "other"), 1.0),))
    assert loaded_adapters(tiny_model) == before
    with pytest.raises(InputError, match="listed twice"):
        use_loras(tiny_model, ((str(tiny_loras / "first"), 1.0), (str(tiny_loras / "first" / WEIGHT_NAME), 1.0)))
    with pytest.raises(ValueError, match="finite"):
        replace(SETTINGS, loras=((str(tiny_loras / "first"), float("nan")),))
    use_loras(tiny_model, ())
