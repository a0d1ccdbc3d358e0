"""`framepack-live bench extend`: how visible is the join where `render --extend` continues a video?

For held-out toy-world starts (those of `bench toyworld`'s prompt following), a forward video of
`--sections` sections is rendered, written as an MP4 and read back (what `render --extend` gets),
then continued by as many sections with the same caption. The seam is a ratio: the mean absolute
frame difference (RGB, 0-255) between the two frames either side of a boundary, divided by the
same between consecutive frames inside the video's sections. 1 means the boundary changes the
picture no more than a frame step does. It is reported for the join (last original frame, first
new one) and, as the reference, for the boundaries between sections of one uninterrupted video of
twice the sections: the engine's own seams. The engine cross-fades the frames before a boundary
(`(window - 1) * 4 + 1` of them) into the next section's decode, so the largest ratio among the
frame steps of that region is reported beside each.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from dataclasses import replace

import numpy as np
import torch

from ..engine.model import FramePackModel
from ..engine.presets import resolve
from ..engine.prompt_schedule import PromptSchedule
from ..engine.rendering import RenderJob, render
from ..engine.settings import GenerationSettings
from ..stream.mp4 import Mp4Writer, read_video
from ..train.world import OBJECT_MOTIONS, WorldConfig, caption
from .toyworld import DEFAULT_WEIGHTS, start_image


def frame_steps(video: np.ndarray) -> np.ndarray:
    """Mean absolute difference of each pair of consecutive frames: step t is frames t -> t + 1."""
    frames = video.astype(np.float32)
    return np.abs(frames[1:] - frames[:-1]).mean(axis=(1, 2, 3))


def seams(video: np.ndarray, joins: list[int], first: int, section_frames: int, blend: int) -> dict:
    """Seam ratios at the boundaries just before frames `joins`, against the frame steps inside the
    sections from frame `first` on (`section_frames` frames each; a step across any section
    boundary is not inside one)."""
    steps = frame_steps(video)
    across = {boundary - 1 for boundary in range(first, len(video), section_frames)} | {join - 1 for join in joins}
    typical = float(np.mean([steps[t] for t in range(first, len(steps)) if t not in across]))
    return {
        "at_boundary": float(np.mean([steps[join - 1] for join in joins]) / typical),
        "largest_in_blend": float(np.mean([steps[join - blend - 1 : join + 1].max() for join in joins]) / typical),
        "frame_step": typical,
    }


def mp4_round_trip(frames: np.ndarray, fps: int) -> np.ndarray:
    """The frames as `render --extend` reads them from an MP4 that `render` wrote."""
    buffer = io.BytesIO()
    with Mp4Writer(buffer, fps) as writer:
        writer.write(frames)
    return read_video(io.BytesIO(buffer.getvalue()))[0]


def case(model: FramePackModel, base: GenerationSettings, index: int, world: WorldConfig, sections: int) -> dict:
    start = start_image(index, world)
    prompt = caption(start.colour, start.shape, OBJECT_MOTIONS[index % len(OBJECT_MOTIONS)])
    image = io.BytesIO()
    start.image.save(image, format="PNG")
    settings = replace(base, seed=index, sections=sections)

    def job(settings: GenerationSettings, extend: np.ndarray | None = None) -> RenderJob:
        return RenderJob(model=None, settings=settings, schedule=PromptSchedule.parse(prompt, []),
                         image=image.getvalue() if extend is None else None, end_image=None, device=None,
                         cpu_offload=False, vae_tiling=False, extend=extend)

    original = mp4_round_trip(render(model, job(settings), show=False).frames, settings.fps)
    extended = render(model, job(settings, extend=original), show=False).frames
    straight = render(model, job(replace(settings, sections=2 * sections)), show=False).frames
    per_section, blend = settings.frames_per_section, settings.overlap_frames
    assert len(extended) == len(original) + sections * per_section
    return {
        "case": index,
        "join": seams(extended, [len(original)], len(original), per_section, blend),
        "sections": seams(straight, [1 + k * per_section for k in range(1, 2 * sections)], 1, per_section, blend),
    }


def mean(results: list[dict], part: str, key: str) -> float:
    return round(float(np.mean([r[part][key] for r in results])), 3)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench extend", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--sections", type=int, default=2, help="sections of the video, and sections added to it")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.monotonic()
    model = FramePackModel.load(args.model)
    world = WorldConfig(size=args.size)
    base = GenerationSettings(**{**resolve(args.model).settings({}), "width": args.size, "height": args.size,
                                 "window": world.window, "sections": 1})
    results = [case(model, base, index, world, args.sections) for index in range(args.cases)]
    report = {
        "benchmark": "extend",
        "model": args.model,
        "cases": args.cases,
        "sections": args.sections,
        "join": {key: mean(results, "join", key) for key in ("at_boundary", "largest_in_blend")},
        "section_seams": {key: mean(results, "sections", key) for key in ("at_boundary", "largest_in_blend")},
        "per_case": results,
        "seconds": round(time.monotonic() - began, 1),
    }
    print(json.dumps(report))
    return 0
