"""`framepack-live render`: the command line of one video render, checked before any weights load.

The render itself is the engine's (`engine.rendering`); this module parses and validates the
flags, starts N local processes for sequence parallelism, and writes the MP4 with the record of
how it was made (`stream.metadata`), which `--from` reads to make the same video again.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.errors import InputError
from ..engine.images import bucket_for, decode_image, default_start_image
from ..engine.lora import lora_file, parse_lora
from ..engine.presets import DEFAULT_MODEL, ModelSource, resolve
from ..engine.prompt_schedule import PromptSchedule
from ..engine.rendering import Rendered, RenderJob, generate, generate_on_rank
from ..engine.settings import VAE_TEMPORAL_RATIO, GenerationSettings
from ..engine.video_state import total_frames
from ..stream.metadata import Start, VideoRecord, file_sha256, read_record, sha256, software_versions

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="preset (toyworld, the default; tiny, framepack-i2v-hy, framepack-f1), directory or hub id")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--image", default=None, help="start image (PNG/JPEG/WebP); default: the built-in one")
    start.add_argument("--t2v", action="store_true",
                       help="no start image: make the start from the prompt alone (text-to-video)")
    start.add_argument("--extend", default=None, metavar="VIDEO.mp4",
                       help="continue this video: the output is its frames followed by the new ones")
    parser.add_argument("--end-image", default=None, help="end image (inverted sampling only)")
    parser.add_argument("--from", dest="from_video", default=None, metavar="VIDEO.mp4",
                        help="make again the video this project rendered, from the settings it carries")
    parser.add_argument("--prompt", default=None, help="required unless --from")
    parser.add_argument("--prompt-at", action="append", default=[], metavar="SECONDS=TEXT",
                        help="switch to TEXT at SECONDS of the video (of the new part, with --extend; repeatable)")
    parser.add_argument("--negative-prompt", default="", help="used with --cfg > 1")
    parser.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                        help="LoRA weights (diffusers' format: a .safetensors file or its directory) at SCALE "
                             "(default 1; repeatable)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, default=None, help="video length (default 5; with --extend, what is added)")
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
    parser.add_argument("--fps", type=int, default=None, help="default 30, or the extended video's")
    parser.add_argument("--transition", type=int, default=0, metavar="SECTIONS",
                        help="blend each --prompt-at prompt in over this many sections (0: switch at once)")
    parser.add_argument("--decode", choices=["blend", "causal"], default="blend",
                        help="blend: cross-faded sections, as diffusers (default); causal: each section decoded after "
                             "the previous one, as the live server does (forward sampling only)")
    parser.add_argument("--sequence-parallel", type=int, default=1, metavar="N", help="processes (GPUs) per section")
    parser.add_argument("--shard-weights", action="store_true",
                        help="keep 1/N of the transformer's block weights per process (GPUs too small for all of them)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--cpu-offload", action="store_true", help="keep idle components on the CPU (small GPUs)")
    parser.add_argument("--vae-tiling", action="store_true", help="decode in tiles to save memory")
    parser.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better")
    parser.add_argument("--out", required=True, help="MP4 file to write")
    parser.add_argument("--latents-out", default=None, help="save the video latents with torch.save")


#: Options that `--from` takes from the video instead (`--extend` may point at the continued video).
FROM_VIDEO = ("model", "image", "t2v", "end_image", "prompt", "prompt_at", "negative_prompt", "lora", "seconds",
              "sections", "height", "width", "resolution", "steps", "guidance", "cfg", "guidance_rescale", "seed",
              "sampling", "scheduler", "window", "fps", "transition", "decode", "sequence_parallel", "shard_weights",
              "device", "cpu_offload", "vae_tiling", "crf")


@dataclass
class Plan:
    """What `run` makes: the engine's job, and how the MP4 records it."""

    job: RenderJob
    record: VideoRecord
    sequence_parallel: int
    crf: int


