"""One denoising step of the released-size FramePack transformer on one GPU: time, memory, FLOP/s.

Prints one JSON object. This step sets the live frame rate, so it runs the real architecture (13B
parameters; random weights, as speed does not depend on them) on a real section's packed inputs,
and its FLOP/s is set beside the chip's measured matmul rate: the gap is what faster kernels could
still buy. The model is built on the device in the target dtype: 13B weights never touch fp32 or
host memory. FLOPs are counted in an extra pass (which is also the warm-up), not taken from a
formula, so they follow whatever the model runs: 2 * rows * in * out per `nn.Linear` call and
4 * B * H * Lq * Lk * D per attention call.

All of it runs in one rank started by `run_parallel` (NCCL on CUDA, gloo on CPU), so the same model
then takes the sequence-parallel code path over a real one-rank group: its overhead there is what
the split must earn back before a second GPU helps at all.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from diffusers import HunyuanVideoFramepackTransformer3DModel
from framepack_live.engine.packing import HISTORY_FRAMES, pack_forward
from framepack_live.engine.parallel import enable_sequence_parallel, rank_device, run_parallel
from framepack_live.engine.settings import VAE_SPATIAL_RATIO, VAE_TEMPORAL_RATIO, GenerationSettings

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
POOLED_DIM = 768  # CLIP-L's pooled output, the same at every model size


@dataclass(frozen=True)
class GpuBenchConfig:
    """Defaults are lllyasviel/FramePackI2V_HY at 640x640, window 9, SigLIP so400m/384 image tokens."""

    device: str
    dtype: str
    size: int = 640
    window: int = 9
    steps: int = 3
    text_tokens: int = 256
    image_tokens: int = 729
    heads: int = 24
    head_dim: int = 128
    layers: int = 20
    single_layers: int = 40
    text_dim: int = 4096
    image_dim: int = 1152
    #: With --shard-weights 1: ranks (GPUs) the block weights are sharded over, sequence parallel.
    ranks: int = 1
    shard_weights: int = 0
    #: Cap each rank's CUDA memory at this many GiB (0: none), e.g. 22 to stand for an A10G.
    memory_cap_gib: int = 0


def build_transformer(cfg: GpuBenchConfig, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Random weights, created on `device` in `dtype`. RoPE splits a head as the real 16/56/56 does."""
    spatial = cfg.head_dim * 7 // 16 // 2 * 2
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = HunyuanVideoFramepackTransformer3DModel(
                num_attention_heads=cfg.heads,
                attention_head_dim=cfg.head_dim,
                num_layers=cfg.layers,
                num_single_layers=cfg.single_layers,
                text_embed_dim=cfg.text_dim,
                pooled_projection_dim=POOLED_DIM,
                rope_axes_dim=(cfg.head_dim - 2 * spatial, spatial, spatial),
                image_condition_type=None,
                has_image_proj=True,
                image_proj_dim=cfg.image_dim,
                has_clean_x_embedder=True,
            )
    finally:
        torch.set_default_dtype(default)
    return model.eval().requires_grad_(False)


def step_inputs(cfg: GpuBenchConfig, device: torch.device, dtype: torch.dtype) -> dict:
    """One forward-order section's transformer kwargs with full history, packed by the engine's packing."""
    g = torch.Generator().manual_seed(0)
    side = cfg.size // VAE_SPATIAL_RATIO
    video = torch.randn(1, 16, 1 + HISTORY_FRAMES, side, side, generator=g)
    context = pack_forward(video, start=video[:, :, :1], window=cfg.window)
    kwargs = dict(
        hidden_states=torch.randn(1, 16, cfg.window, side, side, generator=g),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, cfg.text_tokens, cfg.text_dim, generator=g),
        encoder_attention_mask=torch.ones(1, cfg.text_tokens, dtype=torch.long),
        pooled_projections=torch.randn(1, POOLED_DIM, generator=g),
        image_embeds=torch.randn(1, cfg.image_tokens, cfg.image_dim, generator=g),
        guidance=torch.tensor([10_000.0]),
        **context.model_kwargs(dtype),
    )
    return {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in kwargs.items()}


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds `fn` takes, by CUDA events on a GPU (the launch queue would hide it from the host clock)."""
    if device.type != "cuda":
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    out = fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000, out


def matmul_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """The chip's practical ceiling: one large square matmul, mean of 10 after 3 warm-ups."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    seconds = statistics.mean(timed(lambda: a @ b, device)[0] for _ in range(10))
    tflops = 2 * n**3 / seconds / 1e12
    log(f"{n}^3 matmul: {tflops:.1f} TFLOP/s")
    return tflops


