"""Shared fixtures: the tiny model (built offline into a per-run cache), LoRAs for it, a STUN server."""

from __future__ import annotations

import copy
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model():
    from framepack_live.engine.model import FramePackModel

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return FramePackModel.load("tiny", device="cpu")


class StunServer:
    """A STUN server on a loopback UDP port, in its own thread: it answers Binding requests with a
    public-looking mapped address (as if the peer were behind a NAT, so that the server-reflexive
    candidate differs from the host one) and asks TURN Allocate requests for credentials (401
    with a realm and a nonce), and records every request, so a test can tell who used it and
    with which username. Written on aioice's STUN message code."""

    MAPPED_HOST = "203.0.113.7"

    def __init__(self) -> None:
        import socket
        import threading

        self.requests: list[dict] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def methods(self) -> list[str]:
        return [request["method"] for request in self.requests]

    def _serve(self) -> None:
        from aioice import stun

        while self._running:
            try:
                data, address = self._socket.recvfrom(2048)
            except TimeoutError:
                continue
            try:
                message = stun.parse_message(data)
            except ValueError:
                continue
            if message.message_class != stun.Class.REQUEST:
                continue
            self.requests.append({
                "method": message.message_method.name,
                "username": message.attributes.get("USERNAME"),
                "from": address,
            })
            if message.message_method == stun.Method.BINDING:
                reply = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, message.transaction_id,
                                     {"XOR-MAPPED-ADDRESS": (self.MAPPED_HOST, address[1])})
            else:
                reply = stun.Message(message.message_method, stun.Class.ERROR, message.transaction_id,
                                     {"ERROR-CODE": (401, "Unauthorized"), "REALM": "test", "NONCE": b"nonce"})
            self._socket.sendto(bytes(reply), address)

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        self._socket.close()


@pytest.fixture
def stun_server():
    server = StunServer()
    yield server
    server.close()


class LocalHub:
    """The three hub endpoints `model_info`, `snapshot_download` and `hf_hub_download` use, served
    from memory on this machine, so the real download code runs end to end without any network.
    With `bytes_per_second` each file's body comes at that rate (a download long enough to watch)."""

    SHA = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, files: dict[str, bytes], bytes_per_second: float | None = None) -> None:
        import hashlib
        import json
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hub = self
        self.files, self.served, self.missed = files, [], []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def reply(self, body: bytes, headers: dict[str, str], send_body: bool) -> None:
                self.send_response(200)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if send_body:
                    chunk = int(bytes_per_second / 20) if bytes_per_second else len(body) or 1
                    for begin in range(0, len(body), chunk):
                        self.wfile.write(body[begin:begin + chunk])
                        if bytes_per_second:
                            time.sleep(chunk / bytes_per_second)

            def answer(self, send_body: bool) -> None:
                path = self.path.split("?")[0]
                if "/tree/" in path:
                    tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                            for name, data in hub.files.items()]
                    return self.reply(json.dumps(tree).encode(), {"Content-Type": "application/json"}, send_body)
                if path.startswith("/api/models/"):
                    info = {"id": path.removeprefix("/api/models/"), "sha": hub.SHA,
                            "siblings": [{"rfilename": n, "size": len(d)} for n, d in hub.files.items()]}
                    return self.reply(json.dumps(info).encode(), {"Content-Type": "application/json"}, send_body)
                if f"/resolve/{hub.SHA}/" not in path:  # anything else the hub would not have either
                    hub.missed.append(path)
                    self.send_error(404)
                    return
                name = path.split(f"/resolve/{hub.SHA}/", 1)[1]
                if send_body:
                    hub.served.append(name)
                data = hub.files[name]
                self.reply(data, {"X-Repo-Commit": hub.SHA, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}, send_body)

            def do_GET(self) -> None:
                self.answer(True)

            def do_HEAD(self) -> None:
                self.answer(False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def local_hub():
    """`local_hub(files[, bytes_per_second])`: a `LocalHub` on a free port, shut down after the test."""
    hubs = []

    def start(files: dict[str, bytes], bytes_per_second: float | None = None) -> LocalHub:
        hubs.append(LocalHub(files, bytes_per_second))
        return hubs[-1]

    yield start
    for hub in hubs:
        hub.server.shutdown()


def write_lora(transformer: torch.nn.Module, out, seed: int, rank: int = 2) -> None:
    """A LoRA for `transformer`'s architecture with random (non-zero) B matrices, written in
    diffusers' format by the training's own export."""
    from framepack_live.train.lora import add_lora, export_lora

    trained = copy.deepcopy(transformer)
    config = add_lora(trained, rank)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in trained.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    export_lora(trained, config, out, "# test LoRA\n\nRandom weights for tests.\n")


@pytest.fixture(scope="session")
def make_lora():
    """`write_lora`, for tests that need a LoRA of another model or architecture."""
    return write_lora


@pytest.fixture(scope="session")
def tiny_loras(tiny_model, tmp_path_factory):
    """A directory of two LoRAs for the tiny model (`first`, `second`) and a file that is none."""
    root = tmp_path_factory.mktemp("loras")
    write_lora(tiny_model.transformer, root / "first", seed=1)
    write_lora(tiny_model.transformer, root / "second", seed=2)
    (root / "notes.txt").write_text("not a LoRA")
    return root


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist's scheduler, but every test of tests/cluster/ in one worker, one after the other:
    they share a Ray cluster (tests/cluster/conftest.py), and two of them side by side would each
    want the machine's CPUs for their replicas. Every other test is its own unit, as with `load`.

    By path, because the controller that schedules has no items to look at; and not with
    `xdist_group` marks and `--dist loadgroup`, which pytest-xdist 3.8 no longer honours under
    pytest 9 (the group suffix it puts on node ids does not reach the scheduler)."""
    from xdist.scheduler import LoadScopeScheduling

    class ClusterTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "tests/cluster" if nodeid.startswith("tests/cluster/") else nodeid

    return ClusterTogether(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/cluster/ first (in their own order): their worker's share is the longest, so it starts
    at once rather than after the first of the others."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/cluster/"))
