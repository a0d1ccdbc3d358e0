"""Stage 3 (`--decoder-steps`): the live view's small decoder (`engine.fast_decoder`), trained to
reproduce the model's VAE decodes.

Its data are snippets of the live path's shape: a section's latent window with the latent frame
before it (the start frame before the first section), decoded once by the full VAE (the expensive
part on a CPU, so the decodes are kept on disk in chunks and a killed run resumes). The latents
come from encoded clips (posterior samples) and, when distilling, from the teacher's own sampled
windows too, which are what the live view shows: generated latents are not quite the encoder's.
Training fits the VAE's frames (L1 + MSE in [-1, 1]) on random latent crops: the decoder is
convolutional, and a quarter of the frame costs a quarter of the step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..engine.decoding import decode_latents, to_uint8
from ..engine.fast_decoder import FastDecoder
from ..engine.model import FramePackModel
from ..engine.packing import HISTORY_FRAMES
from . import checkpoint
from .distill import StudentObjective
from .latents import LatentClip
from .runtime import Budget, Clock, Progress, Runtime
from .transformer import step_batch
from .world import WorldConfig


@dataclass(frozen=True)
class DecoderTrainConfig:
    snippets: int = 512
    batch: int = 8
    #: Side of the square latent crops trained on (8 latents: 64 pixels).
    crop: int = 8
    lr: float = 2e-3
    warmup: int = 50
    checkpoint_every: int = 200
    seed: int = 0
    #: Snippets decoded by the VAE per saved chunk.
    chunk: int = 16


@dataclass
class Snippets:
    """Latents [N, C, 1 + window, h, w] (scaled as the engine's) and the VAE's frames of them,
    uint8 [N, 4 window + 1, H, W, 3] (what the live view would show from the full VAE)."""

    latents: torch.Tensor
    frames: torch.Tensor


def clip_snippet(clip: LatentClip, world: WorldConfig, rng: np.random.Generator,
                 generator: torch.Generator) -> torch.Tensor:
    """A section window of a clip (a posterior sample) with the latent frame before it."""
    section = int(rng.integers(0, world.sections))
    first = section * world.window  # the frame before the window (the start frame for section 0)
    return clip.sample(generator)[:, first : first + 1 + world.window]


def generated_snippets(student: StudentObjective, limit: int) -> list[torch.Tensor]:
    """Up to `limit` of the teacher's sampled forward windows with the newest history frame before
    them (the start frame when there is none): generated latents, as the live view decodes them."""
    snippets: list[torch.Tensor] = []
    for index in range(student.distill.teacher_batches):
        if len(snippets) >= limit:
            break
        context = step_batch(student.clips, student.world, student.config, index).context
        if int(context.indices_latents[0]) != 1 + HISTORY_FRAMES:
            continue  # an inverted window: what comes before it was never generated
        final = checkpoint.load(student.folder / f"{index:05d}.pt")["states"][-1].float()
        history = context.latents_clean[:, :, 1:2]
        present = history.abs().sum(dim=(1, 2, 3, 4), keepdim=True) > 0
        before = torch.where(present, history, context.latents_clean[:, :, :1])
        snippets.extend(torch.cat([before, final], dim=2))
    return snippets[:limit]


def decode_snippets(model: FramePackModel, sources: list[torch.Tensor], folder: Path, about: dict) -> Snippets:
    """Decode `sources` ([C, 1 + window, h, w] each) with the full VAE in chunks kept in `folder`
    (`about` says what they are: another run's decodes are refused, not mixed in)."""
    folder.mkdir(parents=True, exist_ok=True)
    if checkpoint.load(folder / "about.pt", about) is None:
        checkpoint.save(folder / "about.pt", about=about)
    size = about["chunk"]
    chunks = math.ceil(len(sources) / size)
    latents, frames = [], []
    for index in tqdm(range(chunks), desc="VAE decodes for the fast decoder", dynamic_ncols=True):
        path = folder / f"{index:05d}.pt"
        part = torch.stack(sources[index * size : (index + 1) * size])
        if not path.exists():
            decoded = [torch.from_numpy(to_uint8(decode_latents(model, item[None]))) for item in part]
            checkpoint.save(path, frames=torch.stack(decoded))
        latents.append(part.half())
        frames.append(checkpoint.load(path)["frames"])
    return Snippets(torch.cat(latents), torch.cat(frames))


def snippet_sources(clips: list[LatentClip], world: WorldConfig, config: DecoderTrainConfig,
                    generated: list[torch.Tensor]) -> list[torch.Tensor]:
    """`config.snippets` latent snippets: the generated ones first, the rest from clips; a pure
    function of the seed."""
    rng, generator = np.random.default_rng(config.seed), torch.Generator().manual_seed(config.seed)
    taken = generated[: config.snippets]
    from_clips = [clip_snippet(clips[int(rng.integers(len(clips)))], world, rng, generator)
                  for _ in range(config.snippets - len(taken))]
    return [*taken, *from_clips]


def crop_batch(snippets: Snippets, config: DecoderTrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random snippets and latent crops, with the matching pixels in [-1, 1]: a pure function of the step."""
    rng = np.random.default_rng([config.seed, step])
    rows = rng.integers(0, snippets.latents.shape[0], config.batch)
    side = min(config.crop, *snippets.latents.shape[3:])
    scale = snippets.frames.shape[2] // snippets.latents.shape[3]
    latents, pixels = [], []
    for row in rows:
        top, left = (int(rng.integers(0, snippets.latents.shape[dim] - side + 1)) for dim in (3, 4))
        latents.append(snippets.latents[row, :, :, top : top + side, left : left + side].float())
        crop = snippets.frames[row, :, top * scale : (top + side) * scale, left * scale : (left + side) * scale]
        pixels.append(crop.permute(3, 0, 1, 2).float() / 127.5 - 1)
    return torch.stack(latents), torch.stack(pixels)


@dataclass
class TrainedDecoder:
    """The decoder (on the CPU, eval mode) and what made it, for the model card."""

    model: FastDecoder
    loss: float
    progress: Progress
    snippets: int
    generated: int


def train_decoder(snippets: Snippets, decoder: FastDecoder, config: DecoderTrainConfig, run_dir: Path,
                  runtime: Runtime, budget: Budget, about: dict) -> tuple[FastDecoder, float, Progress]:
    """Train (or resume) the decoder in `run_dir`; returns it (on the CPU, eval mode), its smoothed
    loss and the stage's `Progress`."""
    path = run_dir / "fast_decoder.pt"
    decoder.to(runtime.device).train()
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=config.lr, weight_decay=0.0)
    state = checkpoint.load(path, about) or {"step": 0, "elapsed": 0.0}
    if "model" in state:
        decoder.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    step_model = runtime.prepare(decoder)
    smoothed = state.get("loss")
    clock = Clock("fast decoder", budget, state["step"], state.get("elapsed", 0.0))
    while not clock.done:
        lr = config.lr * min(1.0, (clock.step + 1) / config.warmup) * 0.5 * (1 + np.cos(np.pi * clock.progress))
        for group in optimizer.param_groups:
            group["lr"] = lr
        latents, pixels = (t.to(runtime.device) for t in crop_batch(snippets, config, clock.step))
        error = step_model(latents) - pixels
        loss = error.abs().mean() + error.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        smoothed = value if smoothed is None else 0.98 * smoothed + 0.02 * value
        clock.tick(loss=f"{value:.4f}", avg=f"{smoothed:.4f}")
        if clock.step % config.checkpoint_every == 0 or clock.done:
            checkpoint.save(path, step=clock.step, elapsed=clock.elapsed, model=decoder.state_dict(),
                            optimizer=optimizer.state_dict(), loss=smoothed, about=about)
    return decoder.cpu().eval(), smoothed, clock.close()


def psnr(decoded: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of uint8 frames against reference uint8 frames."""
    mse = np.mean((decoded.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def fast_decoder_stage(model: FramePackModel, clips: list[LatentClip], world: WorldConfig,
                       config: DecoderTrainConfig, run_dir: Path, runtime: Runtime, budget: Budget,
                       vae_source: str, student: StudentObjective | None = None) -> TrainedDecoder:
    """Decode the snippets with the VAE (resuming), then train the decoder on them (resuming); with
    a distillation's `student`, up to half the snippets are the teacher's generated windows."""
    generated = generated_snippets(student, config.snippets // 2) if student is not None else []
    data = {"vae": vae_source, "world": asdict(world), "snippets": config.snippets, "seed": config.seed,
            "chunk": config.chunk, "generated": len(generated)}
    sources = snippet_sources(clips, world, config, generated)
    snippets = decode_snippets(model, sources, run_dir / "decoder_data", data)
    torch.manual_seed(config.seed)
    decoder = FastDecoder(latent_channels=int(model.pipeline.vae.config.latent_channels))
    decoder, loss, progress = train_decoder(snippets, decoder, config, run_dir, runtime, budget,
                                            {**data, "decoder": asdict(config)})
    return TrainedDecoder(decoder, loss, progress, config.snippets, len(generated))
