"""The resumable section generator: one section per call, all state plain data.

Everything a section depends on (the latents made so far, the random generator's state, the
prompt, the pending decoded frames) lives in `GeneratorState`, so a section can be recomputed on
any worker and a video can be saved after any section and continued later. The generator draws
from one `torch.Generator` seeded with `settings.seed`, in diffusers' order: start-image
latents, (end-image latents,) then each section's noise, so a seed means what it means there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from .conditioning import ImageConditioning, PromptEmbeds, check_prompt, encode_image, encode_prompt
from .decoding import decode_forward, decode_inverted, to_uint8
from .images import default_start_image
from .model import FramePackModel
from .packing import pack_forward, pack_inverted
from .sampling import Guidance, Progress, denoise_section
from .section import Section, TimelineEntry
from .settings import VAE_SPATIAL_RATIO, VAE_TEMPORAL_RATIO, GenerationSettings


@dataclass
class GeneratorState:
    """Everything needed to make the next section, as CPU tensors, numbers and strings."""

    settings: GenerationSettings
    prompt: str
    start: ImageConditioning
    rng_state: torch.Tensor
    #: Latents made so far in playback order (forward: the start frame first; inverted: the end of
    #: the video, the start frame prepended at the last step).
    video: torch.Tensor
    end_latents: torch.Tensor | None = None
    step: int = 0
    timeline: list[TimelineEntry] = field(default_factory=list)
    #: Decoded frames at the growing edge, awaiting the next section's cross-fade.
    pending: torch.Tensor | None = None
    #: Forward: frames made final so far. Inverted: playback index where the pending frames end.
    frame_cursor: int = 0
    flushed: bool = False

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in ("settings", "start", "timeline")}
        data["settings"] = self.settings.to_dict()
        data["start"] = {"image_embeds": self.start.image_embeds, "image_latents": self.start.image_latents}
        data["timeline"] = [asdict(entry) for entry in self.timeline]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorState:
        data = dict(data)
        data["settings"] = GenerationSettings(**data["settings"])
        data["start"] = ImageConditioning(**data["start"])
        data["timeline"] = [TimelineEntry(**entry) for entry in data["timeline"]]
        return cls(**data)


@dataclass
class VideoStart:
    """A new video's start image, encoded, and the random generator's state after it."""

    start: ImageConditioning
    rng_state: torch.Tensor
    end_latents: torch.Tensor | None = None


def start_video(
    model: FramePackModel, image: Image.Image, settings: GenerationSettings, end_image: Image.Image | None = None
) -> VideoStart:
    """Encode the start (and optional end) image, drawing their latents from the seeded generator.

    With an end image the SigLIP conditioning is the mean of both images', as in diffusers.
    """
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    start = encode_image(model, image, settings.width, settings.height, generator)
    end_latents = None
    if end_image is not None:
        end = encode_image(model, end_image, settings.width, settings.height, generator)
        start = replace(start, image_embeds=(start.image_embeds + end.image_embeds) / 2)
        end_latents = end.image_latents.cpu()
    return VideoStart(start=start.to(torch.device("cpu")), rng_state=generator.get_state(), end_latents=end_latents)


def draw_noise(
    model: FramePackModel, settings: GenerationSettings, rng_state: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A section's initial noise from a saved generator state; returns it with the advanced state."""
    generator = torch.Generator("cpu")
    generator.set_state(rng_state)
    shape = (
        1,
        model.latent_channels,
        settings.window,
        settings.height // VAE_SPATIAL_RATIO,
        settings.width // VAE_SPATIAL_RATIO,
    )
    noise = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
    return noise, generator.get_state()


