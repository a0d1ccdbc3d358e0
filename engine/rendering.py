"""A whole video in one call: the render loop that `framepack-live render` runs on every rank.

It runs the same `SectionGenerator` as the server's in-process backend, optionally as one rank of
a sequence-parallel group (the command line starts the ranks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .conditioning import check_prompt
from .generator import SectionGenerator
from .images import load_image_file
from .model import FramePackModel
from .prompt_schedule import PromptSchedule
from .settings import GenerationSettings
from .video_state import total_frames


@dataclass(frozen=True)
class RenderJob:
    """A validated render request: what every rank needs, picklable for spawned processes."""

    model: str | None
    settings: GenerationSettings
    schedule: PromptSchedule
    image_path: str | None
    end_image_path: str | None
    device: str | None
    cpu_offload: bool
    vae_tiling: bool
    #: Each rank of a sequence-parallel render keeps only its share of the transformer's weights.
    shard_weights: bool = False


def generate(job: RenderJob, device: torch.device | None = None, parallel: bool = False, show: bool = True):
    """Make the whole video; returns (frames [T, H, W, 3] uint8, latents). Runs on every rank."""
    # An export: decoded by the full VAE, never by a model's small live decoder.
    model = FramePackModel.load(
        job.model,
        device=device or job.device,
        cpu_offload=job.cpu_offload,
        vae_tiling=job.vae_tiling,
        live_decoder=False,
        shard_weights=parallel and job.shard_weights,
    )
    if parallel:
        from .parallel import enable_sequence_parallel

        enable_sequence_parallel(model.transformer)
    settings = job.settings
    image = load_image_file(job.image_path) if job.image_path else None
    end_image = load_image_file(job.end_image_path) if job.end_image_path else None
    for prompt in job.schedule.prompts[1:]:  # every --prompt-at now, not when its section comes
        check_prompt(model, prompt)  # (SectionGenerator checks the first)
    generator = SectionGenerator(model, job.schedule.prompts[0], image, settings, end_image=end_image)
    video = np.zeros((total_frames(settings), settings.height, settings.width, 3), np.uint8)
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
    return video, generator.video_latents()


def generate_on_rank(job: RenderJob):
    """`generate` as one rank of a sequence-parallel group (what `run_parallel` starts N times)."""
    import torch.distributed as dist

    from .parallel import rank_device

    return generate(job, device=rank_device(), parallel=True, show=dist.get_rank() == 0)
