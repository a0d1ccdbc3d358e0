"""Stage 2b: the FramePack transformer, trained on next-section prediction with flow matching.

Each batch is one of the engine's two layouts, built by the engine's own packing functions from
real preceding (forward) or following (inverted) frames of an encoded clip:
- forward (F1): the window after `k` sections, with the start frame and the packed past;
- inverted anti-drifting: the window at section `k` of a video that ends `e` sections in, with the
  start frame, the padding the engine will use (0, 1, then 2 or 3 however far the start really
  is) and the packed future; a window at the video's end sees an empty (zero) future, as the first
  inverted step does.
The objective is rectified flow as diffusers' `FlowMatchEulerDiscreteScheduler` integrates it:
x_t = (1 - s) x0 + s n, and its step x_{t-dt} = x_t + (s_next - s) v needs v = n - x0. The
timestep is 1000 s, and the distilled-guidance input is the constant the engine feeds (10 x 1000).
The squared error is weighted up (to `1 + motion_weight`) where the window changes over time:
the moving shape covers a few percent of the latent grid, and with a plain mean the model learns
the static background long before it learns the motion the caption asks for.
Forward history gets a little Gaussian noise now and then, so the model learns to trust imperfect
(self-generated) history, an inexpensive stand-in for FramePack-F1's anti-drifting training.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import calculate_shift

from ..engine.packing import PackedContext, pack_forward, pack_inverted
from ..engine.sampling import MAX_SHIFT_EXP
from . import checkpoint
from .latents import UNCONDITIONAL, LatentClip, PromptTable
from .runtime import Budget, Clock, Runtime
from .world import WorldConfig


@dataclass(frozen=True)
class TransformerTrainConfig:
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 50
    inverted_fraction: float = 0.5
    #: Share of inverted samples whose window ends the video (an empty future): the first step of
    #: every inverted video, half the sections of a 2-section one. 0 leaves it to the uniform draw
    #: of the video's end, which gives it to 1 in (sections - k) windows, rarer the longer the clips.
    video_end: float = 0.0
    #: Inverted samples only from clips whose caption has not changed between the start and the
    #: window. An inverted step sees the start frame and its own section's caption, never the sections
    #: between: where those moved another way (a changed caption), the window's place cannot be
    #: read from what the model is given, and it learns to hedge, placing the shape short.
    inverted_one_caption: bool = False
    #: Largest std of the Gaussian noise added to forward history (drawn per sample from 0..this).
    history_noise: float = 0.1
    history_noise_probability: float = 0.5
    guidance: float = 10.0
    #: Share of samples trained with the empty prompt, so sampling can use real CFG (the model's
    #: default `cfg` in framepack_live.json): the guided difference between the caption's and the
    #: empty prompt's predictions amplifies what the caption says about motion.
    caption_dropout: float = 0.1
    motion_weight: float = 4.0
    ema_decay: float = 0.998
    checkpoint_every: int = 200
    seed: int = 0


@dataclass
class Batch:
    target: torch.Tensor  # x0 of the window, [B, C, W, h, w]
    context: PackedContext
    image_embeds: torch.Tensor
    captions: list[str]
    noise: torch.Tensor  # like target
    u: torch.Tensor  # [B] uniform draws that set the noise levels

    def to(self, device: str) -> Batch:
        return Batch(self.target.to(device), self.context.to(device), self.image_embeds.to(device), self.captions,
                     self.noise.to(device), self.u.to(device))


def _cat_contexts(contexts: list[PackedContext]) -> PackedContext:
    first = contexts[0]
    return PackedContext(
        latents_clean=torch.cat([c.latents_clean for c in contexts]),
        indices_clean=first.indices_clean,
        latents_2x=torch.cat([c.latents_2x for c in contexts]),
        indices_2x=first.indices_2x,
        latents_4x=torch.cat([c.latents_4x for c in contexts]),
        indices_4x=first.indices_4x,
        indices_latents=first.indices_latents,
    )


def _noisy_history(context: PackedContext, std: float, generator: torch.Generator) -> PackedContext:
    """Add noise to history frames that exist (zero frames mean 'no history' and stay zero); not to the start frame."""

    def corrupt(latents: torch.Tensor) -> torch.Tensor:
        present = (latents.abs().sum(dim=(1, 3, 4), keepdim=True) > 0).float()
        return latents + std * present * torch.randn(latents.shape, generator=generator)

    clean = torch.cat([context.latents_clean[:, :, :1], corrupt(context.latents_clean[:, :, 1:])], dim=2)
    return PackedContext(clean, context.indices_clean, corrupt(context.latents_2x), context.indices_2x,
                         corrupt(context.latents_4x), context.indices_4x, context.indices_latents)


def make_batch(rng: np.random.Generator, clips: list[LatentClip], world: WorldConfig, config: TransformerTrainConfig,
               generator: torch.Generator) -> Batch:
    """One homogeneous batch: all items share a layout (the RoPE indices are per batch, not per item)."""
    window, sections = world.window, world.sections
    inverted = rng.random() < config.inverted_fraction
    padding = int(rng.integers(0, min(4, sections)))  # padding p needs a window p sections in
    targets, contexts, embeds, captions = [], [], [], []
    pools: dict[int, list[LatentClip]] = {}
    for _ in range(config.batch):
        clip = clips[int(rng.integers(len(clips)))]
        if inverted:
            k = padding if padding <= 1 else int(rng.integers(2, sections))
            if config.inverted_one_caption:
                if k not in pools:
                    pools[k] = one_caption_clips(clips, k)
                pool = pools[k]
                clip = pool[int(rng.integers(len(pool)))]
        else:
            k = int(rng.integers(0, sections))
        latents = clip.sample(generator)[None]
        start = latents[:, :, :1]
        if inverted:
            # (no draw at 0, so the batches of runs from before this option stay as they were)
            ends_video = config.video_end > 0 and rng.random() < config.video_end
            end = k + 1 if ends_video else int(rng.integers(k + 1, sections + 1))
            future = latents[:, :, 1 + (k + 1) * window : 1 + end * window]
            context = pack_inverted(future, start, window, step=0, total_sections=padding + 1)
        else:
            context = pack_forward(latents[:, :, : 1 + k * window], start, window)
            if rng.random() < config.history_noise_probability:
                context = _noisy_history(context, float(rng.uniform(0, config.history_noise)), generator)
        targets.append(latents[:, :, 1 + k * window : 1 + (k + 1) * window])
        contexts.append(context)
        embeds.append(clip.image_embeds[None])
        captions.append(UNCONDITIONAL if rng.random() < config.caption_dropout else clip.captions[k])
    target = torch.cat(targets)
    noise = torch.randn(target.shape, generator=generator)
    u = torch.rand(config.batch, generator=generator)
    return Batch(target, _cat_contexts(contexts), torch.cat(embeds), captions, noise, u)


def one_caption_clips(clips: list[LatentClip], k: int) -> list[LatentClip]:
    """The clips whose sections 0..k share one caption (`inverted_one_caption`)."""
    pool = [clip for clip in clips if len(set(clip.captions[: k + 1])) == 1]
    if not pool:
        raise ValueError(f"none of the {len(clips)} clips keeps one caption through section {k + 1}, as "
                         "inverted_one_caption needs: encode more clips (--clips)")
    return pool


def step_batch(clips: list[LatentClip], world: WorldConfig, config: TransformerTrainConfig, step: int) -> Batch:
    """The batch of training step `step`: a pure function of (seed, step), see `runtime.Runtime.batches`."""
    rng = np.random.default_rng([config.seed, step])
    return make_batch(rng, clips, world, config, torch.Generator().manual_seed(config.seed * 1_000_003 + step))


def section_shift(window: int, latent_height: int, latent_width: int, patch: int) -> float:
    """The engine's resolution-dependent shift exp(mu), used to bias training noise levels like sampling."""
    tokens = window * latent_height * latent_width / patch**2
    return float(min(np.exp(calculate_shift(tokens, 256, 4096, 0.5, 1.15)), MAX_SHIFT_EXP))


