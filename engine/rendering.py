"""A whole video in one call: the render loop that `framepack-live render` runs on every rank.

It runs the same `SectionGenerator` as the server's in-process backend, optionally as one rank of
a sequence-parallel group (the command line starts the ranks). A video starts from an image (the
built-in one by default), from the prompt alone (`engine.text_start`) or from an existing video's
frames, which it continues (`engine.extension`): the result then begins with those frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from . import video_state
from .conditioning import check_prompt
from .download import DownloadProgress
from .extension import generator_after
from .generator import SectionGenerator
from .images import decode_image
from .model import FramePackModel
from .prompt_schedule import PromptSchedule
from .section import TimelineEntry
from .settings import GenerationSettings
from .text_start import start_from_text
from .video_state import total_frames


@dataclass(frozen=True)
class RenderJob:
    """A validated render request: what every rank needs, picklable for spawned processes."""

    model: str | None
    settings: GenerationSettings
    schedule: PromptSchedule
    #: The start image's file bytes; None: the built-in image (or none, with `text_start`).
    image: bytes | None
    end_image: bytes | None
    device: str | None
    cpu_offload: bool
    vae_tiling: bool
    #: Each rank of a sequence-parallel render keeps only its share of the transformer's weights.
    shard_weights: bool = False
    #: Make the start from the first prompt alone instead of an image.
    text_start: bool = False
    #: Frames (uint8 [T, H, W, 3]) of a video to continue; the render begins with them.
    extend: np.ndarray | None = None


@dataclass
class Rendered:
    """A finished render: every frame, the latents, and the prompt each section was made with."""

    frames: np.ndarray
    #: [1, C, T, H/8, W/8] float32 in playback order; when continuing a video, its encoded tail
    #: (the latents the new sections read) followed by the new sections'.
    latents: torch.Tensor
    timeline: list[TimelineEntry]


def begin(model: FramePackModel, job: RenderJob) -> SectionGenerator:
    """The generator of the job's video, before its first section."""
    settings, prompt = job.settings, job.schedule.prompts[0]
    if job.extend is not None:
        return generator_after(model, job.extend, settings, prompt)
    if job.text_start:
        check_prompt(model, prompt)
        return SectionGenerator.from_state(model, video_state.begin(start_from_text(model, prompt, settings), settings, prompt))
    image = decode_image(job.image) if job.image is not None else None
    end_image = decode_image(job.end_image) if job.end_image is not None else None
    return SectionGenerator(model, prompt, image, settings, end_image=end_image)


def generate(job: RenderJob, device: torch.device | None = None, parallel: bool = False, show: bool = True) -> Rendered:
    """Load the job's model and make the whole video. Runs on every rank."""
    # An export: decoded by the full VAE, never by a model's small live decoder.
    model = FramePackModel.load(
        job.model,
        device=device or job.device,
        cpu_offload=job.cpu_offload,
        vae_tiling=job.vae_tiling,
        live_decoder=False,
        shard_weights=parallel and job.shard_weights,
        download=DownloadProgress(show=show),
    )
    if parallel:
        from .parallel import enable_sequence_parallel

        enable_sequence_parallel(model.transformer)
    return render(model, job, show)


def render(model: FramePackModel, job: RenderJob, show: bool = True) -> Rendered:
    """Make the whole video on a loaded model (`job.model` and the runtime options are the loader's)."""
    settings = job.settings
    for prompt in job.schedule.prompts[1:]:  # every --prompt-at now, not when its section comes
        check_prompt(model, prompt)  # (the first is checked as the video begins)
    generator = begin(model, job)
    before = 0 if job.extend is None else len(job.extend) - 1  # frames of the continued video, but its last
    video = np.zeros((before + total_frames(settings), settings.height, settings.width, 3), np.uint8)
    if job.extend is not None:
        video[: len(job.extend)] = job.extend
    sections_bar = tqdm(total=settings.sections, desc="sections", unit="section", disable=not show)
    steps_bar = tqdm(total=settings.steps, desc="steps", unit="step", leave=False, disable=not show)

    def on_step(step: int, steps: int) -> None:
        steps_bar.n = step
        steps_bar.refresh()

    while not generator.finished:
        steps_bar.reset()
        generator.set_prompt(job.schedule.for_section(settings, generator.next_index))
        section = generator.next_section(on_step)
        video[section.first_frame : section.first_frame + section.num_frames] = section.frames
        sections_bar.update(1)
    tail = generator.flush()
    if tail is not None:
        video[tail.first_frame : tail.first_frame + tail.num_frames] = tail.frames
    steps_bar.close()
    sections_bar.close()
    return Rendered(frames=video, latents=generator.video_latents(), timeline=generator.timeline)


def generate_on_rank(job: RenderJob):
    """`generate` as one rank of a sequence-parallel group (what `run_parallel` starts N times)."""
    import torch.distributed as dist

    from .parallel import rank_device

    return generate(job, device=rank_device(), parallel=True, show=dist.get_rank() == 0)
