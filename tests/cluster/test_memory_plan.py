"""The memory plan: weights counted from the released configs, working memory by formula checked
against the H200 measurement and against a trace of the real code, and the verdicts of
`framepack-live plan` and `serve --config` on the shipped and on impossible configs."""

from __future__ import annotations

import math
import weakref
from pathlib import Path

import pytest
import torch
import yaml
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from framepack_live.cluster import cli
from framepack_live.cluster.memory import (
    GIB,
    ModelSizes,
    Section,
    component_configs,
    decoder_need,
    denoiser_need,
    encoder_need,
)
from framepack_live.cluster.plan import check_serve_config
from framepack_live.engine.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
#: `bench gpu` on an H200 (docs/benchmarks.md): parameters built from FramePackI2V_HY's config,
#: and the allocator's peak over one 640x640 section step (weights included), bf16, batch 1.
MEASURED_PARAMETERS = 12_874_314_816
MEASURED_PEAK_GIB = 26.1


@pytest.fixture(scope="module")
def sizes() -> ModelSizes:
    return ModelSizes.from_configs(component_configs("framepack-f1"))


def test_weights_are_counted_from_the_configs(sizes):
    assert sizes.transformer == MEASURED_PARAMETERS
    assert sizes.largest_block < sizes.transformer_blocks < sizes.transformer
    assert 7.4e9 < sizes.text_encoder < 7.6e9  # LLaMA-3-8B without its LM head


def test_working_memory_formula_reproduces_the_measured_peak(sizes):
    need = denoiser_need(sizes, Section(640, 640, 9), ranks=1, batch=1, shard_weights=False, value_bytes=2)
    assert Section(640, 640, 9).video_tokens(sizes.patch_size) == 18_400
    allocated = (need.weights + need.working) / GIB  # what the allocator's peak counts
    assert abs(allocated / MEASURED_PEAK_GIB - 1) <= 0.10, allocated


class LiveBytes(TorchDispatchMode):
    """The peak of bytes held by tensors made inside (storages counted once, freed when collected)."""

    def __init__(self, existing) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._sizes: dict[int, int] = {}
        for tensor in existing:
            self._sizes[self._key(tensor.untyped_storage())] = 0

    @staticmethod
    def _key(storage) -> int:
        return storage.data_ptr() or id(storage)  # fake tensors have no data pointer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = self._key(storage)
                if key not in self._sizes and storage.nbytes():
                    self._sizes[key] = storage.nbytes()
                    self.live += storage.nbytes()
                    weakref.finalize(storage, self._free, key)
        self.peak = max(self.peak, self.live)
        return out

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)


