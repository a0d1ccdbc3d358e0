"""Finding the captioned shape in decoded frames, and scoring motion against a caption.

A colour mask is enough in the toy world: shape colours are far from every background palette, so
the mask's centroid tracks the shape, and its area says whether the shape is still there. The
colour to look for is calibrated on the decoded start frame (where the ground truth says the shape
is), because a small VAE renders colours somewhat off; what the tracker then tests is whether the
shape keeps that colour and where it goes.
"""

from __future__ import annotations

import warnings

import numpy as np

from .world import DIRECTIONS, OBJECT_MOTIONS, PAN_MOTIONS

#: RGB distance under which a pixel counts as the shape's colour (decoded colours are a bit off).
COLOUR_TOLERANCE = 80.0


def colour_mask(frames: np.ndarray, rgb, tolerance: float = COLOUR_TOLERANCE) -> np.ndarray:
    """[T, H, W, 3] uint8 to a [T, H, W] bool mask of pixels within `tolerance` of `rgb`."""
    distance = np.linalg.norm(frames.astype(np.float32) - np.asarray(rgb, np.float32), axis=-1)
    return distance < tolerance


def calibrate(frame: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, float]:
    """The shape's colour as rendered in `frame` (mean inside the true mask `truth`) and a tolerance:
    half the distance to the nearest background colour (its 1st percentile), at most COLOUR_TOLERANCE."""
    pixels = frame.astype(np.float32)
    rgb = pixels[truth].mean(axis=0)
    background = np.linalg.norm(pixels[~truth] - rgb, axis=-1)
    return rgb, float(min(COLOUR_TOLERANCE, 0.5 * np.percentile(background, 1)))


def centroids(mask: np.ndarray) -> np.ndarray:
    """[T, 2] (x, y) centroid per frame; NaN where the mask is empty."""
    out = np.full((mask.shape[0], 2), np.nan, np.float32)
    for t, frame in enumerate(mask):
        ys, xs = np.nonzero(frame)
        if len(xs):
            out[t] = (xs.mean() + 0.5, ys.mean() + 0.5)
    return out


def displacement(track: np.ndarray, first: int, last: int, span: int = 3) -> np.ndarray:
    """Net (dx, dy) between the mean of the first and of the last `span` frames of [first, last];
    NaN where the shape is lost in either, which `follows` scores as not following (so numpy's
    empty-slice warning is expected here, not a fault)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        head = np.nanmean(track[first : first + span], axis=0)
        tail = np.nanmean(track[last - span + 1 : last + 1], axis=0)
    return tail - head


def follows(delta: np.ndarray, motion: str, min_pixels: float = 3.0) -> bool:
    """Whether a displacement goes the captioned way, by at least `min_pixels`: for the world's own
    four motions the right axis dominates with the right sign (the nearest of four directions); for
    a diagonal the displacement must be nearer to it than to any of the eight compass directions
    (within 22.5 degrees), or a plain "right" would count as up-and-right."""
    if motion in PAN_MOTIONS or np.isnan(delta).any():
        return False
    wanted = np.array(DIRECTIONS[motion], np.float32)
    along = float(delta @ wanted)
    across = float(np.abs(delta @ np.array([-wanted[1], wanted[0]])))
    tolerance = 1.0 if motion in OBJECT_MOTIONS else np.tan(np.pi / 8)
    return along >= min_pixels and across < tolerance * along
