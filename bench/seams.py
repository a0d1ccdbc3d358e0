"""`framepack-live bench seams`: do section seams show, with the live (`causal`) decode and the blended one?

Each section is decoded on its own, so the video can jump where one section's frames end and the
next one's begin. The measure: the mean absolute difference between consecutive frames across
section seams, divided by the same between all other consecutive frames (within sections). A
ratio of 1 means the seams move like the rest of the video; the latents themselves already change
faster there (each section is denoised from its own noise), so decoding the whole video in one go
is given as the reference too.

Both decodes are run on the very same latents: every section is denoised once, and the result is
accepted into two video states that differ only in `GenerationSettings.decode`, so the figures
compare decodes, not samples. The same run counts the bytes that travel between the stages per
section (the pickled `DecodePlan` and `Decoded`, as Ray sends them), after the first section.

Default: the shipped toy model at its own settings (128x128, window 3, 8 steps), held-out start
images, one caption per video for even cases and a steer half way for odd ones.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from dataclasses import replace

import numpy as np
import torch

from ..engine import video_state
from ..engine.conditioning import blend_embeds, encode_prompt
from ..engine.decoding import decode_section, to_uint8
from ..engine.denoising import denoise_plans
from ..engine.generator import start_video
from ..engine.model import FramePackModel
from ..engine.presets import resolve
from ..engine.sampling import Guidance
from ..engine.settings import VAE_TEMPORAL_RATIO, GenerationSettings
from ..train.world import OBJECT_MOTIONS, WorldConfig, caption
from .toyworld import DEFAULT_WEIGHTS, OPPOSITE, start_image

#: The decodes compared on the same latents, by name: their settings. `causal` with the whole
#: window as context, and with one latent frame (`GenerationSettings.decode_context`).
MODES = {
    "blend": {"decode": "blend"},
    "causal": {"decode": "causal"},
    "causal_context_1": {"decode": "causal", "decode_context": 1},
}
#: The issue's target: the live decode's seam ratio at most this many times the blended one's.
TARGET = 1.2


def seam_stats(frames: np.ndarray, window: int) -> tuple[float, float]:
    """(mean across seams, mean within sections) of |frame[i+1] - frame[i]| for a forward video's
    frames [T, H, W, 3] in playback order (frame 0 the start frame, then `window * 4` per section)."""
    steps = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    length = window * VAE_TEMPORAL_RATIO
    seams = np.zeros(len(steps), dtype=bool)
    seams[length::length] = True  # between the last frame of a section and the first of the next
    return float(steps[seams].mean()), float(steps[~seams].mean())


def ratio(stats: list[tuple[float, float]]) -> float:
    """Seam over within, of the means over all videos."""
    return float(np.mean([s for s, _ in stats]) / np.mean([w for _, w in stats]))


def run_case(model: FramePackModel, settings: GenerationSettings, case: int, world: WorldConfig) -> dict:
    """One video's sections, denoised once and decoded both ways; frames, byte counts and decode times."""
    start = start_image(case, world)
    motion = OBJECT_MOTIONS[case % len(OBJECT_MOTIONS)]
    prompts = [caption(start.colour, start.shape, motion)] * settings.sections
    if case % 2:
        half = settings.sections // 2
        prompts[half:] = [caption(start.colour, start.shape, OPPOSITE[motion])] * (settings.sections - half)
    begun = start_video(model, start.image, settings)
    states = {mode: video_state.begin(begun, replace(settings, **chosen), prompts[0]) for mode, chosen in MODES.items()}
    embeds = {p: encode_prompt(model, p) for p in set(prompts) | {settings.negative_prompt}}
    frames = {mode: [] for mode in MODES}
    sizes = {mode: [] for mode in MODES}
    seconds = {mode: [] for mode in MODES}
    lead = states["blend"]
    for index in range(settings.sections):
        for state in states.values():
            video_state.steer(state, prompts[index])
        plan = video_state.plan_section(lead)
        guidance = Guidance(
            prompt=blend_embeds([embeds[p] for p in plan.blend.prompts], plan.blend.weights),
            image_embeds=begun.start.image_embeds,
            negative=embeds[settings.negative_prompt] if settings.cfg > 1.0 else None,
        )
        (latents,) = denoise_plans(model, [plan], [guidance], settings)
        for mode, state in states.items():
            decode = video_state.accept_section(state, plan, latents)
            began = time.perf_counter()
            decoded = decode_section(model, decode)
            seconds[mode].append(time.perf_counter() - began)
            if index > 0:
                sizes[mode].append((len(pickle.dumps(decode)), len(pickle.dumps(decoded))))
            frames[mode].append(video_state.finish_section(state, plan, decoded).frames)
    for mode, state in states.items():
        tail = video_state.flush(state)
        if tail is not None:
            frames[mode].append(tail.frames)
    videos = {mode: np.concatenate(parts) for mode, parts in frames.items()}
    videos["whole"] = to_uint8(model.decode_live(lead.video))  # the same decoder as the sections'
    return {"videos": videos, "sizes": sizes, "seconds": seconds}


