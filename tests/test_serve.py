"""``python -m app.serve``'s refusal to serve the open mode beyond loopback, and
``pagelab admin bootstrap`` against a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main as pagelab
from app.lab.accounts import Accounts
from app.lab.settings import Settings
from app.lab.store import Store
from app.serve import is_loopback, main, open_bind_refusal


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
