"""`framepack-live bench serve`: video frames per second through the whole server (local Ray, a
WebSocket client) against the engine's own loop in this process, time to first frame, and
aggregate frames per second with 1 against N concurrent sessions. Prints one JSON object."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time

import torch

from framepack_live.engine.settings import GenerationSettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench serve", description=__doc__)
    parser.add_argument("--model", default=None, help="default: toyworld")
    parser.add_argument("--sections", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=4, help="concurrent sessions of the aggregate figure")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args(argv)
    settings = GenerationSettings(
        width=args.width, height=args.height, steps=args.steps, window=args.window, seed=0, sections=args.sections
    )
    in_process = _in_process(args.model, settings)
    server = _through_server(args, settings)
    print(
        json.dumps(
            {
                "benchmark": "serve",
                "settings": settings.to_dict(),
                "in_process_fps": in_process["fps"],
                "server_fps": server["single"]["fps"],
                "server_to_in_process_ratio": server["single"]["fps"] / in_process["fps"],
                "in_process_time_to_first_frame_s": in_process["ttff"],
                "server_time_to_first_frame_s": server["single"]["ttff"],
                f"aggregate_fps_{args.sessions}_sessions": server["many"]["fps"],
                "aggregate_ratio": server["many"]["fps"] / server["single"]["fps"],
                "torch_threads_per_process": 1,
            }
        )
    )
    return 0


def _in_process(model_name: str | None, settings: GenerationSettings) -> dict:
    """The engine loop a single-process server would run: encode, then section after section."""
    from framepack_live.engine.generator import SectionGenerator
    from framepack_live.engine.model import FramePackModel

    torch.set_num_threads(1)  # what each replica uses
    model = FramePackModel.load(model_name, device="cpu")
    started = time.perf_counter()
    generator = SectionGenerator(model, prompt="a red ball", settings=settings)
    frames, ttff = 0, None
    while not generator.finished:
        frames += generator.next_section().num_frames
        ttff = ttff or time.perf_counter() - started
    tail = generator.flush()
    frames += tail.num_frames if tail else 0
    return {"fps": frames / (time.perf_counter() - started), "ttff": ttff}


def _through_server(args: argparse.Namespace, settings: GenerationSettings) -> dict:
    import ray
    from ray import serve

    from framepack_live.cluster.app import build
    from framepack_live.cluster.config import ClusterConfig

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = ClusterConfig(
        model=args.model,
        generation={k: v for k, v in settings.to_dict().items() if k != "sections"},
        max_sessions=max(args.sessions, 1),
        max_sessions_per_client=max(args.sessions, 1),
    )
    try:
        serve.run(build(config), name="framepack-live", route_prefix="/")
        url = f"ws://127.0.0.1:{port}/ws"
        asyncio.run(_sessions(url, 1, settings.sections))  # warm-up: replicas' first calls
        single = asyncio.run(_sessions(url, 1, settings.sections))
        many = asyncio.run(_sessions(url, args.sessions, settings.sections))
    finally:
        serve.shutdown()
        ray.shutdown()
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
    return {"fps": sum(frames for frames, _ in results) / elapsed, "ttff": max(t for _, t in results)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
