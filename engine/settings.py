"""Settings of one generated video: everything a section needs besides model weights and state."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

Sampling = Literal["forward", "inverted"]
SchedulerName = Literal["euler", "unipc"]
DecodeMode = Literal["blend", "causal"]

#: The VAE of HunyuanVideo compresses 4 video frames into one latent frame (plus the first frame).
VAE_TEMPORAL_RATIO = 4
VAE_SPATIAL_RATIO = 8


@dataclass(frozen=True)
class GenerationSettings:
    """Sampler and video settings. Frozen: a section is only reproducible if nothing moves under it.

    Defaults follow the original FramePack demo (25 steps, distilled guidance 10, window 9, 30 fps),
    except the sampler: `unipc` is the original's default, `euler` is what diffusers' pipeline uses.
    """

    width: int = 256
    height: int = 256
    steps: int = 25
    guidance: float = 10.0
    cfg: float = 1.0
    guidance_rescale: float = 0.0
    negative_prompt: str = ""
    seed: int = 0
    window: int = 9
    sampling: Sampling = "forward"
    scheduler: SchedulerName = "unipc"
    #: Length of the video in sections. Required by the inverted order (it generates from the end);
    #: `None` in forward order means "until stopped".
    sections: int | None = None
    fps: int = 30
    #: How each section's latents become frames (engine/decoding.py). `blend`: decoded with the
    #: previous section and cross-faded over `overlap_frames`, as diffusers and the original do (its
    #: frames equal diffusers' video), holding those frames back until the next section. `causal`
    #: (forward only): the new latents decoded after the previous section's as the causal VAE's
    #: context, every frame final at once; what a live stream wants.
    decode: DecodeMode = "blend"
    #: `causal` decoding: latent frames of the previous section decoded before the new ones as the
    #: VAE's context (1 to `window`; None: the whole window). The decode's cost grows with it (on
    #: the toy model 4 latent frames take half the time of 6), and the frames hardly differ past
    #: the first (`framepack-live bench seams` measures both).
    decode_context: int | None = None
    #: Sections a steer's new prompt is blended in over (`video_state.steer`); 0 switches at once.
    transition: int = 0
    #: A step preview after every this many denoising steps, for drivers that ask for previews (0: none).
    preview_every: int = 1
    #: LoRA adapters the transformer runs with, as (weights file, scale) pairs (`engine.lora`):
    #: they change what a section becomes, so they belong to the video like its sampler settings.
    loras: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        # Lists (from JSON or a state dict) become tuples: the settings stay hashable and comparable.
        object.__setattr__(self, "loras", tuple((str(path), float(scale)) for path, scale in self.loras))
        problems = []
        if self.width % 16 or self.height % 16 or self.width <= 0 or self.height <= 0:
            problems.append(f"width and height must be positive multiples of 16, got {self.width}x{self.height}")
        if self.steps < 1:
            problems.append(f"steps must be at least 1, got {self.steps}")
        if self.window < 1:
            problems.append(f"window must be at least 1, got {self.window}")
        if self.sampling not in ("forward", "inverted"):
            problems.append(f"sampling must be 'forward' or 'inverted', got {self.sampling!r}")
        if self.scheduler not in ("euler", "unipc"):
            problems.append(f"scheduler must be 'euler' or 'unipc', got {self.scheduler!r}")
        if self.sampling == "inverted" and not self.sections:
            problems.append("inverted sampling generates from the end, so it needs a fixed number of sections")
        if self.sections is not None and self.sections < 0:
            problems.append(f"sections must be >= 0, got {self.sections}")
        if self.decode not in ("blend", "causal"):
            problems.append(f"decode must be 'blend' or 'causal', got {self.decode!r}")
        if self.decode == "causal" and self.sampling != "forward":
            problems.append("causal decoding needs forward sampling: an inverted video has no earlier frames to decode after")
        if self.decode_context is not None and not 1 <= self.decode_context <= self.window:
            problems.append(f"decode_context must be 1 to the window ({self.window}) latent frames, got {self.decode_context}")
        if self.transition < 0:
            problems.append(f"transition must be >= 0 sections, got {self.transition}")
        if self.preview_every < 0:
            problems.append(f"preview_every must be >= 0 steps, got {self.preview_every}")
        if self.cfg < 1.0:
            problems.append(f"cfg must be >= 1 (1 disables real CFG), got {self.cfg}")
        if not all(math.isfinite(scale) for _, scale in self.loras):
            problems.append(f"LoRA scales must be finite numbers, got {[scale for _, scale in self.loras]}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def frames_per_section(self) -> int:
        """Video frames that one section adds once the video is running (the first adds one more)."""
        return self.window * VAE_TEMPORAL_RATIO

    @property
    def overlap_frames(self) -> int:
        """Video frames blended between consecutive section decodes (as in the original and diffusers)."""
        return (self.window - 1) * VAE_TEMPORAL_RATIO + 1

    def to_dict(self) -> dict:
        return asdict(self)

