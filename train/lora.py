"""LoRA training: teach an exported toy-world model a motion it never saw, as a small adapter.

`python -m framepack_live.train --init MODEL --lora RANK` trains, with the same flow-matching loop
as a full run (`transformer.train_transformer`), only a peft LoRA on the transformer's attention
projections (the base stays frozen: the LoRA's B matrices start at zero, so training starts from
the base model exactly). Its clips mix the world's own (so the base captions keep working with the
LoRA on) with clips showing the new motion (`world.NEW_MOTIONS`), alone or between the old ones,
so it is learned both from a still start and as a steer. The result is written in diffusers' LoRA
format (`save_lora_weights`), which `engine.lora` loads with `load_lora_weights`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import HunyuanVideoFramepackPipeline
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from ..engine.lora import WEIGHT_NAME
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


CARD = """# {name}: a LoRA that teaches the toy-world model "moves {motion}"

A LoRA for the shipped `toyworld` model that teaches a motion its training data never showed:
"{example}" moves the shape {meaning}. The base model does not know the word; the
other captions keep working with the LoRA on.

Use it (scale 1 is what it was trained and measured at):

    framepack-live render --prompt "{example}" --lora {out} --out video.mp4

* LoRA (peft) of rank {rank}, alpha {rank}, on the attention projections ({targets}); the base
  transformer, VAE and encoders are `{init}`'s, frozen.
* {steps} steps of batch {batch} on {clips} encoded clips of {sections} sections: {share:.0%} of them show
  the new motion (from the start or after another caption), the rest are the world's own clips;
  flow matching with the base run's objective, EMA weights, {minutes:.1f} minutes on {device}.
  Smoothed final loss {loss:.4f}.

Reproduce (from the repository root, after `pip install -e .`):

    python -m framepack_live.train {command} --init {init} --out {out}

Evaluate: `framepack-live bench toyworld --lora {out} --parts new_motion following` against the same
without `--lora` (figures in docs/toyworld.md).
"""

#: What each new motion word means in the world (`world.DIRECTIONS`).
MEANINGS = {"diagonally": "up and to the right"}


def lora_card(args: argparse.Namespace, config: LoraConfig, progress: Progress, loss: float, command: str,
              device: str) -> str:
    motion = args.lora_motion
    return CARD.format(
        name=args.out.name, motion=motion, example=caption("red", "circle", motion), meaning=MEANINGS[motion],
        out=args.out, rank=config.r, targets=", ".join(ATTENTION_PROJECTIONS), init=args.init, steps=progress.steps,
        batch=args.batch, clips=args.clips, sections=args.sections, share=args.lora_share,
        minutes=progress.seconds / 60, device=device, loss=loss, command=command,
    )
