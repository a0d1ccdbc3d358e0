"""`framepack-live bench toyworld`: does the trained toy-world model follow, steer and hold up?

Generates videos from held-out start images (world seeds never used in training) with the
engine's `SectionGenerator`, tracks the captioned shape by colour in the decoded frames and
reports, as one JSON object (the shape is found by its colour as decoded in the start frame,
see `train.tracking`):
- prompt following: the shape's net motion over each section goes the captioned way;
- steering: after the prompt changes at section k (forward order, as live), the shape goes the
  new way in section k+1 (and how often already in section k);
- transitions: the same steer blended in over N sections (`GenerationSettings.transition`) against
  N = 0: how much the shape's velocity jumps at the transition's seams compared with how much it
  changes within sections, and whether section k+N follows the new caption;
- new motion: prompt following of a caption whose motion the world's own clips never show
  (`world.NEW_MOTIONS`, taught by a LoRA: compare `--lora` with the base model alone);
- text start: from the caption alone (`engine.text_start`), is the captioned shape in the first
  frame, and does it move the captioned way;
- drift over many sections, for inverted anti-drifting sampling, forward sampling and a
  no-packing baseline (forward, the transformer sees only the start frame and the newest latent
  frame: the 2x/4x history is emptied): whether the shape is still there and at what size, how
  far the background's and the shape's mean colours have moved from section 0, and whether the
  shape still follows the caption. Following belongs beside drift: a mode that stops moving the
  shape keeps the picture close to section 0 for the wrong reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..engine import video_state as video_state_module
from ..engine.generator import SectionGenerator
from ..engine.lora import parse_lora
from ..engine.model import FramePackModel
from ..engine.packing import pack_forward
from ..engine.presets import resolve
from ..engine.settings import GenerationSettings
from ..engine.text_start import start_from_text
from ..train.tracking import calibrate, centroids, colour_mask, displacement, follows
from ..train.world import COLOURS, NEW_MOTIONS, OBJECT_MOTIONS, SHAPES, VIDEO_FRAMES_PER_LATENT, Clip, WorldConfig, caption, render_clip, shape_mask

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "engine" / "weights" / "toyworld"
HELD_OUT_SEED = 1_000_000
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
TURN = {"left": "up", "up": "right", "right": "down", "down": "left"}
PARTS = ("following", "steering", "drift", "transition", "new_motion", "text_start")
#: Following, steering, drift, transitions and the new motion take their held-out starts this far
#: apart (following from 0, steering from 1x, drift from 2x, transitions from 3x, the new motion
#: from 4x), so `--cases` and `--drift-videos` are at most this many.
PART_SPACING = 100
#: `--case-offset` moves all three parts by a multiple of this, past every part's range.
RANGE_SPACING = 1000


@dataclass
class Start:
    """A held-out start frame and where its shape truly is."""

    image: Image.Image
    colour: str
    shape: str
    truth: np.ndarray  # [H, W] bool

    def track(self, video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The shape's mask per frame, by its colour as decoded in frame 0, and its centroids."""
        rgb, tolerance = calibrate(video[0], self.truth)
        mask = colour_mask(video, rgb, tolerance)
        return mask, centroids(mask)


def start_clip(index: int, world: WorldConfig, motions: list[str]) -> Clip:
    """The world's own video from held-out start `index` (no distractor, the shape near the centre
    so every direction has room): its first frame starts the generated videos, the rest is what a
    perfect model would make of `motions`."""
    rng = np.random.default_rng(HELD_OUT_SEED + index)
    centre = tuple(world.size / 2 + rng.uniform(-8, 8, size=2))
    clip_world = replace(world, sections=len(motions), distractor_probability=0.0)
    return render_clip(HELD_OUT_SEED + index, clip_world, motions=motions, start=centre)


def start_of(clip: Clip) -> Start:
    """A clip's first frame as a start, with its shape's true mask."""
    size = clip.frames.shape[1]
    truth = shape_mask(size, clip.shape, *clip.positions[0], clip.radius)
    return Start(Image.fromarray(clip.frames[0]), clip.colour, clip.shape, truth)


def start_image(index: int, world: WorldConfig) -> Start:
    """A held-out start frame and its shape's true mask."""
    return start_of(start_clip(index, world, ["left"]))


