"""The `Ingress` deployment: the `stream/` FastAPI app over the Ray-backed `SectionBackend`.

The app is built per replica (`__serve_build_asgi_app__`), after the stage handles arrive, because
the stream's app factory takes its backend as an argument. One replica: sessions live in its
memory, so a re-attaching client must reach the same process.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from framepack_live.stream.app import create_app
from framepack_live.engine.presets import resolve
from framepack_live.engine.settings import GenerationSettings
from framepack_live.stream.settings import Limits, StreamSettings

from .backend import RayBackend
from .config import ClusterConfig
from .metrics import IngressMetrics

#: The browser client, served at `/` (present in a checkout and an editable install).
CLIENT_DIR = Path(__file__).resolve().parent.parent / "client"


@serve.deployment(name="Ingress", num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Ingress:
    def __init__(
        self, encoder: DeploymentHandle, denoiser: DeploymentHandle, decoder: DeploymentHandle, config: ClusterConfig
    ) -> None:
        self.backend = RayBackend(encoder, denoiser, decoder, IngressMetrics())
        self.settings = StreamSettings(
            limits=Limits(
                max_sessions_total=config.max_sessions, max_sessions_per_client=config.max_sessions_per_client
            ),
            # The model's own defaults (a toy model's window, say), then the operator's settings.
            generation=GenerationSettings(**resolve(config.model).settings(config.generation)),
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.backend, self.settings, static_dir=CLIENT_DIR if CLIENT_DIR.is_dir() else None)
