"""Transformer block weights sharded over the sequence-parallel group, gathered one block at a time.

With Ulysses every rank needs every block's weights, but only while that block runs. So each rank
keeps 1/N of each block's parameters (one flat shard per block) and a forward pre-hook
all-gathers the block's full weights just before it runs; a forward hook frees them after. Peak
weight memory per rank is then the blocks' total / N, plus the parts outside the blocks (embedders,
token refiner, output projection: kept whole, 3 % of the real model), plus two whole blocks: the
one running and the next, whose all-gather is started as soon as the current block's weights are in,
so on CUDA the transfer overlaps the current block's compute (NCCL runs it on its own stream).

Why not PyTorch's FSDP2 (`fully_shard`), which does the same gather-per-block: FSDP2 keeps its
process group inside the module for the module's life (its `DeviceMesh` registry and each
parameter group's mesh info hold the group object). When one rank's batch fails, the group has to
be torn down and replaced so the others stop waiting in their collectives (see
`cluster/sequence_parallel.py`); with gloo, only destroying the failed rank's group closes its
connections, which FSDP2's references prevent, and FSDP2 has no public way to move a sharded
module to a new group. Here the group is looked up at every call (`group=None` means the current
default group), exactly like the Ulysses collectives, so a replaced group is used at the next
batch without touching the model. Inference needs none of FSDP2's gradient machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from .comm import Collectives


@dataclass
class _BlockShard:
    """One block's parameters as this rank's slice of their concatenation (padded to N equal slices)."""

    block: nn.Module
    params: list[nn.Parameter]
    shapes: list[torch.Size]
    local: torch.Tensor
    numel: int
    #: The gathered whole (flat) while the block is about to run or running, else None.
    full: torch.Tensor | None = None
    pending: dist.Work | None = None
    unsharded_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.unsharded_bytes = self.numel * self.local.element_size()


class ShardedBlockWeights:
    """Shards the weights of `transformer_blocks` and `single_transformer_blocks` over a group.

    Every rank must call it on the same (identical) transformer. The group is resolved at each
    gather (`group=None`: the default group at that moment), so it may be re-created between
    forwards. Bytes gathered are counted in `bytes_received`, for the benchmark and the plan.
    """

    def __init__(
        self, transformer: nn.Module, group: dist.ProcessGroup | None = None, device: torch.device | None = None
    ) -> None:
        self.group = group
        self.device = device
        comm = Collectives(group)
        self.degree, self.rank = comm.size, comm.rank
        blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
        if not blocks:
            raise ValueError("the transformer has no blocks to shard")
        if sharded_weights(transformer) is not None:
            raise RuntimeError("weight sharding is already enabled on this transformer")
        self.shards = [self._shard(block) for block in blocks]
        transformer._framepack_weight_shards = self
        self.bytes_received = 0
        for index, shard in enumerate(self.shards):
            shard.block.register_forward_pre_hook(lambda module, args, i=index: self._before(i))
            shard.block.register_forward_hook(lambda module, args, output, i=index: self._after(i))

    @property
    def local_bytes(self) -> int:
        """Bytes of block weights this rank keeps between forwards."""
        return sum(s.local.numel() * s.local.element_size() for s in self.shards)

    @property
    def largest_block_bytes(self) -> int:
        return max(s.unsharded_bytes for s in self.shards)

    def _shard(self, block: nn.Module) -> _BlockShard:
        params = list(block.parameters())
        dtypes = {p.dtype for p in params}
        if len(dtypes) != 1:
            raise ValueError(f"a block's parameters must share one dtype to be sharded, got {sorted(map(str, dtypes))}")
        shapes = [p.shape for p in params]
        numel = sum(p.numel() for p in params)
        chunk = -(-numel // self.degree)
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in params])
            flat = torch.nn.functional.pad(flat, (0, chunk * self.degree - numel))
            local = flat[self.rank * chunk : (self.rank + 1) * chunk].to(self.device or flat.device, copy=True)
        del flat
        for p in params:  # the whole tensor is released; the hooks give it back per forward
            p.data = local.new_empty(0)
        return _BlockShard(block=block, params=params, shapes=shapes, local=local, numel=numel)

    def _start_gather(self, shard: _BlockShard) -> None:
        if shard.full is not None:
            return
        shard.full = shard.local.new_empty(shard.local.numel() * self.degree)
        if self.degree == 1:
            shard.full.copy_(shard.local)
            return
        shard.pending = dist.all_gather_into_tensor(shard.full, shard.local, group=self.group, async_op=True)
        self.bytes_received += shard.local.numel() * shard.local.element_size() * (self.degree - 1)

    def _before(self, index: int) -> None:
        shard = self.shards[index]
        self._start_gather(shard)
        if shard.pending is not None:
            shard.pending.wait()
            shard.pending = None
        offset = 0
        for p, shape in zip(shard.params, shard.shapes):
            p.data = shard.full[offset : offset + shape.numel()].view(shape)
            offset += shape.numel()
        if index + 1 < len(self.shards):
            self._start_gather(self.shards[index + 1])

    def _after(self, index: int) -> None:
        shard = self.shards[index]
        for p in shard.params:
            p.data = p.data.new_empty(0)
        shard.full = None

    def discard(self) -> None:
        """Drop gathered weights and pending gathers left by a forward that failed part-way."""
        for shard in self.shards:
            for p in shard.params:
                if p.numel():
                    p.data = p.data.new_empty(0)
            shard.full = shard.pending = None


def shard_weights(
    transformer: nn.Module, group: dist.ProcessGroup | None = None, device: torch.device | str | None = None
) -> ShardedBlockWeights:
    """Keep 1/N of the transformer's block weights on this rank (N = the group's size); returns the handle.

    Call it on every rank after `torch.distributed` is initialised, before or after
    `enable_sequence_parallel` (they are independent). `device` is where the kept shards go
    (default: where the weights are): a model too large for its GPU is built on the host,
    sharded onto the GPU, and only then is the rest of it moved there.
    """
    return ShardedBlockWeights(transformer, group, None if device is None else torch.device(device))


def sharded_weights(transformer: nn.Module) -> ShardedBlockWeights | None:
    """The handle of `shard_weights` on this transformer, if it was called."""
    return getattr(transformer, "_framepack_weight_shards", None)
