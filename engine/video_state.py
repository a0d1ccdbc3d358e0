"""One video's state and its section transitions: the single place where a video advances.

A section goes through three steps, each a plain function of the state:

    plan_section(state)            -> SectionPlan   what to denoise (packed context, noise); changes nothing
    accept_section(state, plan, x) -> DecodePlan    the denoised latents join the video, the timeline grows
    finish_section(state, plan, d) -> Section       the decoded frames become final, the rest stays pending

and `flush(state)` ends a forward video; `steer(state, prompt, transition)` changes the prompt for
the sections not yet planned, blending from the old prompt over `transition` sections. The
in-process `SectionGenerator` runs the three steps back to back; the cluster runs the denoise and the decode on other processes and may plan the
next section before the current one is decoded (planning reads neither the pending frames nor the
cursor). Whoever drives the steps owns only where the work runs: what the state becomes is decided
here, so both drivers make the same video bit for bit.

Randomness: one `torch.Generator` seeded with `settings.seed`, in diffusers' order (start-image
latents, end-image latents, then each section's noise), carried between sections as its state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from .conditioning import ImageConditioning, PromptBlend
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
    #: The prompt asked for last: the one sections use once any transition to it is over.
    prompt: str
    start: ImageConditioning
    rng_state: torch.Tensor
    #: Latents made so far in playback order (forward: the start frame first; inverted: the end of
    #: the video, the start frame prepended at the last step). May be cut to `compact`'s tail.
    video: torch.Tensor
    end_latents: torch.Tensor | None = None
    step: int = 0
    timeline: list[TimelineEntry] = field(default_factory=list)
    #: `blend` decoding: decoded frames at the growing edge, awaiting the next section's cross-fade.
    pending: torch.Tensor | None = None
    #: `causal` decoding: the last frame made final (uint8 [H, W, 3]), which the next section's
    #: frames continue from.
    last_frame: np.ndarray | None = None
    #: Forward: frames made final so far. Inverted: playback index where the pending frames end.
    frame_cursor: int = 0
    flushed: bool = False
    #: A transition to `prompt` in progress: the mix it blends from (None when there is none), its
    #: length in sections and how many of them are made.
    blend_from: PromptBlend | None = None
    transition: int = 0
    transition_done: int = 0

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
        data = {k: v for k, v in self.__dict__.items() if k not in ("settings", "start", "timeline", "blend_from")}
        data["settings"] = self.settings.to_dict()
        data["start"] = {"image_embeds": self.start.image_embeds, "image_latents": self.start.image_latents}
        data["timeline"] = [asdict(entry) for entry in self.timeline]
        data["blend_from"] = asdict(self.blend_from) if self.blend_from is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> VideoState:
        data = dict(data)
        data["settings"] = GenerationSettings(**data["settings"])
        data["start"] = ImageConditioning(**data["start"])
        data["timeline"] = [TimelineEntry(**entry) for entry in data["timeline"]]
        blend = data.get("blend_from")
        data["blend_from"] = PromptBlend(tuple(blend["prompts"]), tuple(blend["weights"])) if blend else None
        return cls(**data)


@dataclass
class VideoHistory:
    """An existing video to continue (`engine.extension` encodes one): the latents later sections
    read, newest last; its last frames as pixels ([1, 3, T, H, W] in [-1, 1]); its length in frames."""

    latents: torch.Tensor
    pending: torch.Tensor
    frames: int


@dataclass
class SectionPlan:
    """One section to denoise: everything but the conditioning, which the driver encodes.

    CPU tensors. `rng_state` is the generator's state after this section's noise was drawn; it
    becomes the video's when the section is accepted.
    """

    index: int
    #: The prompt the section is made for (its timeline entry's); `blend` is what conditions it.
    prompt: str
    noise: torch.Tensor
    context: PackedContext
    rng_state: torch.Tensor
    blend: PromptBlend


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


def begin_after(start: VideoStart, history: VideoHistory, settings: GenerationSettings, prompt: str) -> VideoState:
    """The state of a forward video that continues `history`, before its first new section.

    Packing reads the history's latents as the video so far; its last frames are pending, so the
    first new section is cross-faded into them as any section is into the one before. New sections
    count from 0 and their frames from the end of the history's.
    """
    if settings.sampling != "forward":
        raise ValueError("only forward sampling continues a video: the inverted order makes its end first")
    return VideoState(
        settings=settings,
        prompt=prompt,
        start=start.start,
        rng_state=start.rng_state,
        video=history.latents,
        pending=history.pending,
        frame_cursor=history.frames - history.pending.shape[2],
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


def steer(state: VideoState, prompt: str, transition: int | None = None) -> None:
    """Use `prompt` from the next planned section on, reached over `transition` sections (default:
    the settings'): section k + i of a transition starting at k is conditioned (i + 1) / (N + 1) of
    the way from what the last made section used to `prompt`, so section k + N is the first made
    with `prompt` alone; N = 0 switches at once. Before the first section there is nothing to blend
    from. A steer during a transition blends from wherever that transition had got to."""
    transition = state.settings.transition if transition is None else transition
    if transition < 0:
        raise ValueError(f"transition must be >= 0 sections, got {transition}")
    if prompt == state.prompt:
        return
    current = _blend_after(state, state.transition_done)
    state.prompt = prompt
    state.blend_from = current if transition > 0 and state.step > 0 else None
    state.transition, state.transition_done = transition, 0


def _blend_after(state: VideoState, made: int) -> PromptBlend:
    """The conditioning after `made` sections of the current transition (0: where it started)."""
    if state.blend_from is None:
        return PromptBlend.of(state.prompt)
    return state.blend_from.toward(state.prompt, made / (state.transition + 1))


def next_blend(state: VideoState) -> PromptBlend:
    """What conditions the next planned section. A plan made before a steer has another blend:
    drivers that plan ahead compare with this to know the plan is stale."""
    return _blend_after(state, state.transition_done + 1)


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
    return SectionPlan(
        index=state.next_index, prompt=state.prompt, noise=noise, context=context, rng_state=rng_state,
        blend=next_blend(state),
    )


def accept_section(state: VideoState, plan: SectionPlan, latents: torch.Tensor) -> DecodePlan:
    """The denoised `latents` of `plan` join the video; returns what to decode next."""
    settings = state.settings
    state.rng_state = plan.rng_state
    blend = dict(zip(plan.blend.prompts, plan.blend.weights)) if len(plan.blend.prompts) > 1 else None
    state.timeline.append(TimelineEntry(section=plan.index, prompt=plan.prompt, blend=blend))
    state.step += 1
    if state.blend_from is not None:
        state.transition_done += 1
        if state.transition_done >= state.transition:
            state.blend_from = None
    if state.forward:
        state.video = torch.cat([state.video, latents], dim=2)
        if settings.decode == "causal":
            # The first section decodes with the start frame, all of it new; later ones after the
            # previous section's latents (the newest `decode_context` of them) as context.
            context = 0 if state.last_frame is None else settings.decode_context or settings.window
            # A copy: a slice would carry the whole history's storage when the plan is pickled for
            # another process (a Decoder replica).
            return DecodePlan(
                forward=True,
                latents=(state.video[:, :, -(context + latents.shape[2]) :] if context else state.video).clone(),
                pending=None, cursor=state.frame_cursor, overlap=0, last=False, causal=True, context=context,
                shown=state.last_frame,
            )
        decode_from = state.video[:, :, -2 * settings.window :] if state.pending is not None else state.video
        return DecodePlan(
            forward=True, latents=decode_from.clone(), pending=state.pending, cursor=state.frame_cursor,
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
    """The decode of `plan`'s section is in: its final frames, in `blend` mode the rest pending for
    the next one."""
    state.pending = decoded.pending
    if state.settings.decode == "causal":
        state.last_frame = decoded.frames[-1].copy()
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
    keep = latents_read(state.settings)
    state.video = state.video[:, :, -keep:] if state.forward else state.video[:, :, :keep]


def latents_read(settings: GenerationSettings) -> int:
    """Newest latent frames a later section reads: packing's history and the next decode's context."""
    return max(HISTORY_FRAMES, 2 * settings.window)


def snapshot(state: VideoState) -> VideoState:
    """A copy of `state` to keep (a section boundary) or to continue from (a rewind): cut to the
    latents later sections read, sharing no tensor or list with `state`, so neither the original
    going on nor a driver reading the copy's tensors in place can change the other. The start
    conditioning is shared: it is never changed."""
    keep = latents_read(state.settings)
    video = state.video[:, :, -keep:] if state.forward else state.video[:, :, :keep]
    return replace(
        state,
        video=video.clone(),
        rng_state=state.rng_state.clone(),
        pending=None if state.pending is None else state.pending.clone(),
        last_frame=None if state.last_frame is None else state.last_frame.copy(),
        timeline=list(state.timeline),
    )


def snapshot_bytes(state: VideoState) -> int:
    """Bytes of what `snapshot` copies (the tensors; the timeline's prompts are a few bytes more)."""
    tensors = [state.video, state.rng_state, state.pending]
    total = sum(t.numel() * t.element_size() for t in tensors if t is not None)
    return total + (state.last_frame.nbytes if state.last_frame is not None else 0)

