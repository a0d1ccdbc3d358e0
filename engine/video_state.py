"""One video's state and its section transitions: the single place where a video advances.

A section goes through three steps, each a plain function of the state:

    plan_section(state)            -> SectionPlan   what to denoise (packed context, noise); changes nothing
    accept_section(state, plan, x) -> DecodePlan    the denoised latents join the video, the timeline grows
    finish_section(state, plan, d) -> Section       the decoded frames become final, the rest stays pending

and `flush(state)` ends a forward video. The in-process `SectionGenerator` runs the three steps
back to back; the cluster runs the denoise and the decode on other processes and may plan the
next section before the current one is decoded (planning reads neither the pending frames nor the
cursor). Whoever drives the steps owns only where the work runs: what the state becomes is decided
here, so both drivers make the same video bit for bit.

Randomness: one `torch.Generator` seeded with `settings.seed`, in diffusers' order (start-image
latents, end-image latents, then each section's noise), carried between sections as its state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .conditioning import ImageConditioning
from .decoding import Decoded, DecodePlan, to_uint8
from .packing import HISTORY_FRAMES, PackedContext, pack_forward, pack_inverted
from .section import Section, TimelineEntry
from .settings import VAE_SPATIAL_RATIO, VAE_TEMPORAL_RATIO, GenerationSettings


@dataclass
class VideoStart:
    """A new video's start image, encoded, and the random generator's state after it."""

    start: ImageConditioning
    rng_state: torch.Tensor
    end_latents: torch.Tensor | None = None


@dataclass
class VideoState:
    """Everything needed to make the next section, as CPU tensors, numbers and strings."""

    settings: GenerationSettings
    prompt: str
    start: ImageConditioning
    rng_state: torch.Tensor
    #: Latents made so far in playback order (forward: the start frame first; inverted: the end of
    #: the video, the start frame prepended at the last step). May be cut to `compact`'s tail.
    video: torch.Tensor
    end_latents: torch.Tensor | None = None
    step: int = 0
    timeline: list[TimelineEntry] = field(default_factory=list)
    #: Decoded frames at the growing edge, awaiting the next section's cross-fade.
    pending: torch.Tensor | None = None
    #: Forward: frames made final so far. Inverted: playback index where the pending frames end.
    frame_cursor: int = 0
    flushed: bool = False

    @property
    def forward(self) -> bool:
        return self.settings.sampling == "forward"

    @property
    def finished(self) -> bool:
        limit = self.settings.sections
        return self.flushed or (bool(limit) and self.step >= limit)

    @property
    def next_index(self) -> int:
        """Playback index of the section the next plan makes."""
        return self.step if self.forward else self.settings.sections - 1 - self.step

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in ("settings", "start", "timeline")}
        data["settings"] = self.settings.to_dict()
        data["start"] = {"image_embeds": self.start.image_embeds, "image_latents": self.start.image_latents}
        data["timeline"] = [asdict(entry) for entry in self.timeline]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> VideoState:
        data = dict(data)
        data["settings"] = GenerationSettings(**data["settings"])
        data["start"] = ImageConditioning(**data["start"])
        data["timeline"] = [TimelineEntry(**entry) for entry in data["timeline"]]
        return cls(**data)


@dataclass
class SectionPlan:
    """One section to denoise: everything but the conditioning, which the driver encodes.

    CPU tensors. `rng_state` is the generator's state after this section's noise was drawn; it
    becomes the video's when the section is accepted.
    """

    index: int
    prompt: str
    noise: torch.Tensor
    context: PackedContext
    rng_state: torch.Tensor


def total_frames(settings: GenerationSettings) -> int:
    """Video frames of a finished video of `settings.sections` sections."""
    return settings.sections * settings.window * VAE_TEMPORAL_RATIO + 1


def begin(start: VideoStart, settings: GenerationSettings, prompt: str) -> VideoState:
    """The state of a video before its first section."""
    image_latents = start.start.image_latents
    forward = settings.sampling == "forward"
    return VideoState(
        settings=settings,
        prompt=prompt,
        start=start.start,
        rng_state=start.rng_state,
        video=image_latents if forward else image_latents[:, :, :0],
        end_latents=start.end_latents,
        frame_cursor=0 if forward else total_frames(settings),
    )


def draw_noise(state: VideoState) -> tuple[torch.Tensor, torch.Tensor]:
    """The next section's initial noise (float32, on the CPU) and the generator state after it."""
    settings = state.settings
    generator = torch.Generator("cpu")
    generator.set_state(state.rng_state)
    shape = (
        1,
        state.start.image_latents.shape[1],
        settings.window,
        settings.height // VAE_SPATIAL_RATIO,
        settings.width // VAE_SPATIAL_RATIO,
    )
    # What diffusers' `randn_tensor` does with one CPU generator (the parity tests hold it to that),
    # without importing diffusers into every process that plans sections (a session's).
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    return noise, generator.get_state()