def seam_check(model: FramePackModel, settings: GenerationSettings, cases: int, world: WorldConfig) -> dict:
    """The benchmark's figures for `cases` videos of `settings.sections` sections (`bench live` may
    call this with its own model and settings)."""
    stats: dict[str, list[tuple[float, float]]] = {mode: [] for mode in (*MODES, "whole")}
    sizes: dict[str, list] = {mode: [] for mode in MODES}
    seconds: dict[str, list] = {mode: [] for mode in MODES}
    for case in range(cases):
        result = run_case(model, settings, case, world)
        for mode, video in result["videos"].items():
            stats[mode].append(seam_stats(video, settings.window))
        for mode in MODES:
            sizes[mode] += result["sizes"][mode]
            seconds[mode] += result["seconds"][mode]
    ratios = {mode: ratio(values) for mode, values in stats.items()}
    live = [mode for mode in MODES if mode != "blend"]
    return {
        "seam_ratio": {mode: round(value, 3) for mode, value in ratios.items()},
        "seam_ratio_per_video": {mode: [round(s / w, 3) for s, w in values] for mode, values in stats.items()},
        "over_blend": {mode: round(ratios[mode] / ratios["blend"], 3) for mode in live},
        "target": TARGET,
        "meets_target": {mode: ratios[mode] <= TARGET * ratios["blend"] for mode in live},
        "bytes_per_section": {
            mode: {"decode_plan": int(np.mean([p for p, _ in pairs])), "decoded": int(np.mean([d for _, d in pairs]))}
            for mode, pairs in sizes.items()
        },
        "decode_seconds": {mode: round(float(np.mean(values)), 3) for mode, values in seconds.items()},
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench seams", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--size", type=int, default=None, help="default: the model's trained resolution")
    parser.add_argument("--steps", type=int, default=None, help="default: the model's")
    parser.add_argument("--sections", type=int, default=5)
    parser.add_argument("--cases", type=int, default=6, help="videos (held-out start images)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.sections < 2 or args.cases < 1:
        parser.error("--sections must be at least 2 (a seam needs two sections) and --cases at least 1")
    torch.set_num_threads(args.threads)
    began = time.monotonic()
    source = resolve(args.model)
    size = args.size or source.resolution
    model = FramePackModel.load(args.model)
    settings = GenerationSettings(**{**source.settings({"steps": args.steps}), "width": size, "height": size,
                                     "sections": args.sections, "sampling": "forward"})
    report = {"benchmark": "seams", "model": args.model, "resolution": size, "window": settings.window,
              "steps": settings.steps, "sections": args.sections, "cases": args.cases,
              **seam_check(model, settings, args.cases, WorldConfig(size=size, window=settings.window)),
              "seconds": round(time.monotonic() - began, 1)}
    print(json.dumps(report))
    return 0
