"""``pagelab quotas`` (and the client's quota methods) against a real uvicorn in token
mode: show yours with usage, a role's, a user's; set a role's and a user's at run time;
clear a user's overrides; refusals go to stderr with exit status 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import main, parse_quota_changes
from app.client import PageLabClient, PageLabError
from app.lab.settings import Settings
from tests.live import Live, live_app

ADMIN_TOKEN = "admin-token-for-cli-quota-tests-0123456789"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    db: Path = tmp_path_factory.mktemp("cliq") / "q.db"
    settings = Settings(
        database_url=f"sqlite:///{db}",
        auth="token",
        admin_name="boss",
        admin_token=ADMIN_TOKEN,
        default_preset="tiny-16m",
        boot_default=False,
    )
    with live_app(settings) as server:
        yield server


@pytest.fixture(scope="module")
def ann_token(live: Live) -> str:
    with PageLabClient(live.url, token=ADMIN_TOKEN) as admin:
        r = admin._http.post("/api/v1/users", json={"name": "ann", "role": "student"})
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
    return token


def run(
    live: Live, token: str, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--url", live.url, "--token", token, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_changes_are_numbers_or_default() -> None:
    assert parse_quota_changes(["streams=8", "calls_per_s=2.5", "workloads=default"]) == {
        "streams": 8,
        "calls_per_s": 2.5,
        "workloads": None,
    }
    assert main(["quotas", "set", "--role", "student"]) == 2  # no changes: usage error


def test_show_set_clear(live: Live, ann_token: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(live, ann_token, capsys, "quotas", "show")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "ann (student)" and lines[1].split() == ["quota", "value", "used"]
    assert ["instances", "4", "0"] in [ln.split() for ln in lines]
    assert ["calls_per_s", "500"] in [ln.split() for ln in lines]
    # an admin raises a role's figure and one user's; both show at once
    code, out, _ = run(live, ADMIN_TOKEN, capsys, "quotas", "set", "--role", "student", "streams=6")
    assert code == 0 and ["streams", "6"] in [ln.split() for ln in out.splitlines()]
    code, out, _ = run(
        live, ADMIN_TOKEN, capsys, "quotas", "set", "--user", "ann", "workloads=3", "--json"
    )
    assert code == 0
    answer = json.loads(out)
    assert answer["overrides"] == {"workloads": 3} and answer["quotas"]["streams"] == 6
    code, out, _ = run(live, ADMIN_TOKEN, capsys, "quotas", "show", "--user", "ann")
    assert ["workloads", "3*"] in [ln.split() for ln in out.splitlines()]
    code, out, _ = run(live, ann_token, capsys, "quotas", "show", "--json")
    assert json.loads(out)["quotas"]["workloads"] == 3
    # a student may not change quotas: the server's refusal on stderr, status 1
    code, _, err = run(live, ann_token, capsys, "quotas", "set", "--role", "student", "streams=9")
    assert code == 1 and "only admins change a role's quotas" in err
    code, _, err = run(live, ADMIN_TOKEN, capsys, "quotas", "set", "--user", "ann", "streams=-1")
    assert code == 1 and "streams: -1 must be a whole number" in err
    code, out, _ = run(live, ADMIN_TOKEN, capsys, "quotas", "clear", "--user", "ann")
    assert code == 0 and "no overrides" in out
    code, out, _ = run(live, ADMIN_TOKEN, capsys, "quotas", "show", "--role", "student")
    assert out.startswith("role student\n")
    run(live, ADMIN_TOKEN, capsys, "quotas", "set", "--role", "student", "streams=default")
    with PageLabClient(live.url, token=ann_token) as ann:
        me = ann.me()
        assert me["quotas"]["streams"] == 4 and me["quotas"]["workloads"] == 1
        with pytest.raises(PageLabError) as e:
            ann.set_user_quota("ann", streams=9)
        assert e.value.status == 404
