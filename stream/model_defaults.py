"""Session defaults from the model: what it was trained for, so a session that names no resolution
or steps gets what the model does best (not the engine's generic 256x256, 25 steps)."""

from __future__ import annotations

from pathlib import Path

from framepack_live.engine.presets import DEFAULT_MODEL, resolve
from framepack_live.engine.settings import GenerationSettings

from .settings import ModelInfo


def model_defaults(model: str | None, overrides: dict | None = None) -> tuple[ModelInfo, GenerationSettings]:
    """What sessions of `model` (a `--model` argument; None: the shipped default) start from: the
    model's trained resolution (its square bucket), steps, window and other defaults of its own,
    then each `overrides` value that is not None (the operator's)."""
    source = resolve(model)
    square = {"width": source.resolution, "height": source.resolution}
    trained = GenerationSettings(**{**square, **source.settings({})})
    name = model or DEFAULT_MODEL
    path = Path(name).expanduser()
    local = path.is_dir()
    info = ModelInfo(name=path.name if local else name, trained=trained, source=str(path.resolve()) if local else name)
    return info, GenerationSettings(**{**square, **source.settings(overrides or {})})
