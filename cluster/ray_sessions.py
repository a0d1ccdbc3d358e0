"""`RaySessions`: the Ingress's `SessionDirectory`, over the registry and the session actors
(and `RayJobs`, its render queue over the `RenderQueue` deployment).

An Ingress replica keeps nothing of a session but the handles of the connections it serves: it
asks the registry to create sessions and finds any session by its actor's name, so every replica
can serve every session, and one replica's death loses no session.
"""

from __future__ import annotations

import asyncio

import ray
from PIL import Image
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from framepack_live.engine.errors import InputError
from framepack_live.stream.continued import ContinuedVideo
from framepack_live.stream.protocol import JobRequest, Start
from framepack_live.stream.settings import StreamSettings

from .session_host import NAMESPACE, RemoteSession, session_actor_name, unwrap_input_error


class RayJobs:
    """The Ingress's `JobDirectory`: calls to the `RenderQueue` deployment, its errors unwrapped."""

    def __init__(self, queue: DeploymentHandle) -> None:
        self._queue = queue

    def start(self) -> None:
        """Nothing to start: the `RenderQueue` replica runs its jobs itself."""

    async def _call(self, method: str, *args):
        try:
            return await getattr(self._queue, method).remote(*args)
        except RayTaskError as exc:
            raise unwrap_input_error(exc) or exc from None

    async def submit(self, client: str, request: JobRequest) -> tuple[dict, str]:
        return await self._call("submit", client, request)

    async def status(self, job_id: str, token: str) -> dict:
        return await self._call("status", job_id, token)

    async def cancel(self, job_id: str, token: str) -> dict:
        return await self._call("cancel", job_id, token)

    async def result_size(self, job_id: str) -> int:
        return await self._call("result_size", job_id)

    async def result_chunk(self, job_id: str, offset: int, size: int) -> bytes:
        return await self._call("result_chunk", job_id, offset, size)

    async def close(self) -> None:
        """Nothing to stop: the jobs outlive this replica."""


class RaySessions:
    def __init__(
        self, registry: DeploymentHandle, queue: DeploymentHandle, encoder: DeploymentHandle, settings: StreamSettings,
        app: str,
    ) -> None:
        self.settings = settings
        self._registry = registry
        self._encoder = encoder
        #: Prompts asked of the Encoder ahead of their sessions (`create`).
        self._asking: set[asyncio.Future] = set()
        self._app = app
        self.jobs = RayJobs(queue)

    async def create(
        self, client: str, start: Start, image: Image.Image | None, video: ContinuedVideo | None = None
    ) -> tuple[RemoteSession, str]:
        # The session's first call asks the Encoder for its prompt; asked now, beside the
        # admission, a new prompt is encoded (about 50 ms for the toy model on a CPU) while the
        # session starts, and the session's call shares that encode. Its answer is the session's
        # business (a refused prompt is reported there).
        asking = asyncio.ensure_future(self._encoder.encode_prompt.remote(start.prompt))
        self._asking.add(asking)  # held until done: the loop keeps only weak references to tasks
        asking.add_done_callback(self._asked)
        try:
            session_id, token = await self._registry.create.remote(client, start, image, video)
        except RayTaskError as exc:
            raise unwrap_input_error(exc) or exc from None
        return await self.find(session_id), token

    def _asked(self, asking: asyncio.Future) -> None:
        self._asking.discard(asking)
        if not asking.cancelled():
            asking.exception()  # retrieved: the session reports a refused prompt, not this log

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
