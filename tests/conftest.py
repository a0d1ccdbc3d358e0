"""Shared fixtures: the tiny model (built offline into a per-run cache) and small settings."""

from __future__ import annotations

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
