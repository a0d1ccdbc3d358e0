"""LoRA training: teach an exported toy-world model something new, as a small adapter.

`python -m framepack_live.train --init MODEL --lora RANK` trains, with the same flow-matching loop
as a full run (`transformer.train_transformer`), only a peft LoRA on the transformer's attention
projections (the base stays frozen: the LoRA's B matrices start at zero, so training starts from
the base model exactly). Its clips mix the world's own (so the base captions keep working with the
LoRA on) with clips of what it teaches (`--lora-data`):
- `motion`: a motion the world's clips never show (`world.NEW_MOTIONS`), alone or between the old
  ones, so it is learned both from a still start and as a steer;
- `text-start`: clips that open on the empty scene `engine.text_start` sketches from, so the model
  learns to make the captioned scene from nothing (text-to-video, which the base never saw).
The result is written in diffusers' LoRA format (`save_lora_weights`), which `engine.lora` loads
with `load_lora_weights`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers import HunyuanVideoFramepackPipeline
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from ..engine.lora import WEIGHT_NAME
from ..engine.text_start import EMPTY_SCENE
from .runtime import Progress
from .world import COLOURS, OBJECT_MOTIONS, SHAPES, Clip, WorldConfig, caption, render_clip

#: Linear layers a LoRA adapts: the query, key, value and output projections of every attention
#: (image and text streams of the dual blocks, the single blocks, the text token refiner).
ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
#: Seeds of the new motion's clips start here: apart from the world's training seeds (0 on) and the
#: benchmark's held-out starts (1 000 000 on).
NEW_MOTION_SEEDS = 500_000


def add_lora(transformer: torch.nn.Module, rank: int) -> LoraConfig:
    """A trainable LoRA of `rank` on the attention projections; everything else frozen."""
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(ATTENTION_PROJECTIONS), init_lora_weights=True)
    transformer.requires_grad_(False)
    transformer.add_adapter(config)
    return config


def lora_clip(motion: str, share: float, seed: int, world: WorldConfig) -> Clip:
    """Clip `seed` of a LoRA's data: with probability `share` one showing `motion` (from the start,
    or after a base motion, at the world's rate of caption changes), else the world's own clip."""
    rng = np.random.default_rng([seed, NEW_MOTION_SEEDS])
    if rng.random() >= share:
        return render_clip(seed, world)
    motions: list[str] = []
    for section in range(world.sections):
        if section == 0 or rng.random() < world.change_probability:
            motions.append(motion if rng.random() < 0.5 else str(rng.choice(OBJECT_MOTIONS)))
        else:
            motions.append(motions[-1])
    return render_clip(NEW_MOTION_SEEDS + seed, world, motions=motions)


def text_start_clip(share: float, seed: int, world: WorldConfig) -> Clip:
    """Clip `seed` of a text-to-video LoRA's data: the world's clip of `seed`, opening with
    probability `share` on the empty scene instead of its first frame."""
    clip = render_clip(seed, world)
    if np.random.default_rng([seed, NEW_MOTION_SEEDS]).random() < share:
        clip.frames = clip.frames.copy()
        clip.frames[0] = EMPTY_SCENE
    return clip


def clip_source(args: argparse.Namespace) -> tuple[Callable[[int, WorldConfig], Clip], str, list[str]]:
    """What the LoRA's clips are: the clip of a seed, the clip cache's name, the new captions."""
    if args.lora_data == "text-start":
        return partial(text_start_clip, args.lora_share), f"lora: text start, share {args.lora_share}", []
    return (partial(lora_clip, args.lora_motion, args.lora_share), f"lora: {args.lora_motion}, share {args.lora_share}",
            new_captions(args.lora_motion))


def new_captions(motion: str) -> list[str]:
    """Every caption of `motion` the grammar makes (the LoRA's prompts besides the base ones)."""
    return [caption(c, s, motion, a) for c in COLOURS for s in SHAPES for a in ("a", "the")]


def export_lora(transformer: torch.nn.Module, config: LoraConfig, out: Path, card: str) -> None:
    """The LoRA in diffusers' format (`pytorch_lora_weights.safetensors`, its peft config inside)
    and its card."""
    out.mkdir(parents=True, exist_ok=True)
    HunyuanVideoFramepackPipeline.save_lora_weights(
        out, transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=config.to_dict(), weight_name=WEIGHT_NAME,
    )
    (out / "README.md").write_text(card)


CARD = """# {name}: a LoRA that {title}

A LoRA for the shipped `toyworld` model. {teaches}

Use it (scale 1 is what it was trained and measured at):

    framepack-live render {use} --lora {out} --out video.mp4

* LoRA (peft) of rank {rank}, alpha {rank}, on the attention projections ({targets}); the base
  transformer, VAE and encoders are `{init}`'s, frozen.
* {steps} steps of batch {batch} on {clips} encoded clips of {sections} sections: {share:.0%} of them
  {data}, the rest are the world's own clips; flow matching with the base run's objective, EMA
  weights (decay {ema}), {minutes:.1f} minutes on {device}. Smoothed final loss {loss:.4f}.

Reproduce (from the repository root, after `pip install -e .`):

    python -m framepack_live.train {command} --init {init} --out {out}

Evaluate: `framepack-live bench toyworld --lora {out} --parts {parts}` against the same without
`--lora` (figures in docs/toyworld.md).
"""

#: What each new motion word means in the world (`world.DIRECTIONS`).
MEANINGS = {"diagonally": "up and to the right"}


def lora_card(args: argparse.Namespace, config: LoraConfig, progress: Progress, loss: float, command: str,
              device: str) -> str:
    if args.lora_data == "text-start":
        example = caption("red", "circle", "left")
        parts = dict(
            title="makes the toy world from the prompt alone (text-to-video)",
            teaches="The base model never saw a video start without its shape and copies an empty start; with this "
                    "LoRA, the sketch section `--t2v` generates from an empty (black) scene paints the captioned "
                    "shape on a background, and the video goes on from there. The other captions keep working "
                    "with the LoRA on.",
            use=f'--t2v --prompt "{example}"', data="open on that empty scene", parts="text_start following")
    else:
        motion = args.lora_motion
        example = caption("red", "circle", motion)
        parts = dict(
            title=f'teaches the toy-world model "moves {motion}"',
            teaches=f'It teaches a motion its training data never showed: "{example}" moves the shape '
                    f"{MEANINGS[motion]}. The base model does not know the word; the other captions keep working "
                    "with the LoRA on.",
            use=f'--prompt "{example}"', data="show the new motion (from the start or after another caption)",
            parts="new_motion following")
    return CARD.format(
        name=args.out.name, out=args.out, rank=config.r, targets=", ".join(ATTENTION_PROJECTIONS), init=args.init,
        steps=progress.steps, batch=args.batch, clips=args.clips, sections=args.sections, share=args.lora_share,
        ema=args.ema_decay, minutes=progress.seconds / 60, device=device, loss=loss, command=command, **parts,
    )
