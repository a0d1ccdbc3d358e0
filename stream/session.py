"""One live video: its lifecycle, steering and generation loop.

    created ──start──► generating ◄──pause/resume──► paused
                          │                             │
                          └──── stop / last section ────┴──► stopped     (any error ──► failed)

The session drives its `SectionSource` one section at a time. A `rewind` goes back to a section
boundary and goes on from there as a new branch; every branch is kept (`FrameStore`), so the
timeline is a tree whose every path can be watched and exported. What it makes goes to its
`FrameStore` (disk) and its `EventLog`, from which viewers pull at their own pace, so no viewer
ever holds it back; `Presence` says whether anybody still watches. A `Session` is a
`SessionHandle`: the web side talks to it the same way whether it runs in this process or in
another one (the cluster wraps it in an actor).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import logging
import secrets
from dataclasses import dataclass

import numpy as np
from PIL import Image

from framepack_live.engine.errors import InputError
from framepack_live.engine.images import default_start_image, fit_to_size
from framepack_live.engine.section import Section
from framepack_live.engine.settings import GenerationSettings
from framepack_live.engine.video_state import first_new_frame

from . import fmp4, protocol
from .backend import PreviewCallback, ProgressCallback, SectionBackend, SectionSource
from .continued import ContinuedVideo
from .events import EventLog, Poll, SectionRecord, Slot
from .frame_store import FrameStore
from .handle import Attachment, FrameBatch
from .media import encode_jpegs
from .metadata import Start, VideoRecord, file_sha256, image_start, software_versions
from .pace import Pace
from .presence import Presence
from .ratelimit import TokenBucket
from .settings import Limits

log = logging.getLogger(__name__)

#: Sections one poll hands out at most, so that what a viewer's process holds stays bounded.
SECTIONS_PER_POLL = 2
#: Step previews are rough by nature; a low quality keeps them a few kB.
PREVIEW_JPEG_QUALITY = 70


class SessionState(str, enum.Enum):
    CREATED = "created"
    GENERATING = "generating"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"


def token_hash(token: str) -> bytes:
    """What a session keeps of its token: enough to check one, useless to whoever reads it."""
    return hashlib.sha256(token.encode()).digest()


@dataclass
class Branch:
    """A line of the session's timeline: its parent's sections before `fork`, then its own."""

    parent: int | None
    #: Its first own section.
    fork: int
    #: Sections on its path so far.
    sections: int


class Session:
    """See the module docstring. All methods run on the event loop that created the session."""

    def __init__(
        self,
        session_id: str,
        token_digest: bytes,
        client: str,
        backend: SectionBackend,
        settings: GenerationSettings,
        prompt: str,
        image: Image.Image | None,
        media: str,
        limits: Limits,
        store: FrameStore,
        restart_steered: bool = True,
        model: str | None = None,
        from_text: bool = False,
        video: ContinuedVideo | None = None,
    ) -> None:
        self.id = session_id
        self.client = client
        self.settings = settings
        self.state = SessionState.CREATED
        self.events = EventLog()
        self.store = store
        self.presence = Presence()
        self._token_digest = token_digest
        self._backend = backend
        self._image = image
        self._from_text = from_text
        self._video = video
        #: Export pieces before the first section's: the continued video's frames, if any.
        self._lead_pieces = 0
        self._media = media
        self._limits = limits
        self._prompt = prompt  # the newest steer: applied when the next section starts
        self._transition: int | None = None  # the newest steer's (None: the settings')
        self._good_prompt = prompt  # the last prompt the engine accepted
        self._restart_steered = restart_steered
        self._source: SectionSource | None = None
        #: The newest step preview (`preview` message and its JPEG), sent with that step's progress.
        self._preview: tuple[int, int, str, bytes] | None = None
        self._branches = [Branch(parent=None, fork=0, sections=0)]
        self._branch = 0  # the one being made
        #: A rewind waiting for the next section boundary: (section, prompt, transition, branch).
        self._rewind: tuple[int, str, int | None, int] | None = None
        self._stop_requested = False
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._steers = TokenBucket(limits.steer_burst, limits.steer_rate)
        self._delivered = -1  # the last log entry the current viewer's socket took
        self._task: asyncio.Task | None = None
        self._loop = asyncio.get_running_loop()
        self._frame_cap = int(limits.max_video_seconds * settings.fps)
        lead = limits.live_lead_sections
        self._pace = Pace(None if lead is None else lead * settings.frames_per_section / settings.fps)
        #: Named in the export's record (`ModelInfo.source`).
        self._model = model
        #: The record's start and the LoRA files' hashes, taken before the first section.
        self._made_from: tuple[Start, list[str]] | None = None

    def check_token(self, token: str) -> None:
        if not secrets.compare_digest(self._token_digest, token_hash(token)):
            raise InputError("unauthorized", "wrong token for this session")

    # -- commands --------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Still making (or about to make) sections; counts against the session caps."""
        return self.state not in (SessionState.STOPPED, SessionState.FAILED)

    def start(self) -> None:
        self.state = SessionState.GENERATING
        self._task = asyncio.create_task(self._run(), name=f"session-{self.id}")

    async def ended(self) -> None:
        """Returns once the session makes no more sections: done, stopped or failed."""
        if self._task is not None:
            await asyncio.wait([self._task])

    async def steer(self, prompt: str, transition: int | None = None) -> None:
        """Use `prompt` from now on, blended in over `transition` sections (None: the session's
        setting). The section being denoised starts over with it when that is early enough
        (`backend.worth_restarting`); otherwise it applies from the next section boundary. A newer
        steer replaces a waiting one."""
        self._require_active()
        if transition is not None and transition < 0:
            raise InputError("bad_request", f"transition must be >= 0 sections, got {transition}")
        if not self._steers.take():
            raise InputError(
                "busy", f"too many steers: at most {self._limits.steer_burst} at once, {self._limits.steer_rate}/s after"
            )
        self._prompt, self._transition = prompt, transition
        if self._restart_steered and self._source is not None:
            await self._source.restart(prompt, transition)

    async def rewind(self, section: int, prompt: str, transition: int | None = None, branch: int | None = None) -> None:
        """Go back to the boundary before `section` (0 .. its sections made) of `branch` (default:
        the current one) and go on from there with `prompt` as a new branch, from the next section
        boundary on: the section being made finishes on the branch it was made for. A newer rewind
        replaces a waiting one; a steer that comes after it applies to the new branch."""
        self._require_active()
        if transition is not None and transition < 0:
            raise InputError("bad_request", f"transition must be >= 0 sections, got {transition}")
        number = self._branch if branch is None else branch
        if not 0 <= number < len(self._branches):
            raise InputError("bad_request", f"no branch {number}: this session has {len(self._branches)}")
        made = self._branches[number].sections
        if not 0 <= section <= made:
            raise InputError(
                "bad_request", f"section {section} is not a boundary of branch {number}: it has {made} sections (0 .. {made})"
            )
        if not self._steers.take():
            raise InputError(
                "busy", f"too many steers: at most {self._limits.steer_burst} at once, {self._limits.steer_rate}/s after"
            )
        self._rewind = (section, prompt, transition, number)
        self._prompt, self._transition = prompt, transition

    async def pause(self) -> None:
        """Stop after the current section; idempotent."""
        self._require_active()
        if self.state == SessionState.GENERATING:
            self.state = SessionState.PAUSED
            self._unpaused.clear()

    async def resume(self) -> None:
        self._require_active()
        if self.state == SessionState.PAUSED:
            self.state = SessionState.GENERATING
            self._unpaused.set()

    async def stop(self) -> None:
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
            self._preview_start()
            # Beside the start's encoding, not before it: hashing a LoRA file of a real model
            # (hundreds of MB) would otherwise delay the first frame by as long.
            recording = asyncio.ensure_future(
                asyncio.to_thread(made_from, self._image, self._from_text, self._video, self.settings)
            )
            frames = None if self._video is None else self._video.frames
            try:
                source = self._source = await self._backend.open(
                    self._prompt, self._image, self.settings, self._from_text, frames
                )
            finally:
                self._made_from = await recording
            self._image = None
            if frames is not None:
                await self._store_continued(frames)
                # On disk now: neither the session nor this coroutine's frame keeps the decoded video.
                self._video = frames = None
            last = False
            while not last:
                await self._unpaused.wait()
                await self._pace.wait()
                if self._stop_requested or self._capped():
                    if self._made:  # stopped between sections: the held-back tail follows on its own
                        await self._deliver(await source.flush())
                    break
                if self._rewind is not None:
                    await self._apply_rewind(source)
                section = await self._next_section(source)
                if section is None:
                    continue
                last = self._stop_requested or (
                    (self.settings.sections or 0) == self._made and self._rewind is None
                )
                if last:  # wait for the tail so that the last `section` message carries it
                    section = _join(section, await source.flush())
                await self._deliver(section)
            self.state = SessionState.STOPPED
            self.events.finish(protocol.done_message(self._made, self.store.frame_count))
        except InputError as exc:
            self._fail(exc.code, exc.message)
        except Exception:
            log.exception("session %s failed", self.id)
            self._fail("internal", "generation failed; the video made so far can still be exported")
        finally:
            self._source = None
            if source is not None:
                await source.close()

    async def _store_continued(self, frames: np.ndarray) -> None:
        """The continued video's frames that stay as they are, stored as the video's first export
        piece: the export is the whole video, and the new sections' frames follow on. No `section`
        message for them: sections are what this session makes (the viewer has the video), and a
        rewind goes back to a boundary of those."""
        kept = frames[: first_new_frame(len(frames), self.settings)]
        await asyncio.to_thread(self.store.append, kept, self.settings.fps)
        self._lead_pieces = 1

    @property
    def _made(self) -> int:
        """Sections on the current branch's path: what a `sections` limit counts."""
        return self._branches[self._branch].sections

    async def _apply_rewind(self, source: SectionSource) -> None:
        """The waiting rewind, at a section boundary: a new branch, or a notice if it was refused."""
        section, prompt, transition, parent = self._rewind
        self._rewind = None
        try:
            number = await source.rewind(section, prompt, transition, parent)
        except InputError as exc:
            self.events.add_notice(protocol.error_message(exc.code, exc.message))
            if self._prompt == prompt:  # unless a newer steer came meanwhile
                self._prompt = self._good_prompt
            return
        stored = await asyncio.to_thread(self.store.fork, parent, self._section_start(parent, section))
        if number != len(self._branches) or stored != number:
            raise RuntimeError(f"the engine made branch {number}, the session expected {len(self._branches)}")
        self._branches.append(Branch(parent=parent, fork=section, sections=section))
        self._branch = number
        self._good_prompt = prompt
        self._pace.reset()
        self.events.add_branch(branch=number, parent=parent, section=section, prompt=prompt)

    def _section_start(self, branch: int, section: int) -> int:
        """First frame of `section` on `branch`'s path (its end when `section` is not made yet)."""
        if section == self._branches[branch].sections:
            return self.store.frames_of(branch)
        owner = self._owner(branch, section)
        return next(r.first_frame for r in self.events.records if r.branch == owner and r.index == section)

    def _owner(self, branch: int, section: int) -> int:
        """The branch that made `section` of `branch`'s path: the branch itself from its fork on,
        else the ancestor whose sections it shares there."""
        while section < self._branches[branch].fork:
            branch = self._branches[branch].parent
        return branch

    def _path_records(self, branch: int) -> list[SectionRecord]:
        """The section records on `branch`'s path, in the order they were made (its pieces' order)."""
        return [r for r in self.events.records if self._owner(branch, r.index) == r.branch]

    def _capped(self) -> bool:
        """The stored video (every branch) reached `Limits.max_video_seconds`: say so, and end the session."""
        if self.store.stored_frames < self._frame_cap:
            return False
        minutes = self._limits.max_video_seconds / 60
        self.events.add_notice(protocol.error_message(
            "busy", f"this video reached the server's limit of {minutes:g} minutes; download it or start a new one"
        ))
        return True

    async def _next_section(self, source: SectionSource) -> Section | None:
        """The next section, or None when the engine refused a steered prompt (then reported)."""
        prompt = self._prompt
        try:
            section = await source.next_section(
                prompt, self._progress_callback(self._made), self._preview_callback(self._made), self._transition
            )
        except InputError as exc:
            if prompt == self._good_prompt:
                raise
            self.events.add_notice(protocol.error_message(exc.code, exc.message))
            if self._prompt == prompt:  # unless a newer steer came meanwhile
                self._prompt = self._good_prompt
            return None
        self._good_prompt = section.prompt  # a restart may have made it with a newer steer
        self._branches[self._branch].sections += 1
        return section

    def _progress_callback(self, section: int) -> ProgressCallback:
        def progress(step: int, steps: int) -> None:
            self._loop.call_soon_threadsafe(self._publish_progress, section, step, steps)

        return progress

    def _publish_progress(self, section: int, step: int, steps: int) -> None:
        """Progress, with the step's preview when there is one: one slot, so a viewer that lags
        gets the newest of both together."""
        preview = self._preview
        wanted = self._media == "jpeg" and preview is not None and preview[:2] == (section, step)
        extra = preview[2:] if wanted else ()
        self.events.set_progress(protocol.progress_message(section, step, steps), *extra)

    def _preview_callback(self, section: int) -> PreviewCallback:
        def preview(step: int, steps: int, frames: np.ndarray) -> None:
            # The section's first latent frame: what the live view will show next.
            frame = frames[0]
            (jpeg,) = encode_jpegs(frame[None], PREVIEW_JPEG_QUALITY)
            height, width = frame.shape[:2]
            message = protocol.preview_message(section, step, steps, width, height)
            self._loop.call_soon_threadsafe(self._keep_preview, (section, step, message, jpeg))

        return preview

    def _preview_start(self) -> None:
        """The start image, at the video's size, as the first section's preview at step 0: what
        that section goes on from, on screen at once while the backend encodes the start (the first
        step's preview comes only after that); for a continued video, its last frame. A start from
        the prompt alone has no image yet."""
        if self._from_text or not self.settings.preview_every:
            return
        settings = self.settings
        if self._video is not None:
            image = Image.fromarray(self._video.frames[-1])
        else:
            image = fit_to_size(self._image or default_start_image(), settings.width, settings.height)
        self._preview_callback(self._made)(0, settings.steps, np.asarray(image.convert("RGB"))[None])
        self._progress_callback(self._made)(0, settings.steps)

    def _keep_preview(self, preview: tuple[int, int, str, bytes]) -> None:
        self._preview = preview

    async def _deliver(self, section: Section | None) -> None:
        if section is None:
            return
        if section.first_frame != self.store.frame_count:
            raise RuntimeError(
                f"section {section.index} starts at frame {section.first_frame}, expected {self.store.frame_count}"
            )
        await asyncio.to_thread(self.store.append, section.frames, section.fps)
        self._pace.delivered(section.num_frames / section.fps)
        _, height, width, _ = section.frames.shape
        self.events.add_section(
            index=section.index, prompt=section.prompt, first_frame=section.first_frame,
            frames=section.num_frames, fps=section.fps, width=width, height=height, branch=self._branch,
        )

    def _fail(self, code: str, message: str) -> None:
        self.state = SessionState.FAILED
        self.events.finish(protocol.error_message(code, message))

    # -- viewers ---------------------------------------------------------------------------

    async def attach(self) -> Attachment:
        return Attachment(viewer=self.presence.attach(), cursor=self._delivered)

    async def poll(self, viewer: int, after: int, progress_version: int, timeout: float) -> Poll:
        if viewer != self.presence.viewer:
            return Poll(replaced=True)
        self.presence.poll_started()
        try:
            await self.events.wait(after, progress_version, timeout)
        finally:
            self.presence.poll_ended()
        if viewer != self.presence.viewer:
            return Poll(replaced=True)
        entries = self.events.entries[after + 1 :]
        handed = entries[:SECTIONS_PER_POLL]
        progress = self.events.progress
        return Poll(
            entries=[(entry, await self._jpegs_of(entry)) for entry in handed],
            progress=Slot(progress.version, progress.messages) if progress.version != progress_version else None,
            final=self.events.final if len(handed) == len(entries) else None,
        )

    async def _jpegs_of(self, entry) -> list[bytes]:
        if self._media != "jpeg" or not isinstance(entry, SectionRecord):
            return []
        return await asyncio.to_thread(self.store.read_frames, entry.first_frame, entry.frames, entry.branch)

    def delivered(self, viewer: int, seq: int) -> None:
        if viewer == self.presence.viewer:
            self._delivered = max(self._delivered, seq)

    async def frames(
        self, first: int, count: int, wait_s: float, peer: str | None = None, branch: int | None = None
    ) -> FrameBatch:
        if peer is not None:
            self.presence.peer_seen(peer)
        if first >= self.store.frame_count and self.active and branch in (None, self._branch):
            await self.events.wait(len(self.events.entries) - 1, self.events.progress.version, wait_s)
        current = self._branch
        if branch is not None and branch != current:
            first = min(first, self.store.fork_frame(current))
        jpegs = await asyncio.to_thread(self.store.read_frames, first, count, current)
        ended = not self.active and first + len(jpegs) >= self.store.frames_of(current)
        return FrameBatch(jpegs=jpegs, ended=ended, first=first, branch=current)

    async def live_edge(self) -> int:
        records = self.events.records
        # Before the first section: its first frame, after a continued video's (not replayed).
        return records[-1].first_frame if records else self.store.frame_count

    async def add_peer(self, peer: str) -> None:
        if len(self.presence.peers()) >= self._limits.max_peers_per_session:
            raise InputError("busy", f"at most {self._limits.max_peers_per_session} WebRTC viewers per session")
        self.presence.peer_seen(peer)

    async def remove_peer(self, peer: str) -> None:
        self.presence.peer_gone(peer)

    async def peer_count(self) -> int:
        return len(self.presence.peers())

    async def export_parts(self, branch: int | None = None) -> int:
        return len(self._export_parts(branch))

    async def export_part(self, index: int, parts: int, branch: int | None = None) -> bytes:
        data = await asyncio.to_thread(self._export_parts(branch)[index].read_bytes)
        if index == 0:  # the header: it carries how the video was made
            data = await asyncio.to_thread(fmp4.with_metadata, data, self.record(parts, branch).container_metadata())
        return data

    def _export_parts(self, branch: int | None):
        try:
            return self.store.export_parts(branch)
        except ValueError as exc:
            raise InputError("bad_request", str(exc)) from None

    def record(self, parts: int, branch: int | None = None) -> VideoRecord:
        """How the first `parts` export parts (header and pieces) of `branch`'s path (default: the
        current branch) were made: the model, the settings (with the sections they hold), the
        prompt and branch of each section and the start, so that `render --from` can make the video
        again."""
        number = self._branch if branch is None else branch
        start, lora_sha256 = self._made_from
        timeline, seen = [], set()
        sections = parts - 1 - self._lead_pieces  # the header, the continued video's frames
        for record in self._path_records(number)[:sections]:  # then a piece per record, in order
            if record.index not in seen:  # a stopped session's held-back tail repeats an index
                seen.add(record.index)
                timeline.append({"section": record.index, "prompt": record.prompt, "branch": record.branch})
        return VideoRecord(
            model=self._model,
            settings=dataclasses.replace(self.settings, sections=len(timeline)),
            timeline=timeline,
            start=start,
            lora_sha256=lora_sha256,
            runtime={"crf": fmp4.CRF},
            software=software_versions(),
        )

    # -- end -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Tear down now (idle reaping, shutdown): cancel generation, delete the stored video."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.active:
            self.state = SessionState.STOPPED
        self.events.notify()
        await asyncio.to_thread(self.store.delete)


def made_from(
    image: Image.Image | None, from_text: bool, video: ContinuedVideo | None, settings: GenerationSettings
) -> tuple[Start, list[str]]:
    """The start and LoRA hashes of a video's record (blocking: a LoRA file can be large)."""
    if video is not None:
        start = video.record_start()
    else:
        start = Start("text") if from_text else image_start(image)
    return start, [file_sha256(path) for path, _ in settings.loras]


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
