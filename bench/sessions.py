"""`framepack-live bench sessions`: does an Ingress replica's memory grow with a video's length?

Runs the whole server (local Ray, one Ingress replica, so `/healthz` answers from the process that
serves the viewer) and watches one long session over the WebSocket, as a browser would. After
every section it reads the Ingress's `/healthz`: the bytes of sessions' video it holds (its
outboxes and WebRTC buffers) and its resident memory. Prints one JSON object with both after the
first `--early` sections and after all `--sections`; the frames themselves live on disk with the
session, so neither figure should grow.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httpx

from .local_server import deploy, local_serve


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench sessions", description=__doc__)
    parser.add_argument("--model", default="tiny", help="default: tiny (memory, not quality, is measured)")
    parser.add_argument("--sections", type=int, default=200)
    parser.add_argument("--early", type=int, default=20, help="the first measurement, after this many sections")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args(argv)
    if not 0 < args.early < args.sections:
        parser.error("--early must be between 0 and --sections")
    print(json.dumps(_run(args)))
    return 0


def _run(args: argparse.Namespace) -> dict:
    from framepack_live.cluster.config import ClusterConfig
    from framepack_live.stream.settings import StreamSettings

    generation = dict(width=args.width, height=args.height, steps=args.steps, window=args.window)
    with local_serve(args.num_cpus) as port:
        deploy(ClusterConfig(model=args.model, generation=generation), ingress_replicas=1)
        samples, session_id = asyncio.run(_watch(port, args.sections))
        disk = sum(f.stat().st_size for f in (StreamSettings().session_dir / session_id).rglob("*") if f.is_file())
    early, late = samples[: args.early], samples[-args.early :]
    held_early, held_late = max(s["held_frame_bytes"] for s in early), max(s["held_frame_bytes"] for s in late)
    rss_early, rss_late = samples[args.early - 1]["rss_bytes"], samples[-1]["rss_bytes"]
    return {
        "benchmark": "sessions",
        "model": args.model,
        "settings": generation,
        "sections": len(samples),
        f"held_frame_bytes_max_first_{args.early}": held_early,
        f"held_frame_bytes_max_last_{args.early}": held_late,
        f"ingress_rss_mb_after_{args.early}": round(rss_early / 2**20, 1),
        f"ingress_rss_mb_after_{len(samples)}": round(rss_late / 2**20, 1),
        "rss_ratio": round(rss_late / rss_early, 4),
        "frames": samples[-1]["frames"],
        "session_disk_mb": round(disk / 2**20, 1),
    }


async def _watch(port: int, sections: int) -> tuple[list[dict], str]:
    """One session of `sections` sections read to its end; `/healthz` after each section. Returns
    the samples and the session's id."""
    from framepack_live.stream.client import Received, connect, expect, receive, send

    samples = []
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        await send(ws, type="start", prompt="a red ball", sections=sections)
        session = await expect(ws, "session")
        received = Received()
        while received.done is None:
            await receive(ws, received, until_sections=len(received.sections) + 1, timeout=300)
            health = (await http.get("/healthz")).json()
            samples.append({**health, "frames": len(received.frames)})
    if received.gaps():
        raise RuntimeError(f"incomplete session: {received.gaps()}")
    return samples[:sections], session["session_id"]
