"""The model card written beside the exported weights: what the model is, how it was made, its limits."""

from __future__ import annotations

import argparse

import torch

from .distill import DistillConfig, speedup
from .export import DEFAULT_CFG
from .fast_decoder import TrainedDecoder
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
  encoding the clips comes on top.{decoder}

Reproduce the same steps (from the repository root, after `pip install -e .`{chain}):

{commands}

Evaluate: `framepack-live bench toyworld` (figures in docs/toyworld.md).

Limits: it knows only this world. Any other prompt or start image gives toy-world-like motion at
best. It is a demonstration that the pipeline, steering and anti-drifting sampling work, not a
video model.
{parent}"""

DISTILLED_CARD = """# framepack-live toyworld-fast

A few-step student of `{init}` (its card is below), distilled by this project: the same FramePack
model (the real classes at toy size, the same encoders and VAE), sampling a section in {steps} Euler
steps of one transformer evaluation each, without real CFG. Its teacher samples in {teacher_steps}
steps at real CFG {cfg}, two evaluations each: {speedup:g} times the transformer work.

* Resolution {size}x{size}, section window {window} latent frames ({frames} video frames); forward
  and inverted anti-drifting sampling, as the teacher.
* Method: guided progressive distillation, one round ({stride} teacher steps per student step;
  train/distill.py says why this method). The teacher sampled {trajectories} training windows once
  ({teacher_batches} batches of {batch}, the engine's own sampler at its steps and CFG scale) from
  {clips} encoded clips of {sections} sections, in its forward (F1) and inverted layouts {layouts}{one_caption};
  the student, starting from the teacher's weights, learned from the teacher's latents at each of
  its step boundaries the velocity whose one Euler step lands where the teacher's steps landed,
  given the caption alone (guidance baked in). {student_steps} steps of batch {batch}, EMA weights,
  {minutes:.1f} minutes; smoothed final loss {loss:.4f}.
* Trained on {device}. Sampling the teacher's trajectories comes on top of the minutes.{decoder}

Reproduce (from the repository root, after `pip install -e .`; one line per run, each starting
from the one before, the last distilling the one before it):

{commands}

Evaluate: `framepack-live bench toyworld --model engine/weights/toyworld-fast` (figures in
docs/toyworld.md); speed: `framepack-live bench realtime` (docs/benchmarks.md).

Limits: its teacher's, and it samples well only at its own {steps} steps (other step counts land
between the noise levels it was distilled at).
{parent}"""

#: Where the reproduce commands write the model, and the stages before it when it was fine-tuned.
OUT = "engine/weights/toyworld"
#: Where the reproduce commands write a student distilled from `OUT` (`--distill`).
DISTILLED_OUT = "engine/weights/toyworld-fast"


def vae_summary(config: VaeTrainConfig, progress: Progress, metrics: dict) -> str:
    """The card's VAE line for a VAE trained in this run."""
    frames = (f"{config.crop}-pixel crops for the first {config.crop_share:.0%} of the budget, then whole frames"
              if config.crop else "whole frames")
    return (f"VAE: {progress.steps} steps of batch {config.batch} on 5-frame snippets ({frames}),\n"
            f"  L1 + MSE + 1e-5 KL, {progress.seconds / 60:.1f} minutes; final batch MSE {metrics.get('mse', float('nan')):.4f}"
            " (pixels in [-1, 1]).")


def distills(command: str) -> bool:
    return "--distill" in command.split()


def stage_outputs(commands: list[str]) -> list[str]:
    """Where the reproduce lines write each run's model: the stages, then the shipped directory, and
    a distillation's student (the chain's last run) beside it."""
    teacher = [command for command in commands if not distills(command)]
    outs = [f"{OUT}-stage{i + 1}" for i in range(len(teacher) - 1)] + [OUT]
    return outs[: len(commands)] + [DISTILLED_OUT] * (len(commands) - len(teacher))


def reproduce_lines(commands: list[str], first_init: str | None = None) -> str:
    """One indented shell line per training run, each fine-tune starting from the previous run's
    output; the first starts from `first_init` when the chain begins with a model trained elsewhere."""
    outs = stage_outputs(commands)
    inits = [first_init, *outs[:-1]]
    return "\n".join(f"    python -m framepack_live.train {options}{f' --init {init}' if init else ''} --out {out}"
                     for options, init, out in zip(commands, inits, outs))


