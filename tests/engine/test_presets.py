"""`--model` resolution and loading: presets, pipeline directories, hub ids, partial loads."""

from __future__ import annotations

import shutil

import pytest

from framepack_live.engine.errors import InputError
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.presets import PRESETS, resolve
from framepack_live.engine.tiny import PROJECT_FILE, ensure_tiny


def test_real_presets_keep_their_hub_ids_and_orders():
    assert resolve("framepack-i2v-hy").transformer == "lllyasviel/FramePackI2V_HY"
    assert resolve("framepack-i2v-hy").sampling == "inverted"
    f1 = resolve("framepack-f1")
    assert f1.transformer == "lllyasviel/FramePack_F1_I2V_HY_20250503" and f1.sampling == "forward"
    assert all(p.base == "hunyuanvideo-community/HunyuanVideo" for p in PRESETS.values())
    assert all(p.image_encoder == "lllyasviel/flux_redux_bfl" for p in PRESETS.values())


def test_hub_id_and_errors():
    assert resolve("someone/some-framepack").base == "someone/some-framepack"
    with pytest.raises(InputError, match="unknown model"):
        resolve("not-a-preset")


def test_any_save_pretrained_directory_loads(tmp_path):
    copy = tmp_path / "pipeline"
    shutil.copytree(ensure_tiny(), copy)
    (copy / PROJECT_FILE).unlink()
    model = FramePackModel.load(str(copy), device="cpu")
    assert model.source.sampling == "inverted"  # a plain pipeline directory: the original's order
    assert model.prompt_template["crop_start"] == 95  # HunyuanVideo's template
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="model_index.json"):
        resolve(str(tmp_path / "empty"))


def test_stages_load_only_their_parts():
    decoder = FramePackModel.load("tiny", device="cpu", parts=("vae",))
    assert decoder.pipeline.transformer is None and decoder.pipeline.text_encoder is None
    assert decoder.pipeline.vae is not None
    with pytest.raises(ValueError, match="unknown model parts"):
        FramePackModel.load("tiny", device="cpu", parts=("unet",))


def test_shipped_model_brings_its_generation_defaults(tmp_path):
    import argparse

    from framepack_live.cluster import render

    source = resolve("toyworld")
    assert source.defaults.get("window") == 3 and source.resolution == 128
    parser = argparse.ArgumentParser()
    render.add_arguments(parser)
    plan = render.plan(parser.parse_args(["--model", "toyworld", "--prompt", "x", "--out", str(tmp_path / "x.mp4")]))
    assert plan.job.settings.window == 3 and (plan.job.settings.width, plan.job.settings.height) == (128, 128)
    given = render.plan(
        parser.parse_args(["--model", "toyworld", "--prompt", "x", "--window", "5", "--out", str(tmp_path / "x.mp4")])
    )
    assert given.job.settings.window == 5
