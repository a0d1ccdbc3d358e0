"""Writing the trained model as a pipeline directory the engine loads like any checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..engine.fast_decoder import LIVE_DECODER_KEY, SUBFOLDER, FastDecoder
from ..engine.model import FramePackModel
from ..engine.tiny import PROJECT_FILE
from .preview import write_preview
from .world import WorldConfig


#: Real classifier-free guidance scale the toy model samples with by default (it is trained with
#: caption dropout for it); chosen with `framepack-live bench toyworld --cfg`, see docs/toyworld.md.
DEFAULT_CFG = 3.0


#: How the engine samples a model trained with real CFG, unless `export` is told otherwise.
GENERATION = {"steps": 8, "scheduler": "euler", "cfg": DEFAULT_CFG}


def export(model: FramePackModel, out: Path, world: WorldConfig, card: str, commands: list[str],
           sampling: str = "forward", generation: dict | None = None, live_decoder: FastDecoder | None = None) -> None:
    """`save_pretrained` (safetensors) plus the engine's `framepack_live.json`, the step-preview map
    fitted to this VAE (train/preview.py) and a model card.

    `commands` (the options of every training run that led here, see `__main__.reproduce_command`)
    are kept in `framepack_live.json`, so a fine-tune of this model can say how to reproduce itself.
    `generation` replaces `GENERATION`'s sampler defaults (a distilled student's fewer steps, no CFG);
    `live_decoder` is saved in `fast_decoder/` and named as the live view's decoder.
    """
    out.mkdir(parents=True, exist_ok=True)
    model.pipeline.save_pretrained(out, safe_serialization=True)
    extra = {
        "preset": "toyworld",
        "sampling": sampling,
        "resolution": world.size,
        "prompt_template": model.prompt_template,
        # Generation defaults the engine takes from here (engine/presets.py DEFAULT_KEYS): the window
        # it was trained at, and the sampler and guidance the benchmark scores it with.
        "window": world.window,
        **(generation or GENERATION),
        "world": asdict(world),
        "training": {"commands": commands},
    }
    if live_decoder is not None:
        live_decoder.save_pretrained(out / SUBFOLDER)
        extra[LIVE_DECODER_KEY] = SUBFOLDER
    (out / PROJECT_FILE).write_text(json.dumps(extra, indent=2))
    write_preview(model, world, out)
    (out / "README.md").write_text(card)


def training_commands(model_dir: Path) -> list[str]:
    """The training runs recorded by `export` (empty for a model this project did not train)."""
    extra = model_dir / PROJECT_FILE
    record = json.loads(extra.read_text()).get("training", {}) if extra.exists() else {}
    return list(record.get("commands", []))


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
