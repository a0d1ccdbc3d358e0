"""The `SessionRegistry` deployment: creates sessions under the caps, counts them, frees idle ones.

One replica, because the caps must be counted in one place (two Ingress replicas admitting at
once must not both take the last slot). It holds no session's state, only the list of session
actors, and that list is rebuilt from the actors' names when Serve restarts the replica: the
sessions themselves live on in their `SessionHost` actors whatever happens to it. Deleting or
redeploying the application ends its sessions (`__del__`).

A new actor's process takes seconds to start and import (it was most of the wait before a
session's first frame), so the registry keeps spare actors started (`ClusterConfig.spare_sessions`),
each named for the id of a session to come, and starts another in the place of each taken as
soon as the session that took it ends (`SPARE_AFTER_S` at the most): a viewer who stops and
starts again mostly pauses in between, when the new process's seconds of CPU slow nothing, and
one who starts again at once still finds a spare. (Replacing a spare only 30 s after it was taken
while another was left let two quick restarts in a row take both and the third wait 4-5 s for a
process.)
A spare left by an earlier replica of the registry has no session: the next count frees it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Awaitable
from contextlib import suppress

import ray
from PIL import Image
from ray import serve
from ray.exceptions import RayActorError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from framepack_live.engine.errors import InputError
from framepack_live.stream.admission import check_room, generation_settings
from framepack_live.stream.continued import ContinuedVideo
from framepack_live.stream.protocol import Start
from framepack_live.stream.session import token_hash
from framepack_live.stream.settings import StreamSettings

from .backend import Stages, warm_up
from .logs import log
from .metrics import RegistryMetrics
from .model_status import REGISTRY, ModelBoard, ReplicaReport
from .session_host import NAMESPACE, SessionHost, SessionRequest, SessionStatus, session_actor_name


#: The longest wait for the end of the session that took a spare before another is started.
SPARE_AFTER_S = 30.0
#: Seconds before another try when a spare died before its session (its node may be going).
SPARE_RETRY_S = 30.0


@serve.deployment(name=REGISTRY, num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
class SessionRegistry:
    async def __init__(self, encoder, denoiser, decoder, stream: StreamSettings, spare_sessions: int = 0) -> None:
        self._stages = Stages(encoder, denoiser, decoder)
        self._stream = stream
        self._app = serve.get_replica_context().app_name
        self._sessions: dict[str, ray.actor.ActorHandle] = self._adopt()
        #: Ids and actors of sessions to come, started ahead (`_make_spare`).
        self._spares: list[tuple[str, ray.actor.ActorHandle]] = []
        self._sparing: set[asyncio.Task] = set()
        spares = [self._start_spare() for _ in range(spare_sessions)]
        #: Done once the stages are warmed up and the first spares started (`model_status`).
        self._warming = asyncio.create_task(self._warm_up(spares))
        self._admitting = asyncio.Lock()
        self._metrics = RegistryMetrics()
        self._reaper = asyncio.create_task(self._reap_forever())
        stages = tuple(stage.deployment_name for stage in self._stages.handles)
        self._model = ModelBoard(stream.model.name if stream.model else "the model", stages)

    async def _warm_up(self, spares: list[asyncio.Task]) -> None:
        """`backend.warm_up` once the stages are up (a handle's call waits for its replicas), then
        warm once the first spares have started too: until then `model_status` says `warming`, so
        `serve` shows no address yet and the page no Start, because a session started meanwhile
        would wait for a stage's first call or a process start (seconds on a small machine)."""
        try:
            await warm_up(self._stages, self._stream.generation)
        except Exception:
            log.exception("warming the stages up failed; the first session pays for their first calls")
        else:
            log.info("stages warmed up")
        await asyncio.gather(*spares, return_exceptions=True)  # a spare that died is tried again later
        log.info("ready for sessions")

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

    async def create(
        self, client: str, start: Start, image: Image.Image | None, video: ContinuedVideo | None = None
    ) -> tuple[str, str]:
        """A new, started session for `client`: its id and its secret token."""
        async with self._admitting:
            statuses = await self._statuses()
            try:
                check_room(self._stream, (s.client for s in statuses.values() if s.active), client)
            except InputError:
                self._metrics.rejected.inc()
                raise
            settings = generation_settings(self._stream, start)
            spared = bool(self._spares)
            session_id, actor = self._take_spare()
            token = secrets.token_urlsafe(32)
            request = SessionRequest(
                session_id=session_id,
                token_digest=token_hash(token),
                client=client,
                settings=settings,
                prompt=start.prompt,
                image=image,
                media=start.media,
                from_text=start.start == "text",
                video=video,
            )
            try:
                await actor.begin.remote(request)
            except RayActorError:  # the spare died meanwhile (its node went): a fresh actor
                log.warning("the spare session actor was gone; starting a new one")
                session_id = secrets.token_hex(8)
                request = dataclasses.replace(request, session_id=session_id)
                actor = self._new_actor(session_id)
                await actor.begin.remote(request)
            finally:
                # Only after `begin`: an async actor may run calls out of order, and an `ended`
                # that came first found no session and started the next spare at once.
                if spared:
                    self._start_spare(_ended(actor))
            self._sessions[session_id] = actor
        log.info("session created", extra={"session_id": session_id, "client": client})
        return session_id, token

    def _new_actor(self, session_id: str) -> ray.actor.ActorHandle:
        return SessionHost.options(
            name=session_actor_name(self._app, session_id),
            namespace=NAMESPACE,
            lifetime="detached",
            # Beside the registry (the head node in the shipped configs), away from the GPU
            # nodes that come and go; its frames are on this node's disk. Not `soft`, which lets
            # Ray place it elsewhere when it judges this node infeasible: a session must never go
            # with a GPU node. Hard affinity cannot leave it unplaced: this node is alive (the
            # registry runs on it) and the actor asks for no resources.
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
        ).remote(self._stream, self._stages)

    def _take_spare(self) -> tuple[str, ray.actor.ActorHandle]:
        """A spare's id and actor for a new session (`create` starts another in its place); a new
        actor when there is none."""
        if not self._spares:
            session_id = secrets.token_hex(8)
            return session_id, self._new_actor(session_id)
        return self._spares.pop(0)

    def _start_spare(self, after: Awaitable | None = None) -> asyncio.Task:
        """Another spare, once `after` is done; the task is done when the spare is ready (or died)."""
        task = asyncio.create_task(self._make_spare(after))
        self._sparing.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._sparing.discard)
        return task

    async def _make_spare(self, after: Awaitable | None) -> None:
        if after is not None:
            await after
        session_id = secrets.token_hex(8)
        spare = (session_id, self._new_actor(session_id))
        self._spares.append(spare)
        try:
            await spare[1].ready.remote()
        except RayActorError:
            log.warning("a spare session actor died before its session; another in %.0f s", SPARE_RETRY_S)
            if spare in self._spares:
                self._spares.remove(spare)
            self._start_spare(asyncio.sleep(SPARE_RETRY_S))

    async def active_count(self) -> int:
        return sum(status.active for status in (await self._statuses()).values())

    def report_model(self, report: ReplicaReport) -> None:
        """A stage replica's model: how far its download and load are (`model_status.Reporter`)."""
        self._model.report(report)

    def model_status(self) -> dict:
        return self._model.summary(warm=self._warming.done())

    async def _statuses(self) -> dict[str, SessionStatus]:
        """Every live session's status; sessions whose actor is gone are forgotten."""
        ids = list(self._sessions)
        answers = await asyncio.gather(*(self._sessions[i].status.remote() for i in ids), return_exceptions=True)
        statuses = {}
        for session_id, answer in zip(ids, answers):
            if isinstance(answer, RayActorError):
                log.warning("session %s is gone", session_id, extra={"session_id": session_id})
                self._sessions.pop(session_id, None)
            elif answer is None:  # an earlier replica's spare, adopted by its name: never a session
                ray.kill(self._sessions.pop(session_id))
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
        for _, spare in self._spares:
            ray.kill(spare)
        try:
            ray.get([actor.close.remote() for actor in actors], timeout=30)
        except Exception:
            log.exception("closing the sessions at shutdown failed")
        for actor in actors:
            ray.kill(actor)


async def _ended(actor: ray.actor.ActorHandle) -> None:
    """Returns when the session of `actor` has ended, when the actor is gone or has no session (its
    `begin` failed), or after `SPARE_AFTER_S` at the most."""
    with suppress(RayError, TimeoutError):
        await asyncio.wait_for(actor.ended.remote(), SPARE_AFTER_S)
