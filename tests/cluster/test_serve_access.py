"""The operator's networking and access settings on local Ray, through Serve's own HTTP proxy and two
Ingress replicas: `GET /config`, API keys, pages of other sites, the per-client cap behind a
trusted proxy, and download links signed by one replica and honoured by the other."""

from __future__ import annotations

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from framepack_live.cluster.app import stream_settings
from framepack_live.cluster.cli import build_parser
from framepack_live.cluster.config import ClusterConfig
from framepack_live.cluster.serve import _config_from_flags, run
from framepack_live.engine.errors import InputError
from framepack_live.stream.client import Received, connect, expect, receive, send

pytestmark = pytest.mark.heavy

KEY = "cluster-key-1"
ICE = [{"urls": "stun:127.0.0.1:3478"}, {"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "p"}]


@pytest.fixture(scope="module")
def server(deploy, generation, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "api-keys.txt"
    keys.write_text(f"{KEY}\n")
    config = ClusterConfig(
        generation=generation,
        max_sessions=4,
        max_sessions_per_client=1,
        ice_servers=ICE,
        trusted_proxies=["127.0.0.2"],
        allowed_origins=["https://friend.example"],
        api_keys_file=str(keys),
    )
    with deploy(config, ingress_replicas=2) as server:
        yield server


def test_serve_defaults_are_the_default_models():
    """`framepack-live serve` with no flags: sessions default to toyworld-fast's 128x128, 4 steps
    without real CFG, window 3."""
    settings = stream_settings(ClusterConfig())
    assert settings.model.name == "toyworld-fast"
    generation = settings.generation
    assert (generation.width, generation.height, generation.steps, generation.window) == (128, 128, 4, 3)
    assert generation.cfg == 1.0


def test_serve_flags_set_the_networking_and_access_settings(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("k\n")
    args = build_parser().parse_args([
        "serve", "--ice-server", "stun:stun.example.org:3478", "--ice-server", "turn:turn.example.org:3478",
        "--ice-username", "u", "--ice-credential", "p", "--trusted-proxy", "10.0.0.0/8",
        "--allowed-origin", "https://friend.example", "--api-keys", str(keys),
    ])
    config = _config_from_flags(args, "cpu")
    assert config.ice_servers == [
        {"urls": "stun:stun.example.org:3478"},
        {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"},
    ]
    assert (config.trusted_proxies, config.allowed_origins) == (["10.0.0.0/8"], ["https://friend.example"])
    assert stream_settings(config).access.api_key_required
    # A TURN server without credentials, or a proxy that is no address, is refused in one line.
    for bad in (["--ice-server", "turn:turn.example.org"], ["--trusted-proxy", "10.0.0.300"]):
        with pytest.raises(ValueError):
            _config_from_flags(build_parser().parse_args(["serve", *bad]), "cpu")
    # With a config file these belong in its args; refused before Ray starts.
    with pytest.raises(InputError, match="--api-keys"):
        run(build_parser().parse_args(["serve", "--config", "config/serve.yaml", "--api-keys", str(keys)]))


def test_serve_live_lead_reaches_the_sessions_limits():
    """`--live-lead` (sections a session may run ahead of real-time play-out) ends up in every
    session's `Limits`: one section by default, 'off' for as fast as the model goes."""
    def lead(*flags: str) -> float | None:
        config = _config_from_flags(build_parser().parse_args(["serve", *flags]), "cpu")
        return stream_settings(config).limits.live_lead_sections

    assert (lead(), lead("--live-lead", "2.5"), lead("--live-lead", "off")) == (1.0, 2.5, None)
    with pytest.raises(ValueError, match="live_lead_sections"):
        lead("--live-lead", "-1")


def test_serve_lora_dir_lists_the_loras_sessions_may_choose(tiny_loras, tmp_path):
    args = build_parser().parse_args(["serve", "--lora-dir", str(tiny_loras)])
    config = _config_from_flags(args, "cpu")
    assert config.lora_dir == str(tiny_loras.resolve())
    loras = stream_settings(config).model.loras
    assert [lora.name for lora in loras] == ["first", "second"]
    assert loras[0].path == str((tiny_loras / "first" / "pytorch_lora_weights.safetensors").resolve())
    # A directory without LoRAs, or none at all, is refused before anything is deployed.
    for bad in (tmp_path, tmp_path / "missing"):
        with pytest.raises(ValueError, match="LoRA"):
            stream_settings(ClusterConfig(lora_dir=str(bad)))
    with pytest.raises(InputError, match="--lora-dir"):
        run(build_parser().parse_args(["serve", "--config", "config/serve.yaml", "--lora-dir", str(tiny_loras)]))


async def test_config_names_the_model_and_the_operators_settings(server, generation):
    async with httpx.AsyncClient(base_url=server.url) as http:
        config = (await http.get("/config")).json()
    assert config["model"] == {"name": "toyworld-fast", "width": 128, "height": 128, "steps": 4, "window": 3, "fps": 30}
    assert {key: config["defaults"][key] for key in generation} == generation
    assert config["ice_servers"] == ICE
    assert config["api_key_required"] is True


async def test_keys_origins_and_forwarded_clients_through_serves_proxy(server):
    async with connect(server.ws_url) as ws:
        await send(ws, type="start", prompt="a red ball", sections=1, media="none")
        assert (await expect(ws, "error"))["code"] == "unauthorized"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.ws_url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403

    # One session per client: 127.0.0.2 is a trusted proxy, so its X-Forwarded-For names the
    # client; 127.0.0.1 is not, so its header is ignored (Serve's proxy must not believe it either).
    def via(peer: str, forwarded: str):
        return connect(server.ws_url, origin="https://friend.example", local_addr=(peer, 0),
                       additional_headers={"X-Forwarded-For": forwarded})

    async with (
        via("127.0.0.2", "198.51.100.1") as a,
        via("127.0.0.2", "198.51.100.2") as b,
        via("127.0.0.1", "198.51.100.3") as c,
        via("127.0.0.1", "198.51.100.4") as c_again,
    ):
        for ws in (a, b, c):
            await send(ws, type="start", prompt="a red ball", sections=0, media="none", api_key=KEY)
            await expect(ws, "session")
            await send(ws, type="pause")
        await send(c_again, type="start", prompt="a red ball", sections=0, media="none", api_key=KEY)
        error = await expect(c_again, "error")
        assert error["code"] == "busy" and "per client" in error["message"]
        for ws in (a, b, c):
            await send(ws, type="stop")
            assert (await receive(ws, Received(), media=False)).done is not None


async def test_a_download_link_from_one_ingress_replica_works_on_every_one(server):
    """Each request reaches either replica; with a key per replica about half the links would fail."""
    async with connect(server.ws_url) as ws:
        await send(ws, type="start", prompt="a red ball", sections=1, media="none", api_key=KEY)
        session = await expect(ws, "session")
        received = await receive(ws, Received(), media=False)
    assert received.done is not None
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        instances = {(await http.get("/healthz")).json()["instance"] for _ in range(20)}
        assert len(instances) == 2, instances
        for _ in range(8):
            link = await http.post(f"/sessions/{session['session_id']}/download", json={"token": session["token"]})
            video = await http.get(link.json()["url"])
            assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
