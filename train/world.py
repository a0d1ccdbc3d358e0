"""The procedural toy world: coloured shapes on simple backgrounds, moving as their captions say.

Every clip is a pure function of its seed, so a data set needs no storage and an evaluation can
regenerate the ground truth (object positions per frame) it scores against. Captions change only
at section boundaries (every `window` latent frames, i.e. `window * 4` video frames after the
start frame), which is where the engine applies a steered prompt: a training window then has one
caption, and the history before it shows the previous motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Saturated shape colours, far (in RGB) from every background palette below, so a colour mask
#: finds the shape in decoded frames.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "yellow": (235, 205, 30),
    "blue": (30, 50, 200),
    "purple": (150, 40, 190),
}
SHAPES = ("circle", "square", "triangle")
OBJECT_MOTIONS = ("left", "right", "up", "down")
PAN_MOTIONS = ("pan left", "pan right")
#: Motions the world can render but its own clips never show: concepts the shipped model never saw,
#: for LoRAs to teach (`python -m framepack_live.train --lora`). "diagonally" is up and to the right.
NEW_MOTIONS = ("diagonally",)
#: Unit displacement of the object in image coordinates (x right, y down) per motion word.
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1),
    "diagonally": (0.5**0.5, -(0.5**0.5)),
}
#: Backgrounds: (top colour, bottom colour) of a sky/ground split; the first is the engine's default
#: start image's palette, so the CPU default starts in distribution.
PALETTES: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((130, 180, 235), (50, 130, 60)),
    ((170, 200, 225), (150, 130, 90)),
    ((200, 200, 200), (110, 110, 110)),
    ((60, 70, 90), (40, 45, 40)),
    ((225, 215, 190), (190, 170, 130)),
)
VIDEO_FRAMES_PER_LATENT = 4


def caption(colour: str, shape: str, motion: str, article: str = "a") -> str:
    """The grammar: '<article> <colour> <shape> moves <dir>' or 'the camera pans <dir>'."""
    if motion in PAN_MOTIONS:
        return f"the camera {motion.replace('pan', 'pans')}"
    return f"{article} {colour} {shape} moves {motion}"


def parse_motion(text: str) -> str:
    """The motion a caption asks for (the inverse of `caption`, used by the evaluation)."""
    words = text.split()
    if "camera" in words:
        return f"pan {words[-1]}"
    return words[-1]


@dataclass(frozen=True)
class WorldConfig:
    """Size and dynamics of the clips. `window` is the engine's section length in latent frames."""

    size: int = 128
    window: int = 3
    sections: int = 8
    speed: tuple[float, float] = (1.2, 2.0)
    radius: tuple[int, int] = (11, 16)
    #: Chance that the caption changes at each section boundary.
    change_probability: float = 0.35
    pan_probability: float = 0.15
    distractor_probability: float = 0.25

    @property
    def frames(self) -> int:
        return 1 + self.sections * self.window * VIDEO_FRAMES_PER_LATENT

    @property
    def frames_per_section(self) -> int:
        return self.window * VIDEO_FRAMES_PER_LATENT


@dataclass
class Clip:
    """One rendered clip and its ground truth."""

    frames: np.ndarray  # uint8 [T, H, W, 3]
    captions: list[str]  # one per section
    motions: list[str]  # one per section
    positions: np.ndarray  # float [T, 2] (x, y) of the captioned object's centre
    colour: str
    shape: str
    radius: int
    background: np.ndarray = field(repr=False)  # uint8 [H, W, 3] at pan offset 0 (object removed)


def _horizon(size: int, rng: np.random.Generator, hills: bool) -> np.ndarray:
    """Height of the sky/ground boundary per column of a periodic (size-wide) panorama."""
    base = size * rng.uniform(0.55, 0.75)
    if not hills:
        return np.full(size, base)
    x = np.arange(size) * 2 * np.pi / size
    profile = sum(rng.uniform(3, 9) * np.sin(k * x + rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3))
    return base + profile


def _background(size: int, palette, horizon: np.ndarray, offset: int) -> np.ndarray:
    top, bottom = np.array(palette[0], np.float32), np.array(palette[1], np.float32)
    rows = np.arange(size, dtype=np.float32)[:, None]
    line = np.roll(horizon, -offset)[None, :]
    sky_t = np.clip(rows / np.maximum(line, 1), 0, 1)[..., None]
    sky = top * (0.85 + 0.15 * sky_t)
    ground_t = np.clip((rows - line) / np.maximum(size - line, 1), 0, 1)[..., None]
    ground = bottom * (1.0 - 0.25 * ground_t)
    image = np.where((rows >= line)[..., None], ground, sky)
    return image.astype(np.uint8)


