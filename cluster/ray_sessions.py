"""`RaySessions`: the Ingress's `SessionDirectory`, over the registry and the session actors.

An Ingress replica keeps nothing of a session but the handles of the connections it serves: it
asks the registry to create sessions and finds any session by its actor's name, so every replica
can serve every session, and one replica's death loses no session.
"""

from __future__ import annotations

import ray
from PIL import Image
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from framepack_live.engine.errors import InputError
from framepack_live.stream.protocol import Start
from framepack_live.stream.settings import StreamSettings

from .session_host import NAMESPACE, RemoteSession, session_actor_name, unwrap_input_error


class RaySessions:
    def __init__(self, registry: DeploymentHandle, settings: StreamSettings, app: str) -> None:
        self.settings = settings
        self._registry = registry
        self._app = app

    async def create(self, client: str, start: Start, image: Image.Image | None) -> tuple[RemoteSession, str]:
        try:
            session_id, token = await self._registry.create.remote(client, start, image)
        except RayTaskError as exc:
            raise unwrap_input_error(exc) or exc from None
        return await self.find(session_id), token

    async def get(self, session_id: str, token: str) -> RemoteSession:
        session = await self.find(session_id)
        await session.check_token(token)
        return session

    async def find(self, session_id: str) -> RemoteSession:
        try:
            actor = ray.get_actor(session_actor_name(self._app, session_id), namespace=NAMESPACE)
        except ValueError:
            raise InputError("not_found", "no such session (it may have been freed after being idle)") from None
        return RemoteSession(session_id, actor, await actor.settings.remote())

    async def active_count(self) -> int:
        return await self._registry.active_count.remote()

    async def model_status(self) -> dict:
        return await self._registry.model_status.remote()

    async def close(self) -> None:
        """Nothing to stop: the sessions outlive this replica."""
