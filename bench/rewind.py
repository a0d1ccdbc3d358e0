"""`framepack-live bench rewind`: what keeping the engine state of every section boundary costs.

A rewind continues from the `VideoState` kept for a boundary (`engine.boundaries`). This measures,
on the shipped toy model at its own settings and with both decodes: the bytes each boundary keeps
(`video_state.snapshot_bytes`), the time to keep one and to rewind to one against the time of a
section (one run, side by side, so the ratios hold on a busy machine), and whether the section
made again from its boundary with its prompt is the same, bit for bit. A boundary grows with the
history until packing's 19 latent frames are there; the steady size is computed from the shapes
(it depends on nothing else): for the toy model (float32 latents on the CPU) and for the real
model, whose weights this machine may not have, at `--real-size` (bf16 latents, window 9).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ..engine import video_state
from ..engine.boundaries import Boundaries
from ..engine.conditioning import ImageConditioning
from ..engine.generator import SectionGenerator
from ..engine.model import FramePackModel
from ..engine.presets import resolve
from ..engine.settings import VAE_SPATIAL_RATIO, GenerationSettings
from ..engine.video_state import VideoStart
from .toyworld import DEFAULT_WEIGHTS

#: Latent channels of HunyuanVideo's VAE, which the real FramePack transformer works in.
REAL_LATENT_CHANNELS = 16


def toy_figures(model: FramePackModel, settings: GenerationSettings, sections: int) -> dict:
    """Make `sections` sections keeping every boundary, then rewind to the last one and make it again."""
    generator = SectionGenerator(model, prompt="a red ball rolls to the right", settings=settings)
    boundaries = Boundaries()
    section_s, keep_s, made = [], [], []
    for _ in range(sections):
        began = time.perf_counter()
        boundaries.keep(generator.state)
        keep_s.append(time.perf_counter() - began)
        began = time.perf_counter()
        made.append(generator.next_section())
        section_s.append(time.perf_counter() - began)
    began = time.perf_counter()
    generator.state = boundaries.rewind(sections - 1)
    rewind_s = time.perf_counter() - began
    again = generator.next_section()
    return {
        "bytes_per_boundary_measured": video_state.snapshot_bytes(video_state.snapshot(generator.state)),
        "bytes_per_boundary_steady": steady_bytes(settings, torch.float32),
        "section_s": round(float(np.median(section_s)), 3),
        "keep_ms": round(float(np.median(keep_s)) * 1000, 3),
        "rewind_ms": round(rewind_s * 1000, 3),
        "keep_over_section": float(np.median(keep_s)) / float(np.median(section_s)),
        "replay_identical": bool(np.array_equal(again.frames, made[-1].frames)),
    }


def steady_bytes(settings: GenerationSettings, dtype: torch.dtype) -> int:
    """Bytes per boundary once the history is full, from the shapes of `settings`' sections."""
    size = settings.width
    latent = (settings.height // VAE_SPATIAL_RATIO, settings.width // VAE_SPATIAL_RATIO)
    start = ImageConditioning(
        image_embeds=torch.zeros(1, 1, 1), image_latents=torch.zeros(1, REAL_LATENT_CHANNELS, 1, *latent, dtype=dtype)
    )
    state = video_state.begin(VideoStart(start, torch.Generator().get_state()), settings, "")
    state.video = torch.zeros(1, REAL_LATENT_CHANNELS, video_state.latents_read(settings), *latent, dtype=dtype)
    if settings.decode == "causal":
        state.last_frame = np.zeros((settings.height, size, 3), np.uint8)
    else:
        state.pending = torch.zeros(1, 3, settings.overlap_frames, settings.height, size)
    return video_state.snapshot_bytes(state)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench rewind", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--sections", type=int, default=3)
    parser.add_argument("--real-size", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.sections < 1:
        parser.error("--sections must be at least 1")
    torch.set_num_threads(args.threads)
    source = resolve(args.model)
    model = FramePackModel.load(args.model)
    base = {**source.settings({}), "width": source.resolution, "height": source.resolution, "sampling": "forward"}
    report = {
        "benchmark": "rewind", "model": args.model, "resolution": source.resolution, "sections": args.sections,
        "toy": {decode: toy_figures(model, GenerationSettings(**{**base, "decode": decode}), args.sections)
                for decode in ("causal", "blend")},
        "real_bytes_per_boundary": {
            f"{args.real_size}_{decode}": steady_bytes(
                GenerationSettings(width=args.real_size, height=args.real_size, window=9, decode=decode), torch.bfloat16
            )
            for decode in ("causal", "blend")
        },
    }
    print(json.dumps(report))
    return 0