@contextlib.contextmanager
def without_packing():
    """The no-packing baseline: the generator's forward context keeps the start and newest frame only."""

    def newest_only(video: torch.Tensor, start: torch.Tensor, window: int):
        return pack_forward(video[:, :, -1:], start, window)

    original = video_state_module.pack_forward
    video_state_module.pack_forward = newest_only
    try:
        yield
    finally:
        video_state_module.pack_forward = original


def generate(model: FramePackModel, image: Image.Image | None, prompts: list[str], settings: GenerationSettings) -> np.ndarray:
    """The whole decoded video [T, H, W, 3]; prompts[i] is used for section i in playback order.
    No image: the start is made from the first prompt alone (`engine.text_start`)."""
    if image is None:
        start = start_from_text(model, prompts[0], settings)
        gen = SectionGenerator.from_state(model, video_state_module.begin(start, settings, prompts[0]))
    else:
        gen = SectionGenerator(model, prompts[0], image, settings)
    parts = []
    while not gen.finished:
        gen.set_prompt(prompts[gen.next_index])
        parts.append(gen.next_section())
    tail = gen.flush()
    if tail is not None:
        parts.append(tail)
    parts.sort(key=lambda section: section.first_frame)
    return np.concatenate([section.frames for section in parts])


def section_bounds(index: int, window: int) -> tuple[int, int]:
    """First and last video frame that section `index` adds (frame 0 is the start image)."""
    length = window * VIDEO_FRAMES_PER_LATENT
    return 1 + index * length, (index + 1) * length


def prompt_following(model, world, base: GenerationSettings, cases: int, sampling: str, first: int = 0,
                     motions: tuple[str, ...] = OBJECT_MOTIONS, starts: int = 0) -> dict:
    """Share of sections (2 per case) that move the way their caption says, case i captioned
    `motions[i % len(motions)]`, from held-out start `starts + i`."""
    hits = total = 0
    for case in range(first, first + cases):
        start = start_image(starts + case, world)
        motion = motions[case % len(motions)]
        settings = replace(base, sampling=sampling, sections=2, seed=case)
        video = generate(model, start.image, [caption(start.colour, start.shape, motion)] * 2, settings)
        _, track = start.track(video)
        for section in range(2):
            hits += follows(displacement(track, *section_bounds(section, settings.window)), motion)
            total += 1
    return {"accuracy": hits / total, "sections": total, "ci95": wilson_interval(hits, total)}


def steering(model, world, base: GenerationSettings, cases: int, steer_at: int = 2, first: int = 0) -> dict:
    by_next = at_once = 0
    for case in range(first, first + cases):
        start = start_image(PART_SPACING + case, world)
        before = OBJECT_MOTIONS[case % len(OBJECT_MOTIONS)]
        after = (OPPOSITE if case % 2 else TURN)[before]
        prompts = [caption(start.colour, start.shape, before)] * steer_at + [caption(start.colour, start.shape, after)] * 2
        settings = replace(base, sampling="forward", sections=len(prompts), seed=case)
        _, track = start.track(generate(model, start.image, prompts, settings))
        now = follows(displacement(track, *section_bounds(steer_at, settings.window)), after)
        later = follows(displacement(track, *section_bounds(steer_at + 1, settings.window)), after)
        at_once += now
        by_next += later
    return {"accuracy": by_next / cases, "accuracy_same_section": at_once / cases, "cases": cases,
            "ci95": wilson_interval(by_next, cases)}


def group_velocities(track: np.ndarray) -> np.ndarray:
    """[G, 2] mean velocity (pixels per frame) over each latent frame's 4 video frames, G = (T - 1) / 4:
    steadier than frame-to-frame centroid steps, and the unit a section is made of."""
    ends = track[::VIDEO_FRAMES_PER_LATENT]
    return (ends[1:] - ends[:-1]) / VIDEO_FRAMES_PER_LATENT


def velocity_jumps(track: np.ndarray, window: int, seams: range) -> tuple[float, float]:
    """(largest velocity change across the given section seams, largest change between consecutive
    latent frames within any section). Seam s lies between section s - 1 and section s."""
    change = np.linalg.norm(np.diff(group_velocities(track), axis=0), axis=1)  # change[g]: group g -> g + 1
    at_seam = np.zeros(len(change), dtype=bool)
    at_seam[window - 1 :: window] = True
    seam_changes = [change[s * window - 1] for s in seams]
    return float(np.nanmax(seam_changes)), float(np.nanmax(change[~at_seam]))


