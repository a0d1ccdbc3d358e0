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


def load(path: Path, about: dict | None = None) -> dict | None:
    """The saved state, or None when the stage has not started yet.

    `about` says what the stage is built on (world, starting model); a saved state built on
    something else is refused rather than resumed: a run directory reused with other options would
    otherwise carry on from clips or weights of another run without a word.
    """
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if about is not None and state.get("about", about) != about:
        raise ValueError(f"{path} belongs to another run ({state['about']}, not {about}); "
                         "use another --run-dir or delete it")
    return state
