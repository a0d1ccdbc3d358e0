"""`framepack-live bench realtime`: video seconds made per wall second, in process and through the server.

Real time means a section's video (`window` x 4 frames at the model's fps: 0.4 s for the toy
models) is made in at most its own duration. Measured at a model's default settings (its
framepack_live.json: steps, CFG, live decoder) on this machine:
- engine: the in-process `SectionGenerator` making a forward video, eager and compiled
  (`torch.compile` of the transformer and the live decoder), and the same for a baseline model
  (the CFG teacher), in turns, round after round, so the shared machine's noise hits all alike;
  per variant the median section's time and video seconds per wall second over the sections after
  the first (the first encodes nothing but carries first-call costs; a warm-up video before them
  takes the compilation);
- server: the whole application (local Ray, Encoder/Denoiser/Decoder replicas, a WebSocket
  client receiving every JPEG), after a warm-up session: video seconds received per wall second
  between the first section's arrival and the end, with sessions unpaced (`live_lead_sections`
  None: a live session otherwise keeps to real-time play-out, `stream.pace`);
- quality, beside the speed: `bench toyworld`'s prompt following (both orders) and steering at the
  same settings, on a range of held-out cases nothing was tuned on (`--case-offset`, default 2000),
  for each step cache asked for (`--caches`: the speed/quality table of step caching);
- decoder: PSNR of the live decoder against the full VAE's decode, section by section as the live
  path decodes, on held-out clips (and against the world's true frames, both decoders), and on
  videos the model itself generated.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..engine.caching import calibrate_mag_ratios
from ..engine.decoding import decode_latents, to_uint8
from ..engine.generator import SectionGenerator
from ..engine.model import FramePackModel
from ..engine.presets import resolve
from ..engine.settings import GenerationSettings
from ..stream.settings import LIVE_DECODE
from ..train.fast_decoder import psnr
from ..train.vae import to_pixels
from ..train.world import WorldConfig, caption, render_clip
from .toyworld import HELD_OUT_SEED, prompt_following, start_clip, start_of, steering

PROMPT = "a red circle moves left"
PARTS = ("engine", "server", "quality", "decoder")
#: Held-out case numbers of the decoder's clips: past every range `bench toyworld` uses.
DECODER_CASES = 10_000
#: Sections of each clip (and generated video) the decoder is scored on.
DECODER_SECTIONS = 4


@dataclass(frozen=True)
class Variant:
    """One way of running a model: which, compiled or not, with which step cache."""

    name: str
    model: str
    compile: bool = False
    cache: str | None = None

    def load(self, size: int) -> FramePackModel:
        model = load_with_cache(self.model, self.cache, live_settings(self.model, size))
        if self.compile:
            model.compile()
        return model


def load_with_cache(name: str, cache: str | None, settings: GenerationSettings) -> FramePackModel:
    """The model with step cache `cache`; MagCache calibrated on one section first where the model
    has no ratios of its own."""
    model = FramePackModel.load(name, device="cpu", cache="none")
    ratios = None
    if cache and cache.startswith("mag") and model.source.mag_ratios is None:
        ratios = calibrate_mag_ratios(model.transformer, settings.steps, lambda: time_sections(model, settings, 1))
    model.set_cache(cache or "none", ratios)
    return model


def default_settings(model: str, size: int, sections: int | None = None) -> GenerationSettings:
    """The model's own sampler defaults (its framepack_live.json) at `size`."""
    chosen = resolve(model).settings({})
    return GenerationSettings(**{**chosen, "width": size, "height": size, "sections": sections, "seed": 0})


def live_settings(model: str, size: int) -> GenerationSettings:
    """The model's defaults as a live server samples and decodes them (forward, `LIVE_DECODE`), so
    the engine is timed making the very frames the server streams."""
    return replace(default_settings(model, size), sampling="forward", **LIVE_DECODE)


def time_sections(model: FramePackModel, settings: GenerationSettings, sections: int) -> list[float]:
    """Wall seconds of each section of one forward video (the start image's encoding not counted)."""
    generator = SectionGenerator(model, PROMPT, settings=replace(settings, sections=sections))
    times = []
    while not generator.finished:
        began = time.perf_counter()
        generator.next_section()
        times.append(time.perf_counter() - began)
    return times


