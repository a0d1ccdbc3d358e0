"""Real parts for the stream tests: the tiny engine, a uvicorn server on a loopback port, a client.

The server runs in its own thread and event loop, as it would in its own process, so that a test
client that blocks or sleeps cannot help or hurt the server's timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass

import pytest
import torch
import uvicorn

from framepack_live.engine.model import FramePackModel
from framepack_live.engine.settings import GenerationSettings
from framepack_live.stream import client
from framepack_live.stream.app import create_app
from framepack_live.stream.local_backend import InProcessBackend
from framepack_live.stream.settings import Limits, StreamSettings

#: Small enough for two shared CPU cores: about half a second per section, 8 frames each.
TEST_GENERATION = GenerationSettings(width=128, height=128, steps=2, window=2, seed=0)


@pytest.fixture(scope="session")
def model(tiny_model):
    """The tiny model with one torch thread: the engine gets one core, server and clients the other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_model
    torch.set_num_threads(threads)


@dataclass
class Server:
    url: str
    app: object

    @property
    def generation(self) -> GenerationSettings:
        return self.app.state.directory.settings.generation

    def connect(self, **kwargs):
        return client.connect(self.url.replace("http://", "ws://") + "/ws", **kwargs)


@contextlib.contextmanager
def running_server(model: FramePackModel, settings: StreamSettings, socket_send_buffer: int | None = None):
    """A real uvicorn serving `create_app` over the in-process backend, on a free loopback port.

    `socket_send_buffer` caps the kernel's send buffer of every accepted connection (they inherit
    it from the listening socket), like a slow network path would.
    """
    backend = InProcessBackend(model)
    app = create_app(backend, settings)
    sock = socket.socket()
    if socket_send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, socket_send_buffer)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # proxy_headers=False: which peers' X-Forwarded-For counts is the app's `trusted_proxies`, not
    # uvicorn's own default (loopback).
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", ws_per_message_deflate=False, proxy_headers=False)
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started, "uvicorn did not start"
        yield Server(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        backend.shutdown()
        sock.close()


@pytest.fixture
def server_factory(model):
    """`with server_factory(limits=..., **stream_settings) as server:` for tests that need their own
    limits or settings (`generation` defaults to `TEST_GENERATION`)."""

    def factory(
        limits: Limits | None = None, socket_send_buffer: int | None = None, **kwargs
    ) -> contextlib.AbstractContextManager[Server]:
        settings = StreamSettings(**{"limits": limits or Limits(), "generation": TEST_GENERATION, **kwargs})
        return running_server(model, settings, socket_send_buffer)

    return factory


@pytest.fixture
def server(server_factory):
    with server_factory() as server:
        yield server
