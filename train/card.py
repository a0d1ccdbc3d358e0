"""The model card written beside the exported weights: what the model is, how it was made, its limits."""

from __future__ import annotations

import argparse

import torch

from .export import DEFAULT_CFG
from .runtime import Progress, Runtime
from .vae import VaeTrainConfig

CARD = """# framepack-live toyworld

A small FramePack model (HunyuanVideoFramepackTransformer3DModel + AutoencoderKLHunyuanVideo, the
real classes at toy size) {origin} by this project on its procedural toy world:
coloured shapes (red, yellow, blue, purple; circle, square, triangle) on sky/ground backgrounds,
moving as the caption says: "a red circle moves left", "the blue square moves up",
"the camera pans right". Captions may change between sections, and the motion changes with them.

* Resolution {size}x{size}, section window {window} latent frames ({frames} video frames).
* Text and image encoders: the `tiny` preset's, frozen at their random initialisation (they still
  give every caption a distinct embedding); the transformer learned to read them. The directory
  ships the encoders it was trained with: SigLIP's seeded initialisation differs between torch
  versions, so a `tiny` preset built with another torch may not match.
* {vae}
* Transformer: {start}{steps} steps of batch {batch} on {clips} encoded clips of {sections} sections, flow matching
  (v = noise - x0) on next-section prediction with the engine's packed 1x/2x/4x history, forward (F1)
  and inverted anti-drifting layouts {layouts}{one_caption}, distilled guidance input 10, the caption dropped
  (empty prompt) in 10 % of samples so that sampling can use real CFG (default scale {cfg}); EMA
  weights, {minutes:.1f} minutes. Smoothed final loss {loss:.4f}.
* Trained on {device}. Minutes are training time over every invocation that resumed a stage;
  encoding the clips comes on top.

Reproduce the same steps (from the repository root, after `pip install -e .`{chain}):

{commands}

Evaluate: `framepack-live bench toyworld` (figures in docs/toyworld.md).

Limits: it knows only this world. Any other prompt or start image gives toy-world-like motion at
best. It is a demonstration that the pipeline, steering and anti-drifting sampling work, not a
video model.
{parent}"""

#: Where the reproduce commands write the model, and the stages before it when it was fine-tuned.
OUT = "engine/weights/toyworld"


def vae_summary(config: VaeTrainConfig, progress: Progress, metrics: dict) -> str:
    """The card's VAE line for a VAE trained in this run."""
    frames = (f"{config.crop}-pixel crops for the first {config.crop_share:.0%} of the budget, then whole frames"
              if config.crop else "whole frames")
    return (f"VAE: {progress.steps} steps of batch {config.batch} on 5-frame snippets ({frames}),\n"
            f"  L1 + MSE + 1e-5 KL, {progress.seconds / 60:.1f} minutes; final batch MSE {metrics.get('mse', float('nan')):.4f}"
            " (pixels in [-1, 1]).")


def stage_outputs(runs: int) -> list[str]:
    """Where the reproduce lines write each run's model: the stages, then the shipped directory."""
    return [f"{OUT}-stage{i + 1}" for i in range(runs - 1)] + [OUT]


def reproduce_lines(commands: list[str], first_init: str | None = None) -> str:
    """One indented shell line per training run, each fine-tune starting from the previous run's
    output; the first starts from `first_init` when the chain begins with a model trained elsewhere."""
    outs = stage_outputs(len(commands))
    inits = [first_init, *outs[:-1]]
    return "\n".join(f"    python -m framepack_live.train {options}{f' --init {init}' if init else ''} --out {out}"
                     for options, init, out in zip(commands, inits, outs))


def model_card(args: argparse.Namespace, runtime: Runtime, vae: str | None, transformer: Progress, loss: float,
               commands: list[str], parent_card: str | None = None) -> str:
    """`vae` is the VAE line (`vae_summary`; None in a fine-tune, whose VAE is the starting
    model's), `transformer` what that stage ran, `commands` the options of every run from scratch
    to this one (`reproduce_command`), and `parent_card` the card of the model a fine-tune started
    from, kept below this one."""
    # The starting model by the name the reproduce lines give it, not the path it had on the
    # training machine (a scratch directory there), unless the chain starts with it.
    init = stage_outputs(len(commands))[-2] if args.init and len(commands) > 1 else args.init
    parent = ""
    if parent_card is not None:
        demoted = "\n".join("##" + line if line.startswith("#") else line for line in parent_card.splitlines())
        parent = f"\n## Fine-tuned from `{init}`; its card:\n\n{demoted}\n"
    return CARD.format(
        origin="fine-tuned" if args.init else "trained from scratch",
        size=args.size,
        window=args.window,
        frames=args.window * 4,
        vae=vae or f"VAE: `{init}`'s, frozen (its card is below).",
        start=f"starting from `{init}`'s weights, " if args.init else "",
        cfg=DEFAULT_CFG,
        steps=transformer.steps,
        batch=args.batch,
        clips=args.clips,
        sections=args.sections,
        layouts="half each" if args.inverted_fraction == 0.5
        else f"in {1 - args.inverted_fraction:.0%} and {args.inverted_fraction:.0%} of the batches",
        one_caption=" (inverted windows only from clips whose caption held since the start)"
        if args.inverted_one_caption else "",
        loss=loss,
        device=device_name(runtime),
        minutes=transformer.seconds / 60,
        chain="; one line per run, each starting from the one before" if len(commands) > 1 else "",
        commands=reproduce_lines(commands, first_init=str(args.init) if args.init and len(commands) == 1 else None),
        parent=parent,
    )


def device_name(runtime: Runtime) -> str:
    precision = ("bf16 autocast" if runtime.bf16 else "fp32") + (", compiled" if runtime.compile else "")
    if runtime.device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} ({precision}, {runtime.workers} data workers)"
    return f"the CPU ({torch.get_num_threads()} threads, {precision})"
