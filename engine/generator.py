"""The in-process section generator: a video made section by section on this process's model.

It drives `video_state`'s transitions back to back (plan, denoise, accept, decode, finish), encoding
prompts itself and caching their embeddings, so everything about how a video advances lives in
`video_state` and the cluster, which runs the same transitions across processes, makes the same
video. The state is plain data: a video can be saved after any section and continued later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

import torch
from PIL import Image

from . import video_state
from .conditioning import (
    ImageEncoding,
    PromptBlend,
    PromptEmbeds,
    blend_embeds,
    check_prompt,
    encode_prompt,
    image_encoding,
)
from .decoding import decode_section
from .denoising import denoise_plans
from .images import default_start_image
from .model import FramePackModel
from .preview import PreviewCallback
from .sampling import Guidance, Progress
from .section import Section, TimelineEntry
from .settings import GenerationSettings
from .video_state import VideoStart, VideoState

#: An image's encoding at a width and height (`start_video`'s `encode`).
ImageEncoder = Callable[[Image.Image, int, int], ImageEncoding]


def start_video(
    model: FramePackModel,
    image: Image.Image,
    settings: GenerationSettings,
    end_image: Image.Image | None = None,
    encode: ImageEncoder | None = None,
) -> VideoStart:
    """Encode the start (and optional end) image, drawing their latents from the seeded generator.

    With an end image the SigLIP conditioning is the mean of both images', as in diffusers.
    `encode` gives an image's `ImageEncoding` at a size (default: `image_encoding`, every time; the
    Encoder deployment passes one that keeps recent images').
    """
    encode = encode or partial(image_encoding, model)
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    start = encode(image, settings.width, settings.height).sample(model, generator)
    end_latents = None
    if end_image is not None:
        end = encode(end_image, settings.width, settings.height).sample(model, generator)
        start = replace(start, image_embeds=(start.image_embeds + end.image_embeds) / 2)
        end_latents = end.image_latents.cpu()
    return VideoStart(start=start.to(torch.device("cpu")), rng_state=generator.get_state(), end_latents=end_latents)


class SectionGenerator:
    """Makes a FramePack video section by section in this process; see the module docstring."""

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
        self.state = video_state.begin(begun, settings, prompt)
        self._prompts: dict[str, PromptEmbeds] = {}

    @classmethod
    def from_state(cls, model: FramePackModel, state: VideoState) -> SectionGenerator:
        """Drive a state begun elsewhere: `video_state.begin` of a start made from the prompt alone
        (`engine.text_start`), `video_state.begin_after` of a video to continue (`engine.extension`)."""
        generator = cls.__new__(cls)
        generator.model = model
        generator.state = state
        generator._prompts = {}
        return generator

    @classmethod
    def from_state_dict(cls, model: FramePackModel, data: dict) -> SectionGenerator:
        return cls.from_state(model, VideoState.from_dict(data))

    def state_dict(self) -> dict:
        return self.state.to_dict()

    total_frames = staticmethod(video_state.total_frames)

    @property
    def settings(self) -> GenerationSettings:
        return self.state.settings

    @property
    def timeline(self) -> list[TimelineEntry]:
        return list(self.state.timeline)

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def next_index(self) -> int:
        """Playback index of the section the next call makes."""
        return self.state.next_index

    def set_prompt(self, prompt: str, transition: int | None = None) -> None:
        """Use `prompt` from the next section on (sections already made are untouched), blended in
        over `transition` sections (default: the settings'; see `video_state.steer`)."""
        check_prompt(self.model, prompt)
        video_state.steer(self.state, prompt, transition)

    def video_latents(self) -> torch.Tensor:
        return self.state.video.clone()

    def _embeds(self, prompt: str) -> PromptEmbeds:
        if prompt not in self._prompts:
            self._prompts[prompt] = encode_prompt(self.model, prompt)
        return self._prompts[prompt]

    def guidance(self, blend: PromptBlend) -> Guidance:
        """The conditioning of a prompt blend (a plan's), its prompts encoded once and cached."""
        settings = self.settings
        return Guidance(
            prompt=blend_embeds([self._embeds(p) for p in blend.prompts], blend.weights),
            image_embeds=self.state.start.image_embeds,
            negative=self._embeds(settings.negative_prompt) if settings.cfg > 1.0 else None,
        )

    def next_section(self, progress: Progress | None = None, preview: PreviewCallback | None = None) -> Section:
        """Denoise and decode the next section; returns the frames that became final.

        `preview(step, steps, [frames])` gets a cheap preview of the section while it denoises,
        every `settings.preview_every` steps (engine.preview).
        """
        plan = video_state.plan_section(self.state)
        (latents,) = denoise_plans(
            self.model, [plan], [self.guidance(plan.blend)], self.settings, progress, preview,
            self.settings.preview_every,
        )
        decode = video_state.accept_section(self.state, plan, latents)
        return video_state.finish_section(self.state, plan, decode_section(self.model, decode))

    def flush(self) -> Section | None:
        """End a forward video: the pending frames become final. No section can follow."""
        return video_state.flush(self.state)
