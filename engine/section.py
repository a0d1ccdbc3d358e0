"""What a finished section hands to the rest of the system: plain data, no tensors on a device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimelineEntry:
    """The prompt that made one section, in playback order, and during a transition the blend of
    prompts (prompt -> weight) that conditioned it."""

    section: int
    prompt: str
    blend: dict[str, float] | None = None


@dataclass
class Section:
    """Frames that became final when a section was decoded, in playback order.

    `frames` is uint8 `[T, H, W, 3]`. The decoder blends each section's first frames with the
    previous section's last ones, so the last `overlap_frames` of the video are held back until
    the next section (or `SectionGenerator.flush`) makes them final: that is why the first
    section of a forward video carries few frames and why `flush` exists.
    """

    index: int
    prompt: str
    first_frame: int
    frames: np.ndarray
    fps: int

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])
