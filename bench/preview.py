"""`framepack-live bench preview`: what a step preview costs next to a denoising step, and how close it is.

Side by side in one run, alternating so the shared machine's noise falls on both: a section
denoised without previews and with a preview after every step (the difference per step is the
preview's whole cost: the x0 estimate, the latent -> RGB map, the copy to the CPU), and the map
alone timed over many calls. Fidelity: the preview of each finished section against the VAE's
decode of it, averaged per latent frame as the preview shows it (RGB levels, 0-255).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ..engine import video_state
from ..engine.decoding import decode_latents
from ..engine.denoising import denoise_plans
from ..engine.generator import SectionGenerator
from ..engine.model import FramePackModel
from ..engine.presets import resolve
from ..engine.settings import GenerationSettings
from ..train.preview import latent_frame_targets
from .toyworld import DEFAULT_WEIGHTS

PROMPT = "a red circle moves left"


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def preview_figures(model: FramePackModel, settings: GenerationSettings, repeats: int) -> dict:
    if model.preview is None:
        raise SystemExit("this model has no preview map (engine.preview): nothing to measure")
    generator = SectionGenerator(model, PROMPT, None, settings)
    generator.next_section()  # a history to denoise after, as in a running video
    plan = video_state.plan_section(generator.state)
    guidance = generator.guidance(plan.blend)
    shown: list = []

    def denoise(with_previews: bool) -> list[torch.Tensor]:
        preview = (lambda step, steps, frames: shown.append(frames)) if with_previews else None
        return denoise_plans(model, [plan], [guidance], settings, preview=preview)

    denoise(True)  # warm-up
    plain, previewed = [], []
    for _ in range(repeats):
        plain.append(timed(lambda: denoise(False)))
        previewed.append(timed(lambda: denoise(True)))
    latents = denoise(False)[0]
    step = float(np.median(plain)) / settings.steps
    extra = max(0.0, float(np.median(previewed) - np.median(plain))) / settings.steps
    map_alone = np.median([timed(lambda: model.preview.frames(latents)) for _ in range(50)])
    decoded = decode_latents(model, torch.cat([generator.state.video[:, :, -1:], latents], dim=2))[0]
    targets = latent_frame_targets(decoded)[1:]  # the section's own latent frames
    error = (model.preview.rgb(latents)[0] - targets).abs().mean().item() * 255
    return {
        "preview_source": model.preview.source,
        "preview_frame_shape": list(shown[-1][0].shape),
        "step_ms": round(step * 1000, 2),
        "preview_ms_in_loop": round(extra * 1000, 3),
        "preview_map_ms": round(float(map_alone) * 1000, 3),
        "preview_over_step": round(extra / step, 4),
        "preview_error_rgb": round(error, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench preview", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--size", type=int, default=None, help="default: the model's trained resolution")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    source = resolve(args.model)
    size = args.size or source.resolution
    model = FramePackModel.load(args.model)
    settings = GenerationSettings(**{**source.settings({}), "width": size, "height": size, "sampling": "forward"})
    report = {"benchmark": "preview", "model": args.model, "device": str(model.device), "resolution": size,
              "steps": settings.steps, "window": settings.window, **preview_figures(model, settings, args.repeats)}
    print(json.dumps(report))
    return 0
