"""FramePack's packed history: which latent frames the transformer sees, at which compression.

The transformer always gets the same token budget whatever the video's length: the start image
and the newest history frame at full detail (1x, together the "clean" latents), the next two at
2x and the next sixteen at 4x compression. The frame indices feed the RoPE, so the model knows
where in time each packed frame sits relative to the frames it generates.

Layouts match the released checkpoints (and diffusers' pipeline):
- forward (F1): [start | 16 x 4x | 2 x 2x | 1 x 1x | window to generate], history is the past;
- inverted anti-drifting: [start | padding | window to generate | 1 x 1x | 2 x 2x | 16 x 4x],
  history is the *future* (already generated, since sampling runs from the end back to the start)
  and the padding spaces the window from the start frame by the sections still to come.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

#: Latent frames of history at 1x, 2x and 4x compression.
HISTORY_1X, HISTORY_2X, HISTORY_4X = 1, 2, 16
HISTORY_FRAMES = HISTORY_1X + HISTORY_2X + HISTORY_4X


@dataclass
class PackedContext:
    """The transformer's history inputs for one section (batch dimension included)."""

    latents_clean: torch.Tensor
    indices_clean: torch.Tensor
    latents_2x: torch.Tensor
    indices_2x: torch.Tensor
    latents_4x: torch.Tensor
    indices_4x: torch.Tensor
    indices_latents: torch.Tensor

    @classmethod
    def assemble(
        cls,
        start: torch.Tensor,
        start_index: torch.Tensor,
        history: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        history_indices: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        indices_latents: torch.Tensor,
    ) -> PackedContext:
        """From the 1x/2x/4x history and their indices; the start frame joins the 1x ("clean") slot."""
        (latents_1x, latents_2x, latents_4x), (idx_1x, idx_2x, idx_4x) = history, history_indices
        return cls(
            latents_clean=torch.cat([start, latents_1x], dim=2),
            indices_clean=torch.cat([start_index, idx_1x]),
            latents_2x=latents_2x,
            indices_2x=idx_2x,
            latents_4x=latents_4x,
            indices_4x=idx_4x,
            indices_latents=indices_latents,
        )

    def to(self, device: torch.device | str) -> PackedContext:
        return PackedContext(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @classmethod
    def cat(cls, contexts: list[PackedContext]) -> PackedContext:
        """Contexts of equal layout on the batch axis: latents stacked, frame indices shared."""
        first = contexts[0]
        return cls(
            **{
                f.name: torch.cat([getattr(c, f.name) for c in contexts]) if f.name.startswith("latents") else getattr(first, f.name)
                for f in fields(cls)
            }
        )

    def model_kwargs(self, dtype: torch.dtype) -> dict:
        return {
            "indices_latents": self.indices_latents,
            "latents_clean": self.latents_clean.to(dtype),
            "indices_latents_clean": self.indices_clean,
            "latents_history_2x": self.latents_2x.to(dtype),
            "indices_latents_history_2x": self.indices_2x,
            "latents_history_4x": self.latents_4x.to(dtype),
            "indices_latents_history_4x": self.indices_4x,
        }


def inverted_paddings(total_sections: int) -> list[int]:
    """Padding (in windows) between the start frame and each section, in generation order.

    The original repeats 2 for long videos instead of counting down: the model was trained with
    paddings up to 3, and a fixed gap keeps long videos in distribution.
    """
    if total_sections > 4:
        return [3] + [2] * (total_sections - 3) + [1, 0]
    return list(reversed(range(total_sections)))


def _fit(frames: torch.Tensor, length: int, keep: str) -> torch.Tensor:
    """The `length` newest frames, zero-filled where the video is still shorter."""
    if keep == "last":
        frames = frames[:, :, -length:]
    else:
        frames = frames[:, :, :length]
    missing = length - frames.shape[2]
    if missing <= 0:
        return frames
    zeros = frames.new_zeros(*frames.shape[:2], missing, *frames.shape[3:])
    return torch.cat([zeros, frames] if keep == "last" else [frames, zeros], dim=2)


def pack_forward(video: torch.Tensor, start: torch.Tensor, window: int) -> PackedContext:
    """Context for the next section of a forward video; `video` is everything so far, start frame first."""
    history = _fit(video, HISTORY_FRAMES, keep="last")
    latents_4x, latents_2x, latents_1x = history.split([HISTORY_4X, HISTORY_2X, HISTORY_1X], dim=2)
    indices = torch.arange(0, 1 + HISTORY_FRAMES + window)
    prefix, idx_4x, idx_2x, idx_1x, idx_latents = indices.split([1, HISTORY_4X, HISTORY_2X, HISTORY_1X, window])
    return PackedContext.assemble(
        start, prefix, (latents_1x, latents_2x, latents_4x), (idx_1x, idx_2x, idx_4x), idx_latents
    )


def pack_inverted(
    future: torch.Tensor,
    start: torch.Tensor,
    window: int,
    step: int,
    total_sections: int,
    end: torch.Tensor | None = None,
) -> PackedContext:
    """Context for generation step `step` of an inverted video.

    `future` holds the latents generated so far (the end of the video, in playback order). An
    optional `end` latent frame pins the last frame of the video at the first step.
    """
    history = _fit(future, HISTORY_FRAMES, keep="first")
    latents_1x, latents_2x, latents_4x = history.split([HISTORY_1X, HISTORY_2X, HISTORY_4X], dim=2)
    if end is not None and step == 0:
        latents_1x = end
    padding = inverted_paddings(total_sections)[step] * window
    indices = torch.arange(0, 1 + padding + window + HISTORY_FRAMES)
    prefix, _, idx_latents, idx_1x, idx_2x, idx_4x = indices.split(
        [1, padding, window, HISTORY_1X, HISTORY_2X, HISTORY_4X]
    )
    return PackedContext.assemble(
        start, prefix, (latents_1x, latents_2x, latents_4x), (idx_1x, idx_2x, idx_4x), idx_latents
    )
