"""Instance references in paths (app/api/refs.py): ``42``, ``box`` (mine), ``ann:box``,
``:box`` (the open lab's owner) on every kind of instance route, in token mode (the world
of test_access) and in the open lab; a forbidden name answers exactly like a missing one;
a malformed reference is a 422 that says what one looks like."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api import test_access
from tests.api.conftest import API, problem
from tests.api.test_access import (
    ALICE,
    BOBBY,
    CARLO,
    USERS,
    World,
    assert_refused,
)

world = test_access.world  # the fixture: users, courses, instances, a share, a broadcast


def body_without(r: Any, ref: str) -> dict[str, Any]:
    """The problem document with the typed reference taken out (to compare two)."""
    doc: dict[str, Any] = r.json()
    return {k: (v.replace(ref, "<ref>") if isinstance(v, str) else v) for k, v in doc.items()}


def test_my_names_and_owner_names(world: World) -> None:
    c = world.c
    own = world.ids["own"]
    for ref in ("own", f"{ALICE}:own", f"{ALICE}%3Aown", str(own)):
        r = c.get(f"{API}/instances/{ref}", headers=world.as_(ALICE))
        assert r.status_code == 200 and r.json()["id"] == own, (ref, r.text)
    # a bare name is the caller's: Bobby has no "own" (Alice's does not answer) ...
    assert_refused(c.get(f"{API}/instances/own", headers=world.as_(BOBBY)), BOBBY, "own")
    # ... until he makes one
    bobs = world.add_instance(BOBBY, "own")
    assert c.get(f"{API}/instances/own", headers=world.as_(BOBBY)).json()["id"] == bobs
    assert c.get(f"{API}/instances/own", headers=world.as_(ALICE)).json()["id"] == own
    # shared with Bobby: reachable by owner:name
    r = c.get(f"{API}/instances/{ALICE}:shared", headers=world.as_(BOBBY))
    assert r.status_code == 200 and r.json()["id"] == world.ids["shared"]


def test_a_forbidden_name_answers_as_a_missing_one(world: World) -> None:
    c = world.c
    for method, suffix, body in (
        ("GET", "", None),
        ("GET", "/journal", None),
        ("POST", "/calls/vmstats_rollup", {"args": {}}),
        ("POST", "/fork", {"at": 0, "name": "f"}),
        ("DELETE", "", None),
    ):
        forbidden = c.request(
            method, f"{API}/instances/{ALICE}:own{suffix}", json=body, headers=world.as_(CARLO)
        )
        missing = c.request(
            method, f"{API}/instances/{ALICE}:gone{suffix}", json=body, headers=world.as_(CARLO)
        )
        assert_refused(forbidden, CARLO, f"{ALICE}:own")
        assert_refused(missing, CARLO, f"{ALICE}:gone")
        assert body_without(forbidden, f"{ALICE}:own") == body_without(missing, f"{ALICE}:gone")
        # and a user who does not exist at all: the same again
        nobody = c.request(
            method, f"{API}/instances/nobody:own{suffix}", json=body, headers=world.as_(CARLO)
        )
        assert body_without(nobody, "nobody:own") == body_without(missing, f"{ALICE}:gone")


@pytest.mark.parametrize(
    "ref, says",
    [
        ("a:b:c", "is not an instance reference"),
        ("bad name", "is not an instance reference"),
        ("-x:box", "is not an instance reference"),  # a user name starts with a letter/digit
        ("ann:", "is not an instance reference"),
        ("0", "out of range"),
        ("99999999999", "out of range"),
        ("x" * 70, "is not an instance reference"),
    ],
)
@pytest.mark.parametrize("user", [ALICE, "root7"])
def test_malformed_references_are_422(world: World, ref: str, says: str, user: str) -> None:
    """For everyone, on reads and writes alike (the guard and the route say the same)."""
    for method, suffix, body in (
        ("GET", "/vmstats", None),
        ("POST", "/calls/vmstats_rollup", {"args": {}}),
    ):
        r = world.c.request(
            method, f"{API}/instances/{ref}{suffix}", json=body, headers=world.as_(user)
        )
        doc = problem(r, 422, "validation")  # type: ignore[arg-type]
        assert says in doc["detail"], doc
        assert "owner:name" in doc["detail"] or "range" in doc["detail"]
        for name in USERS:
            if name != user:
                assert name not in r.text


def test_a_name_of_digits_is_reached_as_owner_name(world: World) -> None:
    c = world.c
    iid = world.add_instance(ALICE, "42")
    r = c.get(f"{API}/instances/{ALICE}:42", headers=world.as_(ALICE))
    assert r.status_code == 200 and r.json()["id"] == iid
    listed = {i["id"]: i["ref"] for i in c.get(f"{API}/instances", headers=world.as_(ALICE)).json()}
    assert listed[iid] == str(iid)  # digits alone would be an id: the listing says the id
    if iid != 42:
        assert_refused(c.get(f"{API}/instances/42", headers=world.as_(ALICE)), ALICE, "42")


def test_every_kind_of_route_takes_a_name(world: World) -> None:
    """Calls, batch, views, pagemap, journal, restore, fork, trace, workloads, shares,
    broadcast and the stream, all by name."""
    c = world.c
    h = world.as_(ALICE)
    base = f"{API}/instances/own"
    assert c.post(f"{base}/calls/vm_page_alloc", json={"args": {}}, headers=h).status_code == 200
    r = c.post(f"{base}/calls", json={"calls": [{"fn": "vm_page_alloc"}]}, headers=h)
    assert r.status_code == 200 and r.json()["completed"] == 1
    for suffix in ("/vmstats", "/queues", "/pagemap", "/threads", "/dma", "/sysctls"):
        assert c.get(f"{base}{suffix}", headers=h).status_code == 200, suffix
    journal = c.get(f"{base}/journal", headers=h).json()
    assert [e["fn"] for e in journal["entries"]] == ["vm_page_alloc", "vm_page_alloc"]
    r = c.post(f"{base}/fork", json={"at": 1, "name": "one"}, headers=h)
    assert r.status_code == 201
    assert c.get(f"{API}/instances/one/journal", headers=h).json()["seq"] == 1
    trace = c.get(f"{base}/trace", headers=h)
    assert trace.status_code == 200 and trace.text.count("\n") == 3
    assert c.post(f"{base}/restore", json={"to": 1}, headers=h).json()["seq"] == 1
    r = c.post(f"{base}/workloads", json={"kind": "churn", "steps": 2, "rate": 1}, headers=h)
    assert r.status_code == 201, r.text
    run = r.json()["id"]
    assert [w["id"] for w in c.get(f"{base}/workloads", headers=h).json()] == [run]
    assert c.post(f"{base}/workloads/{run}/stop", headers=h).status_code == 200
    assert c.post(f"{base}/shares", json={"user": BOBBY}, headers=h).status_code == 204
    assert c.get(f"{API}/instances/{ALICE}:own", headers=world.as_(BOBBY)).status_code == 200
    with c.websocket_connect(f"{base}/stream?token={world.tokens[ALICE]}") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["instance"]["id"] == world.ids["own"]
    with c.websocket_connect(f"{API}/instances/a:b:c/stream?token={world.tokens[ALICE]}") as ws:
        msg = ws.receive()
        assert msg["code"] == 1008 and "is not an instance reference" in msg["reason"]


@pytest.mark.anyio
async def test_open_mode_names(client: httpx.AsyncClient) -> None:
    """In the open lab every instance is the owner "''"'s: ``default`` and ``:default``
    name the default instance."""
    for ref in ("default", ":default", "1"):
        r = await client.get(f"{API}/instances/{ref}")
        assert r.status_code == 200 and r.json()["id"] == 1, ref
    r = await client.post(f"{API}/instances/default/calls/vm_page_alloc", json={"args": {}})
    assert r.status_code == 200
    r = await client.post(f"{API}/instances/:default/fork", json={"at": 1, "name": "copy"})
    assert r.status_code == 201
    r = await client.get(f"{API}/instances/copy/journal")
    assert [e["fn"] for e in r.json()["entries"]] == ["vm_page_alloc"]
    problem(await client.get(f"{API}/instances/nothing"), 404, "unknown-instance")
    r = await client.get(f"{API}/instances/ann:default")  # nobody named ann owns it
    assert problem(r, 404, "unknown-instance")["detail"] == "there is no instance ann:default"
    listed = (await client.get(f"{API}/instances")).json()
    assert {i["ref"]: i["access"] for i in listed} == {"default": "own", "copy": "own"}
