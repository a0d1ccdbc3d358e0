"""What `stream/` needs from whatever makes the sections: a small async Protocol.

Sessions, the WebSocket protocol and WebRTC only ever talk to a `SectionBackend`. The in-process
implementation (`stream.local_backend.InProcessBackend`) runs the engine's `SectionGenerator` in
a worker thread; the cluster implements the same Protocol over its Ray deployments. Keeping it
this small is what lets both exist without `stream/` knowing about Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from PIL import Image

from framepack_live.engine.section import Section
from framepack_live.engine.settings import GenerationSettings

#: `progress(step, steps)` while a section is denoised. Implementations may call it from any
#: thread (the engine calls it from its worker); the session hops back onto its event loop.
ProgressCallback = Callable[[int, int], None]
#: `preview(step, steps, frames)`: a cheap RGB preview of the section being denoised, uint8
#: [T, h, w, 3] (one frame per latent frame), before that step's `progress`; any thread.
PreviewCallback = Callable[[int, int, np.ndarray], None]


def worth_restarting(step: int, steps: int) -> bool:
    """Whether a steer should start the section being denoised over with the new prompt.

    Restarting at step s of S puts the steer's frames about one section period after it (S steps
    and a decode) and wastes s steps; not restarting puts them (S - s) + S steps after it. With
    at most half the steps done the restart is the only way to keep every steer within 1.5
    periods; past half, letting the section finish is within 1.5 periods too and wastes nothing.
    """
    return 2 * step <= steps


def worth_redoing(decoding_for: float, decode_s: float | None, denoise_s: float | None) -> bool:
    """Whether a steer that comes while a section is decoded, its frames not yet shown, should drop
    that section and make it again with the new prompt, where the decode runs apart from the
    denoise (a server's stages, which work ahead on the next section meanwhile).

    Made again, the steer's frames come a denoise and a decode after the steer. Kept, they come
    with the next section: after the rest of this decode (the next section is denoised with the
    new prompt meanwhile, if that takes no longer) and its own decode. So it pays while more of
    this decode is left than a denoise takes, by the last section's figures (none yet: keep it).
    """
    if decode_s is None or denoise_s is None:
        return False
    return decode_s - decoding_for > denoise_s


class SectionSource(Protocol):
    """One video in the making: the engine state needed to continue it lives behind this object.

    `next_section` calls never overlap: the session awaits each before making the next; `restart`
    may come while one runs.
    """

    async def next_section(
        self,
        prompt: str,
        progress: ProgressCallback,
        preview: PreviewCallback | None = None,
        transition: int | None = None,
    ) -> Section:
        """Make the next section (playback order) with `prompt`, which may differ from the last one
        (then blended in over `transition` sections; None: the settings'). The returned section
        says which prompt made it (a `restart` may have changed it).

        The returned frames are final; in `blend` decoding the last `overlap_frames` of the video
        are held back for blending with the next section, see `flush`. A prompt the engine refuses
        raises `InputError` (`prompt_too_long`, ...) before anything changes, so the session can
        report it and go on with its last good prompt.
        """
        ...

    async def restart(self, prompt: str, transition: int | None = None) -> bool:
        """A steer during `next_section`: start the section being denoised over with `prompt` when
        that pays (`worth_restarting`), or the one being decoded where decoding runs apart
        (`worth_redoing`); True if it did. Otherwise, or if the engine refuses the
        prompt, nothing changes and the next `next_section` call brings the prompt as usual."""
        ...

    async def rewind(self, section: int, prompt: str, transition: int | None = None, branch: int | None = None) -> int:
        """Go back to the boundary before `section` of `branch`'s path (default: the branch being
        made; `section` may be its end) and make a new branch from there: the next `next_section`
        makes section `section` again, from the engine state kept for that boundary, with `prompt`
        (blended in over `transition` sections when it differs from the prompt that boundary had).
        Returns the new branch's number (branches count from 0, in the order they are made).
        Called between `next_section` calls; anything made ahead for the old branch is dropped.
        `InputError` (`bad_request` for a boundary not made, the engine's codes for a refused
        prompt) before anything changes. With the prompt (and transition) the section was made
        with, it is made again bit for bit."""
        ...

    async def flush(self) -> Section | None:
        """The held-back tail once no section will follow (same `index` as the last section), or None."""
        ...

    async def close(self) -> None:
        """Free the engine state; the source is not used afterwards. Must not raise."""
        ...


class SectionBackend(Protocol):
    """Makes sections for any number of sessions."""

    async def open(
        self, prompt: str, image: Image.Image | None, settings: GenerationSettings, from_text: bool = False
    ) -> SectionSource:
        """Encode the start (prompt, and the start image or the built-in one when None) of a new video.
        `from_text`: no image; the start is made from the prompt (`engine.text_start`), which
        costs one section's denoise and decode before the first section.

        Raises `InputError` for a prompt or image the engine refuses.
        """
        ...
