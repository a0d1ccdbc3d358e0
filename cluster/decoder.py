"""The `Decoder` deployment: the VAE, one section at a time, cross-faded with the previous one."""

from __future__ import annotations

import asyncio

from ray import serve

from framepack_live.engine.decoding import Decoded, DecodePlan, decode_section

from .config import ClusterConfig
from .logs import log
from .replica import ModelThread, load_model


@serve.deployment(name="Decoder", max_ongoing_requests=4)
class Decoder:
    """Stateless: the engine's `DecodePlan` carries what to decode, the result the new frames.
    Decodes run one at a time on the replica's `ModelThread`; more decodes at once come from
    more replicas (the autoscaler), each with its own VAE."""

    def __init__(self, config: ClusterConfig) -> None:
        self.model = load_model(config, ("vae",))
        self._model_thread = ModelThread("decode")

    async def decode(self, plan: DecodePlan) -> Decoded:
        """Cancelled (a steer made the section unwanted): the decode stops part-way."""
        try:
            return await self._model_thread.cancellable(decode_section, self.model, plan)
        except asyncio.CancelledError:
            log.info("dropped a decode its session gave up")
            raise
