"""``python -m app.serve``'s refusal to serve the open mode beyond loopback, and
``pagelab admin bootstrap`` against a real SQLite database."""

from __future__ import annotations

import gc
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from app.cli import main as pagelab
from app.lab.accounts import Accounts
from app.lab.settings import Settings
from app.lab.store import Store
from app.logs import reset_logging
from app.serve import is_loopback, main, open_bind_refusal, server_stack


@pytest.fixture(autouse=True)
def _logging_back_to_defaults() -> Iterator[None]:
    """``main`` configures the process's logging (onto pytest's captured stdout): undo it."""
    yield
    reset_logging()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("no-such-host.invalid", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_open_mode_stays_on_loopback_unless_allowed(tmp_path: Path) -> None:
    assert open_bind_refusal("127.0.0.1", Settings()) is None
    why = open_bind_refusal("0.0.0.0", Settings())
    assert why is not None and "PAGELAB_AUTH=token" in why and "PAGELAB_ALLOW_OPEN=1" in why
    assert open_bind_refusal("0.0.0.0", Settings(allow_open=True)) is None
    token_mode = Settings(auth="token", database_url=f"sqlite:///{tmp_path}/a.db")
    assert open_bind_refusal("0.0.0.0", token_mode) is None


def test_serve_refuses_before_listening(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--host", "0.0.0.0", "--port", "1"]) == 2  # port 1 would fail to bind anyway
    assert "refusing to serve 0.0.0.0 without accounts" in capsys.readouterr().err


def test_admin_bootstrap_prints_the_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAGELAB_ADMIN_TOKEN", raising=False)
    url = f"sqlite:///{tmp_path}/lab.db"
    assert pagelab(["admin", "bootstrap", "--database-url", url, "--name", "root"]) == 0
    out = capsys.readouterr().out
    token = out.strip().splitlines()[-1]
    assert "created" in out and token.startswith("pl_")
    assert pagelab(["admin", "bootstrap", "--database-url", url, "--name", "root"]) == 0
    assert "is there" in capsys.readouterr().out  # idempotent: no second token
    store = Store(url)
    try:
        who = Accounts(store).authenticate(token)
        assert who is not None and (who.name, who.role) == ("root", "admin")
    finally:
        store.close()
    assert pagelab(["admin", "bootstrap", "--database-url", ""]) == 2
    assert "need a database" in capsys.readouterr().err


def test_the_fast_stack_when_installed_and_stock_on_request() -> None:
    """uvloop and httptools are pinned dependencies: ``auto`` serves on them."""
    assert server_stack(Settings()) == ("uvloop", "httptools")
    assert server_stack(Settings(server_stack="stock")) == ("asyncio", "h11")


@pytest.mark.parametrize(
    ("stack", "loop", "http"), [("auto", "uvloop", "httptools"), ("stock", "asyncio", "h11")]
)
def test_serve_hands_uvicorn_its_settings(
    stack: str, loop: str, http: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``python -m app.serve`` gives uvicorn: the loop and parser, no
    permessage-deflate, a listening socket with the bounded send buffer, the switch
    interval (uvicorn's run is replaced by one that records what it got)."""
    seen: dict[str, object] = {}

    def run(self: uvicorn.Server, sockets: list[socket.socket]) -> None:
        seen["config"] = self.config
        seen["sndbuf"] = sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        seen["switch"] = sys.getswitchinterval()
        for s in sockets:
            s.close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setenv("PAGELAB_SERVER_STACK", stack)
    monkeypatch.setenv("PAGELAB_SWITCH_INTERVAL_MS", "2")
    monkeypatch.setenv("PAGELAB_STREAM_SOCKET_BUFFER", "65536")
    old, old_gc = sys.getswitchinterval(), gc.get_threshold()
    try:
        assert main(["--host", "127.0.0.1", "--port", "0"]) == 0
    finally:
        sys.setswitchinterval(old)
        gc.set_threshold(*old_gc)
    config = seen["config"]
    assert isinstance(config, uvicorn.Config)
    assert (config.loop, config.http, config.ws_per_message_deflate) == (loop, http, False)
    # our logging and access lines, not uvicorn's
    assert config.log_config is None and config.access_log is False
    assert seen["sndbuf"] == 2 * 65536  # Linux doubles what it is asked for
    assert seen["switch"] == pytest.approx(0.002)