def engine(variants: list[Variant], size: int, sections: int, rounds: int) -> dict:
    models = {variant.name: variant.load(size) for variant in variants}
    settings = {variant.name: live_settings(variant.model, size) for variant in variants}
    for variant in variants:  # warm-up: compilation, allocator, caches of the first calls
        time_sections(models[variant.name], settings[variant.name], 2)
    times: dict[str, list[list[float]]] = {variant.name: [] for variant in variants}
    for _ in range(rounds):
        for variant in variants:
            times[variant.name].append(time_sections(models[variant.name], settings[variant.name], sections))
    report = {}
    for variant in variants:
        video = settings[variant.name].frames_per_section / settings[variant.name].fps
        steady = [t for video_times in times[variant.name] for t in video_times[1:]]
        report[variant.name] = {
            "model": variant.model, "compile": variant.compile, "cache": variant.cache,
            "steps": settings[variant.name].steps, "cfg": settings[variant.name].cfg,
            "live_decoder": models[variant.name].fast_decoder is not None,
            "section_video_s": video,
            "section_s_median": statistics.median(steady),
            "first_section_s_median": statistics.median(video_times[0] for video_times in times[variant.name]),
            "realtime": video * len(steady) / sum(steady),
        }
    return report


def server(variants: list[Variant], size: int, sections: int, num_cpus: int) -> dict:
    """Each variant's application in turn on one local Ray; a warm-up session, then a timed one."""
    from ..cluster.config import ClusterConfig
    from .local_server import deploy, local_serve

    report = {}
    with local_serve(num_cpus) as port:
        for variant in variants:
            settings = live_settings(variant.model, size)
            generation = {key: value for key, value in settings.to_dict().items() if key != "sections"}
            # Unpaced: what the server can make, not the real-time play-out a live session keeps to.
            deploy(ClusterConfig(model=variant.model, generation=generation, compile=variant.compile,
                                 cache=variant.cache, live_lead_sections=None))
            url = f"ws://127.0.0.1:{port}/ws"
            asyncio.run(_session(url, 2))
            timed = asyncio.run(_session(url, sections))
            report[variant.name] = {**timed, "realtime": timed["video_s_after_first"] / timed["wall_s_after_first"]}
    return report


async def _session(url: str, sections: int) -> dict:
    from ..stream.client import Received, connect, expect, receive, send

    async with connect(url) as ws:
        started = time.perf_counter()
        await send(ws, type="start", prompt=PROMPT, sections=sections, seed=0)
        await expect(ws, "session")
        first = await receive(ws, Received(), until_sections=1, timeout=600)
        arrived = time.perf_counter()
        received = await receive(ws, first, timeout=600)
        ended = time.perf_counter()
    if received.gaps():
        raise RuntimeError(f"incomplete session: {received.gaps()}")
    fps = received.sections[0][0]["fps"]
    later = len(received.frames) - len(first.sections[0][1])
    return {"first_section_s": arrived - started, "video_s_after_first": later / fps,
            "wall_s_after_first": ended - arrived, "frames": len(received.frames)}


def quality(model_name: str, caches: list[str | None], size: int, cases: int, offset: int) -> dict:
    """`bench toyworld`'s following and steering at the model's defaults, per step cache."""
    world = WorldConfig(size=size)
    base = replace(default_settings(model_name, size, sections=1), window=world.window)
    report = {}
    for cache in caches:
        model = load_with_cache(model_name, cache, base)
        report[cache or "none"] = {
            "following": {order: prompt_following(model, world, base, cases, order, first=offset)
                          for order in ("forward", "inverted")},
            "steering": steering(model, world, base, cases, first=offset),
        }
    return report


def live_sections(latents: torch.Tensor, window: int) -> list[torch.Tensor]:
    """A video's latents cut as the live path decodes them: each window with the latent frame before it."""
    return [latents[:, :, start : start + 1 + window] for start in range(0, latents.shape[2] - 1, window)]


