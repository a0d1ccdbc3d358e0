"""The live view's small decoder: the VAE's decode contract, locality, selection per model, and
both decode modes through it."""

from __future__ import annotations

import numpy as np
import torch

from framepack_live.engine.decoding import decode_causal, decode_forward, decode_latents, to_uint8
from framepack_live.engine.fast_decoder import FastDecoder
from framepack_live.engine.model import FramePackModel


def test_decodes_like_the_vae_shapes_it():
    torch.manual_seed(0)
    decoder = FastDecoder(channels=(16, 8, 8)).eval()
    pixels = decoder.decode(torch.randn(1, 16, 4, 6, 5) * 10)
    assert pixels.shape == (1, 3, 13, 48, 40) and pixels.dtype == torch.float32
    assert pixels.abs().max() <= 1.0


def test_a_section_decoded_with_the_latent_before_it_matches_the_whole_video():
    """Each frame depends on its latent and the one before: decoding a section's window with the
    frame before it gives exactly the whole video's frames, so no cross-fade or hold-back is needed."""
    torch.manual_seed(0)
    decoder = FastDecoder(channels=(16, 8, 8)).eval()
    video = torch.randn(1, 16, 7, 4, 4)
    whole = decoder.decode(video)
    section = decoder.decode(video[:, :, 3:])  # latent 3 (before) and the window 4..6
    torch.testing.assert_close(section[:, :, 1:], whole[:, :, 4 * 4 - 3 :], atol=1e-5, rtol=0)


def test_a_model_directory_selects_its_decoder(tiny_with_live_decoder):
    directory = tiny_with_live_decoder
    latents = torch.randn(1, 16, 2, 4, 4)

    live = FramePackModel.load(str(directory), device="cpu", parts=("vae",))
    assert isinstance(live.fast_decoder, FastDecoder)
    torch.testing.assert_close(live.decode_live(latents), live.fast_decoder.decode(latents))

    export = FramePackModel.load(str(directory), device="cpu", parts=("vae",), live_decoder=False)
    assert export.fast_decoder is None
    assert export.decode_live(latents).shape == (1, 3, 5, 32, 32)  # the full VAE's decode


def test_both_decode_modes_use_the_decoder_the_model_was_loaded_with(tiny_with_live_decoder):
    """The decode mode (blend or causal, per video) and the decoder (live or VAE, per loaded model)
    are independent: a model without a live decoder, or loaded without it, decodes by the VAE."""
    latents = torch.randn(1, 16, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    for live_decoder in (True, False):
        model = FramePackModel.load(str(tiny_with_live_decoder), device="cpu", parts=("vae",), live_decoder=live_decoder)
        decoder = model.fast_decoder.decode if live_decoder else lambda x: decode_latents(model, x)
        expected = decoder(latents)
        causal = decode_causal(model, latents, context=1, shown=None, final_so_far=5)
        assert causal.first_frame == 5 and causal.pending is None
        np.testing.assert_array_equal(causal.frames, to_uint8(expected[:, :, 1:]))
        blended = decode_forward(model, latents, pending=None, final_so_far=0, overlap=5)
        np.testing.assert_array_equal(blended.frames, to_uint8(expected[:, :, :-5]))
