"""LoRA adapters on the transformer: loaded with diffusers' own loader, chosen per video.

A video's `GenerationSettings.loras` names LoRA files and their scales. `use_loras` makes the
transformer run with exactly those (none: the base model), loading any it has not loaded yet
through the pipeline's `HunyuanVideoLoraLoaderMixin.load_lora_weights` under a name derived from
the file's path; `engine.denoising` calls it before every batch. Loaded adapters stay in memory
(a LoRA is megabytes next to the model), so videos with different LoRAs take turns on one model
without reloading; they never share a batch, which is why `loras` is part of a batch's settings.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:  # names and paths are read by processes that never load a model (a server's sessions)
    from .model import FramePackModel

#: The file diffusers' `save_lora_weights` writes in a LoRA directory.
WEIGHT_NAME = "pytorch_lora_weights.safetensors"
#: One LoRA of a video: its weights file (or diffusers' directory) and its scale.
LoraChoice = tuple[str, float]


def parse_lora(text: str) -> LoraChoice:
    """`PATH[:SCALE]` (the command line's `--lora`); the scale defaults to 1."""
    path, sep, scale = text.rpartition(":")
    if sep and path:
        try:
            return path, float(scale)
        except ValueError:
            pass  # a colon inside the path itself
    return text, 1.0


def lora_file(path: str) -> Path:
    """The weights file of a LoRA given as a `.safetensors` file or as diffusers' directory."""
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        candidate = candidate / WEIGHT_NAME
    if not candidate.is_file() or candidate.suffix != ".safetensors":
        raise InputError(
            "bad_request", f"no LoRA at {path}: expected a .safetensors file or a directory holding {WEIGHT_NAME}"
        )
    return candidate.resolve()


@dataclass(frozen=True)
class LoraInfo:
    """One LoRA of a directory an operator allows (`serve --lora-dir`)."""

    name: str
    #: The weights file, for `GenerationSettings.loras`.
    path: str
    #: The first paragraph of its card (README.md in its directory, or NAME.md beside a file).
    description: str


def list_loras(directory: str | Path) -> list[LoraInfo]:
    """The LoRAs in `directory`, by name: each subdirectory in diffusers' layout (named after the
    subdirectory) and each `.safetensors` file (named after the file), sorted by name."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise InputError("bad_request", f"the LoRA directory {directory} does not exist")
    found = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and (entry / WEIGHT_NAME).is_file():
            found.append(LoraInfo(entry.name, str((entry / WEIGHT_NAME).resolve()), _summary(entry / "README.md")))
        elif entry.is_file() and entry.suffix == ".safetensors":
            found.append(LoraInfo(entry.stem, str(entry.resolve()), _summary(entry.with_suffix(".md"))))
    return found


def _summary(card: Path) -> str:
    """The card's first paragraph that is not a heading, on one line."""
    if not card.is_file():
        return ""
    for paragraph in card.read_text().split("\n\n"):
        text = " ".join(line.strip() for line in paragraph.strip().splitlines())
        if text and not text.startswith("#"):
            return text
    return ""


def adapter_name(file: Path) -> str:
    """The adapter name of a weights file: stable per path, and a valid module name for peft."""
    return "lora_" + hashlib.sha1(str(file).encode()).hexdigest()[:12]


def loaded_adapters(model: FramePackModel) -> set[str]:
    return set(getattr(model.transformer, "peft_config", None) or {})


def use_loras(model: FramePackModel, loras: Sequence[LoraChoice]) -> None:
    """Run the transformer with exactly `loras` (file, scale) from now on; none: the base model.

    Loads what is not loaded yet. A LoRA made for another architecture or size is an
    `InputError` (`bad_request`), not a crash of whoever asked for it.
    """
    transformer = model.transformer
    loaded = loaded_adapters(model)
    if not loras:
        if loaded:
            transformer.disable_lora()
        return
    names = []
    for path, _ in loras:
        file = lora_file(path)
        name = adapter_name(file)
        if name not in loaded:
            with warnings.catch_warnings():
                # peft warns at every adapter after the first that a model with several is unusual,
                # and when a failed load's adapter is deleted that another is active now: the
                # adapters are set anew below, or the error goes to the caller.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                warnings.filterwarnings("ignore", message="Adapter .* was active")
                try:
                    model.pipeline.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name=name)
                except (ValueError, RuntimeError, KeyError) as exc:
                    if name in loaded_adapters(model):  # what the failed load left behind
                        transformer.delete_adapters(name)
                    raise InputError("bad_request", f"cannot load the LoRA {path} into this model: {exc}") from None
            loaded.add(name)
        names.append(name)
    if len(set(names)) != len(names):
        raise InputError("bad_request", "the same LoRA is listed twice; give it once with the sum of the scales")
    transformer.enable_lora()
    transformer.set_adapters(names, [float(scale) for _, scale in loras])

