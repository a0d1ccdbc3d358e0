"""What one section moves between the server's stages, in bytes, as Ray sends it (pickled).

The stages' own calls are made here in one process, on the very objects the server sends: the
session's `DenoiseRequest` to the Denoiser (plan, prompt and image embeddings), its
`DenoiseResult` and step previews back, the `DecodePlan` to the Decoder and the `Decoded` frames
back. `decoded_float32` is the same frames as float32 pixels, what the Decoder returned before it
sent uint8 (issue 23): the "before" of `bench serve`'s before-and-after. Measured by pickling
rather than read from Ray, whose object store reports no per-call sizes; Ray serialises these
dataclasses with (cloud)pickle, and tensors and arrays by their buffers, so the sizes agree to
the header bytes.
"""

from __future__ import annotations

import pickle
import statistics
from dataclasses import replace

import numpy as np

from framepack_live.cluster.batch import denoise_batch
from framepack_live.cluster.work import DenoiseRequest, Preview
from framepack_live.engine import video_state
from framepack_live.engine.conditioning import encode_prompt
from framepack_live.engine.decoding import decode_section
from framepack_live.engine.generator import start_video
from framepack_live.engine.images import default_start_image
from framepack_live.engine.model import FramePackModel
from framepack_live.engine.settings import GenerationSettings

PROMPT = "a red ball"


def bytes_per_section(model: FramePackModel, settings: GenerationSettings, sections: int) -> dict:
    """Median bytes per section of each message, over `sections` sections after the first (whose
    plan has no history yet), and the totals with uint8 and with float32 frames."""
    settings = replace(settings, sections=sections + 1)
    embeds = encode_prompt(model, PROMPT)
    negative = encode_prompt(model, settings.negative_prompt) if settings.cfg > 1.0 else None
    state = video_state.begin(start_video(model, default_start_image(), settings), settings, PROMPT)
    sizes: dict[str, list[int]] = {}
    for _ in range(sections + 1):
        plan = video_state.plan_section(state)
        request = DenoiseRequest(session_id="bench", settings=settings, plan=plan, prompt=embeds, negative=negative,
                                 image_embeds=state.start.image_embeds)
        previews: list[Preview] = []

        def keep(step: int, steps: int, frames: list[np.ndarray | None]) -> None:
            previews.extend(Preview(step, steps, f) for f in frames if f is not None)

        (result,) = denoise_batch(model, [request], None, keep)
        decode = video_state.accept_section(state, plan, result.latents)
        video_state.compact(state)
        decoded = decode_section(model, decode)
        video_state.finish_section(state, plan, decoded)
        as_float = replace(decoded, frames=decoded.frames.astype(np.float32) / 255.0)
        for name, message in (("denoise_request", request), ("denoise_result", result), ("previews", previews),
                              ("decode_plan", decode), ("decoded", decoded), ("decoded_float32", as_float)):
            sizes.setdefault(name, []).append(len(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)))
    report = {name: int(statistics.median(values[1:])) for name, values in sizes.items()}
    moved = sum(report[name] for name in ("denoise_request", "denoise_result", "previews", "decode_plan"))
    report["total"] = moved + report["decoded"]
    report["total_with_float32_frames"] = moved + report["decoded_float32"]
    return report
