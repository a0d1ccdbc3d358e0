"""`framepack-live bench train`: the toy-world transformer's training step in eager fp32, bf16 autocast, and compiled.

Which precision and whether to compile are the training command's choices (`--bf16`,
`--compile`), and the answer depends on the machine: bf16 pays only where the CPU has bf16 matrix
units, compiling only where elementwise kernels rather than matrix products bound the step. This
measures them side by side on the same batches and the model's real size: the modes take turns,
round after round, so machine noise hits them alike, and each mode's median step is kept. The
first round of each mode (compiling, allocator warm-up) is timed apart. Prints one JSON object,
with every mode's step time as a ratio of eager fp32's.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from ..train.latents import encode_clips, prompt_table
from ..train.runtime import Runtime
from ..train.stack import frozen_stack
from ..train.transformer import FlowObjective, TransformerTrainConfig, train_step
from ..train.world import WorldConfig
from .toyworld import DEFAULT_WEIGHTS

MODES = {"fp32": (False, False), "bf16": (True, False), "compiled-fp32": (False, True), "compiled-bf16": (True, True)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="framepack-live bench train", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_WEIGHTS), help="exported model whose transformer trains")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--clips", type=int, default=4, help="encoded clips the batches are drawn from")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds after the warm-up one")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: the process's CPU time (CPU runs on a shared machine; not for CUDA)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    model = frozen_stack(source=args.model)
    world = WorldConfig(sections=6)  # the training command's default clips
    device = Runtime.detect(args.device).device
    with tempfile.TemporaryDirectory() as run_dir:
        clips = encode_clips(model, world, args.clips, Path(run_dir), Runtime(device), vae_source=args.model)
    prompts = prompt_table(model).to(device)
    objective = FlowObjective(clips, world, TransformerTrainConfig(batch=args.batch))
    batches = [objective.batch(step).to(device) for step in range(args.steps)]
    trainers = {name: _Trainer(model.pipeline.transformer, Runtime(device, *MODES[name]), prompts, objective)
                for name in args.modes}

    def timed(trainer: _Trainer) -> float:
        began = clock()
        for batch in batches:
            trainer.step(batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return (clock() - began) / len(batches)

    warmup = {name: timed(trainer) for name, trainer in trainers.items()}
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            times[name].append(timed(trainer))
    step_s = {name: statistics.median(values) for name, values in times.items()}
    base = step_s.get("fp32")
    print(json.dumps({
        "benchmark": "train",
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({args.threads} threads)",
        "model": args.model, "batch": args.batch, "clock": args.clock, "steps_per_round": args.steps,
        "step_s": step_s,
        "first_round_step_s": warmup,
        "speedup_vs_fp32": {name: base / value for name, value in step_s.items()} if base else None,
    }, indent=2))
    return 0


class _Trainer:
    """One mode's own copy of the transformer and optimiser, stepping with `train_transformer`'s step."""

    def __init__(self, transformer: torch.nn.Module, runtime: Runtime, prompts, objective: FlowObjective):
        self.runtime, self.prompts, self.objective = runtime, prompts, objective
        self.model = copy.deepcopy(transformer).to(runtime.device).train().requires_grad_(True)
        self.step_model = runtime.prepare(self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-6)

    def step(self, batch) -> None:
        loss = partial(self.objective.loss, batch=batch, prompts=self.prompts)
        train_step(self.model, self.step_model, self.optimizer, loss, self.runtime)
