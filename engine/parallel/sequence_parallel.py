"""Installs Ulysses sequence parallelism on a `HunyuanVideoFramepackTransformer3DModel`.

The model's forward is left as diffusers wrote it. Two hooks bracket the transformer blocks,
the only part whose cost grows with the square of the token count: before the first block the
packed video tokens (already embedded, history packed, RoPE tables built) are cut into per-rank
chunks; after the last block they are gathered again. Between them every block's attention
runs `UlyssesAttnProcessor`. So `transformer(**kwargs)` keeps its signature and returns the
full output on every rank, and a sampler needs no change.
"""

from __future__ import annotations

import inspect

import torch
import torch.distributed as dist
from diffusers import HunyuanVideoFramepackTransformer3DModel

from .comm import Collectives
from .sharding import SequenceShard
from .ulysses import ForwardLayout, UlyssesAttnProcessor


def valid_degrees(heads: int) -> list[int]:
    """Ulysses degrees a model with `heads` attention heads allows: each rank must get whole heads."""
    return [n for n in range(1, heads + 1) if heads % n == 0]


def check_degree(heads: int, degree: int) -> None:
    """Raise a `ValueError` naming the valid degrees unless `degree` divides `heads`."""
    if degree < 1 or heads % degree:
        valid = ", ".join(map(str, valid_degrees(heads)))
        raise ValueError(
            f"sequence-parallel degree {degree} does not divide the model's {heads} attention heads; "
            f"valid degrees: {valid}"
        )


class SequenceParallel:
    """Sequence parallelism installed on one transformer over one process group.

    Every rank of `group` must hold the same weights and call the transformer with the same
    inputs; each then computes 1/N of the video tokens of every block.
    """

    def __init__(
        self, transformer: HunyuanVideoFramepackTransformer3DModel, group: dist.ProcessGroup | None = None
    ) -> None:
        self.comm = Collectives(group)
        check_degree(transformer.config.num_attention_heads, self.comm.size)
        blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
        if not blocks:
            raise ValueError("the transformer has no blocks to parallelise")
        if any(isinstance(block.attn.processor, UlyssesAttnProcessor) for block in blocks):
            raise RuntimeError("sequence parallelism is already enabled on this transformer")
        self._layout = ForwardLayout()
        for block in blocks:
            backend = getattr(block.attn.processor, "_attention_backend", None)
            block.attn.set_processor(UlyssesAttnProcessor(self.comm, self._layout, backend))
        blocks[0].register_forward_pre_hook(self._scatter, with_kwargs=True)
        blocks[-1].register_forward_hook(self._gather)

    @property
    def degree(self) -> int:
        return self.comm.size

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def bytes_sent(self) -> int:
        """Bytes this rank has sent to others since installation (all-to-all and all-gather payloads)."""
        return self.comm.bytes_sent

    def _scatter(self, block: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Before the first block: keep this rank's chunk of the video tokens and of their RoPE tables."""
        bound = inspect.signature(block.forward).bind(*args, **kwargs)
        names = list(bound.signature.parameters)
        hidden_name, rope_name = names[0], names[4]  # (hidden_states, encoder_hidden_states, temb, mask, rope)
        hidden = bound.arguments[hidden_name]
        shard = SequenceShard(length=hidden.shape[1], degree=self.comm.size, rank=self.comm.rank)
        rope = bound.arguments.get(rope_name)
        self._layout.shard = shard
        self._layout.rope = None if rope is None else tuple(shard.local(table, dim=0) for table in rope)
        bound.arguments[hidden_name] = shard.local(hidden, dim=1)
        return bound.args, bound.kwargs

    def _gather(self, block: torch.nn.Module, args: tuple, output: tuple[torch.Tensor, torch.Tensor]) -> tuple:
        """After the last block: every rank gets the whole video sequence back."""
        hidden, context = output
        shard = self._layout.shard
        self._layout.shard = self._layout.rope = None
        full = self.comm.all_gather(hidden).movedim(0, 1).flatten(1, 2)  # [B, N * chunk, C]
        return shard.trim(full, dim=1), context


def enable_sequence_parallel(
    transformer: HunyuanVideoFramepackTransformer3DModel, group: dist.ProcessGroup | None = None
) -> SequenceParallel:
    """Make `transformer` run sequence-parallel over `group` (default: the whole world); returns the handle.

    Call it on every rank after `torch.distributed` is initialised (see `launch.run_parallel`).
    Raises `ValueError` naming the valid degrees if the group size does not divide the heads.
    """
    return SequenceParallel(transformer, group)
