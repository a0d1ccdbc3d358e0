"""The `Decoder` deployment: the VAE, one section at a time, cross-faded with the previous one."""

from __future__ import annotations

from ray import serve

from framepack_live.engine.decoding import Decoded

from .config import ClusterConfig
from .replica import ModelThread, load_model
from .work import DecodeRequest, decode


@serve.deployment(name="Decoder", max_ongoing_requests=4)
class Decoder:
    """Stateless: the pending frames to blend with travel in the request and come back in the result.
    Decodes run one at a time on the replica's `ModelThread`; more decodes at once come from
    more replicas (the autoscaler), each with its own VAE."""

    def __init__(self, config: ClusterConfig) -> None:
        self.model = load_model(config, ("vae",))
        self._model_thread = ModelThread("decode")

    async def decode(self, request: DecodeRequest) -> Decoded:
        return await self._model_thread.submit(decode, self.model, request)
