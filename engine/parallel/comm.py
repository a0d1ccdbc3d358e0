"""The two collectives Ulysses needs, with a count of the bytes each rank sends.

Kept apart from the attention code so the traffic is measured where it happens: the benchmark
reports these counts beside the analytical volume instead of trusting a formula alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

# `all_gather_single` is the current name; torch releases before it only have the older one.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


@dataclass
class Collectives:
    """All-to-all and all-gather over one process group (the sequence-parallel group).

    `bytes_sent` grows by what this rank puts on the wire: for an all-to-all the (N-1)/N of
    its input that goes to other ranks, for an all-gather its input once for each other rank.
    With a group of one, nothing is sent and the tensors pass through untouched.
    """

    group: dist.ProcessGroup | None = None
    bytes_sent: int = 0
    size: int = field(init=False)
    rank: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = dist.get_world_size(self.group)
        self.rank = dist.get_rank(self.group)

    def all_to_all(self, x: torch.Tensor) -> torch.Tensor:
        """Send `x[j]` to rank j; return a tensor whose `[j]` came from rank j. Dim 0 must be the group size."""
        if x.shape[0] != self.size:
            raise ValueError(f"all_to_all needs dim 0 == group size {self.size}, got shape {tuple(x.shape)}")
        if self.size == 1:
            return x
        x = x.contiguous()
        out = torch.empty_like(x)
        dist.all_to_all_single(out, x, group=self.group)
        self.bytes_sent += x.numel() * x.element_size() * (self.size - 1) // self.size
        return out

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """Return a tensor of shape `[N, *x.shape]` whose `[j]` is rank j's `x`."""
        if self.size == 1:
            return x.unsqueeze(0)
        x = x.contiguous()
        out = x.new_empty((self.size * x.shape[0], *x.shape[1:]))  # gloo takes only the concatenated form
        _all_gather_single(out, x, group=self.group)
        self.bytes_sent += x.numel() * x.element_size() * (self.size - 1)
        return out.unflatten(0, (self.size, -1))
