"""Training code: batch layouts match the engine's packing, and a whole run trains, resumes and exports."""

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from framepack_live.engine.generator import SectionGenerator
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.packing import HISTORY_FRAMES
from framepack_live.engine.settings import GenerationSettings
from framepack_live.train import __main__ as train_cli
from framepack_live.train import checkpoint
from framepack_live.train.latents import LatentClip
from framepack_live.train.transformer import TransformerTrainConfig, make_batch
from framepack_live.train.world import WorldConfig

WORLD = WorldConfig(size=32, window=2, sections=4)


def fake_clip(sections: int, window: int) -> LatentClip:
    """Latent frame t is filled with the value t + 1, so every frame's origin is readable."""
    frames = 1 + sections * window
    mean = torch.arange(1, frames + 1, dtype=torch.float32).view(1, frames, 1, 1).expand(2, frames, 4, 4).clone()
    return LatentClip(mean, torch.zeros_like(mean), torch.zeros(3, 8), ["a red circle moves left"] * sections)


def batches(inverted: bool, count: int = 30):
    config = TransformerTrainConfig(batch=1, inverted_fraction=1.0 if inverted else 0.0, history_noise_probability=0.0)
    rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
    clip = fake_clip(WORLD.sections, WORLD.window)
    return [make_batch(rng, [clip], WORLD, config, generator) for _ in range(count)]


def test_forward_batches_predict_the_window_after_real_history():
    for batch in batches(inverted=False):
        target = batch.target[0, 0, :, 0, 0]
        first = int(target[0])  # value = latent index + 1
        assert target.tolist() == [first, first + 1]
        context = batch.context
        assert context.latents_clean[0, 0, 0, 0, 0] == 1  # the start frame
        assert context.latents_clean[0, 0, 1, 0, 0] == first - 1  # the newest history frame
        assert context.indices_latents.tolist() == list(range(1 + HISTORY_FRAMES, 1 + HISTORY_FRAMES + WORLD.window))


