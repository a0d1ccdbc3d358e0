"""What a live stream needs from the engine: the causal decode (frames final at once), step
previews while a section denoises, and prompt transitions; all through `video_state`."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from framepack_live.engine import video_state
from framepack_live.engine.conditioning import PromptBlend, blend_embeds, encode_prompt
from framepack_live.engine.decoding import DecodePlan, Decoded, decode_section
from framepack_live.engine.generator import SectionGenerator
from framepack_live.engine.settings import GenerationSettings

PROMPT, OTHER = "a red circle moves left", "the blue square bounces"
SMALL = dict(width=64, height=64, steps=2, window=3, seed=7, scheduler="euler")


def test_causal_decode_makes_every_frame_final_at_once_from_the_same_latents(tiny_model):
    settings = GenerationSettings(**SMALL, sections=3)
    blended = SectionGenerator(tiny_model, PROMPT, None, settings)
    causal = SectionGenerator(tiny_model, PROMPT, None, GenerationSettings(**SMALL, sections=3, decode="causal"))
    cursor, plans = 0, []
    while not causal.finished:
        blended.next_section()
        plan = video_state.plan_section(causal.state)
        latents = blended.video_latents()[:, :, -3:]
        decode = video_state.accept_section(causal.state, plan, latents)
        plans.append(decode)
        decoded = decode_section(tiny_model, decode)
        section = video_state.finish_section(causal.state, plan, decoded)
        assert decoded.pending is None and section.first_frame == cursor
        cursor += section.num_frames
    assert [p.context for p in plans] == [0, 3, 3]
    assert all(p.pending is None and (p.shown is None or p.shown.dtype == np.uint8) for p in plans)
    assert [p.latents.shape[2] for p in plans] == [4, 6, 6]
    assert cursor == SectionGenerator.total_frames(settings)  # nothing held back
    assert causal.flush() is None
    assert torch.equal(causal.video_latents(), blended.video_latents())


def test_causal_decode_continues_from_the_frame_shown(tiny_model):
    """The first new frame is the decode's own, moved by most of the seam's offset: the video goes
    on from what was shown, not from the context decode's version of it."""
    settings = GenerationSettings(**SMALL, sections=2, decode="causal")
    generator = SectionGenerator(tiny_model, PROMPT, None, settings)
    first = generator.next_section()
    plan = video_state.plan_section(generator.state)
    latents = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    decode = video_state.accept_section(generator.state, plan, latents)
    plain = decode_section(tiny_model, DecodePlan(**{**decode.__dict__, "shown": None}))
    corrected = decode_section(tiny_model, decode)
    assert np.array_equal(decode.shown, first.frames[-1])
    assert np.array_equal(plain.frames[4:], corrected.frames[4:])  # the fade is over after 4 frames
    gap = lambda frames: np.abs(frames[0].astype(int) - first.frames[-1].astype(int)).mean()  # noqa: E731
    assert gap(corrected.frames) < gap(plain.frames)


def test_causal_decode_needs_forward_sampling():
    with pytest.raises(ValueError, match="causal decoding needs forward sampling"):
        GenerationSettings(**SMALL, sections=2, sampling="inverted", decode="causal")


def test_step_previews_show_the_estimate_and_end_at_the_result(tiny_model):
    settings = GenerationSettings(**{**SMALL, "steps": 4}, sections=1, preview_every=3)
    generator = SectionGenerator(tiny_model, PROMPT, None, settings)
    shown = []
    generator.next_section(preview=lambda step, steps, frames: shown.append((step, steps, frames)))
    assert [(step, steps) for step, steps, _ in shown] == [(3, 4), (4, 4)]  # every 3rd step, and the last
    (frames,) = shown[-1][2]
    assert frames.dtype == np.uint8 and frames.shape == (3, 8, 8, 3)  # one frame per latent frame, patch 1
    # With Euler the last step's estimate x_t - sigma * v is exactly the section's result.
    final = tiny_model.preview.frames(generator.video_latents()[:, :, -3:])[0]
    assert np.abs(frames.astype(int) - final.astype(int)).max() <= 1


def test_transition_blends_over_n_sections_and_resumes_mid_way(tiny_model):
    settings = GenerationSettings(**SMALL, sections=4, transition=2)

    def run(save_at: int | None = None):
        generator = SectionGenerator(tiny_model, PROMPT, None, settings)
        while not generator.finished:
            if generator.next_index == 1:
                generator.set_prompt(OTHER)
            if generator.next_index == save_at:
                buffer = io.BytesIO()
                torch.save(generator.state_dict(), buffer)
                buffer.seek(0)
                generator = SectionGenerator.from_state_dict(tiny_model, torch.load(buffer, weights_only=False))
            generator.next_section()
        return generator

    whole = run()
    blends = [entry.blend for entry in whole.timeline]
    assert blends[0] is None and blends[3] is None
    assert blends[1] == pytest.approx({PROMPT: 2 / 3, OTHER: 1 / 3})
    assert blends[2] == pytest.approx({PROMPT: 1 / 3, OTHER: 2 / 3})
    assert [entry.prompt for entry in whole.timeline] == [PROMPT, OTHER, OTHER, OTHER]
    assert torch.equal(run(save_at=2).video_latents(), whole.video_latents())
    at_once = SectionGenerator(tiny_model, PROMPT, None, GenerationSettings(**SMALL, sections=4))
    at_once.next_section()
    at_once.set_prompt(OTHER)
    at_once.next_section()
    assert at_once.timeline[1].blend is None
    assert not torch.equal(at_once.video_latents()[:, :, 4:7], whole.video_latents()[:, :, 4:7])


def test_a_steer_during_a_transition_blends_from_where_it_got():
    state = video_state.VideoState(settings=GenerationSettings(**SMALL, transition=2), prompt=PROMPT, start=None,
                                   rng_state=None, video=None, step=3)
    video_state.steer(state, OTHER)
    assert video_state.next_blend(state) == PromptBlend.of(PROMPT).toward(OTHER, 1 / 3)
    state.transition_done = 1  # one section of it made
    video_state.steer(state, "a dog runs", transition=1)
    blend = video_state.next_blend(state)
    assert dict(zip(blend.prompts, blend.weights)) == pytest.approx({PROMPT: 1 / 3, OTHER: 1 / 6, "a dog runs": 1 / 2})


def test_blended_embeddings_interpolate_and_keep_every_token_visible(tiny_model):
    short, long = encode_prompt(tiny_model, "a dog"), encode_prompt(tiny_model, "the blue square bounces over the sea")
    half = blend_embeds([short, long], [0.5, 0.5])
    torch.testing.assert_close(half.pooled, (short.pooled + long.pooled) / 2)
    assert torch.equal(half.mask, torch.maximum(short.mask, long.mask))
    assert blend_embeds([short], [1.0]) is short


def test_decode_messages_carry_no_float_pixels_in_causal_mode(tiny_model):
    generator = SectionGenerator(tiny_model, PROMPT, None, GenerationSettings(**SMALL, sections=2, decode="causal"))
    generator.next_section()
    plan = video_state.plan_section(generator.state)
    decode = video_state.accept_section(generator.state, plan, torch.zeros(1, 16, 3, 8, 8))
    decoded: Decoded = decode_section(tiny_model, decode)
    floats = [v for v in (*decode.__dict__.values(), *decoded.__dict__.values()) if isinstance(v, torch.Tensor)]
    assert [t.shape for t in floats] == [torch.Size([1, 16, 6, 8, 8])]  # the latents alone
    assert decoded.frames.dtype == np.uint8
