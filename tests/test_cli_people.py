"""``pagelab users``, ``tokens`` and ``roster`` run in-process (``main(argv)``) against a
real uvicorn in token mode on a temporary SQLite database (issue 8 §1: people through
the CLI as through the API and the page)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from app.cli import UsageError, main, parse_duration
from app.client import PageLabClient, PageLabError
from app.lab.settings import Settings
from tests.live import Live, live_app

ADMIN_TOKEN = "admin-token-for-cli-tests-0123456789abcdef"
_names = itertools.count(1)

Run = tuple[int, str, str]


class Runner(Protocol):
    def __call__(self, *argv: str, token: str | None = ADMIN_TOKEN) -> Run: ...


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("cli-people")
    settings = Settings(
        database_url=f"sqlite:///{folder}/x.db",
        auth="token",
        admin_token=ADMIN_TOKEN,
        default_preset="tiny-16m",
        boot_default=False,
    )
    with live_app(settings) as server:
        httpx.post(
            f"{server.url}/api/v1/courses",
            json={"name": "os101"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ).raise_for_status()
        yield server


@pytest.fixture
def run(live: Live, capsys: pytest.CaptureFixture[str]) -> Iterator[Runner]:
    """``run(*argv, token=T)`` -> (exit status, stdout, stderr) of ``pagelab``."""

    def _run(*argv: str, token: str | None = ADMIN_TOKEN) -> Run:
        capsys.readouterr()
        auth = ["--token", token] if token else []
        code = main(["--url", live.url, *auth, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    yield _run


def name() -> str:
    return f"cli{next(_names)}"


def whoami(live: Live, token: str) -> str:
    with PageLabClient(live.url, token=token) as c:
        return str(c.me()["name"])


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("30m") == 1800
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration("1.5h") == 5400
    for bad in ("", "0", "-5", "3y", "h", "12 hours"):
        with pytest.raises(UsageError, match="--expires"):
            parse_duration(bad)


def test_users_create_prints_a_working_token(run: Runner, live: Live) -> None:
    ann = name()
    code, out, err = run("users", "create", ann, "--role", "student", "--course", "os101")
    assert (code, err) == (0, "")
    head, token = out.splitlines()
    assert head == f"user {ann} (student, course os101) created; token, shown only now:"
    assert token.startswith("pl_") and whoami(live, token) == ann


def test_the_token_comes_from_the_environment_too(
    run: Runner, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAGELAB_TOKEN", ADMIN_TOKEN)
    code, out, _ = run("users", "create", name(), "--role", "observer", "--json", token=None)
    assert code == 0 and whoami(live, json.loads(out)["token"])


def test_without_a_token_the_server_refuses(run: Runner, live: Live) -> None:
    code, out, err = run("users", "create", name(), "--role", "student", token=None)
    assert (code, out) == (1, "")
    assert err.startswith("pagelab: Unauthorized: ") and "token" in err


def test_an_instructor_creates_only_their_students(run: Runner, live: Live) -> None:
    teacher = name()
    code, out, _ = run("users", "create", teacher, "--role", "instructor", "--course", "os101")
    teacher_token = out.splitlines()[1]
    code, out, err = run(
        "users", "create", name(), "--role", "instructor", "--course", "os101", token=teacher_token
    )
    assert code == 1 and err.startswith("pagelab: Forbidden: you may not create a instructor")
    code, out, _ = run(
        "users", "create", name(), "--role", "student", "--course", "os101", token=teacher_token
    )
    assert code == 0


def test_tokens_issue_with_expiry_and_revoke(run: Runner, live: Live) -> None:
    bea = name()
    assert run("users", "create", bea, "--role", "student")[0] == 0
    code, out, err = run("tokens", "issue", bea, "--expires", "2h", "--label", "laptop")
    assert (code, err) == (0, "")
    head, token = out.splitlines()
    assert head.startswith("token ") and head.endswith(f" of {bea}, shown only now:")
    token_id = int(head.split()[1])
    assert whoami(live, token) == bea
    accounts = live.lab.accounts
    assert accounts is not None
    info = next(t for t in accounts.list_tokens(bea) if t.id == token_id)
    assert info.label == "laptop" and info.expires is not None
    assert info.expires - info.created == pytest.approx(7200)
    assert run("tokens", "revoke", str(token_id)) == (0, f"token {token_id} revoked\n", "")
    with pytest.raises(PageLabError) as refused:
        whoami(live, token)
    assert refused.value.status == 401
    code, _, err = run("tokens", "revoke", str(token_id))  # already revoked
    assert code == 1 and "no live token" in err
    code, _, err = run("tokens", "issue", bea, "--expires", "soon")
    assert code == 2 and "--expires" in err


def test_roster_import_writes_a_private_tokens_file(
    run: Runner, live: Live, tmp_path: Path
) -> None:
    first, second = name(), name()
    roster = tmp_path / "roster.csv"
    roster.write_text(f"name,role,course\n{first},student,os101\n{second},observer,os101\n")
    out_file = tmp_path / "tokens.csv"
    code, out, err = run("roster", "import", str(roster), "-o", str(out_file), "--expires", "120d")
    assert (code, err) == (0, "")
    assert (
        out == f"2 users created; their tokens are in {out_file} (hand them out, keep it private)\n"
    )
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    rows = list(csv.reader(io.StringIO(out_file.read_text())))
    assert rows[0] == ["name", "token"] and [r[0] for r in rows[1:]] == [first, second]
    assert whoami(live, rows[1][1]) == first and whoami(live, rows[2][1]) == second
    # an existing tokens file is kept: nothing is created, nothing overwritten
    third = name()
    roster.write_text(f"{third},student,os101\n")
    code, _, err = run("roster", "import", str(roster), "-o", str(out_file))
    assert code == 2 and "exists" in err
    assert live.lab.accounts is not None and live.lab.accounts.user(third) is None
    assert [r[0] for r in csv.reader(io.StringIO(out_file.read_text()))][1:] == [first, second]
    # a bad roster is refused whole, with its line
    roster.write_text(f"{third},student,os101\n{third}x,wizard,os101\n")
    code, _, err = run("roster", "import", str(roster), "-o", "-")
    assert code == 1 and "roster line 2" in err
    assert live.lab.accounts.user(third) is None


def test_a_command_of_commands_needs_its_verb(run: Runner) -> None:
    for command in ("users", "tokens", "roster"):
        assert run(command)[0] == 2
