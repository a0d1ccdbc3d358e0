"""`SessionHost`: one live session in a Ray actor of its own, reachable from every Ingress replica.

Why an actor per session: a session is a running generation loop with a little state (the engine's
history tail, its timeline and prompt queue, who watches), and it must outlive the Ingress process
that a client happened to reach, which can be killed or replaced at any time. A detached, named
actor is found by name from any replica (`session_actor_name`), lives on until the registry frees
it, and fails alone: one session's crash takes no other session with it. Its frames go to disk
(`stream.frame_store`), so the actor stays small however long the video gets.

The actor runs `stream.session.Session` itself (on the actor's event loop) over the cluster's
`RayBackend`; `RemoteSession` is the `SessionHandle` the Ingress uses to talk to it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass

import ray
from PIL import Image
from ray.exceptions import RayActorError, RayTaskError

from framepack_live.engine.errors import InputError
from framepack_live.engine.settings import GenerationSettings
from framepack_live.stream.continued import ContinuedVideo
from framepack_live.stream.events import Poll
from framepack_live.stream.frame_store import FrameStore, warm_codecs
from framepack_live.stream.handle import Attachment, FrameBatch
from framepack_live.stream.session import Session
from framepack_live.stream.settings import StreamSettings

from .backend import RayBackend, Stages
from .metrics import SessionMetrics

#: Methods of `Session` an Ingress may call through `SessionHost.call` (the `SessionHandle` ones).
HANDLE_METHODS = frozenset({
    "steer", "rewind", "pause", "resume", "stop", "attach", "poll", "delivered", "frames", "live_edge",
    "add_peer", "remove_peer", "peer_count", "export_parts", "export_part", "check_token",
})


#: Ray namespace of session actors: fixed, so every process finds them whatever job it belongs to
#: (a `serve deploy`ed application's replicas and a driver's do not share an anonymous one).
NAMESPACE = "framepack-live"


def session_actor_name(app: str, session_id: str) -> str:
    return f"framepack-session:{app}:{session_id}"


@dataclass(frozen=True)
class SessionRequest:
    """A validated `start`: everything a new session is made from."""

    session_id: str
    token_digest: bytes
    client: str
    settings: GenerationSettings
    prompt: str
    image: Image.Image | None
    media: str
    #: A start made from the prompt alone (`start: "text"`).
    from_text: bool = False
    #: A video to continue (`start`'s `video`), decoded by the Ingress.
    video: ContinuedVideo | None = None


@dataclass(frozen=True)
class SessionStatus:
    """What the registry needs to know of a session: for the caps and for reaping."""

    client: str
    active: bool
    #: Seconds since anybody watched; None while somebody does.
    idle_s: float | None


@ray.remote(num_cpus=0)
class SessionHost:
    """Made before its session (the registry keeps spares ready: a new actor's process takes
    seconds to start and import), and given it by `begin`."""

    def __init__(self, stream: StreamSettings, stages: Stages) -> None:
        self._stream, self._stages = stream, stages
        self.session: Session | None = None

    async def ready(self) -> None:
        """Answers once the actor's process is up, its stage handles know their replicas and its
        codecs are loaded: a spare is ready for a session, whose first calls then go out at once."""
        await asyncio.gather(self._stages.warm(), asyncio.to_thread(warm_codecs))

    async def begin(self, request: SessionRequest) -> None:
        """Build and start the session on the actor's event loop (its constructor needs the loop)."""
        if self.session is not None:
            raise RuntimeError(f"this actor already runs session {self.session.id}")
        stream, stages = self._stream, self._stages
        self.session = Session(
            session_id=request.session_id,
            token_digest=request.token_digest,
            client=request.client,
            backend=RayBackend(stages, request.session_id, SessionMetrics()),
            settings=request.settings,
            prompt=request.prompt,
            image=request.image,
            media=request.media,
            limits=stream.limits,
            store=FrameStore(stream.session_dir / request.session_id, stream.jpeg_quality),
            restart_steered=stream.restart_steered,
            model=stream.model.source if stream.model is not None else None,
            from_text=request.from_text,
            video=request.video,
        )
        self.session.start()

    async def ended(self) -> None:
        """Returns when the session has ended; at once when there is none (`begin` failed)."""
        if self.session is not None:
            await self.session.ended()

    async def call(self, method: str, *args):
        """One `SessionHandle` call on the session (what `RemoteSession` sends)."""
        if method not in HANDLE_METHODS:
            raise ValueError(f"{method!r} is not a session handle method")
        result = getattr(self.session, method)(*args)
        return await result if inspect.isawaitable(result) else result

    def settings(self) -> GenerationSettings:
        return self.session.settings

    def status(self) -> SessionStatus | None:
        """None for a spare: no session yet."""
        if self.session is None:
            return None
        idle_since = self.session.presence.idle_since()
        return SessionStatus(
            client=self.session.client,
            active=self.session.active,
            idle_s=None if idle_since is None else time.monotonic() - idle_since,
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def unwrap_input_error(exc: BaseException) -> InputError | None:
    """The `InputError` a remote call raised, if that is what it was (a call through a Serve
    handle wraps it once more than a plain actor call)."""
    while isinstance(exc, RayTaskError):
        exc = exc.cause
    return exc if isinstance(exc, InputError) else None


class RemoteSession:
    """A `SessionHandle` over a `SessionHost`: what the Ingress holds of a session, for a connection."""

    def __init__(self, session_id: str, actor, settings: GenerationSettings) -> None:
        self.id = session_id
        self.settings = settings
        self._actor = actor

    async def _call(self, method: str, *args):
        try:
            return await self._actor.call.remote(method, *args)
        except RayActorError:
            raise InputError("not_found", "this session's process is gone; start a new video") from None
        except RayTaskError as exc:
            raise unwrap_input_error(exc) or exc from None

    async def steer(self, prompt: str, transition: int | None = None) -> None:
        await self._call("steer", prompt, transition)

    async def rewind(self, section: int, prompt: str, transition: int | None = None, branch: int | None = None) -> None:
        await self._call("rewind", section, prompt, transition, branch)

    async def pause(self) -> None:
        await self._call("pause")

    async def resume(self) -> None:
        await self._call("resume")

    async def stop(self) -> None:
        await self._call("stop")

    async def attach(self) -> Attachment:
        return await self._call("attach")

    async def poll(self, viewer: int, after: int, progress_version: int, timeout: float) -> Poll:
        return await self._call("poll", viewer, after, progress_version, timeout)

    def delivered(self, viewer: int, seq: int) -> None:
        self._actor.call.remote("delivered", viewer, seq)  # not awaited: nothing to wait for

    async def frames(
        self, first: int, count: int, wait_s: float, peer: str | None = None, branch: int | None = None
    ) -> FrameBatch:
        return await self._call("frames", first, count, wait_s, peer, branch)

    async def live_edge(self) -> int:
        return await self._call("live_edge")

    async def add_peer(self, peer: str) -> None:
        await self._call("add_peer", peer)

    async def remove_peer(self, peer: str) -> None:
        await self._call("remove_peer", peer)

    async def peer_count(self) -> int:
        return await self._call("peer_count")

    async def export_parts(self, branch: int | None = None) -> int:
        return await self._call("export_parts", branch)

    async def export_part(self, index: int, parts: int, branch: int | None = None) -> bytes:
        return await self._call("export_part", index, parts, branch)

    async def check_token(self, token: str) -> None:
        await self._call("check_token", token)
