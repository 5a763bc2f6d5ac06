"""A real uvicorn serving the app on 127.0.0.1 in a thread of the test process, for the
tests that need real sockets (WebSocket streams, the HTTP client, the CLI)."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI

from app.client import PageLabClient
from app.lab.service import Lab
from app.lab.settings import Settings
from app.main import create_app


class _Server(uvicorn.Server):
    """uvicorn that tells another thread when it is ready to serve."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class Live:
    url: str
    app: FastAPI

    @property
    def ws(self) -> str:
        return "ws" + self.url.removeprefix("http")

    @property
    def lab(self) -> Lab:
        lab: Lab = self.app.state.lab
        return lab


@contextmanager
def live_app(settings: Settings | None = None, *, sndbuf: int | None = None) -> Iterator[Live]:
    """A real uvicorn serving ``create_app(settings)`` on 127.0.0.1 (a free port) in a
    background thread.  ``sndbuf`` shrinks the kernel's send buffer of every accepted
    connection (Linux copies it from the listening socket), so that a client that stops
    reading blocks the server after a few KiB instead of a few MiB."""
    app = create_app(settings or Settings(default_preset="tiny-16m"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        # Bounded: 600 waits of at most 0.05 s on the ready event.
        for _ in range(600):
            if server.ready.wait(0.05):
                break
            if not thread.is_alive():
                raise RuntimeError("the server thread died during start-up")
        else:
            raise RuntimeError("the server did not start")
        yield Live(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(30)
        # uvicorn closed the listening socket's descriptor when it shut down; closing it
        # again here could close whatever reused that number (pytest's capture file).
        sock.detach()


@contextmanager
def live_server(settings: Settings | None = None) -> Iterator[str]:
    """``live_app`` yielding only the base URL."""
    with live_app(settings) as live:
        yield live.url


# ---- fixtures of the tests that drive a live server with the HTTP client or the CLI
# (tests/test_client.py, test_cli.py, test_cli_views.py; a plugin of tests/conftest.py)
_instances = itertools.count(1)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A live server for the test module."""
    with live_server() as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[PageLabClient]:
    with PageLabClient(url) as c:
        yield c


@pytest.fixture
def fresh(client: PageLabClient) -> Iterator[int]:
    """A new tiny-16m instance for one test (deleted afterwards)."""
    inst = client.create_instance(f"live-{next(_instances)}", preset="tiny-16m")
    yield int(inst["id"])
    client.delete_instance(inst["id"])
