"""The section generator against diffusers' pipeline, and its steering/resume guarantees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framepack_live.engine import rendering
from framepack_live.engine.conditioning import encode_image, image_encoding, preprocess_images
from framepack_live.engine.generator import SectionGenerator, start_video
from framepack_live.engine.images import default_start_image, fit_to_size
from framepack_live.engine.settings import GenerationSettings

PROMPT = "a red circle moves left"
SMALL = dict(width=64, height=64, steps=2, window=3, seed=7)


@pytest.mark.parametrize("sampling,diffusers_type", [("forward", "vanilla"), ("inverted", "inverted_anti_drifting")])
def test_render_matches_diffusers_pipeline(tiny_model, render_job, sampling, diffusers_type):
    sections = 3
    rendered = rendering.generate(render_job(sampling, sections), show=False)
    frames, latents = rendered.frames, rendered.latents
    common = dict(
        image=fit_to_size(default_start_image(), 64, 64),
        prompt=PROMPT,
        prompt_template=tiny_model.prompt_template,
        height=64,
        width=64,
        num_frames=sections * ((3 - 1) * 4 + 1),
        latent_window_size=3,
        num_inference_steps=2,
        guidance_scale=10.0,
        sampling_type=diffusers_type,
    )
    pipe = tiny_model.pipeline
    reference = pipe(**common, generator=torch.Generator().manual_seed(7), output_type="latent").frames[-1]
    assert latents.shape == reference.shape == (1, 16, 1 + sections * 3, 8, 8)
    assert (latents - reference).abs().max().item() <= 1e-4
    pixels = pipe(**common, generator=torch.Generator().manual_seed(7), output_type="np").frames[0]
    assert frames.shape == pixels.shape
    assert np.abs(frames.astype(int) - np.round(pixels * 255).astype(int)).max() <= 1


def test_real_cfg_matches_diffusers_true_cfg(tiny_model):
    """Real CFG with a negative prompt is diffusers' `true_cfg_scale` path, seed for seed."""
    settings = GenerationSettings(**SMALL, scheduler="euler", sections=2, cfg=3.0, negative_prompt="blurry, static")
    generator = SectionGenerator(tiny_model, PROMPT, None, settings)
    while not generator.finished:
        generator.next_section()
    reference = tiny_model.pipeline(
        image=fit_to_size(default_start_image(), 64, 64),
        prompt=PROMPT,
        negative_prompt="blurry, static",
        true_cfg_scale=3.0,
        prompt_template=tiny_model.prompt_template,
        height=64,
        width=64,
        num_frames=2 * ((3 - 1) * 4 + 1),
        latent_window_size=3,
        num_inference_steps=2,
        guidance_scale=10.0,
        sampling_type="vanilla",
        generator=torch.Generator().manual_seed(7),
        output_type="latent",
    ).frames[-1]
    assert (generator.video_latents() - reference).abs().max().item() <= 1e-4
    plain = SectionGenerator(tiny_model, PROMPT, None, GenerationSettings(**SMALL, scheduler="euler", sections=2))
    while not plain.finished:
        plain.next_section()
    assert not torch.allclose(plain.video_latents(), generator.video_latents())


def run_sections(model, settings, prompts: dict[int, str] | None = None, count: int = 3) -> list:
    generator = SectionGenerator(model, PROMPT, None, settings)
    made = []
    for index in range(count):
        if prompts and index in prompts:
            generator.set_prompt(prompts[index])
        made.append(generator.next_section())
    return made, generator


def test_steering_changes_only_later_sections(tiny_model):
    settings = GenerationSettings(**SMALL, scheduler="unipc")
    plain, plain_generator = run_sections(tiny_model, settings)
    steered, generator = run_sections(tiny_model, settings, {2: "the blue square bounces"})
    before, after = plain_generator.video_latents(), generator.video_latents()
    kept = 1 + 2 * settings.window
    assert torch.equal(before[:, :, :kept], after[:, :, :kept])
    assert not torch.allclose(before[:, :, kept:], after[:, :, kept:])
    assert np.array_equal(plain[0].frames, steered[0].frames)
    assert np.array_equal(plain[1].frames, steered[1].frames)
    assert not np.array_equal(plain[2].frames, steered[2].frames)
    assert [e.prompt for e in generator.timeline] == [PROMPT, PROMPT, "the blue square bounces"]
    assert [s.prompt for s in steered] == [PROMPT, PROMPT, "the blue square bounces"]


def test_same_seed_same_video_and_resume_is_identical(tiny_model):
    settings = GenerationSettings(**SMALL, sections=4)
    _, full = run_sections(tiny_model, settings, count=4)
    _, again = run_sections(tiny_model, settings, count=4)
    assert torch.equal(full.video_latents(), again.video_latents())

    first, partial = run_sections(tiny_model, settings, count=2)
    saved = partial.state_dict()
    restored = SectionGenerator.from_state_dict(tiny_model, torch.load(_roundtrip(saved), weights_only=False))
    while not restored.finished:
        restored.next_section()
    assert torch.equal(restored.video_latents(), full.video_latents())


def _roundtrip(state: dict):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_sections_are_contiguous_and_flush_completes_the_video(tiny_model):
    settings = GenerationSettings(**SMALL, sections=3)
    generator = SectionGenerator(tiny_model, PROMPT, None, settings)
    cursor = 0
    while not generator.finished:
        section = generator.next_section()
        assert section.first_frame == cursor
        cursor += section.num_frames
    tail = generator.flush()
    assert tail.first_frame == cursor and tail.index == 2
    assert cursor + tail.num_frames == SectionGenerator.total_frames(settings)
    with pytest.raises(RuntimeError):
        generator.next_section()


def test_start_image_latents_are_diffusers_draw_and_a_kept_encoding_gives_each_seed_its_own(tiny_model):
    """`ImageEncoding.sample` draws exactly what diffusers' `prepare_image_latents` draws, so the
    Encoder deployment may keep an image's encoding and draw from it for every seed."""
    image = fit_to_size(default_start_image(), 64, 64)
    pixels = preprocess_images(tiny_model, [image], 64, 64)
    for seed in (0, 1):
        ours = encode_image(tiny_model, image, 64, 64, torch.Generator().manual_seed(seed)).image_latents
        theirs = tiny_model.pipeline.prepare_image_latents(
            pixels, dtype=torch.float32, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed)
        )
        assert torch.equal(ours, theirs)
    kept = image_encoding(tiny_model, image, 64, 64)
    encodes = []

    def encode(image, width, height):
        encodes.append((width, height))
        return kept

    for seed in (3, 4):
        settings = GenerationSettings(**{**SMALL, "seed": seed})
        fresh, from_kept = start_video(tiny_model, image, settings), start_video(tiny_model, image, settings, encode=encode)
        assert torch.equal(fresh.start.image_latents, from_kept.start.image_latents)
        assert torch.equal(fresh.start.image_embeds, from_kept.start.image_embeds)
        assert torch.equal(fresh.rng_state, from_kept.rng_state)
    assert encodes == [(64, 64), (64, 64)]
