"""`bench serve`'s bytes per section (`bench.stage_bytes`): the stages' own messages, pickled."""

from framepack_live.bench.stage_bytes import bytes_per_section
from framepack_live.engine.settings import GenerationSettings
from framepack_live.stream.settings import LIVE_DECODE


def test_a_section_moves_its_frames_as_uint8_a_quarter_of_float32(tiny_model):
    settings = GenerationSettings(width=64, height=64, steps=2, window=2, seed=0, **LIVE_DECODE)
    report = bytes_per_section(tiny_model, settings, sections=2)
    frames = settings.frames_per_section * 64 * 64 * 3  # uint8 bytes of one section's new frames
    assert frames <= report["decoded"] < frames + 4096
    assert 4 * frames <= report["decoded_float32"] < 4 * frames + 4096
    # A causal plan carries latents only (no float frames pending a blend); the request its history.
    assert report["decode_plan"] < frames and report["denoise_request"] > report["denoise_result"] > 0
    assert report["total_with_float32_frames"] - report["total"] == report["decoded_float32"] - report["decoded"]
