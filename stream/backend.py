"""What `stream/` needs from whatever makes the sections: a small async Protocol.

Sessions, the WebSocket protocol and WebRTC only ever talk to a `SectionBackend`. The in-process
implementation (`stream.local_backend.InProcessBackend`) runs the engine's `SectionGenerator` in
a worker thread; the cluster implements the same Protocol over its Ray deployments. Keeping it
this small is what lets both exist without `stream/` knowing about Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from PIL import Image

from framepack_live.engine.section import Section
from framepack_live.engine.settings import GenerationSettings

#: `progress(step, steps)` while a section is denoised. Implementations may call it from any
#: thread (the engine calls it from its worker); the session hops back onto its event loop.
ProgressCallback = Callable[[int, int], None]


class SectionSource(Protocol):
    """One video in the making: the engine state needed to continue it lives behind this object.

    Calls on one source never overlap: the session awaits each before making the next.
    """

    async def next_section(self, prompt: str, progress: ProgressCallback) -> Section:
        """Make the next section (playback order) with `prompt`, which may differ from the last one.

        The returned frames are final; the last `overlap_frames` of the video are held back for
        blending with the next section, see `flush`. A prompt the engine refuses raises
        `InputError` (`prompt_too_long`, ...) before anything changes, so the session can report
        it and go on with its last good prompt.
        """
        ...

    async def flush(self) -> Section | None:
        """The held-back tail once no section will follow (same `index` as the last section), or None."""
        ...

    async def close(self) -> None:
        """Free the engine state; the source is not used afterwards. Must not raise."""
        ...


class SectionBackend(Protocol):
    """Makes sections for any number of sessions."""

    async def open(self, prompt: str, image: Image.Image | None, settings: GenerationSettings) -> SectionSource:
        """Encode the start (prompt, and the start image or the built-in one when None) of a new video.

        Raises `InputError` for a prompt or image the engine refuses.
        """
        ...