def traced_denoiser_peak(size: int) -> int:
    """Working bytes of one forward of the released architecture at reduced width (24 heads of
    16: the formula counts C-wide rows, and RoPE's tables scale with heads the same way), one
    block of each kind, bf16, on this rank (sequence parallel when a group is up)."""
    import torch.distributed as dist

    from framepack_live.bench.gpu import GpuBenchConfig, build_transformer, step_inputs
    from framepack_live.engine.parallel import enable_sequence_parallel

    cfg = GpuBenchConfig("cpu", "bf16", size=size, layers=1, single_layers=1, heads=24, head_dim=16)
    torch.manual_seed(0)
    model = build_transformer(cfg, torch.device("cpu"), torch.bfloat16)
    kwargs = step_inputs(cfg, torch.device("cpu"), torch.bfloat16)
    if dist.is_initialized():
        enable_sequence_parallel(model)
    inputs = [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
    tracker = LiveBytes([*model.parameters(), *model.buffers(), *inputs])
    with torch.no_grad(), tracker:
        model(**kwargs, return_dict=False)
    return tracker.peak


@pytest.mark.heavy
@pytest.mark.parametrize("ranks", [1, 2])
def test_denoiser_formula_follows_a_trace_of_the_code(sizes, ranks):
    from framepack_live.engine.parallel import run_parallel

    size = 256
    peak = run_parallel(ranks, traced_denoiser_peak, size) if ranks > 1 else traced_denoiser_peak(size)
    scaled = ModelSizes(**{**sizes.__dict__, "hidden": 24 * 16})
    predicted = denoiser_need(scaled, Section(size, size, 9), ranks, batch=1, shard_weights=False, value_bytes=2).working
    assert abs(predicted / peak - 1) <= 0.10, (predicted, peak)


def test_vae_formulas_follow_a_trace_of_the_released_vae(sizes):
    """Fake tensors: the real VAE's shapes and allocations at 320x320, no compute, no memory."""
    from diffusers import AutoencoderKLHunyuanVideo

    configs = component_configs("framepack-f1")
    section = Section(320, 320, 9)
    with FakeTensorMode(allow_non_fake_inputs=True):
        torch.set_default_dtype(torch.bfloat16)  # built in bf16: converting fake parameters fails
        try:
            vae = AutoencoderKLHunyuanVideo.from_config(configs.vae)
        finally:
            torch.set_default_dtype(torch.float32)
        latents = torch.randn(1, 16, 2 * section.window, section.latent_height, section.latent_width, dtype=torch.bfloat16)
        image = torch.randn(1, 3, 1, section.height, section.width, dtype=torch.bfloat16)
        decoding = LiveBytes([*vae.parameters(), latents])
        with torch.no_grad(), decoding:
            vae.decode(latents).sample.float()
        encoding = LiveBytes([*vae.parameters(), image])
        with torch.no_grad(), encoding:
            vae.encode(image).latent_dist.mode()
    assert abs(decoder_need(sizes, section, 2).working / decoding.peak - 1) <= 0.10
    assert abs(encoder_need(sizes, section, 2).working / encoding.peak - 1) <= 0.10


def _plan(*args: str, capsys) -> tuple[int, str, str]:
    code = cli.main(["plan", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _cluster_with(tmp_path: Path, instance: str) -> Path:
    cluster = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    cluster["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"] = instance
    path = tmp_path / f"{instance}.yaml"
    path.write_text(yaml.safe_dump(cluster))
    return path


def test_shipped_configs_fit_their_clusters(capsys, tmp_path):
    code, out, _ = _plan("--config", str(ROOT / "config/serve.yaml"), capsys=capsys)
    assert code == 0
    assert "g6e.12xlarge" in out and "NO" not in out
    assert {"Encoder", "Denoiser", "Decoder"} <= {line.split()[0] for line in out.splitlines()[2:5]}
    a10g = _cluster_with(tmp_path, "g5.12xlarge")
    code, out, _ = _plan("--config", str(ROOT / "config/serve-24gb.yaml"), "--cluster", str(a10g), capsys=capsys)
    assert code == 0, out
    assert "shard_weights: each rank keeps 1/4" in out


def test_sequence_parallel_4_on_24gb_cards_without_sharding_is_refused_with_one_line(capsys, tmp_path):
    a10g = _cluster_with(tmp_path, "g5.12xlarge")
    code, out, err = _plan(
        "--config", str(ROOT / "config/serve.yaml"), "--cluster", str(a10g), "--sequence-parallel", "4", capsys=capsys
    )
    assert code == 1
    (line,) = err.strip().splitlines()
    assert "Denoiser needs 27.2 GiB per GPU but gets 22.5 GiB (one A10G of gpu_worker g5.12xlarge)" in line
    assert "with shard_weights: true a rank needs 11.1 GiB" in line
    serve_yaml = str(ROOT / "config/serve.yaml")
    code, _, _ = _plan("--config", serve_yaml, "--gpu-memory", "22.49", "--sequence-parallel", "4", capsys=capsys)
    assert code == 1


def test_serve_refuses_a_config_that_cannot_fit(ray_cluster, tmp_path):
    config = yaml.safe_load((ROOT / "config/serve.yaml").read_text())
    config["applications"][0]["args"]["sequence_parallel"] = 4
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(InputError, match=r"Denoiser needs 27\.2 GiB per GPU but gets 22\.5 GiB") as raised:
        check_serve_config(path, _cluster_with(tmp_path, "g5.12xlarge"))
    assert "\n" not in raised.value.message
    check_serve_config(ROOT / "config/serve.yaml", ROOT / "ray_cluster.yaml")  # the shipped one passes


def test_rounding_of_sharded_weights(sizes):
    need = denoiser_need(sizes, Section(640, 640, 9), ranks=4, batch=1, shard_weights=True, value_bytes=2)
    blocks = math.ceil(sizes.transformer_blocks / 4) + 2 * sizes.largest_block
    assert need.weights == 2 * (sizes.transformer - sizes.transformer_blocks + blocks)
