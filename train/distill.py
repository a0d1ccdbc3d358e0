"""Stage 2c (`--distill`): a few-step student without real CFG, distilled from a guided teacher.

Method: guided progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast
Sampling of Diffusion Models"; Meng et al. 2023, "On Distillation of Guided Diffusion Models"),
done as one round that divides the step count by `teacher_steps / steps`:
- the teacher (the `--init` model, at its card's Euler steps and real CFG scale) samples every
  training window once with the engine's own sampler (`engine.sampling.sample_steps`: the same
  shifted schedule, the prompt's and the empty prompt's predictions mixed at the CFG scale), and its
  latents at the student's step boundaries are kept on disk: the student's `steps`-step schedule is
  every `teacher_steps / steps`-th sigma of the teacher's, since both shift the same even grid (so
  trajectories kept for a student of 4 steps serve one of 2, at every other kept latent);
- the student, initialised as the teacher, learns from the teacher's latents x_i at boundary i the
  velocity whose one Euler step lands where the teacher's steps landed,
  v = (x_{i+1} - x_i) / (s_{i+1} - s_i), given the caption alone: the guidance is baked in, so
  sampling runs one transformer evaluation per step and no real CFG.

Why this method on this machine: consistency distillation and distribution matching (DMD) ask for
teacher evaluations at every student step (DMD a second, "fake score" network trained alongside),
which two CPU cores cannot afford; here every teacher trajectory is sampled once and serves all of
the student's steps, for as many epochs as training runs, and resuming needs no RNG state. Rectified
flow's reflow uses the same teacher samples but learns straight paths for every noise level and
still needs a distillation step to work in a few; matching the teacher's own few-step jumps
aims at exactly the schedule the student samples with. And the student keeps the teacher's
mapping from noise to section: the same seed gives it the teacher's section, in both sampling
orders and for every caption (the training windows are the teacher's own layouts: forward history
and the inverted anti-drifting layout, built by the engine's packing from encoded clips), which is
what keeps following and steering. Its known weakness, exposure bias: after the first step the
student sees its own latents, not the teacher's, so its errors compound over the steps (few here).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from ..engine.sampling import Guidance, make_scheduler, sample_steps, shift_mu
from ..engine.settings import GenerationSettings
from . import checkpoint
from .latents import UNCONDITIONAL, LatentClip, PromptTable
from .runtime import Runtime
from .transformer import Batch, TransformerTrainConfig, motion_weights, one_caption_clips, predict, step_batch, weighted_mse
from .world import WorldConfig


@dataclass(frozen=True)
class DistillConfig:
    """The student's schedule, the teacher's, and how many teacher trajectories to sample."""

    steps: int = 4
    teacher_steps: int = 8
    #: The teacher's real CFG scale (its card's default, which its benchmark figures were made at).
    cfg: float = 3.0
    #: Teacher batches sampled once (each `TransformerTrainConfig.batch` trajectories), then reused
    #: for every epoch of the student's training.
    teacher_batches: int = 192

    def __post_init__(self) -> None:
        if self.steps < 1 or self.teacher_steps % self.steps:
            raise ValueError(f"the student's steps ({self.steps}) must divide the teacher's ({self.teacher_steps}): "
                             "each student step jumps over a whole number of teacher steps")

    @property
    def stride(self) -> int:
        return self.teacher_steps // self.steps


def distill_train_config(config: TransformerTrainConfig) -> TransformerTrainConfig:
    """The windows distillation samples: the teacher's layouts, every one with its caption (the
    student never predicts for the empty prompt: it runs no real CFG)."""
    return replace(config, caption_dropout=0.0)


def teacher_settings(world: WorldConfig, config: DistillConfig, steps: int | None = None) -> GenerationSettings:
    """The engine's sampler settings of the teacher (default) or of the student (`steps`, no CFG)."""
    student = steps is not None
    return GenerationSettings(width=world.size, height=world.size, window=world.window, scheduler="euler",
                              steps=steps if student else config.teacher_steps, cfg=1.0 if student else config.cfg)


