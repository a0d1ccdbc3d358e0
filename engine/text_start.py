"""Text-to-video: a start made from the prompt alone, for a model that needs a start image.

FramePack's transformer always conditions on a start frame (its latents open the packed context
and the image encoder's tokens are cross-attended), so there is no start-free mode to switch on.
The start is made instead: an empty scene (a black frame, as FramePack-Studio's default for
text-to-video) is encoded as the start image, one forward section is generated from it with the
prompt, and that section's last frame, where the prompt has had the most time to take shape,
becomes the video's start image. The video is then an ordinary image-to-video one anchored to a
frame made from the prompt, rather than to the empty frame: FramePack pulls every section back
toward its start frame, and an empty anchor would keep pulling the video back toward nothing.

The sketch section costs one section's denoise and decode. Its randomness comes from the one
generator seeded with `settings.seed`: the empty frame's VAE posterior, the sketch's noise, then
the made start's posterior, after which the video's sections draw theirs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from . import video_state
from .conditioning import encode_image
from .generator import SectionGenerator
from .model import FramePackModel
from .sampling import Progress
from .settings import GenerationSettings
from .video_state import VideoStart, VideoState

#: The empty scene the sketch starts from.
EMPTY_SCENE = (0, 0, 0)


def empty_scene(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), EMPTY_SCENE)


@torch.no_grad()
def start_from_text(model: FramePackModel, prompt: str, settings: GenerationSettings,
                    progress: Progress | None = None) -> VideoStart:
    """A `VideoStart` made from the prompt alone; begin the video with `video_state.begin`.

    `progress` reports the sketch section's steps. A driver that runs the stages elsewhere does
    the same with `sketch_state`, the usual section transitions and `flush`, and `start_after`."""
    sketch = SectionGenerator.from_state(model, sketch_state(model, prompt, settings))
    section = sketch.next_section(progress)
    tail = sketch.flush()
    return start_after(model, sketch.state, (tail or section).frames[-1])


@torch.no_grad()
def sketch_state(model: FramePackModel, prompt: str, settings: GenerationSettings) -> VideoState:
    """The one-section forward video from the empty scene that the start is sketched in."""
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    empty = encode_image(model, empty_scene(settings.width, settings.height), settings.width, settings.height, generator)
    one_section = replace(settings, sampling="forward", sections=1)
    return video_state.begin(VideoStart(empty.to(torch.device("cpu")), generator.get_state()), one_section, prompt)


@torch.no_grad()
def start_after(model: FramePackModel, sketch: VideoState, last_frame: np.ndarray) -> VideoStart:
    """The video's start: the sketch's last frame (uint8 [H, W, 3]) encoded as its start image,
    its random draws continuing the sketch's generator."""
    generator = torch.Generator("cpu")
    generator.set_state(sketch.rng_state)
    settings = sketch.settings
    start = encode_image(model, Image.fromarray(last_frame), settings.width, settings.height, generator)
    return VideoStart(start=start.to(torch.device("cpu")), rng_state=generator.get_state())
