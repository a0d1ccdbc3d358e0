"""Sessions default to what the model was trained for, and `GET /config` tells the page so."""

from __future__ import annotations

import dataclasses
import json

import httpx

from framepack_live.engine.presets import SHIPPED
from framepack_live.engine.tiny import PROJECT_FILE
from framepack_live.stream.access import Access, key_digest
from framepack_live.stream.client import Received, expect, receive, send
from framepack_live.stream.model_defaults import model_defaults
from framepack_live.stream.settings import Limits

ICE = ({"urls": "stun:stun.example.org:3478"}, {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"})


def test_session_defaults_are_the_models_own():
    """The shipped toyworld model was trained at 128x128 with 8 steps and a window of 3: that is
    what a session gets unless the operator says otherwise (not the engine's 256x256, 25 steps)."""
    card = json.loads((SHIPPED["toyworld"] / PROJECT_FILE).read_text())
    info, defaults = model_defaults(None)
    assert info.name == "toyworld" and info.loras == ()
    for settings in (info.trained, defaults):
        assert (settings.width, settings.height) == (card["resolution"], card["resolution"])
        assert (settings.steps, settings.window, settings.scheduler, settings.cfg) == (
            card["steps"], card["window"], card["scheduler"], card["cfg"])
    # The operator's values win where given; None leaves the model's.
    info, defaults = model_defaults(None, {"width": 256, "steps": None, "seed": 3})
    assert (defaults.width, defaults.height, defaults.steps, defaults.seed) == (256, card["resolution"], card["steps"], 3)
    assert info.trained.width == card["resolution"]


async def test_config_tells_the_page_what_to_offer(server_factory, model):
    info, trained_defaults = model_defaults("tiny")
    generation = dataclasses.replace(trained_defaults, steps=2, window=2, transition=1)  # an operator's own defaults
    limits = Limits(max_steps=12, max_video_seconds=60)
    access = Access(api_key_digests=frozenset({key_digest("k")}))
    with server_factory(limits=limits, generation=generation, model=info, ice_servers=ICE, access=access) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            config = (await http.get("/config")).json()
        async with server.connect() as ws:  # a start that names nothing gets the defaults the page was told
            await send(ws, type="start", prompt="a red ball", sections=1, media="none", api_key="k")
            await expect(ws, "session")
            received = await receive(ws, Received(), media=False)

    assert config["model"] == {
        "name": "tiny", "width": info.trained.width, "height": info.trained.height,
        "steps": info.trained.steps, "window": info.trained.window, "fps": info.trained.fps,
    }
    assert config["defaults"] == {
        "width": generation.width, "height": generation.height, "steps": 2, "window": 2, "fps": generation.fps,
        "guidance": generation.guidance, "seed": generation.seed, "frames_per_section": generation.frames_per_section,
        "transition": 1,
    }
    assert config["loras"] == []
    assert config["limits"]["max_steps"] == 12 and config["limits"]["max_pixels"] == limits.max_video_pixels
    assert config["limits"]["max_sections"] == 60 * generation.fps // generation.frames_per_section
    assert config["ice_servers"] == [dict(server) for server in ICE]
    assert config["api_key_required"] is True
    ((section, _),) = received.sections
    assert (section["width"], section["height"]) == (config["defaults"]["width"], config["defaults"]["height"])
    assert {p["steps"] for p in received.progress} == {2}
