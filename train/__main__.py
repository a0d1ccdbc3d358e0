"""`python -m framepack_live.train`: train the toy-world model from scratch, resumably, in one command.

Stages (each resumes from its checkpoint in --run-dir): the VAE, the encoded clip cache, the
transformer, then the export of a pipeline directory (--out) with its model card. With --init the
run fine-tunes an exported model instead: its encoders and VAE stay as they are (no VAE stage) and
its transformer is where training starts, so GPU time lent in short leases adds up across runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .world import NEW_MOTIONS, WorldConfig

#: Run directories live here, one per output: each run of a fine-tune chain (a model card's
#: reproduce lines) has its own checkpoints, which another run's options would not resume.
RUNS = Path.home() / ".cache" / "framepack-live" / "train"


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(prog="python -m framepack_live.train", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=None,
                        help=f"checkpoints and caches (resumed); default: {RUNS}/<--out's name, or toyworld>")
    parser.add_argument("--out", type=Path, default=None, help="write the pipeline directory here at the end")
    parser.add_argument("--init", type=Path, default=None,
                        help="fine-tune this exported model directory (its VAE, encoders and architecture) instead of "
                             "training from scratch")
    parser.add_argument("--fit-preview", type=Path, default=None, metavar="MODEL_DIR",
                        help="only fit the step-preview map of an exported toy-world model to its VAE, write it there "
                             "(preview.safetensors) and exit; export does this for every model it writes")
    parser.add_argument("--stage", choices=["vae", "all"], default="all", help="stop after the VAE, or run everything")
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels (multiple of 16)")
    parser.add_argument("--window", type=int, default=3, help="latent frames per section")
    parser.add_argument("--sections", type=int, default=6, help="sections per training clip")
    parser.add_argument("--vae-steps", type=int, default=400)
    parser.add_argument("--vae-seconds", type=float, default=None, help="train the VAE this long instead of --vae-steps")
    parser.add_argument("--vae-batch", type=int, default=12)
    parser.add_argument("--vae-crop", type=int, default=64,
                        help="side of the square crops of the VAE's warm-up (0: whole frames throughout)")
    parser.add_argument("--clips", type=int, default=100, help="encoded clips the transformer trains on")
    parser.add_argument("--steps", type=int, default=4000, help="transformer steps")
    parser.add_argument("--seconds", type=float, default=None, help="train the transformer this long instead of --steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="transformer peak learning rate (lower for a fine-tune)")
    parser.add_argument("--video-end", type=float, default=0.0,
                        help="share of inverted samples that end the video (empty future), as every inverted "
                             "video's first step does; 0: only as often as the uniform draw of the end gives")
    parser.add_argument("--inverted-fraction", type=float, default=0.5,
                        help="share of batches in the inverted anti-drifting layout (the rest forward, F1)")
    parser.add_argument("--inverted-one-caption", action="store_true",
                        help="train the inverted layout only on clips whose caption has not changed since the "
                             "start (it sees neither the sections in between nor their captions)")
    parser.add_argument("--distill", action="store_true",
                        help="distil --init's model (its card's Euler steps and real CFG) into a few-step student "
                             "without real CFG (train/distill.py); --steps/--seconds, --batch and --lr then train "
                             "the student")
    parser.add_argument("--student-steps", type=int, default=4, help="with --distill: the student's steps per section")
    parser.add_argument("--teacher-batches", type=int, default=192,
                        help="with --distill: batches of --batch teacher trajectories, sampled once and reused")
    parser.add_argument("--decoder-steps", type=int, default=0,
                        help="train the live view's small decoder (engine/fast_decoder.py) on the VAE's decodes for "
                             "this many steps, exported as fast_decoder/ (0: none)")
    parser.add_argument("--decoder-seconds", type=float, default=None,
                        help="train the small decoder this long instead of --decoder-steps")
    parser.add_argument("--decoder-snippets", type=int, default=512,
                        help="latent snippets the VAE decodes once for the small decoder to learn from")
    parser.add_argument("--lora", type=int, default=0, metavar="RANK",
                        help="train a LoRA of this rank on the attention projections of --init's transformer, which "
                             "stays frozen, and write it in diffusers' LoRA format (0: train the whole transformer)")
    parser.add_argument("--lora-data", choices=["motion", "text-start"], default="motion",
                        help="what the LoRA teaches: --lora-motion, or making the scene from the prompt alone "
                             "(clips that open on the empty scene text-to-video sketches from)")
    parser.add_argument("--lora-motion", choices=NEW_MOTIONS, default=NEW_MOTIONS[0],
                        help="the motion a motion LoRA teaches (one the world's own clips never show)")
    parser.add_argument("--lora-share", type=float, default=0.5,
                        help="share of the LoRA's clips that teach it; the rest are the world's own")
    parser.add_argument("--ema-decay", type=float, default=0.998,
                        help="decay of the exported EMA weights per step (lower for short runs: its horizon is "
                             "1 / (1 - decay) steps)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2, help="dual-stream transformer blocks")
    parser.add_argument("--single-layers", type=int, default=2, help="single-stream transformer blocks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--workers", type=int, default=None, help="batch-building processes (default: 0 on CPU)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    precision.add_argument("--bf16", action="store_true",
                           help="bf16 autocast of the transformer on the CPU too: faster only on CPUs with AMX "
                                "(framepack-live bench train)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the transformer's training step (a minute of compiling first)")
    args = parser.parse_args(argv)
    if not 0 <= args.inverted_fraction <= 1:
        parser.error("--inverted-fraction is a share between 0 and 1")
    if args.distill and args.init is None:
        parser.error("--distill needs --init: the model to distil")
    if not 0 <= args.ema_decay < 1:
        parser.error("--ema-decay is in [0, 1)")
    if args.lora < 0 or not 0 < args.lora_share <= 1:
        parser.error("--lora is a rank (0: no LoRA) and --lora-share a share in (0, 1]")
    if args.lora and args.init is None:
        parser.error("--lora adapts an exported model: give it with --init")
    if args.lora and (args.distill or args.decoder_steps or args.decoder_seconds):
        parser.error("--lora trains an adapter only: --distill and --decoder-steps/--decoder-seconds export a whole "
                     "model, run them without --lora")
    if args.run_dir is None:
        args.run_dir = RUNS / (args.out.name if args.out is not None else "toyworld")
    if args.init is not None:
        fixed = [name for name in FIXED_BY_INIT if getattr(args, name) != parser.get_default(name)]
        if fixed:
            parser.error(f"--init takes the VAE and architecture from {args.init}; drop "
                         + ", ".join("--" + name.replace("_", "-") for name in fixed))
    return args


#: Options that --init's model decides (the VAE stage does not run; the transformer's shape is its).
FIXED_BY_INIT = ("stage", "vae_steps", "vae_seconds", "vae_batch", "vae_crop", "heads", "head_dim", "layers", "single_layers")
#: Options that change where and how fast a run trains, not the model (precision is the machine's
#: choice, as the device is: the card's device line records it); `init` and `out` are the model
#: card's to name (see `card.reproduce_lines`).
NOT_REPRODUCED = ("run_dir", "threads", "device", "workers", "fp32", "bf16", "compile", "init", "out")


def reproduce_command(args: argparse.Namespace, vae_steps: int, steps: int, decoder_steps: int = 0) -> str:
    """The options that train this model again: the steps this run actually took in place of its
    clock budgets (which give other step counts on other machines, and restart the schedule when a
    resumed run raises them), plus every option this run changed from its default, except
    `NOT_REPRODUCED` and, in a fine-tune, the VAE options it did not use."""
    defaults = vars(parse_args([]))
    chosen = {**vars(args), "vae_steps": vae_steps, "steps": steps, "decoder_steps": decoder_steps,
              "vae_seconds": None, "seconds": None, "decoder_seconds": None}
    skipped = NOT_REPRODUCED + (FIXED_BY_INIT if args.init else ())
    parts = []
    for name, value in chosen.items():
        if value == defaults[name] or name in skipped:
            continue
        flag = "--" + name.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.fit_preview is not None:
        from .preview import fit_and_save

        fit = fit_and_save(args.fit_preview)
        print(f"wrote {args.fit_preview / 'preview.safetensors'}: mean error {fit.error_rgb:.1f} RGB levels against the "
              f"VAE's decode on held-out clips (a constant colour per clip: {fit.baseline_rgb:.1f})")
        return 0
    from .card import model_card, vae_summary
    from .export import directory_size, export, training_commands
    from .latents import encode_clips, prompt_table
    from .models import TransformerConfig, build_transformer
    from .runtime import Budget, Runtime
    from .stack import frozen_stack
    from .transformer import FlowObjective, TransformerTrainConfig, train_transformer
    from .vae import VaeTrainConfig, train_vae

    runtime = Runtime.detect(args.device, args.workers, bf16=False if args.fp32 else args.bf16 or None,
                             compile=args.compile)
    print(f"training on {runtime}", file=sys.stderr)
    world = WorldConfig(size=args.size, window=args.window, sections=args.sections)
    init = str(args.init) if args.init else None
    if init is None:
        vae_config = VaeTrainConfig(batch=args.vae_batch, crop=args.vae_crop or None)
        vae, vae_metrics, vae_progress = train_vae(args.run_dir, world, vae_config, runtime.for_vae(),
                                                   Budget(args.vae_steps, args.vae_seconds))
        print(f"vae: {vae_progress.steps} steps, {vae_metrics}, scaling_factor {vae.config.scaling_factor:.4f}")
        if args.stage == "vae":
            return 0
        model = frozen_stack(vae)
        torch.manual_seed(0)
        transformer = build_transformer(model, TransformerConfig(
            heads=args.heads, head_dim=args.head_dim, layers=args.layers, single_layers=args.single_layers))
        vae_line, vae_steps = vae_summary(vae_config, vae_progress, vae_metrics), vae_progress.steps
        earlier, parent_card = [], None
    else:
        model = frozen_stack(source=init)
        transformer = model.pipeline.transformer.train().requires_grad_(True)
        vae_line, vae_steps = None, 0  # the starting model's, which the card names
        earlier = training_commands(args.init)
        card_file = args.init / "README.md"
        parent_card = card_file.read_text() if card_file.exists() else None
    if args.lora:
        from .lora import add_lora, clip_source

        lora_config = add_lora(transformer, args.lora)
        render, data, captions = clip_source(args)
        clips = encode_clips(model, world, args.clips, args.run_dir, runtime, vae_source=init, render=render, data=data)
        prompts = prompt_table(model, extra=captions)
    else:
        clips = encode_clips(model, world, args.clips, args.run_dir, runtime, vae_source=init or "vae.pt")
        prompts = prompt_table(model)
    config = TransformerTrainConfig(batch=args.batch, lr=args.lr, video_end=args.video_end,
                                    inverted_fraction=args.inverted_fraction,
                                    inverted_one_caption=args.inverted_one_caption, ema_decay=args.ema_decay)
    generation, distill = None, None
    if args.distill:
        distill, objective, generation = distillation(args, model, clips, world, config, prompts, runtime)
    else:
        objective = FlowObjective(clips, world, config)
    ema, loss, progress = train_transformer(transformer, prompts, objective, config, args.run_dir, runtime,
                                            Budget(args.steps, args.seconds), init=init)
    print(f"{objective.name}: {progress.steps} steps, smoothed loss {loss:.4f}")
    decoder = None
    if args.decoder_steps or args.decoder_seconds:
        from .fast_decoder import DecoderTrainConfig, fast_decoder_stage

        decoder = fast_decoder_stage(model, clips, world, DecoderTrainConfig(snippets=args.decoder_snippets),
                                     args.run_dir, runtime.for_vae(), Budget(args.decoder_steps, args.decoder_seconds),
                                     vae_source=init or "vae.pt", student=objective if args.distill else None)
        print(f"fast decoder: {decoder.progress.steps} steps, smoothed loss {decoder.loss:.4f}")
    if args.out is not None and args.lora:
        from .card import device_name
        from .lora import export_lora, lora_card

        command = reproduce_command(args, vae_steps, progress.steps)
        export_lora(ema, lora_config, args.out, lora_card(args, lora_config, progress, loss, command, device_name(runtime)))
        print(f"wrote {args.out} ({directory_size(args.out) / 2**20:.2f} MiB)")
    elif args.out is not None:
        model.pipeline.transformer = ema
        commands = [*earlier, reproduce_command(args, vae_steps, progress.steps,
                                                decoder.progress.steps if decoder else 0)]
        card = model_card(args, runtime, vae_line, progress, loss, commands, parent_card, distill, decoder)
        export(model, args.out, world, card, commands, generation=generation,
               live_decoder=decoder.model if decoder else None)
        print(f"wrote {args.out} ({directory_size(args.out) / 2**20:.1f} MiB)")
    return 0


def distillation(args, model, clips, world, config, prompts, runtime):
    """The student's `DistillConfig`, its objective (after sampling the teacher's trajectories) and
    the generation defaults it is exported with: its steps, no real CFG."""
    from ..engine.presets import resolve
    from .distill import DistillConfig, prepare_student

    teacher = resolve(str(args.init)).defaults
    if teacher.get("scheduler", "euler") != "euler" or "steps" not in teacher:
        raise SystemExit(f"--distill needs a teacher sampled with Euler steps named in its framepack_live.json; "
                         f"{args.init} has {teacher}")
    distill = DistillConfig(steps=args.student_steps, teacher_steps=teacher["steps"], cfg=teacher.get("cfg", 1.0),
                            teacher_batches=args.teacher_batches)
    objective = prepare_student(model.pipeline.transformer, clips, world, config, distill, prompts, args.run_dir,
                                runtime, str(args.init))
    return distill, objective, {"steps": distill.steps, "scheduler": "euler", "cfg": 1.0}


if __name__ == "__main__":
    sys.exit(main())
