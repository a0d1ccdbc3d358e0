"""The `Ingress` deployment: the `stream/` FastAPI app over sessions that live in their own actors.

The app is built per replica (`__serve_build_asgi_app__`), after the registry's handle arrives,
because the stream's app factory takes its session directory as an argument. Replicas hold no
session state (`RaySessions`), so there can be several and a client may reach any of them.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from framepack_live.stream.app import create_directory_app
from framepack_live.stream.settings import StreamSettings

from .backend import warm_handles
from .ray_sessions import RaySessions

#: The browser client, served at `/` (present in a checkout and an editable install).
CLIENT_DIR = Path(__file__).resolve().parent.parent / "client"


@serve.deployment(name="Ingress", num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Ingress:
    async def __init__(
        self, registry: DeploymentHandle, queue: DeploymentHandle, encoder: DeploymentHandle, stream: StreamSettings
    ) -> None:
        # Which process answered, in every `session` message: for operators reading logs, and
        # for tests that kill the replica serving a session.
        instance = f"{ray.get_runtime_context().get_actor_name()} pid={os.getpid()}"
        settings = replace(stream, instance=instance)
        self.directory = RaySessions(registry, queue, encoder, settings, serve.get_replica_context().app_name)
        # Beside the replica's start, not before it answers: the first session's admission and
        # prompt would otherwise wait for these handles' routers (about 50 ms on a 2-core machine).
        self._warming = asyncio.create_task(warm_handles((registry, encoder, queue)))

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_directory_app(self.directory, static_dir=CLIENT_DIR if CLIENT_DIR.is_dir() else None)
