"""Named models and how a `--model` argument resolves to a set of components to load."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .fast_decoder import LIVE_DECODER_KEY
from .settings import Sampling
from .tiny import PROJECT_FILE, ensure_tiny


@dataclass(frozen=True)
class ModelSource:
    """Where each component comes from. A `None` field means: from `base` like the rest."""

    base: str
    transformer: str | None = None
    image_encoder: str | None = None
    #: The order the checkpoint was trained for: the original model is inverted anti-drifting,
    #: F1 is forward-only.
    sampling: Sampling = "inverted"
    prompt_template: dict | None = None
    #: Side of the square-equivalent bucket used when no width/height is given.
    resolution: int = 640
    #: `GenerationSettings` fields the checkpoint was trained for (a toy model's window, say),
    #: used where the user gave none.
    defaults: dict = field(default_factory=dict)
    #: Subfolder of `base` holding the live view's small decoder (`engine.fast_decoder`), if any.
    live_decoder: str | None = None
    #: The step cache the engine puts on the transformer unless told otherwise (`engine.caching`),
    #: and MagCache's per-step ratios measured on this model.
    cache: str | None = None
    mag_ratios: list[float] | None = None

    def settings(self, given: dict) -> dict:
        """`GenerationSettings` fields: these defaults, overridden by every `given` value that is not None."""
        return {**self.defaults, **{key: value for key, value in given.items() if value is not None}}


PRESETS: dict[str, ModelSource] = {
    "framepack-i2v-hy": ModelSource(
        base="hunyuanvideo-community/HunyuanVideo",
        transformer="lllyasviel/FramePackI2V_HY",
        image_encoder="lllyasviel/flux_redux_bfl",
        sampling="inverted",
    ),
    "framepack-f1": ModelSource(
        base="hunyuanvideo-community/HunyuanVideo",
        transformer="lllyasviel/FramePack_F1_I2V_HY_20250503",
        image_encoder="lllyasviel/flux_redux_bfl",
        sampling="forward",
    ),
}
#: What `render` makes when no model is named: the teacher, at its best in both sampling orders.
DEFAULT_MODEL = "toyworld"
#: What a live server serves when no model is named: the teacher's 4-step student with its small
#: live decoder, which keeps ahead of real time on two CPU cores (`bench realtime`), where the
#: teacher makes about a fifth of it. Live viewing samples forward only, where the student follows
#: captions about as well (docs/toyworld.md).
LIVE_MODEL = "toyworld-fast"
#: Weights this project trains and ships (see docs/toyworld.md).
_WEIGHTS = Path(__file__).resolve().parent / "weights"
SHIPPED = {"toyworld": _WEIGHTS / "toyworld", "toyworld-fast": _WEIGHTS / "toyworld-fast"}
#: Keys of a model directory's framepack_live.json that become generation defaults.
DEFAULT_KEYS = ("window", "steps", "scheduler", "guidance", "cfg")


def resolve(model: str | None) -> ModelSource:
    """Turn a preset name, a local pipeline directory or a hub id into a `ModelSource`.

    A local directory is anything `HunyuanVideoFramepackPipeline.save_pretrained` wrote; our own
    `framepack_live.json` beside it (written for the tiny preset) may add the sampling order and
    a prompt template whose crop length matches its tokenizer.
    """
    model = model or DEFAULT_MODEL
    if model == "tiny":
        return _local(ensure_tiny())
    if model in PRESETS:
        return PRESETS[model]
    if model in SHIPPED:
        return _local(SHIPPED[model])
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise InputError(
                "bad_request", f"{path} is not a pipeline directory (no model_index.json); expected the layout "
                "HunyuanVideoFramepackPipeline.save_pretrained writes"
            )
        return _local(path)
    if model.count("/") == 1 and not path.exists():
        return ModelSource(base=model)
    raise InputError(
        "bad_request", f"unknown model {model!r}: use a preset ({', '.join(['tiny', *SHIPPED, *PRESETS])}), a local "
        "pipeline directory or a hub id like owner/name"
    )


def _local(path: Path) -> ModelSource:
    extra_file = path / PROJECT_FILE
    extra = json.loads(extra_file.read_text()) if extra_file.exists() else {}
    return ModelSource(
        base=str(path),
        sampling=extra.get("sampling", "inverted"),
        prompt_template=extra.get("prompt_template"),
        resolution=extra.get("resolution", 640),
        defaults={key: extra[key] for key in DEFAULT_KEYS if key in extra},
        live_decoder=extra.get(LIVE_DECODER_KEY),
        cache=extra.get("cache"),
        mag_ratios=extra.get("mag_ratios"),
    )