def model_card(args: argparse.Namespace, runtime: Runtime, vae: str | None, transformer: Progress, loss: float,
               commands: list[str], parent_card: str | None = None, distill: DistillConfig | None = None,
               decoder: TrainedDecoder | None = None) -> str:
    """`vae` is the VAE line (`vae_summary`; None in a fine-tune, whose VAE is the starting
    model's), `transformer` what that stage ran, `commands` the options of every run from scratch
    to this one (`reproduce_command`), `parent_card` the card of the model a fine-tune started
    from, kept below this one, `distill` a distillation's settings (the student's card) and
    `decoder` the live view's small decoder, when one was trained."""
    # The starting model by the name the reproduce lines give it, not the path it had on the
    # training machine (a scratch directory there), unless the chain starts with it.
    init = stage_outputs(commands)[-2] if args.init and len(commands) > 1 else args.init
    parent = ""
    if parent_card is not None:
        demoted = "\n".join("##" + line if line.startswith("#") else line for line in parent_card.splitlines())
        parent = f"\n## {'Distilled' if distill else 'Fine-tuned'} from `{init}`; its card:\n\n{demoted}\n"
    commands_text = reproduce_lines(commands, first_init=str(args.init) if args.init and len(commands) == 1 else None)
    if distill is not None:
        return DISTILLED_CARD.format(
            init=init, steps=distill.steps, teacher_steps=distill.teacher_steps, cfg=distill.cfg,
            speedup=speedup(distill), size=args.size, window=args.window, frames=args.window * 4,
            stride=distill.stride, trajectories=distill.teacher_batches * args.batch,
            teacher_batches=distill.teacher_batches, batch=args.batch, clips=args.clips, sections=args.sections,
            layouts=_layouts(args), one_caption=_one_caption(args), student_steps=transformer.steps,
            minutes=transformer.seconds / 60, loss=loss, device=device_name(runtime), commands=commands_text,
            parent=parent, decoder=_decoder_line(decoder))
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
        layouts=_layouts(args),
        one_caption=_one_caption(args),
        loss=loss,
        device=device_name(runtime),
        minutes=transformer.seconds / 60,
        chain="; one line per run, each starting from the one before" if len(commands) > 1 else "",
        commands=commands_text,
        parent=parent,
        decoder=_decoder_line(decoder),
    )


def _decoder_line(decoder: TrainedDecoder | None) -> str:
    if decoder is None:
        return ""
    config = decoder.model.config
    parameters = sum(p.numel() for p in decoder.model.parameters())
    generated = f", {decoder.generated} of them the teacher's generated windows" if decoder.generated else ""
    return (f"\n* Live view decoder (`fast_decoder/`, engine/fast_decoder.py; the full VAE stays for exports): "
            f"{parameters / 1e3:.0f} k parameters,\n  channels {tuple(config.channels)}, {config.context} latent frames "
            f"of context, trained {decoder.progress.steps} steps ({decoder.progress.seconds / 60:.1f} minutes) to "
            f"reproduce the VAE's\n  decodes of {decoder.snippets} latent snippets{generated}; smoothed final loss "
            f"{decoder.loss:.4f} (L1 + MSE, pixels in [-1, 1]).\n  Its PSNR against the VAE: `framepack-live bench "
            f"realtime` (docs/benchmarks.md).")


def _layouts(args: argparse.Namespace) -> str:
    if args.inverted_fraction == 0.5:
        return "half each"
    return f"in {1 - args.inverted_fraction:.0%} and {args.inverted_fraction:.0%} of the batches"


def _one_caption(args: argparse.Namespace) -> str:
    return " (inverted windows only from clips whose caption held since the start)" if args.inverted_one_caption else ""


def device_name(runtime: Runtime) -> str:
    precision = ("bf16 autocast" if runtime.bf16 else "fp32") + (", compiled" if runtime.compile else "")
    if runtime.device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} ({precision}, {runtime.workers} data workers)"
    return f"the CPU ({torch.get_num_threads()} threads, {precision})"
