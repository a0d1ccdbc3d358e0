"""The Encoder's prompts, on its class outside Serve with the tiny model: callers of a prompt being
encoded share one encode (the Ingress asks for a session's prompt while the registry admits the
session, then the session asks, `RaySessions.create`), and a refused prompt is not kept."""

from __future__ import annotations

import asyncio

import pytest
import torch

from framepack_live.cluster.config import ClusterConfig
from framepack_live.cluster.encoder import Encoder
from framepack_live.engine.errors import InputError
from framepack_live.engine.presets import ensure_tiny


@pytest.fixture
def encoder():
    ensure_tiny()
    threads = torch.get_num_threads()
    try:
        yield Encoder.func_or_class(ClusterConfig(model="tiny"))
    finally:
        torch.set_num_threads(threads)  # a replica runs one thread; this test process goes on with its own


@pytest.fixture
def encodes(encoder) -> list[str]:
    """The prompts the Encoder's model encodes."""
    calls, real = [], encoder._encode_prompt
    encoder._encode_prompt = lambda prompt: calls.append(prompt) or real(prompt)
    return calls


async def test_callers_of_a_prompt_being_encoded_share_one_encode(encoder, encodes):
    first, second = await asyncio.gather(encoder.encode_prompt("a red ball"), encoder.encode_prompt("a red ball"))
    assert first is second and encodes == ["a red ball"]
    assert await encoder.encode_prompt("a red ball") is first and len(encodes) == 1  # kept


async def test_a_refused_prompt_fails_every_caller_and_is_not_kept(encoder, encodes):
    long = "a red ball " * 2000
    answers = await asyncio.gather(encoder.encode_prompt(long), encoder.encode_prompt(long), return_exceptions=True)
    assert [getattr(a, "code", a) for a in answers] == ["prompt_too_long"] * 2 and len(encodes) == 1
    with pytest.raises(InputError):
        await encoder.encode_prompt(long)
    assert len(encodes) == 2
