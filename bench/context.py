"""`framepack-live bench context`: per-section cost of the packed context against a naive one.

FramePack's claim is that section 300 costs what section 3 costs. This measures it on one model:
the packed context (1x/2x/4x history, fixed token count) against a naive baseline that feeds the
whole uncompressed history to the same transformer as clean 1x frames. Both run interleaved,
section by section, so machine noise hits them alike; each section is timed `--repeats` times
and the fastest kept, and the ratios compare the median of the last three sections with the
median of the first three, so one noisy sample cannot make the figure. Time is the process's
CPU time (`time.process_time`) by default: on a shared machine, wall time mostly measures the
neighbours; `--clock wall` measures wall time instead. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ..engine.conditioning import encode_prompt
from ..engine.generator import SectionGenerator
from ..engine.model import FramePackModel
from ..engine.packing import PackedContext, pack_forward
from ..engine.sampling import Guidance, denoise_section
from ..engine.settings import GenerationSettings


def naive_context(video: torch.Tensor, start: torch.Tensor, window: int) -> PackedContext:
    """Every history frame at full detail; the 2x/4x slots get the same empty frames as section 0."""
    packed = pack_forward(video[:, :, :1], start, window)
    history = video[:, :, 1:]
    frames = history.shape[2]
    return PackedContext(
        latents_clean=torch.cat([start, history], dim=2),
        indices_clean=torch.arange(0, 1 + frames),
        latents_2x=packed.latents_2x,
        indices_2x=packed.indices_2x,
        latents_4x=packed.latents_4x,
        indices_4x=packed.indices_4x,
        indices_latents=torch.arange(1 + frames, 1 + frames + window),
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench context", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--sections", type=int, default=24)
    parser.add_argument("--size", type=int, default=128, help="width and height")
    parser.add_argument("--window", type=int, default=9)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timings per section; the fastest is kept")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    model = FramePackModel.load(args.model)
    settings = GenerationSettings(
        width=args.size, height=args.size, steps=args.steps, window=args.window, scheduler="euler"
    )
    start = SectionGenerator(model, "a red circle moves left", None, settings).state.start
    device = model.pipeline._execution_device
    guidance = Guidance(prompt=encode_prompt(model, "a red circle moves left"), image_embeds=start.image_embeds.to(device))
    noise = torch.randn(
        1, model.latent_channels, args.window, args.size // 8, args.size // 8, generator=torch.Generator().manual_seed(0)
    ).to(device)
    image = start.image_latents.to(device)
    videos = {"packed": image, "naive": image}
    builders = {"packed": pack_forward, "naive": naive_context}
    times: dict[str, list[float]] = {"packed": [], "naive": []}
    tokens: dict[str, list[int]] = {"packed": [], "naive": []}
    denoise_section(model.transformer, noise, pack_forward(image, image, args.window), guidance, settings)  # warm-up
    for _ in range(args.sections):
        for name, build in builders.items():
            context = build(videos[name], image, args.window)
            tokens[name].append(int(context.latents_clean.shape[2]))
            best = float("inf")
            for _ in range(args.repeats):
                began = clock()
                latents = denoise_section(model.transformer, noise, context, guidance, settings)
                best = min(best, clock() - began)
            times[name].append(best)
            videos[name] = torch.cat([videos[name], latents], dim=2)
    result = {
        "benchmark": "context",
        "model": args.model,
        "sections": args.sections,
        "size": args.size,
        "window": args.window,
        "steps": args.steps,
        "clock": args.clock,
        "packed_seconds": [round(t, 4) for t in times["packed"]],
        "naive_seconds": [round(t, 4) for t in times["naive"]],
        "naive_clean_frames": tokens["naive"],
        "packed_ratio": _ratio(times["packed"]),
        "naive_ratio": _ratio(times["naive"]),
    }
    print(json.dumps(result))
    return 0


def _ratio(seconds: list[float]) -> float:
    """Last sections' time over the first sections' (medians of three, fewer for short runs)."""
    edge = min(3, len(seconds))
    return round(statistics.median(seconds[-edge:]) / statistics.median(seconds[:edge]), 3)
