"""`framepack-live bench live`: how live is the server? Time to the first preview and the first
frame after Start, a steer's time to the screen, and how much section seams show, measured over
/ws against a running server for the old behaviour and today's, side by side in one run.

* `before`: the old default model (`--old-model`, toyworld: real CFG, the full VAE), the old page
  defaults (256x256, 25 steps), sections decoded by blending with the next one (`decode:
  blend`, most of a section's frames held back until the next is decoded), a steer applied from the
  next section boundary only (`restart_steered: False`), no previews, every session's actor started
  when it is asked for (`spare_sessions: 0`), sections as fast as the model makes them.
* `after`: what a new user gets today: `serve`'s default model (`--model`, toyworld-fast: its
  4-step student with a small live decoder), the page's defaults from `GET /config` (the model's
  trained resolution and steps), sessions kept to the viewer's real-time pace (`stream.pace`), the
  causal live decode after one latent frame of context, a steer restarting the section being
  denoised when it comes in its first half (or the section being decoded, when more of the decode
  is left than a denoise takes), a preview after every step, the start image previewed at once,
  session actors started ahead.

Each runs on its own deployment of the whole server (local Ray, Serve). Its first session is the
first on that server, started once it is ready (`/healthz` says `ready`, when `serve` shows its
address and the page enables Start: the registry has sent a section through every stage and
started its spare session actors), as a new user's first session: `--sections` sections; a steer
sent as soon as section `--steer-after`'s frames are in (as a user would, on seeing them). Then
`--starts` - 1 one-section sessions, each `PAUSE_S` after the one before ended, with a new prompt
(a viewer who starts again). Figures, all from the client's clock:

* time to first preview and first frame: from sending `start` to the first `preview` JPEG (today
  the start image, sent before the start is encoded), to the first preview of a denoising step,
  and to the first `section` message with all its frames; the median of the starts (each start's
  under `starts`: one start is at the mercy of whatever else the machine runs that moment);
* section period: the steady-state time between consecutive sections' frames, the unit the
  other figures are counted in: the larger of the median time between them and the time a
  section plays (frames / fps). A paced server (faster than real time) lets the first sections
  through quicker, until its lead is used up, and then sends one per play time: the median of a
  short session's gaps alone would count those quick first gaps as its steady state. Step
  period: the median time between consecutive steps' `progress` of one section;
* steer to screen: from sending the steer to the first frames made with its prompt;
* seam ratio: `bench seams`' measure on the JPEG frames received (mean absolute frame difference
  across section seams over the same within sections).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import time

import httpx
import numpy as np
from PIL import Image

from framepack_live.cluster.config import ClusterConfig
from framepack_live.engine.presets import DEFAULT_MODEL, LIVE_MODEL

from .local_server import deploy, local_serve
from .seams import TARGET as SEAM_TARGET
from .seams import seam_stats

PROMPT = "a red circle moves right"
STEER = "a red circle moves up"
#: The prompts of the starts after the first (`--starts`): a viewer who starts again writes a new one.
AGAIN = ["a red circle moves left", "a red circle moves down", "a blue square moves right", "a blue square moves up"]
#: Seconds between a session's end and the next start (a viewer writing a new prompt).
PAUSE_S = 10.0
#: The page's defaults before `GET /config` (issue 25): out of the toy model's distribution and slow.
OLD_PAGE = {"width": 256, "height": 256, "steps": 25}
TARGETS = {
    "steer_to_screen_periods": 1.5,
    "first_frame_periods": 1.0,
    "seam_ratio_after_over_before": SEAM_TARGET,
    "first_preview_s": "step period + 0.5 s",
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench live", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=LIVE_MODEL, help="the model of the after side (default: what serve serves)")
    parser.add_argument("--old-model", default=DEFAULT_MODEL,
                        help="the model of the before side (default: toyworld, which serve served before toyworld-fast)")
    parser.add_argument("--sections", type=int, default=5)
    parser.add_argument("--steer-after", type=int, default=1, help="the section whose frames trigger the steer")
    parser.add_argument("--starts", type=int, default=3,
                        help="sessions started per side: the first with the steer, then one-section ones "
                             f"{PAUSE_S:.0f} s apart; time to first preview and frame are their medians")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--old-size", type=int, default=OLD_PAGE["width"], help="side of the old page default")
    parser.add_argument("--old-steps", type=int, default=OLD_PAGE["steps"])
    args = parser.parse_args(argv)
    if not 0 <= args.steer_after < args.sections - 2:
        parser.error("--sections must leave two sections after --steer-after (a steer may wait for the next one)")
    if not 1 <= args.starts <= len(AGAIN) + 1:
        parser.error(f"--starts must be 1 to {len(AGAIN) + 1}")
    began = time.monotonic()
    old_page = {"width": args.old_size, "height": args.old_size, "steps": args.old_steps}
    sides = {
        "before": ClusterConfig(model=args.old_model, restart_steered=False, spare_sessions=0, live_lead_sections=None,
                                generation={"decode": "blend", "preview_every": 0}),
        "after": ClusterConfig(model=args.model),
    }
    report: dict = {"benchmark": "live", "model": args.model, "old_model": args.old_model, "cpus": args.num_cpus,
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    with local_serve(args.num_cpus) as port:
        for side, config in sides.items():
            deploy(config)
            report[side] = asyncio.run(_side(port, old_page if side == "before" else None, args))
    report["targets"] = TARGETS
    report["meets_targets"] = _verdicts(report["before"], report["after"])
    report["seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(report))
    return 0


async def _side(port: int, start: dict | None, args: argparse.Namespace) -> dict:
    """One deployment's figures; `start`: the resolution and steps to ask for (None: the page's
    defaults from `GET /config`, as today's page does)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        config = (await http.get("/config")).json()
    defaults = config["defaults"]
    start = start or {key: defaults[key] for key in ("width", "height", "steps")}
    start = {**start, "transition": defaults.get("transition", 0)}
    url = f"ws://127.0.0.1:{port}/ws"
    figures = await session(url, start, sections=args.sections, steer_after=args.steer_after)
    frames = figures.pop("frames")
    starts = [figures]
    for prompt in AGAIN[: args.starts - 1]:
        await asyncio.sleep(PAUSE_S)
        starts.append(await session(url, start, sections=1, prompt=prompt))
    keys = ("first_preview_s", "first_step_preview_s", "first_frame_s")
    figures["starts"] = [{key: one[key] for key in keys} for one in starts]
    for key in keys:
        values = [one[key] for one in starts]
        figures[key] = None if None in values else _round(statistics.median(values))
    figures["first_frame_periods"] = _round(figures["first_frame_s"] / figures["section_period_s"])
    return {"settings": {**start, "window": defaults["window"]}, **figures,
            "seam_ratio": round(seam_ratio(frames, defaults["window"]), 3)}