def plan(args: argparse.Namespace) -> Plan:
    """Check everything that can be checked before loading weights, so mistakes fail in a second."""
    if args.from_video:
        return plan_from_video(args)
    if args.prompt is None:
        raise InputError("bad_request", "--prompt is required (or --from VIDEO.mp4)")
    source = resolve(args.model)
    image_bytes = _read(args.image, "image") if args.image else None
    image = decode_image(image_bytes) if image_bytes is not None else default_start_image()
    end_bytes = _read(args.end_image, "image") if args.end_image else None
    if end_bytes is not None and (args.t2v or args.extend):
        raise InputError("bad_request", "--end-image pins the end of a video made from a start image; drop it with "
                                        "--t2v or --extend")
    if end_bytes is not None:
        decode_image(end_bytes)
    extend = fps = None
    if args.extend:
        from ..stream.mp4 import read_video

        extend, rate = read_video(args.extend)
        fps = args.fps or max(1, round(rate))
        width, height = args.width or extend.shape[2], args.height or extend.shape[1]
    else:
        width, height = args.width, args.height
    if width is None or height is None:
        shape = (1, 1) if args.t2v else (image.width, image.height)
        bucket_w, bucket_h = bucket_for(*shape, args.resolution or source.resolution)
        width, height = width or bucket_w, height or bucket_h
    fps = fps or args.fps or 30
    given = {"window": args.window, "steps": args.steps, "scheduler": args.scheduler, "guidance": args.guidance, "cfg": args.cfg}
    chosen = source.settings(given)
    frames_per_section = chosen.get("window", GenerationSettings.window) * VAE_TEMPORAL_RATIO
    if args.sections is not None:
        sections = args.sections
    else:
        sections = max(1, round((args.seconds or 5.0) * fps / frames_per_section))
    if sections < 1:
        raise InputError("bad_request", "--sections must be at least 1")
    loras = tuple((str(lora_file(path)), scale) for path, scale in map(parse_lora, args.lora))
    try:
        settings = GenerationSettings(
            width=width,
            height=height,
            guidance_rescale=args.guidance_rescale,
            negative_prompt=args.negative_prompt,
            seed=args.seed,
            sampling=args.sampling or source.sampling,
            sections=sections,
            fps=fps,
            loras=loras,
            transition=args.transition,
            decode=args.decode,
            **chosen,
        )
    except ValueError as exc:
        raise InputError("bad_request", str(exc)) from None
    if extend is not None:
        from ..engine.extension import check_video

        check_video(extend, settings)
    schedule = PromptSchedule.parse(args.prompt, args.prompt_at)
    schedule.check_within(total_frames(settings) / settings.fps)
    if args.sequence_parallel > 1:
        _check_parallel_degree(source, args.sequence_parallel)
    if args.shard_weights and (args.sequence_parallel < 2 or args.cpu_offload):
        raise InputError(
            "bad_request",
            "--shard-weights splits the weights over the ranks of --sequence-parallel N >= 2 (not with --cpu-offload)",
        )
    job = RenderJob(
        model=args.model,
        settings=settings,
        schedule=schedule,
        image=image_bytes,
        end_image=end_bytes,
        device=args.device,
        cpu_offload=args.cpu_offload,
        vae_tiling=args.vae_tiling,
        shard_weights=args.shard_weights,
        text_start=args.t2v,
        extend=extend,
    )
    if args.extend:
        start = Start("video", name=str(Path(args.extend).resolve()), sha256=file_sha256(args.extend), frames=len(extend))
    elif args.t2v:
        start = Start("text")
    elif image_bytes is not None:
        start = Start("image", image=image_bytes, name=Path(args.image).name, sha256=sha256(image_bytes))
    else:
        start = Start("default")
    record = VideoRecord(
        model=args.model or DEFAULT_MODEL,
        settings=settings,
        timeline=[],
        start=start,
        end_image=Start("image", image=end_bytes, name=Path(args.end_image).name, sha256=sha256(end_bytes))
        if end_bytes is not None else None,
        lora_sha256=[file_sha256(path) for path, _ in loras],
        runtime={"device": args.device, "cpu_offload": args.cpu_offload, "vae_tiling": args.vae_tiling,
                 "sequence_parallel": args.sequence_parallel, "shard_weights": args.shard_weights, "crf": args.crf},
        software=software_versions(),
    )
    return Plan(job, record, args.sequence_parallel, args.crf)


