"""The client and the ``pagelab`` CLI against a real uvicorn in token mode: tokens,
instance references (``box``, ``owner:name``) and ``pagelab scenarios
list|create|start|handout|delete``, every copy with the scenario's digest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.cli import main
from app.client import PageLabClient, PageLabError
from app.lab.settings import Settings
from tests.live import live_app

ADMIN_TOKEN = "admin-token-for-cli-tests-0123456789abcdef"


@dataclass
class Server:
    url: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("cli") / "lab.db"
    settings = Settings(
        database_url=f"sqlite:///{db}",
        auth="token",
        admin_name="root",
        admin_token=ADMIN_TOKEN,
        default_preset="tiny-16m",
        boot_default=False,
    )
    with live_app(settings) as live, PageLabClient(live.url, token=ADMIN_TOKEN) as admin:
        tokens = {}
        admin._http.post("/api/v1/courses", json={"name": "os101"}).raise_for_status()
        for name, role in (("tess", "instructor"), ("ann", "student"), ("bob", "student")):
            r = admin._http.post(
                "/api/v1/users", json={"name": name, "role": role, "course": "os101"}
            )
            r.raise_for_status()
            tokens[name] = r.json()["token"]
        yield Server(live.url, tokens)


def pagelab(
    server: Server, user: str, *argv: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--url", server.url, "--token", server.tokens[user], *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_client_takes_tokens_and_references(server: Server) -> None:
    with PageLabClient(server.url, token=server.tokens["ann"]) as ann:
        made = ann.create_instance("box", preset="tiny-16m")
        assert ann.instance("box")["id"] == made["id"]
        assert ann.instance("ann:box")["id"] == made["id"]
        assert ann.call("box", "vm_page_alloc")["result"] is not None
        assert ann.vmstats("ann:box")["global"]["v_free_count"] > 0
    with PageLabClient(server.url, token=server.tokens["bob"]) as bob:
        with pytest.raises(PageLabError) as refused:
            bob.instance("ann:box")
        assert (
            refused.value.status == 404 and refused.value.detail == "there is no instance ann:box"
        )
    with PageLabClient(server.url) as nobody, pytest.raises(PageLabError) as e:
        nobody.instances()
    assert e.value.status == 401


def test_pagelab_scenarios(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = tmp_path / "calls.json"
    calls.write_text(json.dumps([{"fn": "vm_page_alloc"}, {"fn": "vm_page_alloc"}]))
    code, out, err = pagelab(
        server,
        "tess",
        "scenarios",
        "create",
        "lab1",
        "--preset",
        "tiny-16m",
        "--seed",
        "4",
        "--calls",
        str(calls),
        capsys=capsys,
    )
    assert code == 0, err
    assert out.startswith("scenario ") and " lab1 of os101: 2 calls, digest " in out
    sid, digest = out.split()[1], out.split()[-1]
    # a student may not make one; the exit status says refused
    code, out, err = pagelab(
        server, "ann", "scenarios", "create", "x", "--preset", "tiny-16m", capsys=capsys
    )
    assert code == 1 and "only the course's instructors and admins" in err
    code, out, _ = pagelab(server, "ann", "scenarios", "list", capsys=capsys)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "CALLS", "DIGEST", "DESCRIPTION"]
    assert row.split() == [sid, "lab1", "2", digest[:16]]
    code, out, err = pagelab(server, "ann", "scenarios", "start", sid, "--json", capsys=capsys)
    assert code == 0, err
    assert json.loads(out)["state_digest"] == digest
    code, out, err = pagelab(server, "tess", "scenarios", "handout", sid, capsys=capsys)
    assert code == 1  # Ann has hers already
    made, refused = out.splitlines()
    assert made.startswith("bob: instance ") and made.endswith(" lab1")
    assert refused == "ann: refused: an instance named 'lab1' already exists"
    with PageLabClient(server.url, token=server.tokens["bob"]) as bob:
        assert bob.instance("lab1")["state_digest"] == digest
        trace = bob._http.get("/api/v1/instances/lab1/trace").text
    # a scenario from a trace file, and from an instance by reference
    path = tmp_path / "lab1.jsonl"
    path.write_text(trace)
    code, out, err = pagelab(
        server, "tess", "scenarios", "create", "again", "--trace", str(path), capsys=capsys
    )
    assert code == 0 and out.split()[-1] == digest, err
    code, out, err = pagelab(
        server, "tess", "scenarios", "create", "fromann", "--from", "ann:lab1", capsys=capsys
    )
    assert code == 0 and out.split()[-1] == digest, err
    code, out, err = pagelab(server, "tess", "scenarios", "delete", sid, capsys=capsys)
    assert code == 0 and out == f"scenario {sid} deleted\n"
    # --instance takes a reference too
    code, out, err = pagelab(
        server, "ann", "--instance", "lab1", "sysctl", "-n", "vm.v_free_min", capsys=capsys
    )
    assert code == 0 and int(out) > 0, err


def test_pagelab_broadcast(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    with PageLabClient(server.url, token=server.tokens["tess"]) as tess:
        demo = tess.create_instance("demo", preset="tiny-16m")
    code, out, err = pagelab(server, "tess", "broadcast", "demo", capsys=capsys)
    assert code == 0 and out == "instance demo broadcast read-only to course os101\n", err
    # a student of the course sees it listed, by id (not whose it is), and may read it
    code, out, err = pagelab(server, "bob", "broadcast", capsys=capsys)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "REF", "COURSE"]
    assert [r.split() for r in rows] == [[str(demo["id"]), str(demo["id"]), "os101"]]
    assert "tess" not in out
    # but a student cannot broadcast (exit status 1, the server's reason on stderr)
    with PageLabClient(server.url, token=server.tokens["bob"]) as bob:
        bob.create_instance("mine", preset="tiny-16m")
    code, out, err = pagelab(server, "bob", "broadcast", "mine", capsys=capsys)
    assert code == 1 and out == "" and "instructor" in err
    code, out, err = pagelab(server, "tess", "broadcast", "demo", "--stop", capsys=capsys)
    assert code == 0 and out == "instance demo no longer broadcast to every course\n", err
    code, out, _ = pagelab(server, "bob", "broadcast", "--json", capsys=capsys)
    assert code == 0 and json.loads(out) == []