def motion_weights(x0: torch.Tensor, weight: float) -> torch.Tensor:
    """[B, 1, 1, h, w]: 1 where the window is static, up to 1 + weight where it changes the most."""
    change = x0.std(dim=2, keepdim=True, correction=0).mean(dim=1, keepdim=True)
    peak = change.amax(dim=(3, 4), keepdim=True).clamp_min(1e-6)
    return 1.0 + weight * change / peak


def predict(transformer, batch: Batch, prompts: PromptTable, x: torch.Tensor, sigma: torch.Tensor,
            guidance: float) -> torch.Tensor:
    """The transformer's velocity at noise levels `sigma` ([B]) for `x`, in `batch`'s layout and captions."""
    prompt = prompts.lookup(batch.captions)
    return transformer(
        hidden_states=x,
        timestep=sigma * 1000.0,
        encoder_hidden_states=prompt.embeds,
        encoder_attention_mask=prompt.mask,
        pooled_projections=prompt.pooled,
        image_embeds=batch.image_embeds,
        guidance=torch.full((x.shape[0],), guidance * 1000.0, device=x.device),
        return_dict=False,
        **batch.context.model_kwargs(torch.float32),
    )[0]


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (weights * (prediction.float() - target).pow(2)).mean() / weights.mean()


def flow_loss(transformer, batch: Batch, prompts: PromptTable, guidance: float, motion_weight: float = 0.0) -> torch.Tensor:
    x0, noise = batch.target, batch.noise
    shift = section_shift(x0.shape[2], x0.shape[3], x0.shape[4], transformer.config.patch_size)
    sigma = shift * batch.u / (1 + (shift - 1) * batch.u)
    s = sigma.view(-1, 1, 1, 1, 1)
    velocity = predict(transformer, batch, prompts, (1 - s) * x0 + s * noise, sigma, guidance)
    return weighted_mse(velocity, noise - x0, motion_weights(x0, motion_weight))


