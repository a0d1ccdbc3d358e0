"""`framepack-live render`: one video from the command line, section by section.

It runs the same `SectionGenerator` as the server, on this machine, optionally across N local
processes with sequence parallelism.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..engine.conditioning import check_prompt
from ..engine.errors import InputError
from ..engine.generator import SectionGenerator
from ..engine.images import bucket_for, default_start_image, load_image_file
from ..engine.model import FramePackModel
from ..engine.presets import ModelSource, resolve
from ..engine.settings import VAE_TEMPORAL_RATIO, GenerationSettings


@dataclass(frozen=True)
class PromptSchedule:
    """`--prompt` from 0 s, then each `--prompt-at SECONDS=TEXT` from its time on."""

    entries: tuple[tuple[float, str], ...]

    @classmethod
    def parse(cls, prompt: str, prompt_at: list[str]) -> PromptSchedule:
        entries = [(0.0, prompt)]
        for item in prompt_at:
            seconds, sep, text = item.partition("=")
            try:
                start = float(seconds)
            except ValueError:
                start = math.nan
            if not sep or not text or math.isnan(start) or start < 0:
                raise InputError("bad_request", f"--prompt-at wants SECONDS=TEXT, got {item!r}")
            entries.append((start, text))
        return cls(tuple(sorted(entries, key=lambda entry: entry[0])))

    def prompt_at(self, seconds: float) -> str:
        current = self.entries[0][1]
        for start, prompt in self.entries:
            if start <= seconds:
                current = prompt
        return current

    def check_within(self, duration: float) -> None:
        """A prompt that starts after the video ends would be silently ignored: refuse it."""
        for start, prompt in self.entries:
            if start >= duration:
                raise InputError(
                    "bad_request", f"--prompt-at {start:g}s is outside the video, which is {duration:.2f}s long"
                )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="preset (toyworld, the default; tiny, framepack-i2v-hy, framepack-f1), directory or hub id")
    parser.add_argument("--image", default=None, help="start image (PNG/JPEG/WebP); default: the built-in one")
    parser.add_argument("--end-image", default=None, help="end image (inverted sampling only)")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--prompt-at", action="append", default=[], metavar="SECONDS=TEXT",
                        help="switch to TEXT at SECONDS of the video (repeatable)")
    parser.add_argument("--negative-prompt", default="", help="used with --cfg > 1")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, default=None, help="video length (default 5)")
    length.add_argument("--sections", type=int, default=None, help="video length in sections")
    parser.add_argument("--height", type=int, default=None, help="multiple of 16; default: the image's bucket")
    parser.add_argument("--width", type=int, default=None, help="multiple of 16; default: the image's bucket")
    parser.add_argument("--resolution", type=int, default=None,
                        help="bucket size when --width/--height are not given (default: the model's)")
    parser.add_argument("--steps", type=int, default=None, help="default: the model's, else 25")
    parser.add_argument("--guidance", type=float, default=None, help="distilled guidance (default: the model's, else 10)")
    parser.add_argument("--cfg", type=float, default=None, help="real CFG scale (1 = off; default: the model's, else 1)")
    parser.add_argument("--guidance-rescale", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampling", choices=["forward", "inverted"], default=None,
                        help="default: the order the model was trained for")
    parser.add_argument("--scheduler", choices=["euler", "unipc"], default=None, help="default: the model's, else unipc")
    parser.add_argument("--window", type=int, default=None, help="latent frames per section (default: the model's, else 9)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--sequence-parallel", type=int, default=1, metavar="N", help="processes (GPUs) per section")
    parser.add_argument("--shard-weights", action="store_true",
                        help="keep 1/N of the transformer's block weights per process (GPUs too small for all of them)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--cpu-offload", action="store_true", help="keep idle components on the CPU (small GPUs)")
    parser.add_argument("--vae-tiling", action="store_true", help="decode in tiles to save memory")
    parser.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better")
    parser.add_argument("--out", required=True, help="MP4 file to write")
    parser.add_argument("--latents-out", default=None, help="save the video latents with torch.save")


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
    shard_weights: bool = False


def plan(args: argparse.Namespace) -> RenderJob:
    """Check everything that can be checked before loading weights, so mistakes fail in a second."""
    source = resolve(args.model)
    image = load_image_file(args.image) if args.image else default_start_image()
    if args.end_image:
        load_image_file(args.end_image)
    width, height = args.width, args.height
    if width is None or height is None:
        bucket_w, bucket_h = bucket_for(image.width, image.height, args.resolution or source.resolution)
        width, height = width or bucket_w, height or bucket_h
    given = {"window": args.window, "steps": args.steps, "scheduler": args.scheduler, "guidance": args.guidance, "cfg": args.cfg}
    chosen = source.settings(given)
    frames_per_section = chosen.get("window", GenerationSettings.window) * VAE_TEMPORAL_RATIO
    if args.sections is not None:
        sections = args.sections
    else:
        sections = max(1, round((args.seconds or 5.0) * args.fps / frames_per_section))
    if sections < 1:
        raise InputError("bad_request", "--sections must be at least 1")
    try:
        settings = GenerationSettings(
            width=width,
            height=height,
            guidance_rescale=args.guidance_rescale,
            negative_prompt=args.negative_prompt,
            seed=args.seed,
            sampling=args.sampling or source.sampling,
            sections=sections,
            fps=args.fps,
            **chosen,
        )
    except ValueError as exc:
        raise InputError("bad_request", str(exc)) from None
    schedule = PromptSchedule.parse(args.prompt, args.prompt_at)
    schedule.check_within(SectionGenerator.total_frames(settings) / settings.fps)
    if args.sequence_parallel > 1:
        _check_parallel_degree(source, args.sequence_parallel)
    if args.shard_weights and (args.sequence_parallel < 2 or args.cpu_offload):
        raise InputError(
            "bad_request",
            "--shard-weights splits the weights over the ranks of --sequence-parallel N >= 2 (not with --cpu-offload)",
        )
    return RenderJob(
        model=args.model,
        settings=settings,
        schedule=schedule,
        image_path=args.image,
        end_image_path=args.end_image,
        device=args.device,
        cpu_offload=args.cpu_offload,
        vae_tiling=args.vae_tiling,
        shard_weights=args.shard_weights,
    )


def _check_parallel_degree(source: ModelSource, degree: int) -> None:
    """Fail before spawning any process: each rank needs whole attention heads."""
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    from ..engine.parallel import check_degree

    if source.transformer:
        config = HunyuanVideoFramepackTransformer3DModel.load_config(source.transformer)
    else:
        config = HunyuanVideoFramepackTransformer3DModel.load_config(source.base, subfolder="transformer")
    try:
        check_degree(config["num_attention_heads"], degree)
    except ValueError as exc:
        raise InputError("bad_request", str(exc)) from None


def generate(job: RenderJob, device: torch.device | None = None, parallel: bool = False, show: bool = True):
    """Make the whole video; returns (frames [T, H, W, 3] uint8, latents). Runs on every rank."""
    model = FramePackModel.load(
        job.model,
        device=device or job.device,
        cpu_offload=job.cpu_offload,
        vae_tiling=job.vae_tiling,
        shard_weights=parallel and job.shard_weights,
    )
    if parallel:
        from ..engine.parallel import enable_sequence_parallel

        enable_sequence_parallel(model.transformer)
    settings = job.settings
    image = load_image_file(job.image_path) if job.image_path else None
    end_image = load_image_file(job.end_image_path) if job.end_image_path else None
    for _, prompt in job.schedule.entries[1:]:  # every --prompt-at now, not when its section comes
        check_prompt(model, prompt)  # (SectionGenerator checks the first)
    # The loop sets each section's prompt from the schedule before making it.
    generator = SectionGenerator(model, job.schedule.entries[0][1], image, settings, end_image=end_image)
    video = np.zeros((SectionGenerator.total_frames(settings), settings.height, settings.width, 3), np.uint8)
    sections_bar = tqdm(total=settings.sections, desc="sections", unit="section", disable=not show)
    steps_bar = tqdm(total=settings.steps, desc="steps", unit="step", leave=False, disable=not show)

    def on_step(step: int, steps: int) -> None:
        steps_bar.n = step
        steps_bar.refresh()

    while not generator.finished:
        steps_bar.reset()
        generator.set_prompt(job.schedule.prompt_at(_section_start(settings, generator.next_index)))
        section = generator.next_section(on_step)
        video[section.first_frame : section.first_frame + section.num_frames] = section.frames
        sections_bar.update(1)
    tail = generator.flush()
    if tail is not None:
        video[tail.first_frame : tail.first_frame + tail.num_frames] = tail.frames
    steps_bar.close()
    sections_bar.close()
    return video, generator.video_latents()


def _section_start(settings: GenerationSettings, index: int) -> float:
    """Playback time of a section's first frame, which decides the prompt it gets."""
    return index * settings.frames_per_section / settings.fps


def generate_on_rank(job: RenderJob):
    """`generate` as one rank of a sequence-parallel group (what `run_parallel` starts N times)."""
    import torch.distributed as dist

    from ..engine.parallel import rank_device

    return generate(job, device=rank_device(), parallel=True, show=dist.get_rank() == 0)


def run(args: argparse.Namespace) -> int:
    from ..stream.mp4 import Mp4Writer

    job = plan(args)
    if args.sequence_parallel > 1:
        from ..engine.parallel import run_parallel

        device = None if job.device is None else ("cpu" if job.device == "cpu" else "cuda")
        frames, latents = run_parallel(args.sequence_parallel, generate_on_rank, job, device=device)
    else:
        frames, latents = generate(job)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with Mp4Writer(str(out), fps=job.settings.fps, crf=args.crf) as writer:
        writer.write(frames)
    if args.latents_out:
        torch.save(latents.float(), args.latents_out)
    print(f"wrote {out} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, {job.settings.fps} fps)")
    return 0
