"""What a `start` may ask for: the server's defaults with the client's overrides, within the limits,
and whether the caps on running sessions leave room. Shared by every session directory (this
process's and the cluster's), so a limit means the same wherever sessions run."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from framepack_live.engine.errors import InputError
from framepack_live.engine.settings import GenerationSettings

from .protocol import Start
from .settings import StreamSettings

#: `start` fields a client may set, on top of the server's defaults.
OVERRIDABLE = ("seed", "width", "height", "steps", "guidance", "transition")


def generation_settings(settings: StreamSettings, start: Start) -> GenerationSettings:
    """The server's defaults with what the client may override; `bad_request` when out of range."""
    limits = settings.limits
    overrides = {name: getattr(start, name) for name in OVERRIDABLE if getattr(start, name) is not None}
    if start.sections is not None:
        overrides["sections"] = start.sections or None  # 0: until stopped
    if start.chosen_loras:
        overrides["loras"] = lora_paths(settings, start)
    try:
        chosen = dataclasses.replace(settings.generation, **overrides)
    except ValueError as exc:
        raise InputError("bad_request", str(exc)) from None
    if chosen.width * chosen.height > limits.max_video_pixels:
        raise InputError("bad_request", f"at most {limits.max_video_pixels} pixels per frame")
    if chosen.steps > limits.max_steps:
        raise InputError("bad_request", f"at most {limits.max_steps} steps")
    return chosen


def lora_paths(settings: StreamSettings, start: Start) -> tuple[tuple[str, float], ...]:
    """The weights files and scales of the LoRAs a `start` names: only the operator's LoRAs, by
    name (a client never names a file on the server)."""
    names = [choice.name for choice in start.chosen_loras]
    if len(set(names)) != len(names):
        raise InputError("bad_request", "a LoRA is listed twice; give it once with the scale wanted")
    model = settings.model
    if model is None or not model.loras:
        raise InputError("bad_request", "this server offers no LoRAs")
    return tuple((model.lora_path(choice.name), choice.scale) for choice in start.chosen_loras)


def check_room(settings: StreamSettings, active_clients: Iterable[str], client: str) -> None:
    """`busy` when the running sessions (their clients listed) leave no room for one more of `client`'s."""
    limits = settings.limits
    clients = list(active_clients)
    if len(clients) >= limits.max_sessions_total:
        raise InputError("busy", "the server runs as many sessions as it can; try again later")
    if clients.count(client) >= limits.max_sessions_per_client:
        raise InputError("busy", f"at most {limits.max_sessions_per_client} running sessions per client")
