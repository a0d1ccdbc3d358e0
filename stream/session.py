"""One live video: its state machine, steering, timeline, kept frames and who is watching.

    created ──start──► generating ◄──pause/resume──► paused
                          │                             │
                          └──── stop / last section ────┴──► stopped     (any error ──► failed)

The session drives its `SectionSource` one section at a time. Viewers never hold it back: a
WebSocket client gets messages through its own bounded `Outbox`, a WebRTC track reads the kept
frames at its own pace. Every frame is kept as JPEG, for export and for clients that re-attach.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from framepack_live.engine.errors import InputError
from framepack_live.engine.section import Section
from framepack_live.engine.settings import GenerationSettings

from . import protocol
from .backend import ProgressCallback, SectionBackend, SectionSource
from .export import encode_mp4
from .media import encode_jpegs
from .outbox import Envelope, Outbox
from .ratelimit import TokenBucket
from .settings import Limits

log = logging.getLogger(__name__)


class SessionState(str, enum.Enum):
    CREATED = "created"
    GENERATING = "generating"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class SectionRecord:
    """One `section` message as sent; `seq` is its position in `Session.records`.

    A section index can appear twice: when a session is stopped between sections, the frames the
    engine held back for blending follow as a second record with the same index.
    """

    seq: int
    index: int
    prompt: str
    first_frame: int
    frames: int
    fps: int
    width: int
    height: int


class Peer(Protocol):
    """A WebRTC peer connection as far as the session cares: it must be closed with the session."""

    async def close(self) -> None: ...


class Session:
    """See the module docstring. All methods run on the event loop that created the session."""

    def __init__(
        self,
        session_id: str,
        token: str,
        client: str,
        backend: SectionBackend,
        settings: GenerationSettings,
        prompt: str,
        image: Image.Image | None,
        media: str,
        limits: Limits,
        jpeg_quality: int,
    ) -> None:
        self.id = session_id
        self.token = token
        self.client = client
        self.settings = settings
        self.state = SessionState.CREATED
        #: The timeline: every `section` message sent, with the prompt that made it.
        self.records: list[SectionRecord] = []
        #: Every frame of the video so far, one JPEG each, in playback order.
        self.frames: list[bytes] = []
        #: Monotonic time since which nobody watches, None while somebody does.
        self.idle_since: float | None = time.monotonic()
        self._backend = backend
        self._image = image
        self._media = media
        self._limits = limits
        self._jpeg_quality = jpeg_quality
        self._prompt = prompt  # the newest steer: applied when the next section starts
        self._good_prompt = prompt  # the last prompt the engine accepted
        self._made = 0
        self._stop_requested = False
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._changed = asyncio.Event()
        self._steers = TokenBucket(limits.steer_burst, limits.steer_rate)
        self._viewer: Outbox | None = None
        self._delivered = -1  # highest record seq the attached viewers have been sent
        self._final: str | None = None  # the `done` or `error` message that ended the session
        self._peers: set[Peer] = set()
        self._task: asyncio.Task | None = None
        self._loop = asyncio.get_running_loop()
        self._export_lock = asyncio.Lock()
        self._export: tuple[int, bytes] = (0, b"")

    # -- state -----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Still making (or about to make) sections; counts against the session caps."""
        return self.state not in (SessionState.STOPPED, SessionState.FAILED)

    def start(self) -> None:
        self.state = SessionState.GENERATING
        self._task = asyncio.create_task(self._run(), name=f"session-{self.id}")

    def steer(self, prompt: str) -> None:
        """Queue a prompt for the next section boundary; a newer steer replaces a waiting one."""
        self._require_active()
        if not self._steers.take():
            raise InputError(
                "busy", f"too many steers: at most {self._limits.steer_burst} at once, {self._limits.steer_rate}/s after"
            )
        self._prompt = prompt

    def pause(self) -> None:
        """Stop after the current section; idempotent."""
        self._require_active()
        if self.state == SessionState.GENERATING:
            self.state = SessionState.PAUSED
            self._unpaused.clear()

    def resume(self) -> None:
        self._require_active()
        if self.state == SessionState.PAUSED:
            self.state = SessionState.GENERATING
            self._unpaused.set()

    def stop(self) -> None:
        """End after the current section (its frames and the held-back tail are still sent); idempotent."""
        self._stop_requested = True
        self._unpaused.set()

    def _require_active(self) -> None:
        if not self.active:
            raise InputError("bad_request", f"session {self.id} has ended ({self.state.value})")

    # -- generation ------------------------------------------------------------------------

    async def _run(self) -> None:
        source: SectionSource | None = None
        try:
            source = await self._backend.open(self._prompt, self._image, self.settings)
            self._image = None
            last = False
            while not last:
                await self._unpaused.wait()
                if self._stop_requested:
                    if self._made:  # stopped between sections: the held-back tail follows on its own
                        await self._deliver(await source.flush())
                    break
                section = await self._next_section(source)
                if section is None:
                    continue
                last = self._stop_requested or (self.settings.sections or 0) == self._made
                if last:  # wait for the tail so that the last `section` message carries it
                    section = _join(section, await source.flush())
                await self._deliver(section)
            self.state = SessionState.STOPPED
            self._finish(protocol.done_message(self._made, len(self.frames)))
        except InputError as exc:
            self._fail(exc.code, exc.message)
        except Exception:
            log.exception("session %s failed", self.id)
            self._fail("internal", "generation failed; the video made so far can still be exported")
        finally:
            if source is not None:
                await source.close()
            self._notify()

    async def _next_section(self, source: SectionSource) -> Section | None:
        """The next section, or None when the engine refused a steered prompt (then reported)."""
        prompt = self._prompt
        try:
            section = await source.next_section(prompt, self._progress_callback(self._made))
        except InputError as exc:
            if prompt == self._good_prompt:
                raise
            self._send(Envelope([protocol.error_message(exc.code, exc.message)]))
            if self._prompt == prompt:  # unless a newer steer came meanwhile
                self._prompt = self._good_prompt
            return None
        self._good_prompt = prompt
        self._made += 1
        return section

    def _progress_callback(self, section: int) -> ProgressCallback:
        def progress(step: int, steps: int) -> None:
            self._loop.call_soon_threadsafe(self._send_progress, section, step, steps)

        return progress

    def _send_progress(self, section: int, step: int, steps: int) -> None:
        self._send(Envelope([protocol.progress_message(section, step, steps)], replaceable=True))

    async def _deliver(self, section: Section | None) -> None:
        if section is None:
            return
        if section.first_frame != len(self.frames):
            raise RuntimeError(f"section {section.index} starts at frame {section.first_frame}, expected {len(self.frames)}")
        jpegs = await asyncio.to_thread(encode_jpegs, section.frames, self._jpeg_quality)
        _, height, width, _ = section.frames.shape
        record = SectionRecord(
            len(self.records), section.index, section.prompt, section.first_frame, len(jpegs), section.fps, width, height
        )
        self.records.append(record)
        self.frames.extend(jpegs)
        self._notify()
        self._send(self._section_envelope(record))

    def _section_envelope(self, record: SectionRecord) -> Envelope:
        message = protocol.section_message(
            record.index, record.prompt, record.frames, record.fps, record.width, record.height, record.first_frame
        )
        frames = self.frames[record.first_frame : record.first_frame + record.frames] if self._media == "jpeg" else []
        viewer = self._viewer
        return Envelope([message, *frames], on_sent=lambda: self._mark_delivered(viewer, record.seq))

    def _mark_delivered(self, viewer: Outbox | None, seq: int) -> None:
        if viewer is self._viewer:
            self._delivered = max(self._delivered, seq)

    def _fail(self, code: str, message: str) -> None:
        self.state = SessionState.FAILED
        self._finish(protocol.error_message(code, message))

    def _finish(self, message: str) -> None:
        self._final = message
        self._send(Envelope([message], droppable=False))

    def _send(self, envelope: Envelope) -> None:
        if self._viewer is not None:
            self._viewer.put(envelope)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- watchers --------------------------------------------------------------------------

    def attach(self, viewer: Outbox, resend: bool) -> None:
        """Make `viewer` the WebSocket client of this session, replacing any previous one.

        With `resend` (a `resume_session`), the sections the previous viewers were not sent
        follow, and the `done` or `error` that ended the session if it has ended.
        """
        self._viewer = viewer
        self._update_idle()
        if resend:
            for record in self.records[self._delivered + 1 :]:
                viewer.put(self._section_envelope(record))
            if self._final is not None:
                viewer.put(Envelope([self._final], droppable=False))

    def detach(self, viewer: Outbox) -> None:
        if self._viewer is viewer:
            self._viewer = None
            self._update_idle()

    def add_peer(self, peer: Peer) -> None:
        if len(self._peers) >= self._limits.max_peers_per_session:
            raise InputError("busy", f"at most {self._limits.max_peers_per_session} WebRTC viewers per session")
        self._peers.add(peer)
        self._update_idle()

    def remove_peer(self, peer: Peer) -> None:
        self._peers.discard(peer)
        self._update_idle()

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    def _update_idle(self) -> None:
        if self._viewer is not None or self._peers:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = time.monotonic()

    async def frame(self, index: int) -> bytes | None:
        """JPEG frame `index` once it exists; None when the session ended without making it."""
        while index >= len(self.frames):
            if not self.active:
                return None
            await self._changed.wait()
        return self.frames[index]

    async def export_mp4(self) -> bytes:
        """Every frame so far as MP4; encoded again only when frames were added since last time."""
        async with self._export_lock:
            count = len(self.frames)
            if count == 0:
                raise InputError("not_found", "the session has no frames yet")
            if self._export[0] != count:
                fps = self.records[0].fps
                self._export = (count, await asyncio.to_thread(encode_mp4, self.frames[:count], fps))
            return self._export[1]

    async def close(self) -> None:
        """Tear down now (idle reaping, shutdown): cancel generation, close peers, free frames."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.active:
            self.state = SessionState.STOPPED
        for peer in list(self._peers):
            await peer.close()
        self._peers.clear()
        self._viewer = None
        self.frames = []
        self._notify()


def _join(section: Section, tail: Section | None) -> Section:
    """The last section with the held-back tail appended."""
    if tail is None:
        return section
    if tail.first_frame != section.first_frame + section.num_frames:
        raise RuntimeError(f"the flushed tail starts at frame {tail.first_frame}, not right after section {section.index}")
    return Section(
        index=section.index,
        prompt=section.prompt,
        first_frame=section.first_frame,
        frames=np.concatenate([section.frames, tail.frames]),
        fps=section.fps,
    )
