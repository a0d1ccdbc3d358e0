"""Distillation (`--distill`): teacher trajectories from the engine's sampler, targets that retrace
them in the student's steps, and a student exported with its own sampling defaults.

On the real transformer class at the smoke run's tiny size, so it takes seconds."""

import json

import pytest
import torch

from framepack_live.engine.generator import SectionGenerator
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.settings import GenerationSettings
from framepack_live.train import __main__ as train_cli
from framepack_live.train import checkpoint
from framepack_live.train.distill import DistillConfig, boundary_sigmas, kept_stride, speedup
from framepack_live.train.world import WorldConfig

from .test_training import SMOKE, SMOKE_SCRATCH


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A smoke-sized model trained from scratch, exported with real CFG 3 and 8 Euler steps."""
    root = tmp_path_factory.mktemp("teacher")
    out = root / "model"
    assert train_cli.main(["--run-dir", str(root / "run"), *SMOKE_SCRATCH, "--steps", "2", "--out", str(out)]) == 0
    return out


def test_the_students_schedule_is_every_other_teacher_sigma():
    world = WorldConfig(size=128, window=3)
    sigmas = boundary_sigmas(world, DistillConfig(steps=4, teacher_steps=8), patch=2)
    assert len(sigmas) == 5 and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    assert boundary_sigmas(world, DistillConfig(steps=1, teacher_steps=8), patch=2).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="divide"):
        DistillConfig(steps=3, teacher_steps=8)
    assert speedup(DistillConfig(steps=4, teacher_steps=8, cfg=3.0)) == 4.0


def test_distil_trains_a_student_whose_targets_retrace_the_teacher(teacher, tmp_path):
    run, out = tmp_path / "run", tmp_path / "student"
    args = ["--run-dir", str(run), "--init", str(teacher), *SMOKE, "--distill", "--student-steps", "2",
            "--teacher-batches", "3", "--steps", "4", "--decoder-steps", "3", "--decoder-snippets", "4",
            "--out", str(out)]
    assert train_cli.main(args) == 0
    assert sorted(p.name for p in (run / "teacher").glob("0*.pt")) == ["00000.pt", "00001.pt", "00002.pt"]
    assert checkpoint.load(run / "student.pt")["step"] == 4
    assert checkpoint.load(run / "fast_decoder.pt")["step"] == 3

    # One Euler step along each target lands on the teacher's next latents.
    from framepack_live.train.latents import encode_clips
    from framepack_live.train.runtime import Runtime
    from framepack_live.train.distill import StudentObjective
    from framepack_live.train.stack import frozen_stack
    from framepack_live.train.transformer import TransformerTrainConfig

    world = WorldConfig(size=32, window=1, sections=2)
    model = frozen_stack(source=str(teacher))
    clips = encode_clips(model, world, 2, run, Runtime(), vae_source=str(teacher))
    distill = DistillConfig(steps=2, teacher_steps=8, cfg=3.0, teacher_batches=3)
    sigmas = boundary_sigmas(world, distill, patch=model.transformer.config.patch_size)
    objective = StudentObjective(clips, world, TransformerTrainConfig(batch=2, caption_dropout=0.0), distill, sigmas,
                                 run / "teacher", every=4)
    states = checkpoint.load(run / "teacher" / "00001.pt")["states"].float()
    assert states.shape[0] == 3  # noise, the middle, the end
    batch = objective.batch(1)
    for row in range(2):
        which = int((sigmas == batch.sigma[row]).nonzero())
        landed = batch.latents[row] + (sigmas[which + 1] - sigmas[which]) * batch.target[row]
        torch.testing.assert_close(landed, states[which + 1, row], atol=1e-3, rtol=0)
        assert batch.windows.captions[row] != ""  # no caption dropout: every window has its caption

    # The student samples with its own defaults: 2 steps, no real CFG.
    settings = json.loads((out / "framepack_live.json").read_text())
    assert (settings["steps"], settings["cfg"], settings["scheduler"]) == (2, 1.0, "euler")
    assert settings["live_decoder"] == "fast_decoder"
    card = (out / "README.md").read_text()
    assert "* Live view decoder (`fast_decoder/`" in card and "2 of them the teacher's generated windows" in card
    assert "# framepack-live toyworld-fast" in card and "8 times the transformer work" in card
    assert "--distill --student-steps 2 --teacher-batches 3 --decoder-steps 3 --decoder-snippets 4 " \
           "--init engine/weights/toyworld " \
           "--out engine/weights/toyworld-fast" in card
    assert "## Distilled from `engine/weights/toyworld`" in card
    student = FramePackModel.load(str(out))
    assert student.fast_decoder is not None
    generation = GenerationSettings(width=32, height=32, steps=2, window=1, sections=1, scheduler="euler")
    assert SectionGenerator(student, "a red circle moves left", None, generation).next_section().frames.shape[1:] == (
        32, 32, 3)


def test_teacher_trajectories_kept_for_more_steps_serve_fewer(tmp_path):
    about = {"init": "teacher", "teacher": {"steps": 8, "cfg": 3.0}}
    assert kept_stride(tmp_path, about, 2) == 2  # a new folder keeps the 4-step student's boundaries
    assert kept_stride(tmp_path, about, 4) == 2  # a 2-step student takes every other one of them
    with pytest.raises(ValueError, match="every 2 steps; this student needs them every 3"):
        kept_stride(tmp_path, about, 3)
    with pytest.raises(ValueError, match="another run's teacher"):
        kept_stride(tmp_path, {**about, "teacher": {"steps": 8, "cfg": 5.0}}, 4)


def test_distil_refuses_to_run_without_a_teacher():
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--distill"])
