"""`framepack-live render`: the command line of one video render, checked before any weights load.

The render itself is the engine's (`engine.rendering`); this module parses and validates the
flags, starts N local processes for sequence parallelism, and writes the MP4.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..engine.errors import InputError
from ..engine.images import bucket_for, default_start_image, load_image_file
from ..engine.presets import ModelSource, resolve
from ..engine.prompt_schedule import PromptSchedule
from ..engine.rendering import RenderJob, generate, generate_on_rank
from ..engine.settings import VAE_TEMPORAL_RATIO, GenerationSettings
from ..engine.video_state import total_frames


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
    schedule.check_within(total_frames(settings) / settings.fps)
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