def boundary_sigmas(world: WorldConfig, config: DistillConfig, patch: int) -> torch.Tensor:
    """The student's noise levels, its last step's end (0) included: [steps + 1].

    Checked against the teacher's: the student's schedule must be every `stride`-th teacher sigma,
    or the targets would teach jumps between levels the student never samples at.
    """
    latent = world.size // 8
    mu = shift_mu(world.window, latent, latent, patch)

    def sigmas(settings: GenerationSettings) -> torch.Tensor:
        return make_scheduler(settings, mu, torch.device("cpu")).sigmas.float()

    student = sigmas(teacher_settings(world, config, steps=config.steps))
    teacher = sigmas(teacher_settings(world, config))
    if not torch.allclose(student, teacher[:: config.stride], atol=1e-6):
        raise ValueError(f"the student's sigmas {student.tolist()} are not the teacher's {teacher.tolist()} "
                         f"every {config.stride}")
    return student


@torch.no_grad()
def teacher_trajectory(teacher: torch.nn.Module, batch: Batch, prompts: PromptTable, settings: GenerationSettings,
                       stride: int) -> torch.Tensor:
    """The teacher's latents at every `stride`-th step of sampling `batch`'s windows from its noise,
    the noise first: [steps / stride + 1, B, C, window, h, w]."""
    size = batch.target.shape[0]
    guidance = Guidance(prompt=prompts.lookup(batch.captions), image_embeds=batch.image_embeds,
                        negative=prompts.lookup([UNCONDITIONAL] * size))
    states = [batch.noise, *sample_steps(teacher, batch.noise, batch.context, guidance, settings)]
    return torch.stack(states[::stride])


def kept_stride(folder: Path, about: dict, stride: int) -> int:
    """The teacher steps between the latents `folder` keeps (its `about.pt`; a new folder keeps every
    `stride`-th, the student's): a folder kept for a student of more steps serves one of fewer, as
    its boundaries are every few of the kept ones. Trajectories of another teacher, world or window
    draw, or kept too sparsely for this student, are refused."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = checkpoint.load(folder / "about.pt")
    if saved is None:
        checkpoint.save(folder / "about.pt", about={**about, "every": stride})
        return stride
    every = saved["about"]["every"]
    if {key: value for key, value in saved["about"].items() if key != "every"} != about:
        raise ValueError(f"{folder} holds another run's teacher trajectories ({saved['about']}, not {about}); "
                         "use another --run-dir or delete it")
    if stride % every:
        raise ValueError(f"{folder} keeps the teacher's latents every {every} steps; this student needs them every "
                         f"{stride}: use another --run-dir")
    return every


def sample_teacher(teacher: torch.nn.Module, clips: list[LatentClip], world: WorldConfig,
                   train: TransformerTrainConfig, config: DistillConfig, prompts: PromptTable, folder: Path,
                   runtime: Runtime, every: int) -> None:
    """Sample the teacher's trajectories of batches 0..teacher_batches-1 into `folder`, one file
    each (float16, the latents every `every` teacher steps), skipping those already there: a
    killed run resumes where it stopped.

    Always in fp32: on the development CPU bf16 autocast made inference slower, not faster, and it
    would move the targets away from the teacher the benchmark measures."""
    settings = teacher_settings(world, config)
    model = runtime.prepare(teacher.to(runtime.device).eval())
    prompts = prompts.to(runtime.device)
    missing = [j for j in range(config.teacher_batches) if not _teacher_file(folder, j).exists()]
    for j in tqdm(missing, desc="teacher trajectories", dynamic_ncols=True):
        batch = step_batch(clips, world, train, j).to(runtime.device)
        states = teacher_trajectory(model, batch, prompts, settings, every)
        checkpoint.save(_teacher_file(folder, j), states=states.half().cpu())


def _teacher_file(folder: Path, index: int) -> Path:
    return folder / f"{index:05d}.pt"


@dataclass
class StudentBatch:
    """Teacher windows at one student step each: the input latents, their noise level, the target
    velocity, and the teacher's final latents (where the window moves, for the loss weights)."""

    windows: Batch
    latents: torch.Tensor
    sigma: torch.Tensor
    target: torch.Tensor
    final: torch.Tensor

    def to(self, device: str) -> StudentBatch:
        return StudentBatch(self.windows.to(device), self.latents.to(device), self.sigma.to(device),
                            self.target.to(device), self.final.to(device))


