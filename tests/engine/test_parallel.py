"""Sequence parallelism must reproduce the plain transformer: same inputs, same output, on every rank.

The model is a tiny random-init FramePack transformer with packed history (1x/2x/4x) and image
conditioning, fed inputs shaped like diffusers' FramePack pipeline. Its packed sequence is 53
video tokens, which neither 2 nor 4 divides, so the padding path is always exercised.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
from diffusers import HunyuanVideoFramepackTransformer3DModel
from framepack_live.bench.sp import analytical_bytes
from framepack_live.engine.parallel import (
    check_degree,
    enable_sequence_parallel,
    run_parallel,
    shard_weights,
    valid_degrees,
)
from framepack_live.engine.parallel.sharding import SequenceShard
from framepack_live.engine.tiny import framepack_transformer

TOLERANCE = 1e-4
HEADS = 4
HEIGHT = WIDTH = 6  # latent pixels: 3x3 tokens a frame after 2x2 patches
WINDOW = 3
HISTORY_SIZES = (1, 2, 16)  # 1x, 2x, 4x history frames, as in the pipeline's forward order
PACKED_TOKENS = 53  # window 27 + clean (start + 1x) 18 + 2x 4 + 4x 4


def tiny_transformer(heads: int = HEADS) -> HunyuanVideoFramepackTransformer3DModel:
    return framepack_transformer(heads=heads)


def framepack_inputs(text_lengths: list[int], text_tokens: int = 12, seed: int = 1) -> dict:
    """Keyword arguments for one transformer call, indices laid out as the pipeline's forward order."""
    g = torch.Generator().manual_seed(seed)
    batch = len(text_lengths)
    one, two, four = HISTORY_SIZES
    indices = torch.arange(1 + four + two + one + WINDOW)
    prefix, idx_4x, idx_2x, idx_1x, idx_latents = indices.split([1, four, two, one, WINDOW])
    mask = torch.zeros(batch, text_tokens, dtype=torch.long)
    for i, n in enumerate(text_lengths):
        mask[i, :n] = 1

    def noise(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    return {
        "hidden_states": noise(batch, 16, WINDOW, HEIGHT, WIDTH),
        "timestep": torch.full((batch,), 700.0),
        "encoder_hidden_states": noise(batch, text_tokens, 32),
        "encoder_attention_mask": mask,
        "pooled_projections": noise(batch, 32),
        "image_embeds": noise(batch, 5, 32),
        "indices_latents": idx_latents,
        "guidance": torch.full((batch,), 10_000.0),
        "latents_clean": noise(batch, 16, 1 + one, HEIGHT, WIDTH),
        "indices_latents_clean": torch.cat([prefix, idx_1x]),
        "latents_history_2x": noise(batch, 16, two, HEIGHT, WIDTH),
        "indices_latents_history_2x": idx_2x,
        "latents_history_4x": noise(batch, 16, four, HEIGHT, WIDTH),
        "indices_latents_history_4x": idx_4x,
        "return_dict": False,
    }


CASES = {
    "batch1": framepack_inputs([9]),  # text truncated to its mask, no attention mask
    "batch2_masked": framepack_inputs([12, 5], seed=2),  # [B, 1, 1, N] attention mask path
}
#: Image tokens (5) plus text tokens: truncated to the mask with batch 1, all of them with a mask.
CONDITION_TOKENS = {"batch1": 5 + 9, "batch2_masked": 5 + 12}


def plain_outputs() -> dict[str, torch.Tensor]:
    model = tiny_transformer()
    with torch.no_grad():
        return {name: model(**kwargs)[0] for name, kwargs in CASES.items()}


def sequence_parallel_outputs(cases: dict[str, dict]) -> list[dict[str, tuple[torch.Tensor, int]]]:
    """Runs on every rank; returns every rank's (output, bytes sent) per case, to check all agree."""
    model = tiny_transformer()
    sp = enable_sequence_parallel(model)
    outputs = {}
    with torch.no_grad():
        for name, kwargs in cases.items():
            before = sp.bytes_sent
            outputs[name] = (model(**kwargs)[0], sp.bytes_sent - before)
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, outputs)
    return everyone


def build_with_degree() -> None:
    enable_sequence_parallel(tiny_transformer())


