"""What the web side (WebSocket, WebRTC, HTTP) needs of sessions, wherever the sessions run.

`Session` in this process implements `SessionHandle` itself; the cluster implements it over a
session that lives in another process (a Ray actor), so any server process can serve any
session. Everything crossing it is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from framepack_live.engine.settings import GenerationSettings

from .events import Poll
from .protocol import Start
from .settings import StreamSettings


@dataclass(frozen=True)
class Attachment:
    """A WebSocket viewer's place: its number (a later attach retires it) and the last entry it has."""

    viewer: int
    cursor: int


@dataclass(frozen=True)
class FrameBatch:
    """JPEG frames of the branch being made from index `first` on (the one asked for, unless a
    rewind made another branch current); `ended` once no frame will follow them."""

    jpegs: list[bytes]
    ended: bool
    first: int = 0
    branch: int = 0


class SessionHandle(Protocol):
    id: str
    settings: GenerationSettings

    async def steer(self, prompt: str, transition: int | None = None) -> None: ...
    async def rewind(self, section: int, prompt: str, transition: int | None = None, branch: int | None = None) -> None: ...
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def stop(self) -> None: ...

    async def attach(self) -> Attachment:
        """Become the session's WebSocket viewer; it carries on after the last entry viewers had."""
        ...

    async def poll(self, viewer: int, after: int, progress_version: int, timeout: float) -> Poll:
        """Entries after `after` (waiting up to `timeout` s for something new); see `Poll`."""
        ...

    def delivered(self, viewer: int, seq: int) -> None:
        """Entry `seq` reached the viewer's socket: a later re-attach starts after it. Returns at
        once (a remote session is told without waiting for its answer)."""
        ...

    async def frames(
        self, first: int, count: int, wait_s: float, peer: str | None = None, branch: int | None = None
    ) -> FrameBatch:
        """Up to `count` frames from `first` on, waiting up to `wait_s` for the first to exist.
        `peer` renews that WebRTC peer's presence. `branch`: the branch the caller played so far;
        when a rewind has made another one current, the frames come from where that one forked
        (if earlier than `first`), so a player follows a rewind at once."""
        ...

    async def live_edge(self) -> int:
        """Index of the first frame of the newest section: where a new WebRTC viewer starts."""
        ...

    async def add_peer(self, peer: str) -> None:
        """Count a WebRTC viewer; `busy` over the per-session cap."""
        ...

    async def remove_peer(self, peer: str) -> None: ...

    async def peer_count(self) -> int: ...

    async def export_parts(self, branch: int | None = None) -> int:
        """How many parts the MP4 of a branch's path so far has (default: the current branch; 0:
        no frames yet); `bad_request` for a branch that does not exist."""
        ...

    async def export_part(self, index: int, parts: int, branch: int | None = None) -> bytes:
        """Part `index` of the export of `branch`'s path (default: the current branch) that has
        `parts` parts; the first, the MP4's header, carries how those parts were made
        (`stream.metadata.VideoRecord`)."""
        ...


class SessionDirectory(Protocol):
    """Creates and finds sessions, under the caps of `settings.limits`."""

    settings: StreamSettings

    async def create(self, client: str, start: Start, image: Image.Image | None) -> tuple[SessionHandle, str]:
        """A new, started session for `client` and its secret token; `busy` over the caps."""
        ...

    async def get(self, session_id: str, token: str) -> SessionHandle:
        """The session, if `token` is its token: `not_found` or `unauthorized` otherwise."""
        ...

    async def find(self, session_id: str) -> SessionHandle:
        """The session without its token (`not_found` if there is none), for a caller that
        proved its right otherwise: a signed download link."""
        ...

    async def active_count(self) -> int: ...

    async def model_status(self) -> dict | None:
        """Where the model is loaded after the server started (the cluster's stages): its state
        (`starting`, `checking`, `downloading`, `loading`, `ready`, `failed`), bytes, rate, time
        left, error and per-stage figures (`cluster.model_status.ModelBoard.summary`). None where
        the model was loaded before the server began to answer."""
        ...

    async def close(self) -> None:
        """Server shutdown: stop what this directory owns."""
        ...