def test_inverted_batches_see_the_start_frame_and_the_real_future():
    paddings = set()
    for batch in batches(inverted=True):
        context = batch.context
        target = batch.target[0, 0, :, 0, 0]
        after = int(context.latents_clean[0, 0, 1, 0, 0])
        assert after in (0, int(target[-1]) + 1)  # the next frame, or nothing at the video's end
        padding = int(context.indices_latents[0]) - 1
        paddings.add(padding // WORLD.window)
        distance = (int(target[0]) - 2) // WORLD.window  # sections between start and window
        assert padding // WORLD.window == distance or (distance >= 2 and padding // WORLD.window in (2, 3))
    assert paddings == {0, 1, 2, 3}


SMOKE = ["--size", "32", "--window", "1", "--sections", "2", "--clips", "2", "--batch", "2", "--threads", "1"]
SMOKE_SCRATCH = [*SMOKE, "--vae-steps", "2", "--vae-batch", "1", "--heads", "2", "--head-dim", "12", "--layers", "1",
                 "--single-layers", "1"]


def test_smoke_run_trains_resumes_and_exports(tmp_path):
    run, out = tmp_path / "run", tmp_path / "model"
    args = ["--run-dir", str(run), *SMOKE_SCRATCH]
    assert train_cli.main([*args, "--steps", "2"]) == 0
    first = checkpoint.load(run / "transformer.pt")
    assert first["step"] == 2 and np.isfinite(first["loss"])
    assert train_cli.main([*args, "--steps", "3", "--out", str(out)]) == 0
    assert checkpoint.load(run / "transformer.pt")["step"] == 3
    assert (out / "framepack_live.json").exists() and (out / "README.md").exists()
    assert "--vae-steps 2 --vae-batch 1 --clips 2 --steps 3 --batch 2" in (out / "README.md").read_text()
    model = FramePackModel.load(str(out))
    assert model.transformer.config.num_attention_heads == 2
    settings = GenerationSettings(width=32, height=32, steps=1, window=1, sections=1, scheduler="euler")
    section = SectionGenerator(model, "a red circle moves left", None, settings).next_section()
    assert section.frames.shape[1:] == (32, 32, 3)

    # A fine-tune starts from the export: same VAE and architecture, the chain of runs in its card.
    finetuned = tmp_path / "finetuned"
    with pytest.raises(ValueError, match="belongs to another run"):  # the scratch run's checkpoints
        train_cli.main(["--run-dir", str(run), "--init", str(out), *SMOKE, "--steps", "4"])
    # ... trained as fast as this CPU allows: bf16 autocast and the compiled step (`bench train`);
    # inverted windows from the one clip of the two whose caption holds (seed 1's), in 3 of 4 batches.
    assert train_cli.main(["--run-dir", str(tmp_path / "run2"), "--init", str(out), *SMOKE, "--steps", "2",
                           "--bf16", "--compile", "--inverted-fraction", "0.75", "--inverted-one-caption",
                           "--out", str(finetuned)]) == 0
    tuned = FramePackModel.load(str(finetuned))
    def architecture(m):
        return {k: v for k, v in m.transformer.config.items() if k != "_name_or_path"}

    assert architecture(tuned) == architecture(model)
    assert all(torch.equal(a, b) for a, b in zip(tuned.pipeline.vae.state_dict().values(),
                                                 model.pipeline.vae.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(tuned.transformer.state_dict().values(),
                                                     model.transformer.state_dict().values()))
    card = (finetuned / "README.md").read_text()
    assert "bf16 autocast, compiled" in card and "--compile" not in card and "--bf16" not in card  # how, not what
    assert ("--steps 2 --batch 2 --inverted-fraction 0.75 --inverted-one-caption --init engine/weights/toyworld-stage1 "
            "--out engine/weights/toyworld") in card
    assert "layouts in 25% and 75% of the batches (inverted windows only from clips whose caption held" in card
    assert "--steps 3 --batch 2 --heads 2" in card
    # The starting model is named as the reproduce lines name it, not by this machine's scratch path.
    assert "## Fine-tuned from `engine/weights/toyworld-stage1`" in card and str(out) not in card

    # A LoRA of the export (`--lora`): the base frozen, the adapter in diffusers' format, which the
    # engine loads with diffusers' own loader and which changes what the model makes.
    lora = tmp_path / "lora"
    assert train_cli.main(["--run-dir", str(tmp_path / "run3"), "--init", str(out), *SMOKE, "--clips", "4", "--steps",
                           "2", "--lora", "2", "--out", str(lora)]) == 0
    from safetensors import safe_open

    with safe_open(str(lora / "pytorch_lora_weights.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and all(".lora_A." in key or ".lora_B." in key for key in keys)
    assert "--clips 4 --steps 2 --batch 2 --lora 2 --init " in (lora / "README.md").read_text()
    base = SectionGenerator(model, "a red circle moves diagonally", None, settings)
    adapted = SectionGenerator(model, "a red circle moves diagonally", None,
                               replace(settings, loras=((str(lora), 1.0),)))
    base.next_section(), adapted.next_section()
    assert not torch.equal(base.video_latents(), adapted.video_latents())


def test_cpu_bf16_leaves_the_vae_in_fp32():
    from framepack_live.train.runtime import Runtime

    assert Runtime("cpu", bf16=True, compile=True).for_vae() == Runtime("cpu", bf16=False, compile=True)
    assert Runtime("cuda", bf16=True).for_vae().bf16


def test_init_refuses_the_options_its_model_decides():
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--init", "somewhere", "--heads", "8"])


def test_each_run_of_a_reproduce_chain_gets_its_own_run_directory():
    # The card's lines name no --run-dir; one shared directory would refuse the second run's options.
    chain = [train_cli.parse_args(["--out", f"engine/weights/toyworld{stage}"]) for stage in ("-stage1", "")]
    assert [args.run_dir for args in chain] == [train_cli.RUNS / "toyworld-stage1", train_cli.RUNS / "toyworld"]
    assert train_cli.parse_args([]).run_dir == train_cli.RUNS / "toyworld"
    assert train_cli.parse_args(["--run-dir", "/tmp/run", "--out", "x"]).run_dir == Path("/tmp/run")


def test_motion_weights_single_out_what_moves():
    from framepack_live.train.transformer import motion_weights

    still = torch.ones(1, 2, 3, 4, 4)
    assert torch.allclose(motion_weights(still, 4.0), torch.ones(1, 1, 1, 4, 4))
    moving = still.clone()
    moving[0, :, 1, 2, 3] = 5.0
    weights = motion_weights(moving, 4.0)
    assert weights[0, 0, 0, 2, 3] == 5.0 and weights.flatten().sort().values[-2] == 1.0


def test_batches_are_a_function_of_the_step_alone_with_or_without_workers():
    from framepack_live.train.runtime import Runtime
    from framepack_live.train.transformer import step_batch

    clips = [fake_clip(WORLD.sections, WORLD.window)]
    config = TransformerTrainConfig(batch=2)
    make = partial(step_batch, clips, WORLD, config)
    inline = Runtime(workers=0).batches(make, start=5)
    forked = Runtime(workers=2).batches(make, start=5)
    for _ in range(3):
        a, b = next(inline), next(forked)
        assert torch.equal(a.target, b.target) and torch.equal(a.noise, b.noise) and a.captions == b.captions
    resumed = next(Runtime().batches(make, start=7))
    assert torch.equal(resumed.noise, a.noise)


def test_a_time_budget_drives_the_schedule():
    from framepack_live.train.runtime import Budget

    assert Budget(steps=10).progress(5, elapsed=100.0) == 0.5
    assert Budget(steps=10, seconds=40.0).progress(5, elapsed=10.0) == 0.25


def test_a_fresh_vae_decodes_frames_1_to_4_from_the_second_latent_frame():
    """Without current_frame_init the first latent frame drowns the second (the latents then carry no motion)."""
    from framepack_live.train.models import build_vae
    from framepack_live.train.vae import current_frame_init

    def influence_on_frames_1_to_4(vae) -> list[float]:
        latents = torch.randn(1, 16, 2, 8, 8, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            decoded = vae.decode(latents).sample
            changes = []
            for frame in (0, 1):
                changed = latents.clone()
                changed[:, :, frame] = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(2))
                changes.append(float((vae.decode(changed).sample - decoded)[:, :, 1:].abs().mean()))
        return changes

    torch.manual_seed(0)
    vae = build_vae().eval()
    first, second = influence_on_frames_1_to_4(vae)
    assert first > 5 * second
    current_frame_init(vae)
    first, second = influence_on_frames_1_to_4(vae)
    assert second > 5 * first


def test_vae_snippets_are_crops_in_the_warm_up_and_whole_frames_after():
    from framepack_live.train.vae import VaeTrainConfig, snippet_batch

    world = WorldConfig(size=64, window=2, sections=2)
    config = VaeTrainConfig(batch=2)
    assert snippet_batch(world, config, 32, step=0).shape == (2, 3, config.snippet_frames, 32, 32)
    assert snippet_batch(world, config, None, step=0).shape == (2, 3, config.snippet_frames, 64, 64)
    assert snippet_batch(world, config, 128, step=0).shape[-1] == 64  # a crop never exceeds the frame


def test_caption_dropout_trains_the_empty_prompt_for_cfg():
    from framepack_live.train.latents import UNCONDITIONAL

    def captions(dropout: float) -> list[str]:
        config = TransformerTrainConfig(batch=40, caption_dropout=dropout)
        batch = make_batch(np.random.default_rng(0), [fake_clip(WORLD.sections, WORLD.window)], WORLD, config,
                           torch.Generator().manual_seed(0))
        return batch.captions

    assert UNCONDITIONAL not in captions(0.0)
    assert set(captions(1.0)) == {UNCONDITIONAL}
    assert 0 < captions(0.3).count(UNCONDITIONAL) < 40


def test_reproduce_command_replaces_clock_budgets_by_the_steps_run():
    """A resumed clock-budget run (the shipped weights' case) is reproduced by its step counts."""
    args = train_cli.parse_args(["--vae-seconds", "110", "--seconds", "478", "--vae-batch", "32", "--clips", "1024",
                                 "--batch", "128", "--run-dir", "/tmp/run", "--out", "weights", "--workers", "12"])
    assert train_cli.reproduce_command(args, 2072, 6364) == (
        "--vae-steps 2072 --vae-batch 32 --clips 1024 --steps 6364 --batch 128")
    tuned = train_cli.parse_args(["--init", "weights", "--sections", "12", "--seconds", "300", "--batch", "256"])
    assert train_cli.reproduce_command(tuned, 0, 3000) == "--sections 12 --steps 3000 --batch 256"


def test_video_end_share_sets_how_often_inverted_windows_end_the_video():
    def ending_share(video_end: float) -> float:
        config = TransformerTrainConfig(batch=1, inverted_fraction=1.0, history_noise_probability=0.0,
                                        video_end=video_end)
        rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
        clip = fake_clip(WORLD.sections, WORLD.window)
        ends = [make_batch(rng, [clip], WORLD, config, generator).context.latents_clean[0, 0, 1, 0, 0] == 0
                for _ in range(200)]
        return float(np.mean(ends))

    assert ending_share(1.0) == 1.0
    assert ending_share(0.0) < 0.6 < ending_share(0.8)


def test_inverted_one_caption_trains_inverted_windows_only_where_the_caption_held_since_the_start():
    """An inverted step sees neither the sections between the start and its window nor their
    captions, so with the option on, a window k > 0 comes only from a clip whose caption held
    through it; forward windows (which see that history) still come from every clip."""
    steady = fake_clip(WORLD.sections, WORLD.window)
    turning = fake_clip(WORLD.sections, WORLD.window)
    turning.mean += 100  # its frames read 101, 102, ...
    turning.captions = ["a red circle moves left"] + ["a red circle moves up"] * (WORLD.sections - 1)

    def origins(inverted: bool, one_caption: bool) -> set[tuple[str, int]]:
        config = TransformerTrainConfig(batch=4, inverted_fraction=float(inverted), inverted_one_caption=one_caption,
                                        caption_dropout=0.0)
        rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
        seen = set()
        for _ in range(40):
            batch = make_batch(rng, [steady, turning], WORLD, config, generator)
            for first in batch.target[:, 0, 0, 0, 0].tolist():
                clip = "turning" if first > 100 else "steady"
                seen.add((clip, (int(first) % 100 - 2) // WORLD.window))  # (clip, window k)
        return seen

    assert {k for clip, k in origins(inverted=True, one_caption=True) if clip == "turning"} == {0}
    assert {k for clip, k in origins(inverted=True, one_caption=False) if clip == "turning"} == {0, 1, 2, 3}
    assert {k for clip, k in origins(inverted=True, one_caption=True) if clip == "steady"} == {0, 1, 2, 3}
    assert {k for clip, k in origins(inverted=False, one_caption=True) if clip == "turning"} == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="--clips"):
        make_batch(np.random.default_rng(0), [turning], WORLD,
                   TransformerTrainConfig(batch=8, inverted_fraction=1.0, inverted_one_caption=True),
                   torch.Generator().manual_seed(0))


def test_lora_clips_mix_the_world_with_what_the_lora_teaches():
    from framepack_live.train.lora import lora_clip, text_start_clip
    from framepack_live.train.world import render_clip

    world = WorldConfig(size=32, window=1, sections=4)
    always = [lora_clip("diagonally", 1.0, seed, world) for seed in range(8)]
    assert all(set(clip.motions) <= {"left", "right", "up", "down", "diagonally"} for clip in always)
    assert sum("diagonally" in clip.motions for clip in always) >= 4
    own = render_clip(3, world)
    opened = text_start_clip(1.0, 3, world)
    assert (opened.frames[0] == 0).all() and np.array_equal(opened.frames[1:], own.frames[1:])
    mixed = [text_start_clip(0.5, seed, world) for seed in range(16)]
    empty = [bool((clip.frames[0] == 0).all()) for clip in mixed]
    assert 0 < sum(empty) < 16
    assert all(np.array_equal(clip.frames, render_clip(seed, world).frames)
               for seed, (clip, opens_empty) in enumerate(zip(mixed, empty)) if not opens_empty)