def shape_mask(size: int, shape: str, x: float, y: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - x, yy - y
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        return (np.abs(dx) <= radius * 0.85) & (np.abs(dy) <= radius * 0.85)
    # Upward triangle inscribed in the circle of `radius`.
    top, bottom = -radius, radius * 0.7
    inside_y = (dy >= top) & (dy <= bottom)
    half_width = (dy - top) / (bottom - top) * radius
    return inside_y & (np.abs(dx) <= half_width)


def _clamp(value: float, radius: int, size: int) -> float:
    return float(np.clip(value, radius + 1, size - radius - 1))


def render_clip(seed: int, config: WorldConfig = WorldConfig(), motions: list[str] | None = None,
                colour: str | None = None, shape: str | None = None, start: tuple[float, float] | None = None,
                palette_index: int | None = None) -> Clip:
    """Render the clip of `seed`; the keyword arguments pin parts of it (for held-out evaluation).

    Objects that reach the border stop there (pressed against the frame), so long videos stay
    scoreable: the shape never leaves the picture.
    """
    rng = np.random.default_rng(seed)
    size = config.size
    colour = colour or str(rng.choice(list(COLOURS)))
    shape = shape or str(rng.choice(SHAPES))
    palette = PALETTES[palette_index if palette_index is not None else int(rng.integers(len(PALETTES)))]
    hills = bool(rng.random() < 0.7)
    horizon = _horizon(size, rng, hills)
    radius = min(int(rng.integers(config.radius[0], config.radius[1] + 1)), size // 4)  # small test worlds
    speed = float(rng.uniform(*config.speed))
    x, y = start if start is not None else (rng.uniform(radius + 1, size - radius - 1), rng.uniform(radius + 1, size - radius - 1))
    x, y = _clamp(x, radius, size), _clamp(y, radius, size)
    if motions is None:
        motions = _random_motions(rng, config, hills)
    article = str(rng.choice(["a", "the"]))
    distractor = None
    if rng.random() < config.distractor_probability:
        other = str(rng.choice([c for c in COLOURS if c != colour]))
        distractor = (other, str(rng.choice(SHAPES)), rng.uniform(10, size - 10), rng.uniform(10, size - 10))

    frames, positions = [], []
    offset = 0.0
    for index in range(config.frames):
        if index > 0:
            motion = motions[(index - 1) // config.frames_per_section]
            if motion in PAN_MOTIONS:
                offset += speed if motion.endswith("right") else -speed
            else:
                dx, dy = DIRECTIONS[motion]
                x, y = _clamp(x + dx * speed, radius, size), _clamp(y + dy * speed, radius, size)
        image = _background(size, palette, horizon, int(round(offset)))
        if distractor is not None:
            d_colour, d_shape, d_x, d_y = distractor
            image[shape_mask(size, d_shape, d_x, d_y, 8)] = COLOURS[d_colour]
        image[shape_mask(size, shape, x, y, radius)] = COLOURS[colour]
        frames.append(image)
        positions.append((x, y))
    return Clip(
        frames=np.stack(frames),
        captions=[caption(colour, shape, m, article) for m in motions],
        motions=list(motions),
        positions=np.array(positions, dtype=np.float32),
        colour=colour,
        shape=shape,
        radius=radius,
        background=_background(size, palette, horizon, 0),
    )


def _random_motions(rng: np.random.Generator, config: WorldConfig, hills: bool) -> list[str]:
    choices = list(OBJECT_MOTIONS)
    motions = []
    for section in range(config.sections):
        if section == 0 or rng.random() < config.change_probability:
            if hills and rng.random() < config.pan_probability:
                motions.append(str(rng.choice(PAN_MOTIONS)))
            else:
                motions.append(str(rng.choice(choices)))
        else:
            motions.append(motions[-1])
    return motions


def all_captions() -> list[str]:
    """Every caption the grammar can produce (the training prompts, encoded once)."""
    captions = [caption(c, s, m, a) for c in COLOURS for s in SHAPES for m in OBJECT_MOTIONS for a in ("a", "the")]
    return captions + [caption("", "", m) for m in PAN_MOTIONS]