def decoder_quality(model_name: str, size: int, clips: int) -> dict:
    """PSNR (dB) of the live decoder against the full VAE, decoding as the live path does."""
    model = FramePackModel.load(model_name, device="cpu")
    if model.fast_decoder is None:
        return {"live_decoder": None}
    world = WorldConfig(size=size, sections=DECODER_SECTIONS)
    vae = model.pipeline.vae
    scores: dict[str, list[float]] = {"clips_vs_vae": [], "clips_vae_vs_truth": [], "clips_fast_vs_truth": [],
                                      "generated_vs_vae": []}
    settings = default_settings(model_name, size, sections=DECODER_SECTIONS)
    for index in range(clips):
        clip = render_clip(HELD_OUT_SEED + DECODER_CASES + index, world)
        with torch.no_grad():
            latents = vae.encode(to_pixels(clip.frames)[None]).latent_dist.mean * vae.config.scaling_factor
        parts = live_sections(latents, world.window)
        for part, truth in zip(parts, _truth_sections(clip.frames, world.window, latents.shape[2])):
            full, fast = to_uint8(decode_latents(model, part)), to_uint8(model.decode_live(part))
            scores["clips_vs_vae"].append(psnr(fast, full))
            scores["clips_vae_vs_truth"].append(psnr(full, truth))
            scores["clips_fast_vs_truth"].append(psnr(fast, truth))
        start = start_of(start_clip(DECODER_CASES + index, world, ["left"]))
        generator = SectionGenerator(model, caption(start.colour, start.shape, "left"), start.image,
                                     replace(settings, seed=index))
        while not generator.finished:
            generator.next_section()
        for part in live_sections(generator.video_latents(), world.window):
            scores["generated_vs_vae"].append(psnr(to_uint8(model.decode_live(part)),
                                                   to_uint8(decode_latents(model, part))))
    return {"clips": clips, "sections_each": len(parts),
            **{name: round(float(np.mean(values)), 2) for name, values in scores.items()}}


def _truth_sections(frames: np.ndarray, window: int, latent_frames: int) -> list[np.ndarray]:
    """The world's own frames that each `live_sections` part decodes to (its first frame included)."""
    per = window * 4
    return [frames[start * 4 : start * 4 + per + 1] for start in range(0, latent_frames - 1, window)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench realtime", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyworld-fast")
    parser.add_argument("--baseline", default="toyworld", help="a model measured beside it, eager ('none': skip)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--sections", type=int, default=6, help="sections per timed video or session")
    parser.add_argument("--rounds", type=int, default=3, help="timed videos per engine variant, taken in turns")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both",
                        help="run the model eager, compiled, or both (in process; on the server each is a Ray "
                             "application started afresh)")
    parser.add_argument("--caches", nargs="+", default=["none"],
                        help="step caches to measure (in process, compiled if --compile asks for it, and their "
                             "quality): none, first-block:T, mag:T, taylorseer:N")
    parser.add_argument("--cases", type=int, default=16, help="held-out cases of the quality part")
    parser.add_argument("--case-offset", type=int, default=2000,
                        help="first held-out case of the quality part: a range no weights or settings were chosen on")
    parser.add_argument("--decoder-clips", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the in-process engine")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the server's local Ray")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report: dict = {"benchmark": "realtime", "model": args.model, "size": args.size, "threads": args.threads,
                    "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0],
                    "settings": live_settings(args.model, args.size).to_dict()}
    began = time.monotonic()
    compiled = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    if "engine" in args.parts:
        variants = [Variant(_name(on), args.model, compile=on) for on in compiled]
        variants += [Variant(f"{_name(compiled[-1])}+{cache}", args.model, compile=compiled[-1], cache=cache)
                     for cache in args.caches if cache != "none"]
        if args.baseline != "none":
            variants.insert(0, Variant("baseline", args.baseline))
        report["engine"] = engine(variants, args.size, args.sections, args.rounds)
    if "server" in args.parts:
        report["server"] = server([Variant(_name(on), args.model, compile=on) for on in compiled],
                                  args.size, args.sections, args.num_cpus)
    if "quality" in args.parts:
        report["quality"] = quality(args.model, [None if c == "none" else c for c in args.caches], args.size,
                                    args.cases, args.case_offset)
        report["quality"]["case_offset"] = args.case_offset
    if "decoder" in args.parts:
        report["decoder"] = decoder_quality(args.model, args.size, args.decoder_clips)
    report["load_average_at_end"] = os.getloadavg()[0]
    report["seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(report))
    return 0


def _name(compiled: bool) -> str:
    return "compiled" if compiled else "eager"
