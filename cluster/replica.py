"""What every model-holding replica does first: pin torch's thread count, then load the model.

Thread count before anything else: torch sizes its pool on first use, and replicas sharing a host
(or the 2 cores of a test machine) each grabbing every core would slow all of them down.
"""

from __future__ import annotations

import logging

import torch

from framepack_live.engine.model import FramePackModel

from .config import ClusterConfig

#: Serve configures this logger in every replica (JSON with `logging_config.encoding: JSON`);
#: `extra={"session_id": ...}` fields come out as keys of the log record.
log = logging.getLogger("ray.serve")


def load_model(config: ClusterConfig, parts: tuple[str, ...]) -> FramePackModel:
    """Load only the components this stage runs (`FramePackModel.PARTS` keys), so an Encoder or
    Decoder replica does not hold the 13 B transformer."""
    torch.set_num_threads(config.torch_threads)
    return FramePackModel.load(config.model, device=config.device, parts=parts, cache=config.cache,
                               compile=config.compile)