def test_packed_sequence_does_not_divide_evenly() -> None:
    model = tiny_transformer()
    kwargs = CASES["batch1"]
    seen = []
    hook = model.transformer_blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    with torch.no_grad():
        model(**kwargs)
    hook.remove()
    assert seen == [PACKED_TOKENS]
    assert PACKED_TOKENS % 2 and PACKED_TOKENS % 4


@pytest.mark.parametrize(
    ("length", "degree", "valid"), [(53, 4, [14, 14, 14, 11]), (5, 4, [2, 2, 1, 0]), (6, 2, [3, 3])]
)
def test_shards_cover_the_sequence_once(length: int, degree: int, valid: list[int]) -> None:
    x = torch.arange(length).view(1, length, 1)
    shards = [SequenceShard(length, degree, rank) for rank in range(degree)]
    assert shards[0].valid == valid
    chunks = [shard.local(x, dim=1) for shard in shards]
    assert all(c.shape[1] == shards[0].chunk for c in chunks)
    assert torch.equal(shards[0].trim(torch.cat(chunks, dim=1), dim=1), x)


def test_valid_degrees_and_error_message() -> None:
    assert valid_degrees(24) == [1, 2, 3, 4, 6, 8, 12, 24]
    check_degree(24, 8)
    message = "degree 5 does not divide the model's 24 attention heads; valid degrees: 1, 2, 3, 4, 6, 8, 12, 24"
    with pytest.raises(ValueError, match=message):
        check_degree(24, 5)


@pytest.fixture
def single_rank_group():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_degree_one_is_the_plain_model(single_rank_group) -> None:
    """N=1 runs the parallel code path without communication; the output stays the plain model's."""
    expected = plain_outputs()
    model = tiny_transformer()
    sp = enable_sequence_parallel(model)
    with torch.no_grad():
        for name, kwargs in CASES.items():
            torch.testing.assert_close(model(**kwargs)[0], expected[name], rtol=0, atol=TOLERANCE)
    assert sp.degree == 1 and sp.bytes_sent == 0
    with pytest.raises(RuntimeError, match="already enabled"):
        enable_sequence_parallel(model)


@pytest.mark.heavy
@pytest.mark.parametrize("n", [2, 4])
def test_matches_plain_model(n: int) -> None:
    expected = plain_outputs()
    per_rank = run_parallel(n, sequence_parallel_outputs, CASES)
    assert len(per_rank) == n
    for rank, outputs in enumerate(per_rank):
        for name, (out, sent) in outputs.items():
            diff = (out - expected[name]).abs().max().item()
            assert diff <= TOLERANCE, f"N={n} rank {rank} {name}: max abs diff {diff}"
            batch = out.shape[0]
            assert sent == analytical_bytes(PACKED_TOKENS, CONDITION_TOKENS[name], HEADS * 16, 2, n, batch=batch)


@pytest.mark.heavy
def test_bad_degree_fails_every_rank_with_the_valid_degrees() -> None:
    with pytest.raises(torch.multiprocessing.ProcessRaisedException, match="valid degrees: 1, 2, 4"):
        run_parallel(3, build_with_degree)


def _block_values(model) -> int:
    return sum(p.numel() for b in [*model.transformer_blocks, *model.single_transformer_blocks] for p in b.parameters())


def sharded_outputs(cases: dict[str, dict]) -> tuple:
    """Sequence parallel with the block weights sharded: outputs, block values held between
    forwards, bytes kept and bytes gathered by this rank."""
    model = tiny_transformer()
    enable_sequence_parallel(model)
    weights = shard_weights(model)
    with torch.no_grad():
        outputs = {name: model(**kwargs)[0] for name, kwargs in cases.items()}
    return outputs, _block_values(model), weights.local_bytes, weights.bytes_received


@pytest.mark.heavy
def test_sharded_weights_match_plain_model() -> None:
    expected = plain_outputs()
    model = tiny_transformer()
    blocks = [*model.transformer_blocks, *model.single_transformer_blocks]
    halves = sum(-(-sum(p.numel() for p in b.parameters()) // 2) for b in blocks)
    outputs, held, local, received = run_parallel(2, sharded_outputs, CASES)
    for name, out in outputs.items():
        assert (out - expected[name]).abs().max().item() <= TOLERANCE, name
    assert held == 0  # no block keeps whole weights between forwards
    assert local == 4 * halves  # float32, each block's values split in two (rounded up)
    assert received == len(CASES) * local  # each forward gathers the other rank's half once
