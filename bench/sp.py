"""Sequence-parallel benchmark: one denoising step on 1 rank against N ranks, on CPU.

Prints one JSON object. N processes are spawned with one torch thread each; rank 0 alone times
the plain model ("1 rank x 1 thread") and all N time the parallel model ("N ranks x 1 thread"),
alternating step by step, so the variants differ only in the split.
A step is one transformer evaluation on FramePack-shaped inputs (distilled guidance, no CFG:
one call per step, as the sampler does); the scheduler update is negligible beside it.
The bytes are counted by the collectives themselves and set beside the analytical volume.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from diffusers import HunyuanVideoFramepackTransformer3DModel
from framepack_live.engine.packing import pack_forward
from framepack_live.engine.parallel import enable_sequence_parallel, run_parallel
from framepack_live.engine.tiny import framepack_transformer


@dataclass(frozen=True)
class BenchConfig:
    """A transformer small enough for CPU, with enough tokens that the blocks' compute dominates."""

    heads: int = 8
    head_dim: int = 64
    layers: int = 1
    single_layers: int = 3
    latent_height: int = 32
    latent_width: int = 32
    window: int = 9
    text_tokens: int = 32
    image_tokens: int = 16
    steps: int = 5
    ranks: int = 2

    @property
    def hidden(self) -> int:
        return self.heads * self.head_dim


def build_transformer(cfg: BenchConfig) -> HunyuanVideoFramepackTransformer3DModel:
    return framepack_transformer(
        heads=cfg.heads,
        head_dim=cfg.head_dim,
        layers=cfg.layers,
        single_layers=cfg.single_layers,
        text_dim=64,
        image_dim=64,
    )


def step_inputs(cfg: BenchConfig) -> dict:
    """One forward-order section's transformer kwargs, packed by the engine's own packing."""
    g = torch.Generator().manual_seed(0)
    h, w = cfg.latent_height, cfg.latent_width
    video = torch.randn(1, 16, 20, h, w, generator=g)
    context = pack_forward(video, start=video[:, :, :1], window=cfg.window)
    return dict(
        hidden_states=torch.randn(1, 16, cfg.window, h, w, generator=g),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, cfg.text_tokens, 64, generator=g),
        encoder_attention_mask=torch.ones(1, cfg.text_tokens, dtype=torch.long),
        pooled_projections=torch.randn(1, 64, generator=g),
        image_embeds=torch.randn(1, cfg.image_tokens, 64, generator=g),
        guidance=torch.tensor([10_000.0]),
        return_dict=False,
        **context.model_kwargs(torch.float32),
    )


