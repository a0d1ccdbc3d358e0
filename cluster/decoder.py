"""The `Decoder` deployment: the VAE, one section at a time, cross-faded with the previous one."""

from __future__ import annotations

from ray import serve

from framepack_live.engine.decoding import Decoded

from .config import ClusterConfig
from .replica import load_model
from .work import DecodeRequest, decode


@serve.deployment(name="Decoder", max_ongoing_requests=4)
class Decoder:
    """Stateless: the pending frames to blend with travel in the request and come back in the result."""

    def __init__(self, config: ClusterConfig) -> None:
        self.model = load_model(config, ("vae",))

    def decode(self, request: DecodeRequest) -> Decoded:
        return decode(self.model, request)
