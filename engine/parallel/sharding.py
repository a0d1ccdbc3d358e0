"""How one packed token sequence is cut into equal per-rank chunks.

All-to-all needs every rank to hold the same number of tokens, so a sequence of L tokens is
padded at its end to N * ceil(L / N). The padding tokens only ever meet token-wise layers;
they are cut off before attention and before the output, so they cannot change a result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SequenceShard:
    """Rank `rank` of `degree` holds tokens `[rank * chunk, (rank + 1) * chunk)` of the padded sequence."""

    length: int
    degree: int
    rank: int

    @property
    def chunk(self) -> int:
        return -(-self.length // self.degree)

    @property
    def padded(self) -> int:
        return self.chunk * self.degree

    @property
    def valid(self) -> list[int]:
        """Real (unpadded) tokens in each rank's chunk; the padding may reach into more than the last."""
        return [min(max(self.length - j * self.chunk, 0), self.chunk) for j in range(self.degree)]

    def pad(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Zero-pad `x` along `dim` from `length` to `padded` tokens."""
        missing = self.padded - x.shape[dim]
        if missing == 0:
            return x
        widths = [0, 0] * (x.dim() - dim % x.dim() - 1) + [0, missing]
        return F.pad(x, widths)

    def local(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """This rank's chunk of the full-length `x`."""
        return self.pad(x, dim).narrow(dim, self.rank * self.chunk, self.chunk)

    def trim(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Drop the padding of a padded-length `x`."""
        return x.narrow(dim, 0, self.length)
