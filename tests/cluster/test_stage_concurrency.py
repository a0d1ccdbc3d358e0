"""Encoder and Decoder replicas take concurrent requests (Serve sends up to `max_ongoing_requests`
at once) but run their models one call at a time: every output of a burst of concurrent requests
equals the same request run alone, in this process, by the engine."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from PIL import Image
from ray import serve

from framepack_live.cluster.config import ClusterConfig
from framepack_live.cluster.decoder import Decoder
from framepack_live.cluster.encoder import Encoder
from framepack_live.engine.conditioning import encode_prompt
from framepack_live.engine.decoding import DecodePlan, decode_section
from framepack_live.engine.generator import start_video
from framepack_live.engine.settings import GenerationSettings

pytestmark = pytest.mark.heavy
PROMPTS = [f"a {colour} ball {motion}" for colour in ("red", "blue", "green") for motion in ("falls", "spins")]
CLOSE = dict(rtol=0, atol=1e-5)  # the replica runs one torch thread, this process two


def _image(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def stages(ray_cluster, generation):
    """Each stage alone as its own application: only the replicas under test take the CPUs."""
    config = ClusterConfig(model="tiny", generation=generation)
    light = {"ray_actor_options": {"num_cpus": 0}}
    encoder = serve.run(Encoder.options(**light).bind(config), name="encoder-alone", route_prefix=None)
    decoder = serve.run(Decoder.options(**light).bind(config), name="decoder-alone", route_prefix=None)
    yield encoder, decoder
    serve.delete("encoder-alone")
    serve.delete("decoder-alone")


def test_concurrent_encodes_equal_encodes_alone(stages, tiny_model, generation):
    encoder, _ = stages
    settings = GenerationSettings(**generation)
    # The first image again with another seed: the replica keeps its encoding, and draws anew.
    starts = [(_image(seed), settings) for seed in range(3)]
    starts.append((starts[0][0], GenerationSettings(**{**generation, "seed": settings.seed + 1})))

    async def burst():
        prompts = [encoder.encode_prompt.remote(p) for p in PROMPTS]
        video_starts = [encoder.encode_start.remote(image, image_settings) for image, image_settings in starts]
        return await asyncio.gather(*prompts), await asyncio.gather(*video_starts)

    prompt_embeds, video_starts = asyncio.run(burst())
    for prompt, got in zip(PROMPTS, prompt_embeds):
        alone = encode_prompt(tiny_model, prompt)
        for name in ("embeds", "mask", "pooled"):
            torch.testing.assert_close(getattr(got, name), getattr(alone, name), **CLOSE)
    for (image, image_settings), got in zip(starts, video_starts, strict=True):
        alone = start_video(tiny_model, image, image_settings)
        torch.testing.assert_close(got.start.image_latents, alone.start.image_latents, **CLOSE)
        torch.testing.assert_close(got.start.image_embeds, alone.start.image_embeds, **CLOSE)
    assert not torch.equal(prompt_embeds[0].embeds, prompt_embeds[1].embeds)  # really different requests
    assert not torch.equal(video_starts[0].start.image_latents, video_starts[-1].start.image_latents)


def test_concurrent_decodes_equal_decodes_alone(stages, tiny_model, generation):
    _, decoder = stages
    settings = GenerationSettings(**generation)
    channels = tiny_model.pipeline.vae.config.latent_channels
    side = settings.width // 8
    generator = torch.Generator().manual_seed(0)
    requests = [
        DecodePlan(
            forward=True,
            latents=torch.randn(1, channels, 1 + settings.window, side, side, generator=generator),
            pending=None,
            cursor=0,
            overlap=settings.overlap_frames,
            last=False,
        )
        for i in range(4)
    ]

    async def burst():
        return await asyncio.gather(*(decoder.decode.remote(r) for r in requests))

    for request, got in zip(requests, asyncio.run(burst())):
        alone = decode_section(tiny_model, request)
        assert got.first_frame == alone.first_frame
        assert np.abs(np.asarray(got.frames, dtype=np.int16) - np.asarray(alone.frames, dtype=np.int16)).max() <= 1
        torch.testing.assert_close(torch.as_tensor(got.pending), torch.as_tensor(alone.pending), rtol=0, atol=1e-4)
