"""Shared fixtures: the tiny model (built offline into a per-run cache) and small settings."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model():
    from framepack_live.engine.model import FramePackModel

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return FramePackModel.load("tiny", device="cpu")
