"""Resumable training state: one file per stage, written atomically so a kill never corrupts it."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save(path: Path, **state) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    torch.save(state, staging)
    os.replace(staging, path)


def load(path: Path) -> dict | None:
    """The saved state, or None when the stage has not started yet."""
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None