def transition(model, world, base: GenerationSettings, cases: int, sections: int = 2, steer_at: int = 2,
               first: int = 0) -> dict:
    """A steer at section `steer_at` blended over `sections` sections, against switching at once (N = 0)."""
    results = {}
    for blend in (0, sections):
        smooth = followed = 0
        ratios = []
        for case in range(first, first + cases):
            start = start_image(3 * PART_SPACING + case, world)
            before = OBJECT_MOTIONS[case % len(OBJECT_MOTIONS)]
            after = (OPPOSITE if case % 2 else TURN)[before]
            count = steer_at + sections + 1
            prompts = [caption(start.colour, start.shape, before)] * steer_at
            prompts += [caption(start.colour, start.shape, after)] * (count - steer_at)
            settings = replace(base, sampling="forward", sections=count, seed=case, transition=blend)
            _, track = start.track(generate(model, start.image, prompts, settings))
            seam, within = velocity_jumps(track, settings.window, range(steer_at, steer_at + blend + 1))
            ratios.append(seam / within)
            smooth += seam <= within
            followed += follows(displacement(track, *section_bounds(steer_at + blend, settings.window)), after)
        results[f"sections_{blend}"] = {
            "seam_jump_over_within": round(float(np.nanmean(ratios)), 3),
            "no_larger_jump": smooth / cases,
            "follows_new_caption_at_k_plus_n": followed / cases,
            "ci95": wilson_interval(followed, cases),
        }
    return {"steer_at": steer_at, "cases": cases, **results}


#: Pixels of the caption's colour that count as its shape in a frame made from the prompt alone
#: (a third of the smallest triangle the world draws; more than the blur of a faint trace).
TEXT_START_PIXELS = 60