def plan_section(state: VideoState) -> SectionPlan:
    """What the next section needs denoised, with the state's current prompt. Changes nothing."""
    if state.finished:
        raise RuntimeError("this video is finished: all sections are made or it was flushed")
    settings = state.settings
    start = state.start.image_latents
    if state.forward:
        context = pack_forward(state.video, start, settings.window)
    else:
        context = pack_inverted(state.video, start, settings.window, state.step, settings.sections, state.end_latents)
    noise, rng_state = draw_noise(state)
    return SectionPlan(index=state.next_index, prompt=state.prompt, noise=noise, context=context, rng_state=rng_state)


def accept_section(state: VideoState, plan: SectionPlan, latents: torch.Tensor) -> DecodePlan:
    """The denoised `latents` of `plan` join the video; returns what to decode next."""
    settings = state.settings
    state.rng_state = plan.rng_state
    state.timeline.append(TimelineEntry(section=plan.index, prompt=plan.prompt))
    state.step += 1
    if state.forward:
        state.video = torch.cat([state.video, latents], dim=2)
        decode_from = state.video[:, :, -2 * settings.window :] if state.pending is not None else state.video
        return DecodePlan(
            forward=True, latents=decode_from, pending=state.pending, cursor=state.frame_cursor,
            overlap=settings.overlap_frames, last=False,
        )
    last = state.finished
    if last:
        latents = torch.cat([state.start.image_latents, latents], dim=2)
    state.video = torch.cat([latents, state.video], dim=2)
    length = latents.shape[2] + (settings.window if state.pending is not None else 0)
    return DecodePlan(
        forward=False, latents=state.video[:, :, :length], pending=state.pending, cursor=state.frame_cursor,
        overlap=settings.overlap_frames, last=last,
    )


def finish_section(state: VideoState, plan: SectionPlan, decoded: Decoded) -> Section:
    """The decode of `plan`'s section is in: its final frames, the rest pending for the next one."""
    state.pending = decoded.pending
    if state.forward:
        state.frame_cursor += decoded.frames.shape[0]
    else:
        state.frame_cursor = decoded.first_frame
    return Section(
        index=plan.index, prompt=plan.prompt, first_frame=decoded.first_frame, frames=decoded.frames,
        fps=state.settings.fps,
    )


def flush(state: VideoState) -> Section | None:
    """End a forward video: the pending frames become final. No section can follow."""
    if state.flushed or state.pending is None or state.pending.shape[2] == 0 or not state.forward:
        state.flushed = True
        return None
    frames = to_uint8(state.pending)
    section = Section(
        index=state.step - 1,
        prompt=state.timeline[-1].prompt,
        first_frame=state.frame_cursor,
        frames=frames,
        fps=state.settings.fps,
    )
    state.frame_cursor += frames.shape[0]
    state.pending = None
    state.flushed = True
    return section


def compact(state: VideoState) -> None:
    """Keep only the latents later sections read (packing's history and the next decode's
    context), so a state that travels or is stored stays small however long the video gets."""
    keep = max(HISTORY_FRAMES, 2 * state.settings.window)
    state.video = state.video[:, :, -keep:] if state.forward else state.video[:, :, :keep]
