"""Sequence-parallel benchmark: one denoising step on 1 rank against N ranks, on CPU.

Prints one JSON object. Each configuration runs in freshly spawned processes with one torch
thread per rank, so "1 rank x 1 thread" and "N ranks x 1 thread" differ only in the split.
A step is one transformer evaluation on FramePack-shaped inputs (distilled guidance, no CFG:
one call per step, as the sampler does); the scheduler update is negligible beside it.
The bytes are counted by the collectives themselves and set beside the analytical volume.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from diffusers import HunyuanVideoFramepackTransformer3DModel

from framepack_live.engine.packing import pack_forward
from framepack_live.engine.parallel import enable_sequence_parallel, run_parallel


@dataclass(frozen=True)
class BenchConfig:
    """A transformer small enough for CPU, with enough tokens that the blocks' compute dominates."""

    heads: int = 8
    head_dim: int = 64
    layers: int = 1
    single_layers: int = 3
    latent_height: int = 24
    latent_width: int = 24
    window: int = 9
    text_tokens: int = 32
    image_tokens: int = 16
    steps: int = 5
    ranks: int = 2

    @property
    def hidden(self) -> int:
        return self.heads * self.head_dim


def build_transformer(cfg: BenchConfig) -> HunyuanVideoFramepackTransformer3DModel:
    torch.manual_seed(0)
    return HunyuanVideoFramepackTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=cfg.heads,
        attention_head_dim=cfg.head_dim,
        num_layers=cfg.layers,
        num_single_layers=cfg.single_layers,
        num_refiner_layers=1,
        text_embed_dim=64,
        pooled_projection_dim=64,
        rope_axes_dim=(cfg.head_dim // 4, 3 * cfg.head_dim // 8, 3 * cfg.head_dim // 8),
        has_image_proj=True,
        image_proj_dim=64,
        has_clean_x_embedder=True,
    ).eval()


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
    ceil = lambda a, b: -(-a // b)  # noqa: E731
    full = (h // 2) * (w // 2)
    return (cfg.window + 2) * full + ceil(2, 2) * ceil(h, 4) * ceil(w, 4) + ceil(16, 4) * ceil(h, 8) * ceil(w, 8)


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


def time_steps(cfg: BenchConfig, parallel: bool) -> dict:
    """Runs on every rank: per-step wall seconds (fastest step, the least disturbed by other load on
    the machine) and CPU seconds of the slowest rank, bytes sent per step, and the output."""
    model = build_transformer(cfg)
    sp = enable_sequence_parallel(model) if parallel else None
    kwargs = step_inputs(cfg)
    walls, cpus = [], []
    with torch.no_grad():
        model(**kwargs)  # warm-up
        sent_before = sp.bytes_sent if sp else 0
        for _ in range(cfg.steps):
            dist.barrier()
            wall, cpu = time.perf_counter(), time.process_time()
            out = model(**kwargs)[0]
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    cpu_per_step = torch.tensor(statistics.median(cpus), dtype=torch.float64)
    dist.all_reduce(cpu_per_step, op=dist.ReduceOp.MAX)
    bytes_per_step = ((sp.bytes_sent if sp else 0) - sent_before) / cfg.steps
    return {"step_s": min(walls), "cpu_s": cpu_per_step.item(), "bytes_per_step": bytes_per_step, "output": out}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench sp", description=__doc__)
    for name, default in asdict(BenchConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    cfg = BenchConfig(**vars(parser.parse_args(argv)))

    plain = run_parallel(1, time_steps, cfg, False, device="cpu", threads=1)
    sp_one = run_parallel(1, time_steps, cfg, True, device="cpu", threads=1)
    sp_n = run_parallel(cfg.ranks, time_steps, cfg, True, device="cpu", threads=1)

    tokens = packed_tokens(cfg)
    condition = cfg.text_tokens + cfg.image_tokens
    print(
        json.dumps(
            {
                "benchmark": "sp",
                "device": "cpu",
                "config": asdict(cfg) | {"hidden": cfg.hidden, "video_tokens": tokens, "condition_tokens": condition},
                "step_s_1rank_plain": round(plain["step_s"], 4),
                "step_s_1rank_sp": round(sp_one["step_s"], 4),
                f"step_s_{cfg.ranks}ranks": round(sp_n["step_s"], 4),
                "sp_overhead_at_1rank": round(sp_one["step_s"] / plain["step_s"] - 1, 4),
                "speedup": round(plain["step_s"] / sp_n["step_s"], 3),
                # CPU seconds of the busiest rank: what the split buys when other work shares the cores.
                "cpu_s_1rank_plain": round(plain["cpu_s"], 4),
                f"cpu_s_{cfg.ranks}ranks_max": round(sp_n["cpu_s"], 4),
                "cpu_speedup": round(plain["cpu_s"] / sp_n["cpu_s"], 3),
                "bytes_per_step_per_rank_measured": int(sp_n["bytes_per_step"]),
                "bytes_per_step_per_rank_analytical": analytical_bytes(
                    tokens, condition, cfg.hidden, cfg.layers + cfg.single_layers, cfg.ranks
                ),
                "max_abs_diff_vs_plain": float((sp_n["output"] - plain["output"]).abs().max()),
            }
        )
    )
    return 0