def plan_from_video(args: argparse.Namespace) -> Plan:
    """The plan that makes `--from`'s video again: its settings, timeline, start and runtime options."""
    defaults = _defaults()
    given = [name for name in FROM_VIDEO if getattr(args, name) != defaults[name]]
    if given:
        raise InputError("bad_request", "--from takes the settings from the video; drop "
                                        + ", ".join("--" + name.replace("_", "-") for name in given))
    record = read_record(args.from_video)
    if record is None:
        raise InputError("bad_request", f"{args.from_video} carries no framepack-live settings (it was not made by "
                                        "framepack-live render, or its metadata was stripped)")
    if record.model is None:
        raise InputError("bad_request", f"{args.from_video} does not name the model it was made with (its server "
                                        "did not say); render it with --model and its settings instead")
    settings, runtime = record.settings, record.runtime
    for (path, _), expected in zip(settings.loras, record.lora_sha256):
        if not Path(path).is_file() or file_sha256(path) != expected:
            raise InputError("bad_request", f"the LoRA {path} the video was made with is missing or has changed")
    extend = None
    if record.start.kind == "video":
        from ..stream.mp4 import read_video

        source = args.extend or record.start.name
        if not Path(source).is_file() or file_sha256(source) != record.start.sha256:
            raise InputError("bad_request", f"the video was continued from {record.start.name}, which is missing or "
                                            "has changed; point --extend at the original")
        extend = read_video(source)[0]
    elif args.extend:
        raise InputError("bad_request", "--extend with --from names the video a continuation was made from; this one "
                                        "continues none")
    mismatched = {name: (made, now) for name, now in software_versions().items()
                  if (made := record.software.get(name)) != now}
    if mismatched:
        changes = ", ".join(f"{name} {made} -> {now}" for name, (made, now) in mismatched.items())
        print(f"framepack-live: note: other software than the video was made with ({changes}); the frames may "
              "differ", file=sys.stderr)
    schedule = PromptSchedule.per_section(settings, {entry["section"]: entry["prompt"] for entry in record.timeline})
    job = RenderJob(
        model=record.model,
        settings=settings,
        schedule=schedule,
        image=record.start.image if record.start.kind == "image" else None,
        end_image=record.end_image.image if record.end_image is not None else None,
        device=runtime.get("device"),
        cpu_offload=bool(runtime.get("cpu_offload")),
        vae_tiling=bool(runtime.get("vae_tiling")),
        shard_weights=bool(runtime.get("shard_weights")),
        text_start=record.start.kind == "text",
        extend=extend,
    )
    record.timeline = []
    record.software = software_versions()
    return Plan(job, record, int(runtime.get("sequence_parallel", 1)), int(runtime.get("crf", 18)))


def _defaults() -> dict:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return vars(parser.parse_args(["--out", "-"]))


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError("bad_image" if what == "image" else "bad_request", f"cannot read {what} {path}: {exc.strerror}") from None


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

    planned = plan(args)
    job = planned.job
    if planned.sequence_parallel > 1:
        from ..engine.parallel import run_parallel

        device = None if job.device is None else ("cpu" if job.device == "cpu" else "cuda")
        rendered: Rendered = run_parallel(planned.sequence_parallel, generate_on_rank, job, device=device)
    else:
        rendered = generate(job)
    planned.record.timeline = [{"section": entry.section, "prompt": entry.prompt, "branch": 0}
                               for entry in rendered.timeline]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with Mp4Writer(str(out), fps=job.settings.fps, crf=planned.crf, metadata=planned.record.container_metadata()) as writer:
        writer.write(rendered.frames)
    if args.latents_out:
        torch.save(rendered.latents.float(), args.latents_out)
    frames = rendered.frames
    print(f"wrote {out} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, {job.settings.fps} fps)")
    return 0