def packed_tokens(cfg: BenchConfig) -> int:
    """Video tokens after packing: window and clean (start + 1x) at 2x2 patches, 2x and 4x history."""
    h, w = cfg.latent_height, cfg.latent_width
    full = (h // 2) * (w // 2)
    return (cfg.window + 2) * full + _ceil(2, 2) * _ceil(h, 4) * _ceil(w, 4) + _ceil(16, 4) * _ceil(h, 8) * _ceil(w, 8)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def analytical_bytes(
    tokens: int, condition_tokens: int, hidden: int, blocks: int, degree: int, batch: int = 1, elem: int = 4
) -> int:
    """Bytes one rank sends per transformer call under Ulysses (derivation in docs/sequence-parallel.md).

    Per block, q, k, v and the attention output each cross an all-to-all of the rank's L/N tokens
    ((N-1)/N of it leaves) and the conditioning output is all-gathered over heads (E tokens x C/N,
    once to each of the N-1 others); once per call the L/N output tokens are all-gathered.
    L is the padded length, the next multiple of N, which is what actually travels.
    """
    n, c = degree, hidden
    chunk = -(-tokens // n)
    all_to_all = 4 * (n * chunk) * c * (n - 1) // (n * n)
    gather_condition = condition_tokens * (c // n) * (n - 1)
    gather_output = chunk * c * (n - 1)
    return elem * batch * (blocks * (all_to_all + gather_condition) + gather_output)


@dataclass
class Timings:
    """Per-step wall seconds (fastest step: the least disturbed by other load) and CPU seconds (median)."""

    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)

    def run(self, model: torch.nn.Module, kwargs: dict) -> torch.Tensor:
        wall, cpu = time.perf_counter(), time.process_time()
        out = model(**kwargs)[0]
        self.walls.append(time.perf_counter() - wall)
        self.cpus.append(time.process_time() - cpu)
        return out

    def summary(self) -> tuple[float, float]:
        return min(self.walls[1:]), statistics.median(self.cpus[1:])  # the first call is a warm-up


def measure(cfg: BenchConfig) -> dict:
    """Runs on each of the N ranks: the three variants, interleaved step by step so that load
    from other processes on the machine falls on all of them alike.

    Rank 0 alone runs the plain model and the parallel code path over a one-rank group (the
    others wait at a barrier, asleep); then all N ranks run one parallel step together.
    """
    rank = dist.get_rank()
    solo_group = dist.new_group([0])
    kwargs = step_inputs(cfg)
    parallel = build_transformer(cfg)
    sp = enable_sequence_parallel(parallel)
    if rank == 0:
        plain, solo = build_transformer(cfg), build_transformer(cfg)
        enable_sequence_parallel(solo, solo_group)
    times = {"plain": Timings(), "solo": Timings(), "parallel": Timings()}
    with torch.no_grad():
        for step in range(cfg.steps + 1):
            if rank == 0:
                expected = times["plain"].run(plain, kwargs)
                times["solo"].run(solo, kwargs)
            if step == 1:
                sent_before = sp.bytes_sent
            dist.barrier()
            out = times["parallel"].run(parallel, kwargs)
    bytes_per_step = (sp.bytes_sent - sent_before) / cfg.steps
    wall, cpu = times["parallel"].summary()
    busiest = torch.tensor(cpu, dtype=torch.float64)
    dist.all_reduce(busiest, op=dist.ReduceOp.MAX)
    if rank:
        return {}
    return {
        "plain": times["plain"].summary(),
        "solo": times["solo"].summary(),
        "parallel": (wall, busiest.item()),
        "bytes_per_step": bytes_per_step,
        "max_abs_diff": float((out - expected).abs().max()),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench sp", description=__doc__)
    for name, default in asdict(BenchConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    cfg = BenchConfig(**vars(parser.parse_args(argv)))

    result = run_parallel(cfg.ranks, measure, cfg, device="cpu", threads=1)
    (plain_wall, plain_cpu), (solo_wall, _), (par_wall, par_cpu) = result["plain"], result["solo"], result["parallel"]
    tokens = packed_tokens(cfg)
    condition = cfg.text_tokens + cfg.image_tokens
    n = cfg.ranks
    print(
        json.dumps(
            {
                "benchmark": "sp",
                "device": "cpu",
                "config": asdict(cfg) | {"hidden": cfg.hidden, "video_tokens": tokens, "condition_tokens": condition},
                "step_s_1rank_plain": round(plain_wall, 4),
                "step_s_1rank_sp_path": round(solo_wall, 4),
                f"step_s_{n}ranks": round(par_wall, 4),
                "speedup": round(plain_wall / par_wall, 3),
                "sp_path_overhead_at_1rank": round(solo_wall / plain_wall - 1, 4),
                # CPU seconds of the busiest rank: what the split buys even when other work shares the cores.
                "cpu_s_1rank_plain": round(plain_cpu, 4),
                f"cpu_s_{n}ranks_busiest": round(par_cpu, 4),
                "cpu_speedup": round(plain_cpu / par_cpu, 3),
                "bytes_per_step_per_rank_measured": int(result["bytes_per_step"]),
                "bytes_per_step_per_rank_analytical": analytical_bytes(
                    tokens, condition, cfg.hidden, cfg.layers + cfg.single_layers, n
                ),
                "max_abs_diff_vs_plain": result["max_abs_diff"],
            }
        )
    )
    return 0
