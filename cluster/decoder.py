"""The `Decoder` deployment: the VAE, one section at a time, cross-faded with the previous one."""

from __future__ import annotations

from ray import serve

from framepack_live.engine.decoding import Decoded, DecodePlan, decode_section

from .config import ClusterConfig
from .replica import load_model


@serve.deployment(name="Decoder", max_ongoing_requests=4)
class Decoder:
    """Stateless: the engine's `DecodePlan` carries the frames to blend with, the result the new ones."""

    def __init__(self, config: ClusterConfig) -> None:
        self.model = load_model(config, ("vae",))

    def decode(self, plan: DecodePlan) -> Decoded:
        return decode_section(self.model, plan)
