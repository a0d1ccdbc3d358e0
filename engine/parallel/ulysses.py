"""Ulysses attention for HunyuanVideo's dual- and single-stream blocks.

Each rank holds a chunk of the packed video tokens and all of the conditioning tokens (image
and text). Attention must see every video token, so before it the video q/k/v are exchanged
all-to-all: a rank gives up all but 1/N of the heads and receives the whole sequence for the
heads it keeps. The conditioning tokens are already whole on every rank, so a rank projects
only its own heads of them and no communication is needed on the way in. After attention the
video output goes back all-to-all (sequence chunk, all heads) and the conditioning output,
which every rank must keep identical, is all-gathered over heads.

Because the padded tokens are dropped before attention, the sequence a rank attends over is
exactly the unpadded [video; conditioning] of the plain model, so the model's own attention
mask (batch > 1) applies unchanged and batch 1 needs none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import apply_rotary_emb

from .comm import Collectives
from .sharding import SequenceShard


@dataclass
class ForwardLayout:
    """What the processors of one forward share: set when the tokens are scattered, cleared after the gather."""

    shard: SequenceShard | None = None
    #: This rank's chunk of the (cos, sin) RoPE tables of the video tokens.
    rope: tuple[torch.Tensor, torch.Tensor] | None = None


class UlyssesAttnProcessor:
    """Replaces `HunyuanVideoAttnProcessor2_0` on a transformer whose video tokens are sharded.

    The attention op itself still goes through diffusers' `dispatch_attention_fn`, so a backend
    chosen with `set_attention_backend` (flash, cuDNN, ...) keeps working.
    """

    def __init__(
        self, comm: Collectives, layout: ForwardLayout, attention_backend: AttentionBackendName | None = None
    ) -> None:
        self.comm = comm
        self.layout = layout
        self._attention_backend = attention_backend

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shard = self.layout.shard
        if shard is None:
            raise RuntimeError("UlyssesAttnProcessor called outside a sequence-parallel forward")
        heads = attn.heads
        local_heads = heads // self.comm.size
        mine = slice(self.comm.rank * local_heads, (self.comm.rank + 1) * local_heads)
        dual_stream = attn.add_q_proj is not None

        # Video tokens: local chunk, all heads; RoPE is per token, so the chunk's table slice suffices.
        q, k, v = (proj(hidden_states).unflatten(2, (heads, -1)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if image_rotary_emb is not None:
            q = apply_rotary_emb(q, self.layout.rope, sequence_dim=1)
            k = apply_rotary_emb(k, self.layout.rope, sequence_dim=1)

        # Conditioning tokens: whole on every rank, projected for this rank's heads only.
        if dual_stream:
            projs, norms = (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj), (attn.norm_added_q, attn.norm_added_k)
        else:
            projs, norms = (attn.to_q, attn.to_k, attn.to_v), (attn.norm_q, attn.norm_k)
        cq, ck, cv = (_project_heads(proj, encoder_hidden_states, heads, mine) for proj in projs)
        if norms[0] is not None:
            cq = norms[0](cq)
        if norms[1] is not None:
            ck = norms[1](ck)

        query, key, value = self._sequence_to_heads((q, k, v), (cq, ck, cv), shard)
        out = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=0.0,
            is_causal=False,
            backend=self._attention_backend,
        ).to(query.dtype)

        video = self._heads_to_sequence(out[:, : shard.length], shard).flatten(2, 3)
        context = self.comm.all_gather(out[:, shard.length :]).movedim(0, 2).flatten(2, 4)
        if attn.to_out is not None:
            video = attn.to_out[1](attn.to_out[0](video))
        if attn.to_add_out is not None:
            context = attn.to_add_out(context)
        return video, context

    def _sequence_to_heads(
        self, video: tuple[torch.Tensor, ...], conditioning: tuple[torch.Tensor, ...], shard: SequenceShard
    ) -> list[torch.Tensor]:
        """Video [B, chunk, H, D] (this rank's tokens, all heads) and conditioning [B, E, H/N, D]
        -> [B, length + E, H/N, D] each: the whole unpadded sequence for this rank's heads.

        One all-to-all for q, k and v together, and one copy on each side of it.
        """
        n = self.comm.size
        batch, chunk, heads, head_dim = video[0].shape
        send = video[0].new_empty(n, len(video), batch, chunk, heads // n, head_dim)
        for i, x in enumerate(video):
            send[:, i] = x.unflatten(2, (n, -1)).movedim(2, 0)  # [N (head group), B, chunk, H/N, D]
        received = self.comm.all_to_all(send)  # [N (sequence chunk), 3, B, chunk, H/N, D]
        return [
            torch.cat([*(received[j, i, :, :valid] for j, valid in enumerate(shard.valid)), cond], dim=1)
            for i, cond in enumerate(conditioning)
        ]

    def _heads_to_sequence(self, x: torch.Tensor, shard: SequenceShard) -> torch.Tensor:
        """[B, length, H/N, D] -> [B, chunk, H, D]: this rank's chunk, all heads."""
        n, chunk = self.comm.size, shard.chunk
        send = x.new_empty(n, x.shape[0], chunk, *x.shape[2:])
        for j, valid in enumerate(shard.valid):
            send[j, :, :valid] = x[:, j * chunk : j * chunk + valid]
            send[j, :, valid:] = 0
        return self.comm.all_to_all(send).movedim(0, 2).flatten(2, 3)  # [B, chunk, N (head group) * H/N, D]


def _project_heads(linear: torch.nn.Linear, x: torch.Tensor, heads: int, mine: slice) -> torch.Tensor:
    """`linear(x)` for the heads in `mine` only, as [B, S, len(mine), D]: the weight rows are head-major."""
    head_dim = linear.out_features // heads
    rows = slice(mine.start * head_dim, mine.stop * head_dim)
    bias = linear.bias[rows] if linear.bias is not None else None
    return F.linear(x, linear.weight[rows], bias).unflatten(2, (-1, head_dim))