async def session(url: str, start: dict, sections: int, steer_after: int | None = None, prompt: str = PROMPT) -> dict:
    """One session over /ws, timed: figures of the module docstring, and the frames (decoded RGB,
    under `frames`). With `steer_after`, a steer is sent once that section's frames are in."""
    from framepack_live.stream.client import Received, connect, receive, send

    stamps: list[tuple[dict, float]] = []

    def stamp(message: dict) -> None:
        stamps.append((message, time.monotonic()))

    received = Received()
    steered_at = None
    async with connect(url) as ws:
        started = time.monotonic()
        await send(ws, type="start", prompt=prompt, sections=sections, **start)
        if steer_after is not None:
            await receive(ws, received, timeout=600, until=lambda m: stamp(m) or (
                m["type"] == "section" and m["section"] >= steer_after))
            steered_at = time.monotonic()
            await send(ws, type="steer", prompt=STEER, transition=start["transition"])
        await receive(ws, received, timeout=600, until=stamp)
    if received.errors or received.gaps():
        raise RuntimeError(f"the session did not come whole: {received.errors or received.gaps()}")
    sections = [(m, t) for m, t in stamps if m["type"] == "section"]
    section_times = [t for _, t in sections]
    gap = statistics.median(np.diff(section_times)) if len(section_times) > 1 else None
    plays = statistics.median(m["frames"] / m["fps"] for m, _ in sections)
    period = max(gap, plays) if gap is not None else None
    previews = [(m["step"], t) for m, t in stamps if m["type"] == "preview"]
    step_previews = [t for step, t in previews if step > 0]
    first_frame = section_times[0] - started
    figures = {
        "first_preview_s": _round(previews[0][1] - started) if previews else None,
        "first_step_preview_s": _round(step_previews[0] - started) if step_previews else None,
        "first_frame_s": _round(first_frame),
        "section_period_s": _round(period),
        "section_gap_s": _round(gap),
        "section_plays_s": _round(plays),
        "step_period_s": _round(step_period(stamps)),
        "first_frame_periods": _round(first_frame / period) if period else None,
        "frames": [np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")) for jpeg in received.frames],
    }
    if steered_at is not None:
        first_steered, steered = next((m, t) for m, t in sections if m["prompt"] == STEER)
        sent_during = [m for m, t in stamps if m["type"] == "progress" and t <= steered_at]
        figures |= {
            "steer_after_section": steer_after,
            # What the viewer last heard of when it steered: a steer restarts the section being
            # denoised only in the first half of its steps (`stream.backend.worth_restarting`).
            "steer_sent_during": {k: sent_during[-1][k] for k in ("section", "step", "steps")} if sent_during else None,
            "first_steered_section": first_steered["section"],
            "steer_to_screen_s": _round(steered - steered_at),
            "steer_to_screen_periods": _round((steered - steered_at) / period),
        }
    return figures


def step_period(stamps: list[tuple[dict, float]]) -> float | None:
    """Median time between a section's consecutive steps (a viewer that lags may miss some)."""
    progress = [(m["section"], m["step"], t) for m, t in stamps if m["type"] == "progress"]
    gaps = [t2 - t1 for (s1, k1, t1), (s2, k2, t2) in zip(progress, progress[1:]) if s1 == s2 and k2 == k1 + 1]
    return statistics.median(gaps) if gaps else None


def seam_ratio(frames: list[np.ndarray], window: int) -> float:
    seams, within = seam_stats(np.stack(frames), window)
    return seams / within


def _verdicts(before: dict, after: dict) -> dict:
    preview_bound = (after["step_period_s"] or 0) + 0.5
    return {
        "steer_to_screen": after["steer_to_screen_periods"] <= TARGETS["steer_to_screen_periods"],
        "first_frame": after["first_frame_periods"] <= TARGETS["first_frame_periods"],
        "seam_ratio": after["seam_ratio"] <= SEAM_TARGET * before["seam_ratio"],
        "first_preview": after["first_preview_s"] is not None and after["first_preview_s"] <= preview_bound,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)
