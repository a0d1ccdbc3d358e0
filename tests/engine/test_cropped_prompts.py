"""The sampler drops most of the prompts' masked padding: the same predictions from fewer tokens."""

import torch

from framepack_live.engine.conditioning import PromptEmbeds, encode_prompt, image_embeds
from framepack_live.engine.packing import pack_forward
from framepack_live.engine.sampling import PROMPT_BUCKET, Guidance, predict_velocity
from framepack_live.engine.settings import GenerationSettings


def test_cropping_the_padding_changes_no_prediction(tiny_model):
    settings = GenerationSettings(width=64, height=64, steps=2, window=2, cfg=3.0)
    prompt = PromptEmbeds.cat([encode_prompt(tiny_model, "a red circle moves left"),
                               encode_prompt(tiny_model, "the camera pans right slowly over the sea")])
    negative = PromptEmbeds.cat([encode_prompt(tiny_model, "")] * 2)
    guidance = Guidance(prompt, image_embeds(tiny_model, torch.zeros(2, 3, 64, 64)), negative)
    cropped = guidance.cropped()
    assert prompt.length <= PROMPT_BUCKET < prompt.embeds.shape[1]
    assert cropped.prompt.embeds.shape[1] == cropped.negative.embeds.shape[1] == PROMPT_BUCKET
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(2, 16, 1, 8, 8, generator=generator)
    latents = torch.randn(2, 16, 2, 8, 8, generator=generator)
    context = pack_forward(start, start, settings.window)
    with torch.no_grad():
        full, short = (predict_velocity(tiny_model.transformer, latents, torch.tensor([700.0, 700.0]), context, g,
                                        settings) for g in (guidance, cropped))
    torch.testing.assert_close(short, full, atol=1e-4, rtol=1e-4)