@dataclass
class FlopCount:
    matmul: int = 0
    attention: int = 0
    #: The longest key sequence attended over: the blocks' joint video + text + image sequence.
    sequence: int = 0


@contextmanager
def count_flops(model: torch.nn.Module) -> Iterator[FlopCount]:
    """Count the FLOPs of the forwards run inside; SDPA is swapped for a counting wrapper meanwhile."""
    count = FlopCount()

    def linear_hook(module: torch.nn.Linear, args: tuple, output: torch.Tensor) -> None:
        count.matmul += 2 * args[0].numel() * module.out_features  # 2 * rows * in * out

    def counting_sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args, **kwargs):
        *_, q_len, head_dim = query.shape
        count.attention += 4 * math.prod(query.shape[:-2]) * q_len * key.shape[-2] * head_dim
        count.sequence = max(count.sequence, key.shape[-2])
        return sdpa(query, key, value, *args, **kwargs)

    handles = [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    sdpa = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = counting_sdpa
    try:
        yield count
    finally:
        F.scaled_dot_product_attention = sdpa
        for handle in handles:
            handle.remove()


def time_steps(model: torch.nn.Module, kwargs: dict, steps: int, device: torch.device) -> tuple[list, torch.Tensor]:
    """Seconds of each step, and the last step's output."""
    results = [timed(lambda: model(**kwargs, return_dict=False)[0], device) for _ in range(steps)]
    return [seconds for seconds, _ in results], results[-1][1]


def sig(x: float) -> float:
    """Four significant figures: the toy CPU sizes and the real GPU ones differ by many decades."""
    return float(f"{x:.4g}")


def log(message: str) -> None:
    print(f"bench gpu: {message}", file=sys.stderr, flush=True)


def measure(cfg: GpuBenchConfig) -> dict:
    """Runs in the single rank: reference matmul, then plain steps, then the SP path on the same model."""
    device, dtype = rank_device(), DTYPES[cfg.dtype]
    cuda = device.type == "cuda"
    ceiling = matmul_tflops(device, dtype)
    torch.manual_seed(0)
    model = build_transformer(cfg, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    log(f"transformer built: {params:,} parameters")
    kwargs = step_inputs(cfg, device, dtype)
    weights_gib = torch.cuda.memory_allocated() / 2**30 if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        with count_flops(model) as count:
            model(**kwargs, return_dict=False)
        flops = count.matmul + count.attention
        log(f"counted {flops / 1e12:.1f} TFLOP a step over {count.sequence} tokens")
        plain, expected = time_steps(model, kwargs, cfg.steps, device)
        log(f"plain step: {statistics.median(plain):.3f} s")
        enable_sequence_parallel(model)
        time_steps(model, kwargs, 1, device)  # warm-up of the new attention processors
        sp, out = time_steps(model, kwargs, cfg.steps, device)
        log(f"sp path step: {statistics.median(sp):.3f} s")
    step, section_steps = statistics.median(plain), GenerationSettings().steps
    frames = cfg.window * VAE_TEMPORAL_RATIO
    return {
        "benchmark": "gpu",
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "config": asdict(cfg),
        "params": params,
        "sequence_tokens": count.sequence,
        "video_tokens": count.sequence - cfg.text_tokens - cfg.image_tokens,
        "step_s": sig(step),
        "step_s_all": [sig(s) for s in plain],
        f"section_s_{section_steps}_steps": sig(section_steps * step),
        "frames_per_section": frames,
        "s_per_video_frame": sig(section_steps * step / frames),
        "flops_per_step": flops,
        "flops_matmul": count.matmul,
        "flops_attention": count.attention,
        "achieved_tflops": sig(flops / step / 1e12),
        "matmul_tflops_reference": sig(ceiling),
        "fraction_of_reference": sig(flops / step / 1e12 / ceiling),
        "weights_gib": weights_gib and sig(weights_gib),
        "peak_memory_gib": sig(torch.cuda.max_memory_allocated() / 2**30) if cuda else None,
        "step_s_sp_path": sig(statistics.median(sp)),
        "sp_path_overhead_at_1rank": sig(statistics.median(sp) / step - 1),
        "max_abs_diff_sp_vs_plain": float((out.float() - expected.float()).abs().max()),
    }


def measure_sharded(cfg: GpuBenchConfig) -> dict:
    """Runs on every rank: the model built on the host, its block weights sharded onto this rank's
    device (as a 24 GB Denoiser rank loads it), then sequence-parallel steps: memory and time."""
    import torch.distributed as dist

    from framepack_live.engine.parallel import shard_weights

    device, dtype = rank_device(), DTYPES[cfg.dtype]
    cuda = device.type == "cuda"
    if cuda and cfg.memory_cap_gib:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(cfg.memory_cap_gib * 2**30 / total)
    torch.manual_seed(0)
    model = build_transformer(cfg, torch.device("cpu"), dtype)
    weights = shard_weights(model, device=device)
    model.to(device)
    enable_sequence_parallel(model)
    kwargs = step_inputs(cfg, device, dtype)
    weights_gib = torch.cuda.memory_allocated() / 2**30 if cuda else None
    log(f"rank {dist.get_rank()}: weights sharded over {dist.get_world_size()} ranks")
    with torch.no_grad():
        time_steps(model, kwargs, 1, device)  # warm-up
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        before = weights.bytes_received
        steps, _ = time_steps(model, kwargs, cfg.steps, device)
    return {
        "benchmark": "gpu",
        "mode": "sharded weights, sequence parallel",
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "config": asdict(cfg),
        "ranks": dist.get_world_size(),
        "step_s": sig(statistics.median(steps)),
        "step_s_all": [sig(s) for s in steps],
        "weights_gib_per_rank": weights_gib and sig(weights_gib),
        "peak_memory_gib_per_rank": sig(torch.cuda.max_memory_allocated() / 2**30) if cuda else None,
        "gathered_gib_per_step_per_rank": sig((weights.bytes_received - before) / cfg.steps / 2**30),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench gpu", description=__doc__)
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", choices=["cuda", "cpu"], default=default_device)
    parser.add_argument("--dtype", choices=list(DTYPES), help="default: bf16 on CUDA, fp32 on CPU")
    for name, default in asdict(GpuBenchConfig("", "")).items():
        if name not in ("device", "dtype"):
            parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    args = parser.parse_args(argv)
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    cfg = GpuBenchConfig(**vars(args))
    log(f"torch {torch.__version__}, {cfg}")
    if cfg.shard_weights:
        threads = None if cfg.device == "cuda" else 1
        print(json.dumps(run_parallel(cfg.ranks, measure_sharded, cfg, device=cfg.device, threads=threads)))
        return 0
    if cfg.ranks != 1:
        parser.error("--ranks N > 1 measures the sharded weights: add --shard-weights 1")
    # One rank using every core: nothing else competes for them here.
    print(json.dumps(run_parallel(1, measure, cfg, device=cfg.device, threads=torch.get_num_threads())))
    return 0