def text_start(model, world, base: GenerationSettings, cases: int, first: int = 0) -> dict:
    """Text-to-video: from the caption alone (no start image), is a shape of the caption's colour
    (as the world paints it, within the tracker's tolerance) in the video's first frame, and does
    it move the captioned way in each of 2 forward sections? Case i: seed i, the grammar's colour
    i mod 4, shape i // 4 mod 3 and motion (i + i // 4) mod 4, so every colour meets every motion."""
    present = hits = 0
    for case in range(first, first + cases):
        colour, shape = list(COLOURS)[case % 4], SHAPES[(case // 4) % 3]
        motion = OBJECT_MOTIONS[(case + case // 4) % 4]
        settings = replace(base, sampling="forward", sections=2, seed=case)
        video = generate(model, None, [caption(colour, shape, motion)] * 2, settings)
        mask = colour_mask(video, COLOURS[colour])
        present += int(mask[0].sum() >= TEXT_START_PIXELS)
        track = centroids(mask)
        hits += sum(follows(displacement(track, *section_bounds(section, settings.window)), motion) for section in range(2))
    return {"shape_present": present / cases, "following": hits / (2 * cases), "cases": cases,
            "ci95_following": wilson_interval(hits, 2 * cases)}


def wilson_interval(hits: int, total: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a success rate: with 16-32 trials a bare percentage hides
    +-15 points. Five lines by hand rather than scipy/statsmodels as a dependency for one formula."""
    rate = hits / total
    centre = (rate + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(rate * (1 - rate) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [round(float(centre - half), 3), round(float(centre + half), 3)]


def near_shape(mask: np.ndarray, pixels: int = 2) -> np.ndarray:
    """[T, H, W] masks grown by `pixels`: the decoded shape's soft edge is no longer its colour but
    not yet background either."""
    grown = torch.nn.functional.max_pool2d(torch.from_numpy(mask).float()[:, None], 2 * pixels + 1, stride=1,
                                           padding=pixels)
    return grown[:, 0].numpy() > 0


def drift_stats(video: np.ndarray, start: Start, window: int, truth: Clip) -> dict:
    """Per-section shape presence and size, mean-colour shifts (RGB 0-255 units) against section 0,
    and whether each section's motion follows its caption (`truth.motions[i]` for section i),
    scored only where the world's own video moves: a shape pressed against the border by its
    caption rightly stays put.

    The background's shift compares the same pixels in both sections: those away from the shape
    in every frame of either. A mean over each section's own background pixels would move with
    the shape alone (it covers sky in one section and ground in another): on the world's own,
    perfect, videos that gave shifts of up to 5.8, as large as the models' drift."""
    mask, track = start.track(video)
    near, frames = near_shape(mask), video.astype(np.float32)
    first_area = mask[0].sum()
    first, last = section_bounds(0, window)
    reference = slice(first, last + 1)
    reference_near = near[reference].any(axis=0)
    present, area, background_shift, shape_colour, following = [], [], [], [], []
    for section, motion in enumerate(truth.motions):
        first, last = section_bounds(section, window)
        if follows(displacement(truth.positions, first, last), motion):
            following.append(follows(displacement(track, first, last), motion))
        span, masks = slice(first, last + 1), mask[first : last + 1]
        shape_colour.append(frames[span][masks].mean(axis=0) if masks.any() else np.full(3, np.nan, np.float32))
        away = ~(near[span].any(axis=0) | reference_near)
        background = frames[span][:, away].mean(axis=(0, 1)) - frames[reference][:, away].mean(axis=(0, 1))
        background_shift.append(float(np.linalg.norm(background)))
        area.append(float(masks[-1].sum() / first_area))
        present.append(area[-1] >= 0.3)
    shape_shift = [float(np.linalg.norm(colour - shape_colour[0])) for colour in shape_colour]
    last5 = slice(-5, None)
    return {
        "shape_present": float(np.mean(present)),
        "shape_present_last5": float(np.mean(present[last5])),
        "shape_area_last5": float(np.mean(area[last5])),
        "following": float(np.mean(following)) if following else None,
        "background_shift_last5": float(np.mean(background_shift[last5])),
        "shape_colour_shift_last5": float(np.nanmean(shape_shift[last5])) if any(present[last5]) else None,
        "background_shift_per_section": [round(v, 2) for v in background_shift],
    }


def drift_motions(captions: str, sections: int, case: int) -> list[str]:
    """`cycle`: left, up, right, down, 3 sections each, so the shape keeps moving inside the frame;
    `single`: one direction for the whole video (the video's case picks it), as the original
    FramePack prompts inverted sampling. Inverted sampling makes the last section first, knowing
    only its own caption, so with a changing caption the earlier sections must bend toward
    wherever the later ones put the shape; `single` measures it without that handicap."""
    cycle = ["left", "up", "right", "down"]
    if captions == "single":
        return [cycle[case % 4]] * sections
    return [cycle[(i // 3) % 4] for i in range(sections)]


def drift(model, world, base: GenerationSettings, sections: int, videos: int, captions: str = "cycle",
          grid: Path | None = None, first: int = 0) -> dict:
    results: dict[str, list[dict]] = {"inverted": [], "forward": [], "no_packing": []}
    first_videos: dict[str, np.ndarray] = {}
    for case in range(first, first + videos):
        truth = start_clip(2 * PART_SPACING + case, world, drift_motions(captions, sections, case))
        start = start_of(truth)
        prompts = [caption(start.colour, start.shape, motion) for motion in truth.motions]
        for mode in results:
            settings = replace(base, sampling="inverted" if mode == "inverted" else "forward", sections=sections, seed=case)
            with without_packing() if mode == "no_packing" else contextlib.nullcontext():
                video = generate(model, start.image, prompts, settings)
            results[mode].append(drift_stats(video, start, settings.window, truth))
            if case == first:
                first_videos[mode] = video
    if grid is not None:
        save_grid(first_videos, base.window, sections, grid)
    return {"captions": captions, **{mode: summarise(runs) for mode, runs in results.items()}}


def save_grid(videos: dict[str, np.ndarray], window: int, sections: int, path: Path, every: int = 3) -> None:
    """One row per mode: the start frame, then the last frame of every `every`-th section. The
    numbers say how much; the picture says what (a faded, recoloured or doubled shape, a smeared
    horizon), which is how the drift measures were chosen and how they should be read."""
    picks = [0] + [section_bounds(section, window)[1] for section in range(every - 1, sections, every)]
    rows = [np.concatenate([video[pick] for pick in picks], axis=1) for video in videos.values()]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def summarise(runs: list[dict]) -> dict:
    """Means over the drift videos (one video is anecdote: shapes are lost in some and not others);
    the shape's colour shift only over the videos whose shape is still there to measure. Following
    counts a lost shape as not following, as a viewer would."""
    shifts = [run["shape_colour_shift_last5"] for run in runs if run["shape_colour_shift_last5"] is not None]
    scored = [run["following"] for run in runs if run["following"] is not None]
    return {
        "videos": len(runs),
        **{key: float(np.mean([run[key] for run in runs]))
           for key in ("shape_present", "shape_present_last5", "shape_area_last5", "background_shift_last5")},
        "following": float(np.mean(scored)) if scored else None,
        "shape_colour_shift_last5": float(np.mean(shifts)) if shifts else None,
        "per_video": runs,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench toyworld", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="default: the model's (framepack_live.json)")
    parser.add_argument("--scheduler", choices=["euler", "unipc"], default=None, help="default: the model's")
    parser.add_argument("--cfg", type=float, default=None, help="real CFG scale; default: the model's")
    parser.add_argument("--cases", type=int, default=8, help="videos for prompt following and for steering")
    parser.add_argument("--drift-sections", type=int, default=30)
    parser.add_argument("--drift-videos", type=int, default=4)
    parser.add_argument("--drift-captions", choices=["cycle", "single"], default="cycle",
                        help="cycle: left, up, right, down, 3 sections each; single: one direction per video")
    parser.add_argument("--drift-grid", type=Path, default=None,
                        help="save the first drift video of each mode as a PNG (rows: inverted, forward, no packing)")
    parser.add_argument("--transition", type=int, default=2, help="sections a steer is blended over in the transition part")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to measure (default: all; the whole benchmark takes 30+ minutes on 2 CPU cores)")
    parser.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                        help="run every part with this LoRA on (repeatable)")
    parser.add_argument("--new-motion", choices=NEW_MOTIONS, default=NEW_MOTIONS[0],
                        help="the motion the new_motion part captions")
    parser.add_argument("--case-offset", type=int, default=0,
                        help="first held-out case (default 0, the reported figures'); choose weights or settings on "
                             "another range (e.g. 1000) so the reported cases are not the ones the choice was tuned on")
    parser.add_argument("--decoder", choices=["live", "vae"], default="live",
                        help="decode for tracking with the model's live decoder (as the live view shows it; the VAE "
                             "where it has none) or always with the full VAE (as exports do)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if min(args.cases, args.drift_sections, args.drift_videos) < 1:
        parser.error("--cases, --drift-sections and --drift-videos must be at least 1")
    if max(args.cases, args.drift_videos) > PART_SPACING:
        parser.error(f"--cases and --drift-videos are at most {PART_SPACING}: following, steering, drift, "
                     f"transitions and the new motion take their held-out starts {PART_SPACING} apart")
    if args.case_offset < 0 or args.case_offset % RANGE_SPACING:
        parser.error(f"--case-offset must be a multiple of {RANGE_SPACING}: following, steering, drift, "
                     f"transitions and the new motion take the cases from offset + 0, + {PART_SPACING}, "
                     f"+ {2 * PART_SPACING}, + {3 * PART_SPACING} and + {4 * PART_SPACING} on")
    torch.set_num_threads(args.threads)
    began = time.monotonic()
    model = FramePackModel.load(args.model, live_decoder=args.decoder == "live")
    world = WorldConfig(size=args.size)
    given = {"steps": args.steps, "scheduler": args.scheduler, "cfg": args.cfg}
    chosen = resolve(args.model).settings(given)
    loras = tuple(parse_lora(text) for text in args.lora)
    base = GenerationSettings(**{**chosen, "width": args.size, "height": args.size, "window": world.window, "sections": 1,
                                 "loras": loras})
    report = {
        "benchmark": "toyworld",
        "model": args.model,
        "resolution": args.size,
        "steps": base.steps,
        "scheduler": base.scheduler,
        "cfg": base.cfg,
        "window": world.window,
        "case_offset": args.case_offset,
        "decoder": "live" if model.fast_decoder is not None else "vae",
        "loras": [list(choice) for choice in loras],
    }
    if "following" in args.parts:
        report["prompt_following"] = {order: prompt_following(model, world, base, args.cases, order, first=args.case_offset)
                                      for order in ("forward", "inverted")}
    if "steering" in args.parts:
        report["steering"] = steering(model, world, base, args.cases, first=args.case_offset)
    if "transition" in args.parts:
        report["transition"] = transition(model, world, base, args.cases, args.transition, first=args.case_offset)
    if "new_motion" in args.parts:
        report["new_motion"] = {
            "motion": args.new_motion,
            **{order: prompt_following(model, world, base, args.cases, order, first=args.case_offset,
                                       motions=(args.new_motion,), starts=4 * PART_SPACING)
               for order in ("forward", "inverted")},
        }
    if "text_start" in args.parts:
        report["text_start"] = text_start(model, world, base, args.cases, first=args.case_offset)
    if "drift" in args.parts:
        report["drift"] = drift(model, world, base, args.drift_sections, args.drift_videos, args.drift_captions, args.drift_grid,
                                first=args.case_offset)
    report["seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(report))
    return 0
