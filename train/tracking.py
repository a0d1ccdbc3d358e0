"""Finding the captioned shape in decoded frames, and scoring motion against a caption.

A colour mask is enough in the toy world: shape colours are far from every background palette, so
the mask's centroid tracks the shape, and its area says whether the shape is still there.
"""

from __future__ import annotations

import numpy as np

from .world import DIRECTIONS, PAN_MOTIONS

#: RGB distance under which a pixel counts as the shape's colour (decoded colours are a bit off).
COLOUR_TOLERANCE = 80.0


def colour_mask(frames: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """[T, H, W, 3] uint8 to a [T, H, W] bool mask of pixels near `rgb`."""
    distance = np.linalg.norm(frames.astype(np.float32) - np.array(rgb, np.float32), axis=-1)
    return distance < COLOUR_TOLERANCE


def centroids(mask: np.ndarray) -> np.ndarray:
    """[T, 2] (x, y) centroid per frame; NaN where the mask is empty."""
    out = np.full((mask.shape[0], 2), np.nan, np.float32)
    for t, frame in enumerate(mask):
        ys, xs = np.nonzero(frame)
        if len(xs):
            out[t] = (xs.mean() + 0.5, ys.mean() + 0.5)
    return out


def displacement(track: np.ndarray, first: int, last: int, span: int = 3) -> np.ndarray:
    """Net (dx, dy) between the mean of the first and of the last `span` frames of [first, last]."""
    head = np.nanmean(track[first : first + span], axis=0)
    tail = np.nanmean(track[last - span + 1 : last + 1], axis=0)
    return tail - head


def follows(delta: np.ndarray, motion: str, min_pixels: float = 3.0) -> bool:
    """Whether a displacement goes the captioned way: the right axis dominates, the right sign, not nil."""
    if motion in PAN_MOTIONS or np.isnan(delta).any():
        return False
    wanted = np.array(DIRECTIONS[motion], np.float32)
    along = float(delta @ wanted)
    across = float(np.abs(delta @ wanted[::-1]))
    return along >= min_pixels and along > across
