"""LoRAs per session: the operator's list in `GET /config`, chosen by name in `start`, refused
otherwise; the session runs with exactly the LoRAs it asked for."""

from __future__ import annotations

import dataclasses
import io

import httpx
import numpy as np
from PIL import Image

from framepack_live.engine.lora import list_loras
from framepack_live.stream.client import Received, expect, receive, send
from framepack_live.stream.model_defaults import model_defaults


def pixels(jpegs: list[bytes]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.float32) for jpeg in jpegs])


async def make_video(server, **start) -> tuple[dict, Received]:
    async with server.connect() as ws:
        await send(ws, type="start", prompt="a red ball", sections=1, seed=5, **start)
        session = await expect(ws, "session")
        return session, await receive(ws, Received())


async def test_a_session_runs_with_the_loras_it_chose(server_factory, tiny_loras):
    info, _ = model_defaults("tiny")
    info = dataclasses.replace(info, loras=tuple(list_loras(tiny_loras)))
    with server_factory(model=info) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            config = (await http.get("/config")).json()
        base_session, base = await make_video(server)
        lora_session, with_lora = await make_video(server, loras=[{"name": "first", "scale": 1.5}])
        _, base_again = await make_video(server)
        sessions = server.app.state.directory._sessions
        chosen = sessions[lora_session["session_id"]].settings.loras
        assert sessions[base_session["session_id"]].settings.loras == ()

    assert config["loras"] == [
        {"name": "first", "description": "Random weights for tests."},
        {"name": "second", "description": "Random weights for tests."},
    ]
    # Paths stay on the server: the page gets names and descriptions only.
    assert str(tiny_loras) not in str(config)
    assert chosen == ((str((tiny_loras / "first" / "pytorch_lora_weights.safetensors").resolve()), 1.5),)
    assert not base.gaps() and not with_lora.gaps()
    difference = np.abs(pixels(base.frames) - pixels(with_lora.frames)).mean()
    assert difference > 0.5, f"the LoRA changed the frames by {difference:.2f} levels on average"
    # The next session without a LoRA runs on the base model again, bit for bit.
    assert base_again.frames == base.frames


async def test_loras_a_server_does_not_offer_are_refused(server_factory, tiny_loras):
    info, _ = model_defaults("tiny")
    offered = dataclasses.replace(info, loras=tuple(list_loras(tiny_loras)))
    refusals = {}
    with server_factory(model=offered) as server:
        async with server.connect() as ws:
            for why, loras in {
                "unknown": [{"name": "notes"}],
                "a path": [{"name": str(tiny_loras / "first")}],
                "scale": [{"name": "first", "scale": 2.5}],
                "negative": [{"name": "first", "scale": -1}],
                "twice": [{"name": "first"}, {"name": "first", "scale": 0.5}],
                "not a list": {"name": "first"},
            }.items():
                await send(ws, type="start", prompt="a red ball", sections=1, loras=loras)
                refusals[why] = await expect(ws, "error")
            # The connection is still usable after the refusals.
            await send(ws, type="start", prompt="a red ball", sections=1, media="none", loras=[{"name": "second"}])
            await expect(ws, "session")
            assert not (await receive(ws, Received(), media=False)).gaps()
    with server_factory(model=info) as server:
        async with server.connect() as ws:
            await send(ws, type="start", prompt="a red ball", sections=1, loras=[{"name": "first"}])
            refusals["none offered"] = await expect(ws, "error")

    assert {why: error["code"] for why, error in refusals.items()} == dict.fromkeys(refusals, "bad_request")
    assert "allowed: first, second" in refusals["unknown"]["message"]
    assert "no LoRAs" in refusals["none offered"]["message"]


def test_design_short_form_names_one_lora_at_scale_one():
    from framepack_live.stream.protocol import LoraChoice, parse_client_message
    from framepack_live.stream.settings import Limits

    message = parse_client_message('{"type": "start", "prompt": "x", "lora": "first"}', Limits())
    assert message.chosen_loras == [LoraChoice(name="first", scale=1.0)]
    both = parse_client_message('{"type": "start", "prompt": "x", "loras": [{"name": "a", "scale": 0.5}], "lora": "b"}', Limits())
    assert [(c.name, c.scale) for c in both.chosen_loras] == [("a", 0.5), ("b", 1.0)]
