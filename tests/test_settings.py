"""Settings (app/lab/settings.py): one class; docs/settings.md is what
``python -m tools.settings_table`` prints from it; a bad value stops ``python -m
app.serve`` at once with a message naming the variable, the value and what is accepted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.lab.settings import Settings, SettingsError, env_names, load_settings
from tools.settings_table import table

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_table_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == table(), (
        "docs/settings.md is out of date: run .venv/bin/python -m tools.settings_table > "
        "docs/settings.md"
    )


def test_every_setting_is_in_the_table_with_a_meaning() -> None:
    text = table()
    for name, info in Settings.model_fields.items():
        assert info.description, f"{name} has no description"
        assert f"| `{env_names(name)[0]}`" in text


def test_no_pagelab_variable_is_read_outside_the_settings() -> None:
    """Every PAGELAB_* the server reads goes through Settings: no os.environ or getenv of
    one elsewhere in app/ (app/core reads its own two, documented in the table; the CLI
    is a client with variables of its own)."""
    found = []
    for path in (ROOT / "app").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("app/core/") or rel in ("app/cli.py", "app/lab/settings.py"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(environ|getenv)\S*\(\s*[\"']PAGELAB_", line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, found


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"PAGELAB_MAX_PAGES": "lots"},
            "PAGELAB_MAX_PAGES='lots': Input should be a valid integer",
        ),
        ({"PAGELAB_MAX_PAGES": "12"}, "accepted: an integer, at least 1024"),
        ({"PAGELAB_AUTH": "ldap"}, "PAGELAB_AUTH='ldap': Input should be 'open' or 'token'"),
        ({"PORT": "http"}, "PORT='http': Input should be a valid integer"),
        ({"PAGELAB_PORT": "70000"}, "accepted: an integer from 0 to 65535"),
        ({"PAGELAB_LOG_FORMAT": "xml"}, "accepted: 'auto', 'json' or 'console'"),
        ({"PAGELAB_METRICS": "token"}, "PAGELAB_METRICS=token needs PAGELAB_METRICS_TOKEN"),
        ({"PAGELAB_ALLOWED_ORIGINS": "[oops"}, "PAGELAB_ALLOWED_ORIGINS='[oops': cannot be"),
        ({"PAGELAB_CORE": "turbo"}, "PAGELAB_CORE='turbo': Input should be 'source'"),
    ],
)
def test_a_bad_setting_is_named_with_its_value_and_what_is_accepted(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as bad:
        load_settings()
    assert expected in str(bad.value)


def test_secrets_are_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGELAB_METRICS_TOKEN", "short-secret")
    with pytest.raises(SettingsError) as bad:
        load_settings()
    assert "short-secret" not in str(bad.value)
    assert "PAGELAB_METRICS_TOKEN: at least 16 characters" in str(bad.value)


def test_serve_fails_fast_with_the_message_and_no_traceback() -> None:
    env = {
        **os.environ,
        "PAGELAB_STREAM_LAG_S": "-1",
        "PAGELAB_SQLITE_SYNCHRONOUS": "sometimes",
        "PAGELAB_CORE": "source",
    }
    out = subprocess.run(
        [sys.executable, "-m", "app.serve", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert out.stderr.splitlines() == [  # one line per bad setting, in the table's order
        "pagelab: cannot start: PAGELAB_SQLITE_SYNCHRONOUS='sometimes': Input should be "
        "'NORMAL' or 'FULL'; accepted: 'NORMAL' or 'FULL'",
        "pagelab: cannot start: PAGELAB_STREAM_LAG_S='-1': Input should be greater than 0; "
        "accepted: a number, above 0 and at most 3600",
    ]
