"""Continuing a video (its frames encoded as history) and starting one from the prompt alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from framepack_live.bench.extend import seams
from framepack_live.engine import video_state
from framepack_live.engine.errors import InputError
from framepack_live.engine.extension import encode_history
from framepack_live.engine.generator import SectionGenerator
from framepack_live.engine.prompt_schedule import PromptSchedule
from framepack_live.engine.rendering import RenderJob, render
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.text_start import start_from_text

PROMPT = "a red circle moves left"
SETTINGS = GenerationSettings(width=64, height=64, steps=2, window=2, sections=2, scheduler="euler", seed=5)


def job(settings: GenerationSettings = SETTINGS, **kwargs) -> RenderJob:
    return RenderJob(model="tiny", settings=settings, schedule=PromptSchedule.parse(PROMPT, []), image=None,
                     end_image=None, device="cpu", cpu_offload=False, vae_tiling=False, **kwargs)


@pytest.fixture(scope="module")
def original(tiny_model) -> np.ndarray:
    return render(tiny_model, job(), show=False).frames


def test_a_continued_video_is_the_original_followed_by_new_sections(tiny_model, original):
    extended = render(tiny_model, job(extend=original), show=False)
    frames, count = extended.frames, len(original)
    assert len(frames) == count + SETTINGS.sections * SETTINGS.frames_per_section
    # The original's frames stay, but for its last ones: cross-faded into the first new section as
    # between any two sections, starting from the original's own frame.
    blend = SETTINGS.overlap_frames
    assert np.array_equal(frames[: count - blend + 1], original[: count - blend + 1])
    assert not np.array_equal(frames[count:], np.repeat(original[-1:], len(frames) - count, axis=0))
    assert [entry.section for entry in extended.timeline] == [0, 1]
    again = render(tiny_model, job(extend=original), show=False)
    assert np.array_equal(again.frames, frames)


def test_the_history_is_the_encoded_tail_and_the_start_its_first_frame(tiny_model, original):
    start, history = encode_history(tiny_model, original, SETTINGS)
    latent_frames = (len(original) - 1) // 4
    assert history.latents.shape == (1, 16, 1 + latent_frames, 8, 8)
    assert history.frames == len(original)
    assert history.pending.shape == (1, 3, SETTINGS.overlap_frames, 64, 64)
    state = video_state.begin_after(start, history, SETTINGS, PROMPT)
    assert state.frame_cursor == len(original) - SETTINGS.overlap_frames
    plan = video_state.plan_section(state)
    # Packing reads the encoded video as the past: its newest latent frame is the 1x history slot.
    assert torch.equal(plan.context.latents_clean[:, :, 1:], history.latents[:, :, -1:])
    assert torch.equal(plan.context.latents_clean[:, :, :1], start.start.image_latents)
    long = np.concatenate([original] * 8)  # 8x the frames: only what later sections read is encoded
    assert encode_history(tiny_model, long, SETTINGS)[1].latents.shape[2] == video_state.latents_read(SETTINGS)


@pytest.mark.parametrize(
    "change,needle",
    [
        (dict(frames=slice(0, 5)), "at least 9"),
        (dict(settings=replace(SETTINGS, width=32)), "keeps the video's size"),
        (dict(settings=replace(SETTINGS, sampling="inverted")), "forward sampling"),
        (dict(crop=60), "multiples of 16"),
    ],
)
def test_videos_that_cannot_be_continued(tiny_model, original, change, needle):
    frames = original[change.get("frames", slice(None))][:, : change.get("crop", 64), : change.get("crop", 64)]
    with pytest.raises(InputError, match=needle):
        encode_history(tiny_model, frames, change.get("settings", SETTINGS))


def test_a_start_from_the_prompt_alone(tiny_model):
    one = start_from_text(tiny_model, PROMPT, SETTINGS)
    assert torch.equal(one.start.image_latents, start_from_text(tiny_model, PROMPT, SETTINGS).start.image_latents)
    other = start_from_text(tiny_model, "the camera pans right", SETTINGS)
    assert not torch.allclose(one.start.image_latents, other.start.image_latents)
    reseeded = start_from_text(tiny_model, PROMPT, replace(SETTINGS, seed=6))
    assert not torch.allclose(one.start.image_latents, reseeded.start.image_latents)
    generator = SectionGenerator.from_state(tiny_model, video_state.begin(one, SETTINGS, PROMPT))
    section = generator.next_section()
    # The video opens on the frame made from the prompt, not on the empty scene it was sketched from.
    assert section.frames[0].mean() > 5
    rendered = render(tiny_model, job(text_start=True), show=False)
    assert len(rendered.frames) == video_state.total_frames(SETTINGS)
    assert np.array_equal(rendered.frames[: section.num_frames], section.frames)


def test_seam_ratio_of_a_steady_video_is_one_and_a_jump_shows():
    steady = np.stack([np.full((4, 4, 3), 10 + 2 * t, np.uint8) for t in range(25)])
    ratios = seams(steady, [13], first=1, section_frames=12, blend=9)
    assert ratios["at_boundary"] == pytest.approx(1.0) and ratios["largest_in_blend"] == pytest.approx(1.0)
    jumped = steady.copy()
    jumped[13:] += 20
    assert seams(jumped, [13], first=1, section_frames=12, blend=9)["at_boundary"] == pytest.approx(11.0)
