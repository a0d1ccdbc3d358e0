"""Settings of the streaming side: limits that protect the server, and per-session defaults.

Frozen dataclasses, like the engine's `GenerationSettings`: a running server reads them from many
tasks, so nothing may change under it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from framepack_live.engine.errors import InputError
from framepack_live.engine.lora import LoraInfo
from framepack_live.engine.settings import GenerationSettings

from .access import Access

#: Where sessions keep their frames unless told otherwise.
DEFAULT_SESSION_DIR = Path(tempfile.gettempdir()) / "framepack-live" / "sessions"


@dataclass(frozen=True)
class Limits:
    """Bounds on what one client can make the server do. Every excess is refused with an `error`."""

    #: Largest client message (text or binary) the protocol reads. Keep the ASGI server's own
    #: frame limit (uvicorn's `ws_max_size`, 16 MiB by default) above it: messages between the two
    #: get a `bad_request` and the connection stays usable; above uvicorn's it closes with 1009.
    max_message_bytes: int = 4 * 1024 * 1024
    max_prompt_chars: int = 2000
    #: Pixel count of a start image, checked on its header before any pixel is decoded.
    max_image_pixels: int = 4096 * 4096
    #: Frames of a video a `start` continues (`video`): all of them are decoded into memory and
    #: stored with the session. 900 is 30 s at 30 fps.
    max_continued_frames: int = 900
    #: How far a session's video may run ahead of a viewer playing it in real time, in sections:
    #: beyond it the next section waits (`stream.pace`), so a model faster than real time spends
    #: no more than real time needs and a steer shows within about a section. None: as fast as
    #: the model goes.
    live_lead_sections: float | None = 1.0
    #: Largest video a client may ask for (width x height) and most sampler steps.
    max_video_pixels: int = 1280 * 720
    max_steps: int = 50
    #: Active (not yet stopped or failed) sessions per client address, and in the whole process.
    max_sessions_per_client: int = 2
    max_sessions_total: int = 16
    #: Steering token bucket: this many steers at once, refilled at `steer_rate` per second.
    steer_burst: int = 5
    steer_rate: float = 1.0
    #: WebRTC peers watching one session at the same time.
    max_peers_per_session: int = 4
    #: Bytes waiting for one WebSocket client. Above it the oldest waiting messages are dropped
    #: (a section goes with all its frames): live viewing skips ahead, the export keeps all.
    send_buffer_bytes: int = 4 * 1024 * 1024
    #: Video one session may keep (and so make): at this length it ends with a `busy` notice and
    #: `done`. A session that runs until stopped would otherwise fill the disk.
    max_video_seconds: float = 30 * 60
    #: Render jobs (`POST /jobs`) one client address may have queued or running, and in all.
    max_jobs_per_client: int = 4
    max_jobs_total: int = 64

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name == "live_lead_sections":  # 0 (wait until all is played) and None are fine
                if value is not None and value < 0:
                    raise ValueError(f"{name} must be >= 0 or None, got {value}")
            elif value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")


#: URL schemes of ICE servers that both browsers and aiortc take.
ICE_SCHEMES = ("stun", "turn", "turns")


def check_ice_server(server: dict) -> dict:
    """An `RTCIceServer` as browsers and aiortc take it, or ValueError: `urls` (one or a list of
    `stun:`/`turn:`/`turns:` URLs) and, for TURN, `username` and `credential` (browsers refuse
    a TURN server without them)."""
    unknown = set(server) - {"urls", "username", "credential"}
    if unknown:
        raise ValueError(f"ICE server fields are urls, username, credential; got {sorted(unknown)}")
    urls = server.get("urls")
    urls = [urls] if isinstance(urls, str) else urls
    if not urls or not all(isinstance(url, str) for url in urls):
        raise ValueError(f"an ICE server needs `urls`: a URL or a list of them, got {server.get('urls')!r}")
    for url in urls:
        scheme = url.split(":", 1)[0]
        if scheme not in ICE_SCHEMES or ":" not in url:
            raise ValueError(f"ICE server URLs start with {', '.join(s + ':' for s in ICE_SCHEMES)}; got {url!r}")
        if scheme != "stun" and not (server.get("username") and server.get("credential")):
            raise ValueError(f"the TURN server {url} needs a username and a credential")
    return dict(server)


@dataclass(frozen=True)
class ModelInfo:
    """The model sessions run, as the page is told (`GET /config`): its name and the settings it
    was trained for (resolution, steps, window, fps), which are the sessions' defaults unless
    the operator set others."""

    name: str
    trained: GenerationSettings
    #: The LoRAs a `start` may ask for by name (the operator's `--lora-dir`); the page is told
    #: their names and descriptions, never their paths.
    loras: tuple[LoraInfo, ...] = ()
    #: The model as `--model` names it (a preset, a directory made absolute, a hub id): what the
    #: settings carried in a session's MP4 name, so `render --from` loads the same model.
    source: str | None = None

    def lora_path(self, name: str) -> str:
        """The weights file of the allowed LoRA `name`; `bad_request` for any other name."""
        for lora in self.loras:
            if lora.name == name:
                return lora.path
        allowed = ", ".join(lora.name for lora in self.loras) or "none"
        raise InputError("bad_request", f"no LoRA named {name!r} on this server (allowed: {allowed})")


#: How a live server decodes unless its operator says otherwise: each section's frames final when
#: it is decoded (`causal`), after one latent frame of context: on the toy model seams as smooth as
#: the blended decode's, in two thirds of the time a whole window of context takes (`bench seams`).
LIVE_DECODE = {"decode": "causal", "decode_context": 1}


@dataclass(frozen=True)
class StreamSettings:
    """Everything `create_app` needs besides the backend."""

    limits: Limits = field(default_factory=Limits)
    #: Server-side defaults of every session; a `start` message may override width, height, steps,
    #: guidance, seed, sections and transition. Live streaming plays sections as they come, so only
    #: the forward order works (the inverted one makes the end of the video first), and each
    #: section's frames are final when it is decoded (`causal` decoding, nothing held back).
    generation: GenerationSettings = field(default_factory=lambda: GenerationSettings(**LIVE_DECODE))
    #: A steer restarts the section being denoised when at most half of it is done
    #: (`backend.worth_restarting`); False applies every steer from the next section boundary.
    restart_steered: bool = True
    #: A session that nobody watches (no WebSocket attached, no WebRTC peer) for this long is
    #: stopped and freed; it is also how long a dropped client has to re-attach.
    idle_timeout_s: float = 120.0
    jpeg_quality: int = 85
    #: The model, for `GET /config`; None when the server does not say.
    model: ModelInfo | None = None
    #: ICE servers for WebRTC, as `RTCIceServer` fields: `{"urls": "stun:...", "username": ..., "credential": ...}`.
    #: The server's peers use them and the page is given them (`GET /config`), so TURN credentials
    #: here are readable by everyone who may load the page. None are needed when browser and
    #: server share a host or a network.
    ice_servers: tuple[dict, ...] = ()
    #: Origins, proxies, API keys, download links.
    access: Access = field(default_factory=Access)
    #: Where sessions keep their frames and MP4 fragments, one directory each (deleted when the
    #: session is freed).
    session_dir: Path = DEFAULT_SESSION_DIR
    #: Where render jobs keep their state and results (`stream.jobs`): it must outlive the server
    #: for jobs to survive a restart. None: `jobs` beside `session_dir`.
    jobs_dir: Path | None = None
    #: Named in `session` messages when set: which server process answered (a replica's id).
    instance: str | None = None

    def __post_init__(self) -> None:
        if self.generation.sampling != "forward":
            raise ValueError("live streaming needs forward sampling: sections must come out in playback order")
        if self.idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be positive, got {self.idle_timeout_s}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {self.jpeg_quality}")
        object.__setattr__(self, "ice_servers", tuple(check_ice_server(server) for server in self.ice_servers))
        if self.jobs_dir is None:
            object.__setattr__(self, "jobs_dir", Path(self.session_dir).parent / "jobs")
