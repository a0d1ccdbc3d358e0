"""`framepack-live bench serve`: video frames per second through the whole server (local Ray, a
WebSocket client) against the engine's own loop in this process, time to first frame, and
aggregate frames per second with 1 against N concurrent sessions. Prints one JSON object.

Like for like: both sides get the same CPU cores (`--cpus K`: this process and everything it
starts, Ray included, is pinned to K cores). The in-process loop is run with 1 and with K torch
threads and the faster counts (on a small shared machine K intra-op threads can be far slower
than one); the server runs each replica on one thread (its default), so its stages overlap in
up to K processes instead. Each side's CPU time (every process of the server: replicas, Ray's own daemons, the
client) is measured too, so the figures also compare frames per CPU second: what the server
costs for what it delivers, whatever the number of cores.

`bytes_per_section`: what one section moves between the stages (`bench.stage_bytes`): the
Denoiser's request, result and previews, the Decoder's plan and frames, with the frames as uint8
(`total`) and as the float32 pixels the Decoder returned before (`total_with_float32_frames`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import psutil
import torch

from framepack_live.engine.model import FramePackModel
from framepack_live.engine.presets import LIVE_MODEL
from framepack_live.engine.settings import GenerationSettings
from framepack_live.stream.settings import LIVE_DECODE

from .local_server import deploy, local_serve
from .stage_bytes import bytes_per_section


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench serve", description=__doc__)
    parser.add_argument("--model", default=LIVE_MODEL, help=f"default: {LIVE_MODEL}, what serve serves")
    parser.add_argument("--sections", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=4, help="concurrent sessions of the aggregate figure")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=None, help="cores both sides get (default: all this process may use)")
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    cpus = args.cpus or len(cores)
    if not 1 <= cpus <= len(cores):
        parser.error(f"--cpus must be between 1 and {len(cores)}")
    os.sched_setaffinity(0, cores[:cpus])  # inherited by Ray's processes, started below
    settings = GenerationSettings(  # decoded as the server's sessions decode by default
        width=args.width, height=args.height, steps=args.steps, window=args.window, seed=0, sections=args.sections,
        **LIVE_DECODE,
    )
    by_threads = {threads: _in_process(args.model, settings, threads) for threads in sorted({1, cpus})}
    best = max(by_threads, key=lambda threads: by_threads[threads]["fps"])
    in_process = by_threads[best]
    server = _through_server(args, settings, cpus)
    moved = bytes_per_section(FramePackModel.load(args.model, device="cpu"), settings, args.sections)
    single = server["single"]
    print(
        json.dumps(
            {
                "benchmark": "serve",
                "settings": settings.to_dict(),
                "cpus": cpus,
                "in_process_torch_threads": best,
                "in_process_fps_by_threads": {threads: r["fps"] for threads, r in by_threads.items()},
                "server_torch_threads_per_process": 1,
                "in_process_fps": in_process["fps"],
                "server_fps": single["fps"],
                "server_to_in_process_ratio": single["fps"] / in_process["fps"],
                "in_process_frames_per_cpu_s": in_process["frames_per_cpu_s"],
                "server_frames_per_cpu_s": single["frames_per_cpu_s"],
                "server_to_in_process_ratio_per_cpu_s": single["frames_per_cpu_s"] / in_process["frames_per_cpu_s"],
                "in_process_time_to_first_frame_s": in_process["ttff"],
                "server_time_to_first_frame_s": single["ttff"],
                f"aggregate_fps_{args.sessions}_sessions": server["many"]["fps"],
                "aggregate_ratio": server["many"]["fps"] / single["fps"],
                "bytes_per_section": moved,
            }
        )
    )
    return 0


def _in_process(model_name: str, settings: GenerationSettings, threads: int) -> dict:
    """The engine loop a single-process server would run: encode, then section after section."""
    from framepack_live.engine.generator import SectionGenerator

    torch.set_num_threads(threads)
    model = FramePackModel.load(model_name, device="cpu")

    def video() -> dict:
        cpu_started = time.process_time()
        started = time.perf_counter()
        generator = SectionGenerator(model, prompt="a red ball", settings=settings)
        frames, ttff = 0, None
        while not generator.finished:
            frames += generator.next_section().num_frames
            ttff = ttff or time.perf_counter() - started
        tail = generator.flush()
        frames += tail.num_frames if tail else 0
        return {
            "fps": frames / (time.perf_counter() - started),
            "frames_per_cpu_s": frames / (time.process_time() - cpu_started),
            "ttff": ttff,
        }

    video()  # warm-up, as the server gets one: first calls pay for allocations and caches
    return video()


def _through_server(args: argparse.Namespace, settings: GenerationSettings, cpus: int) -> dict:
    from framepack_live.cluster.config import ClusterConfig

    config = ClusterConfig(
        model=args.model,
        generation={k: v for k, v in settings.to_dict().items() if k != "sections"},
        max_sessions=max(args.sessions, 1),
        max_sessions_per_client=max(args.sessions, 1),
        live_lead_sections=None,  # as fast as it goes: its capacity, not a viewer's real-time pace
        # A session actor started ahead for every session of the run (warm-up, single, the
        # aggregate's): the figures are the sessions' throughput, not process start-up.
        spare_sessions=max(args.sessions, 1) + 2,
    )
    with local_serve(cpus) as port:
        deploy(config)
        url = f"ws://127.0.0.1:{port}/ws"
        asyncio.run(_sessions(url, 1, settings.sections))  # warm-up: replicas' first calls
        cpu_started = _cpu_seconds()
        single = asyncio.run(_sessions(url, 1, settings.sections))
        single["frames_per_cpu_s"] = single["frames"] / (_cpu_seconds() - cpu_started)
        many = asyncio.run(_sessions(url, args.sessions, settings.sections))
    return {"single": single, "many": many}


async def _sessions(url: str, count: int, sections: int) -> dict:
    from framepack_live.stream.client import Received, connect, expect, receive, send

    async def one(seed: int) -> tuple[int, float]:
        async with connect(url) as ws:
            started = time.perf_counter()
            await send(ws, type="start", prompt="a red ball", sections=sections, seed=seed)
            await expect(ws, "session")
            first = await receive(ws, Received(), until_sections=1)
            ttff = time.perf_counter() - started
            received = await receive(ws, first)
            if received.gaps():
                raise RuntimeError(f"incomplete session: {received.gaps()}")
            return len(received.frames), ttff

    started = time.perf_counter()
    results = await asyncio.gather(*(one(seed) for seed in range(count)))
    elapsed = time.perf_counter() - started
    frames = sum(count for count, _ in results)
    return {"fps": frames / elapsed, "frames": frames, "ttff": max(t for _, t in results)}


def _cpu_seconds() -> float:
    """CPU time of this process and every process it started (Ray's daemons and workers): the
    server's whole cost, client included. A process that exits between two readings is missed,
    which no process of a running server does."""
    total = 0.0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