class SectionGenerator:
    """Makes a FramePack video section by section; see the module docstring."""

    def __init__(
        self,
        model: FramePackModel,
        prompt: str,
        image: Image.Image | None = None,
        settings: GenerationSettings | None = None,
        end_image: Image.Image | None = None,
    ) -> None:
        settings = settings or GenerationSettings()
        if end_image is not None and settings.sampling != "inverted":
            raise ValueError("an end image needs inverted sampling: a forward video has no fixed end")
        check_prompt(model, prompt)
        self.model = model
        begun = start_video(model, image or default_start_image(), settings, end_image)
        start, end_latents = begun.start, begun.end_latents
        empty = start.image_latents[:, :, :0]
        self.state = GeneratorState(
            settings=settings,
            prompt=prompt,
            start=start,
            rng_state=begun.rng_state,
            video=start.image_latents if settings.sampling == "forward" else empty,
            end_latents=end_latents,
            frame_cursor=0 if settings.sampling == "forward" else self.total_frames(settings),
        )
        self._prompts: dict[str, PromptEmbeds] = {}

    @classmethod
    def from_state_dict(cls, model: FramePackModel, data: dict) -> SectionGenerator:
        generator = cls.__new__(cls)
        generator.model = model
        generator.state = GeneratorState.from_dict(data)
        generator._prompts = {}
        return generator

    def state_dict(self) -> dict:
        return self.state.to_dict()

    @staticmethod
    def total_frames(settings: GenerationSettings) -> int:
        return settings.sections * settings.window * VAE_TEMPORAL_RATIO + 1

    @property
    def settings(self) -> GenerationSettings:
        return self.state.settings

    @property
    def timeline(self) -> list[TimelineEntry]:
        return list(self.state.timeline)

    @property
    def finished(self) -> bool:
        limit = self.settings.sections
        return self.state.flushed or (bool(limit) and self.state.step >= limit)

    @property
    def next_index(self) -> int:
        """Playback index of the section the next call makes."""
        if self.settings.sampling == "forward":
            return self.state.step
        return self.settings.sections - 1 - self.state.step

    def set_prompt(self, prompt: str) -> None:
        """Use `prompt` from the next section on (sections already made are untouched)."""
        check_prompt(self.model, prompt)
        self.state.prompt = prompt

    def video_latents(self) -> torch.Tensor:
        return self.state.video.clone()

    def _embeds(self, prompt: str) -> PromptEmbeds:
        if prompt not in self._prompts:
            self._prompts[prompt] = encode_prompt(self.model, prompt)
        return self._prompts[prompt]

    def _guidance(self) -> Guidance:
        settings = self.settings
        device, dtype = self.model.pipeline._execution_device, self.model.dtype
        negative = self._embeds(settings.negative_prompt) if settings.cfg > 1.0 else None
        return Guidance(
            prompt=self._embeds(self.state.prompt),
            image_embeds=self.state.start.image_embeds.to(device, dtype),
            negative=negative,
        )

    def next_section(self, progress: Progress | None = None) -> Section:
        """Denoise and decode the next section; returns the frames that became final."""
        if self.finished:
            raise RuntimeError("this video is finished: all sections are made or it was flushed")
        state, settings = self.state, self.settings
        device = self.model.pipeline._execution_device
        start = state.start.image_latents.to(device)
        forward = settings.sampling == "forward"
        if forward:
            context = pack_forward(state.video.to(device), start, settings.window)
        else:
            end = state.end_latents.to(device) if state.end_latents is not None else None
            context = pack_inverted(state.video.to(device), start, settings.window, state.step, settings.sections, end)
        noise, rng_state = draw_noise(self.model, settings, state.rng_state, device)
        latents = denoise_section(self.model.transformer, noise, context, self._guidance(), settings, progress).cpu()
        index = self.next_index
        state.rng_state = rng_state
        state.timeline.append(TimelineEntry(section=index, prompt=state.prompt))
        state.step += 1
        if forward:
            state.video = torch.cat([state.video, latents], dim=2)
            decode_from = state.video[:, :, -2 * settings.window :] if state.pending is not None else state.video
            decoded = decode_forward(self.model, decode_from, state.pending, state.frame_cursor, settings.overlap_frames)
            state.frame_cursor += decoded.frames.shape[0]
        else:
            last = self.finished
            if last:
                latents = torch.cat([state.start.image_latents, latents], dim=2)
            state.video = torch.cat([latents, state.video], dim=2)
            length = latents.shape[2] + (settings.window if state.pending is not None else 0)
            decoded = decode_inverted(
                self.model, state.video[:, :, :length], state.pending, state.frame_cursor, settings.overlap_frames, last
            )
            state.frame_cursor = decoded.first_frame
        state.pending = decoded.pending
        return Section(
            index=index, prompt=state.prompt, first_frame=decoded.first_frame, frames=decoded.frames, fps=settings.fps
        )

    def flush(self) -> Section | None:
        """End a forward video: the pending frames become final. No section can follow."""
        state = self.state
        if state.flushed or state.pending is None or state.pending.shape[2] == 0 or self.settings.sampling != "forward":
            state.flushed = True
            return None
        frames = to_uint8(state.pending)
        section = Section(
            index=state.step - 1,
            prompt=state.timeline[-1].prompt,
            first_frame=state.frame_cursor,
            frames=frames,
            fps=self.settings.fps,
        )
        state.frame_cursor += frames.shape[0]
        state.pending = None
        state.flushed = True
        return section