@dataclass(frozen=True)
class StudentObjective:
    """`train_transformer`'s objective for the student: each step takes one teacher batch (cycling
    through them) and, per window, one of the student's steps drawn from the step number's seed."""

    clips: list[LatentClip]
    world: WorldConfig
    config: TransformerTrainConfig
    distill: DistillConfig
    sigmas: torch.Tensor
    folder: Path
    #: Teacher steps between the latents the folder keeps (`kept_stride`).
    every: int
    name: str = "student"

    def __post_init__(self) -> None:
        if self.config.inverted_one_caption:
            one_caption_clips(self.clips, self.world.sections - 1)

    @property
    def about(self) -> dict:
        """A student of other steps or another teacher is another stage: never resumed from this one."""
        return {"student_steps": self.distill.steps, "teacher": {"steps": self.distill.teacher_steps,
                                                                 "cfg": self.distill.cfg}}

    def batch(self, step: int) -> StudentBatch:
        index = step % self.distill.teacher_batches
        windows = step_batch(self.clips, self.world, self.config, index)
        states = checkpoint.load(_teacher_file(self.folder, index))["states"][:: self.distill.stride // self.every]
        states = states.float()
        size = states.shape[1]
        which = torch.randint(0, self.distill.steps, (size,), generator=torch.Generator().manual_seed(step))
        rows = torch.arange(size)
        latents, following = states[which, rows], states[which + 1, rows]
        gap = (self.sigmas[which + 1] - self.sigmas[which]).view(-1, 1, 1, 1, 1)
        return StudentBatch(windows, latents, self.sigmas[which], (following - latents) / gap, states[-1])

    def loss(self, transformer, batch: StudentBatch, prompts: PromptTable) -> torch.Tensor:
        velocity = predict(transformer, batch.windows, prompts, batch.latents, batch.sigma, self.config.guidance)
        return weighted_mse(velocity, batch.target, motion_weights(batch.final, self.config.motion_weight))


def prepare_student(teacher: torch.nn.Module, clips: list[LatentClip], world: WorldConfig,
                    config: TransformerTrainConfig, distill: DistillConfig, prompts: PromptTable, run_dir: Path,
                    runtime: Runtime, init: str) -> StudentObjective:
    """Sample the teacher's trajectories (resuming) and return the student's objective over them.

    The student's weights start as `teacher`'s: the caller trains `teacher` itself afterwards."""
    config = distill_train_config(config)
    folder = run_dir / "teacher"
    # (neither the number of batches, as a run may be resumed with more, nor the student's steps)
    about = {"init": init, "world": asdict(world), "teacher": {"steps": distill.teacher_steps, "cfg": distill.cfg},
             "windows": asdict(config)}
    every = kept_stride(folder, about, distill.stride)
    sample_teacher(teacher, clips, world, config, distill, prompts, folder, runtime, every)
    sigmas = boundary_sigmas(world, distill, teacher.config.patch_size)
    return StudentObjective(clips, world, config, distill, sigmas, folder, every)


def evaluations_per_section(steps: int, cfg: float) -> int:
    """Transformer evaluations a section costs: one per step, two with real CFG."""
    return steps * (2 if cfg > 1.0 else 1)


def speedup(distill: DistillConfig) -> float:
    return evaluations_per_section(distill.teacher_steps, distill.cfg) / evaluations_per_section(distill.steps, 1.0)