@dataclass(frozen=True)
class FlowObjective:
    """Next-section flow matching on encoded clips: what `train_transformer` trains by default."""

    clips: list[LatentClip]
    world: WorldConfig
    config: TransformerTrainConfig
    #: The stage's checkpoint file in the run directory.
    name: str = "transformer"

    def __post_init__(self) -> None:
        if self.config.inverted_one_caption:
            one_caption_clips(self.clips, self.world.sections - 1)  # the smallest pool: refuse now, not mid-run

    @property
    def about(self) -> dict:
        """What the stage's checkpoint is built on besides the world and the starting model: nothing more."""
        return {}

    def batch(self, step: int) -> Batch:
        return step_batch(self.clips, self.world, self.config, step)

    def loss(self, transformer, batch: Batch, prompts: PromptTable) -> torch.Tensor:
        return flow_loss(transformer, batch, prompts, self.config.guidance, self.config.motion_weight)


def train_step(model: torch.nn.Module, step_model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               loss_of: Callable[[torch.nn.Module], torch.Tensor], runtime: Runtime) -> torch.Tensor:
    """One optimiser step on the loss `loss_of(step_model)`; returns it (still on the device: reading
    it waits for the GPU).

    `step_model` is `runtime.prepare(model)`, the module the forward pass runs through (compiled or
    `model` itself); `model` owns the parameters whose gradients are clipped."""
    with runtime.autocast():
        loss = loss_of(step_model)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.detach()


def train_transformer(transformer, prompts: PromptTable, objective, config: TransformerTrainConfig, run_dir: Path,
                      runtime: Runtime, budget: Budget, init: str | None = None):
    """Train (or resume) in `run_dir`; returns the EMA weights' model (on the CPU), the smoothed loss and the stage's `Progress`.

    `objective` gives each step's batch and its loss (`FlowObjective`, or distillation's
    `train.distill.StudentObjective`) and names the stage's checkpoint; `config` the optimiser's
    rate, warm-up, EMA and checkpoint interval. `init` names the model `transformer` was loaded
    from when fine-tuning (None: fresh weights), so that a run directory is never resumed by a run
    that starts from something else."""
    path = run_dir / f"{objective.name}.pt"
    about = {"init": init, "world": asdict(objective.world), **objective.about}
    transformer.to(runtime.device)
    step_model = runtime.prepare(transformer)
    ema = copy.deepcopy(transformer).requires_grad_(False)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=config.lr, weight_decay=0.01)
    state = checkpoint.load(path, about) or {"step": 0, "elapsed": 0.0}
    if "model" in state:
        transformer.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
    prompts = prompts.to(runtime.device)
    smoothed = state.get("loss")
    transformer.train()
    clock = Clock(objective.name, budget, state["step"], state.get("elapsed", 0.0))
    batches = runtime.batches(objective.batch, start=clock.step)
    while not clock.done:
        warmup = min(1.0, (clock.step + 1) / config.warmup)
        lr = config.lr * warmup * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * clock.progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches).to(runtime.device)
        loss = train_step(transformer, step_model, optimizer, partial(objective.loss, batch=batch, prompts=prompts),
                          runtime)
        with torch.no_grad():
            for averaged, current in zip(ema.parameters(), transformer.parameters()):
                averaged.lerp_(current, 1 - config.ema_decay)
        value = loss.item()
        smoothed = value if smoothed is None else 0.98 * smoothed + 0.02 * value
        clock.tick(loss=f"{value:.4f}", avg=f"{smoothed:.4f}")
        if clock.step % config.checkpoint_every == 0 or clock.done:
            checkpoint.save(path, step=clock.step, elapsed=clock.elapsed, model=transformer.state_dict(),
                            ema=ema.state_dict(), optimizer=optimizer.state_dict(), loss=smoothed, about=about)
    return ema.cpu().eval(), smoothed, clock.close()
