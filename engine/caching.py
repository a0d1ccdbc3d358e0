"""Step caching on the transformer, through diffusers' own hooks (`CacheMixin.enable_cache`).

Consecutive sampler steps often change a DiT's hidden states little; the caches reuse what an
earlier step computed instead of running every block again:
- `first-block:T` (FirstBlockCache, ParaAttention's): run the first block; when its residual
  changed less than T (relative mean) since the last full step, reuse the other blocks' residual;
- `mag:T` (MagCache): skip the blocks while the accumulated change of the residual's magnitude,
  predicted from per-step ratios measured on this model beforehand (`calibrate_mag_ratios`),
  stays below T (at most 3 steps in a row, never in the first fifth of the steps);
- `taylorseer:N` (TaylorSeer): compute fully every N-th step and predict the attention outputs
  in between from a first-order Taylor expansion over the steps.

The engine's sampler (`engine.sampling`) gives each call its cache context (the prompt's and the
negative prompt's predictions keep separate state, as diffusers' pipelines do) and resets the
state at every section. Whether a cache pays is model- and step-count-dependent: see the table in
docs/benchmarks.md before choosing one.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from dataclasses import dataclass

import torch
from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

KINDS = ("first-block", "mag", "taylorseer")


@dataclass(frozen=True)
class CacheSpec:
    """A cache and its one knob, as written on the command line: `first-block:0.1`, `mag:0.1`,
    `taylorseer:2` (or `none`)."""

    kind: str
    value: float

    @classmethod
    def parse(cls, text: str | None) -> CacheSpec | None:
        if text is None or text == "none":
            return None
        match = re.fullmatch(r"([a-z-]+):([0-9.]+)", text)
        if match is None or match.group(1) not in KINDS:
            raise ValueError(f"unknown step cache {text!r}: use none, " + ", ".join(f"{kind}:VALUE" for kind in KINDS))
        spec = cls(match.group(1), float(match.group(2)))
        if spec.kind == "taylorseer" and (spec.value < 1 or spec.value != int(spec.value)):
            raise ValueError(f"taylorseer's value is the full-computation interval, a whole number >= 1: {text!r}")
        return spec

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"

    def config(self, steps: int, mag_ratios: list[float] | None = None):
        """diffusers' config for a sampler of `steps` steps (MagCache needs the model's ratios)."""
        if self.kind == "first-block":
            return FirstBlockCacheConfig(threshold=self.value)
        if self.kind == "mag":
            if mag_ratios is None:
                raise ValueError("MagCache needs the model's magnitude ratios: calibrate_mag_ratios")
            return MagCacheConfig(threshold=self.value, num_inference_steps=steps, mag_ratios=mag_ratios)
        # Two full steps first: a first-order expansion needs two points.
        return TaylorSeerCacheConfig(cache_interval=int(self.value), disable_cache_before_step=2,
                                     taylor_factors_dtype=torch.float32)


def enable(transformer: torch.nn.Module, spec: CacheSpec | None, steps: int,
           mag_ratios: list[float] | None = None) -> None:
    """Put `spec`'s hooks on `transformer` (replacing any cache it had); `None` removes them."""
    if transformer.is_cache_enabled:
        transformer.disable_cache()
    if spec is not None:
        transformer.enable_cache(spec.config(steps, mag_ratios))


class _Ratios(logging.Handler):
    """Catches the ratios diffusers' MagCache logs at the end of a calibration run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.ratios: list[float] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        match = re.search(r"Calibration Results: \[(.*)\]", record.getMessage())
        if match and self.ratios is None:  # the first branch's: the prompt's, not the negative prompt's
            self.ratios = [float(value) for value in match.group(1).split(",")]


def calibrate_mag_ratios(transformer: torch.nn.Module, steps: int, run) -> list[float]:
    """MagCache's per-step magnitude ratios of this model: `run()` must sample one section of
    `steps` steps (one branch: ratios are measured on the prompt's predictions). diffusers reports
    them only in its log, which this reads."""
    enable(transformer, None, steps)
    transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=steps))
    logger = logging.getLogger("diffusers.hooks.mag_cache")
    handler, level = _Ratios(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # diffusers also prints them; stdout is for JSON
            run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        transformer.disable_cache()
    if handler.ratios is None or len(handler.ratios) != steps:
        raise RuntimeError(f"MagCache calibration gave {handler.ratios}, not {steps} ratios")
    return handler.ratios
