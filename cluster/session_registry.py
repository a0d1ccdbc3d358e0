"""The `SessionRegistry` deployment: creates sessions under the caps, counts them, frees idle ones.

One replica, because the caps must be counted in one place (two Ingress replicas admitting at
once must not both take the last slot). It holds no session's state, only the list of session
actors, and that list is rebuilt from the actors' names when Serve restarts the replica: the
sessions themselves live on in their `SessionHost` actors whatever happens to it. Deleting or
redeploying the application ends its sessions (`__del__`).
"""

from __future__ import annotations

import asyncio
import secrets

import ray
from PIL import Image
from ray import serve
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from framepack_live.engine.errors import InputError
from framepack_live.stream.admission import check_room, generation_settings
from framepack_live.stream.protocol import Start
from framepack_live.stream.session import token_hash
from framepack_live.stream.settings import StreamSettings

from .backend import Stages
from .logs import log
from .metrics import RegistryMetrics
from .session_host import NAMESPACE, SessionHost, SessionRequest, SessionStatus, session_actor_name



@serve.deployment(name="SessionRegistry", num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
class SessionRegistry:
    async def __init__(self, encoder, denoiser, decoder, stream: StreamSettings) -> None:
        self._stages = Stages(encoder, denoiser, decoder)
        self._stream = stream
        self._app = serve.get_replica_context().app_name
        self._sessions: dict[str, ray.actor.ActorHandle] = self._adopt()
        self._admitting = asyncio.Lock()
        self._metrics = RegistryMetrics()
        self._reaper = asyncio.create_task(self._reap_forever())

    def _adopt(self) -> dict[str, ray.actor.ActorHandle]:
        """The session actors of this application that already exist (after a restart)."""
        prefix = session_actor_name(self._app, "")
        sessions = {}
        for entry in ray.util.list_named_actors(all_namespaces=True):
            name = entry["name"]
            if entry["namespace"] == NAMESPACE and name.startswith(prefix):
                try:
                    sessions[name[len(prefix) :]] = ray.get_actor(name, namespace=NAMESPACE)
                except ValueError:  # gone between listing and lookup
                    continue
        if sessions:
            log.info("adopted %d running sessions", len(sessions))
        return sessions

    async def create(self, client: str, start: Start, image: Image.Image | None) -> tuple[str, str]:
        """A new, started session for `client`: its id and its secret token."""
        async with self._admitting:
            statuses = await self._statuses()
            try:
                check_room(self._stream, (s.client for s in statuses.values() if s.active), client)
            except InputError:
                self._metrics.rejected.inc()
                raise
            session_id, token = secrets.token_hex(8), secrets.token_urlsafe(32)
            request = SessionRequest(
                session_id=session_id,
                token_digest=token_hash(token),
                client=client,
                settings=generation_settings(self._stream, start),
                prompt=start.prompt,
                image=image,
                media=start.media,
            )
            actor = SessionHost.options(
                name=session_actor_name(self._app, session_id),
                namespace=NAMESPACE,
                lifetime="detached",
                # Beside the registry (the head node in the shipped configs), away from the GPU
                # nodes that come and go; its frames are on this node's disk.
                scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True),
            ).remote(request, self._stream, self._stages)
            await actor.begin.remote()
            self._sessions[session_id] = actor
        log.info("session created", extra={"session_id": session_id, "client": client})
        return session_id, token

    async def active_count(self) -> int:
        return sum(status.active for status in (await self._statuses()).values())

    async def _statuses(self) -> dict[str, SessionStatus]:
        """Every live session's status; sessions whose actor is gone are forgotten."""
        ids = list(self._sessions)
        answers = await asyncio.gather(*(self._sessions[i].status.remote() for i in ids), return_exceptions=True)
        statuses = {}
        for session_id, answer in zip(ids, answers):
            if isinstance(answer, RayActorError):
                log.warning("session %s is gone", session_id, extra={"session_id": session_id})
                self._sessions.pop(session_id, None)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                statuses[session_id] = answer
        self._metrics.active_sessions.set(sum(status.active for status in statuses.values()))
        return statuses

    async def reap(self) -> None:
        """Free the sessions nobody has watched for the idle timeout; one that fails to close is
        still freed, and the others are still reaped."""
        for session_id, status in (await self._statuses()).items():
            if status.idle_s is not None and status.idle_s > self._stream.idle_timeout_s:
                log.info("freeing session %s, idle for %.0f s", session_id, status.idle_s)
                actor = self._sessions.pop(session_id)
                try:
                    await actor.close.remote()
                except Exception:
                    log.exception("closing idle session %s failed", session_id)
                ray.kill(actor)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(min(self._stream.idle_timeout_s / 4, 10.0))
            try:
                await self.reap()
            except Exception:
                log.exception("reaping sessions failed; trying again")

    def __del__(self) -> None:
        """Serve calls this when it shuts the replica down on purpose (not when it died): the
        application is going, and its sessions with their files."""
        actors = list(self._sessions.values())
        try:
            ray.get([actor.close.remote() for actor in actors], timeout=30)
        except Exception:
            log.exception("closing the sessions at shutdown failed")
        for actor in actors:
            ray.kill(actor)
