"""Broadcasts and course scenarios over the API (app/api/courses.py), in the world of
test_access: who may broadcast and stop, what members see; scenarios made from a trace,
an instance and a preset with calls, every copy with the scenario's digest, hand-outs
with one copy per student, quota refusals, and 404s for non-members that name nobody."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api import test_access
from tests.api.conftest import API
from tests.api.test_access import (
    ADMIN,
    ALICE,
    BOBBY,
    CARLO,
    INSTRUCTOR,
    USERS,
    WATCHER,
    World,
    assert_nothing_leaks,
    assert_refused,
)

world = test_access.world  # the fixture: users, courses, instances, a share, a broadcast

SETUP = [
    {"fn": "vm_page_alloc", "args": {}},
    {"fn": "vm_page_alloc", "args": {}, "ctx": {"cpu": 0}},
    {"fn": "vmstats_rollup"},
]


def no_names(r: Any, me: str) -> None:
    """Not one other user's name in the answer (stricter than ``assert_nothing_leaks``)."""
    for name in USERS:
        if name != me:
            assert name not in r.text, (me, r.text)


def problem_of(r: Any, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    assert r.json()["type"] == f"/problems/{kind}", r.text
    detail: str = r.json()["detail"]
    return detail


# ---------------------------------------------------------------- broadcasts
def test_who_may_broadcast(world: World) -> None:
    c = world.c
    own, bcast = world.ids["own"], world.ids["bcast"]
    # a student, even of her own instance: 403 (nothing to hide: it is hers)
    r = c.put(
        f"{API}/instances/{own}/broadcast", json={"course": "os101"}, headers=world.as_(ALICE)
    )
    assert "only instructors" in problem_of(r, 403, "forbidden")
    # an instructor, to another course: 403
    r = c.put(
        f"{API}/instances/{bcast}/broadcast",
        json={"course": "os202"},
        headers=world.as_(INSTRUCTOR),
    )
    assert "your own course ('os101')" in problem_of(r, 403, "forbidden")
    # an instructor, a student's instance of their course (readable, not theirs): as missing
    peer = world.ids["peer"]
    r = c.put(
        f"{API}/instances/{peer}/broadcast", json={"course": "os101"}, headers=world.as_(INSTRUCTOR)
    )
    assert_refused(r, INSTRUCTOR, peer)
    # an admin: any instance, any course that exists
    r = c.put(f"{API}/instances/{own}/broadcast", json={"course": "nope"}, headers=world.as_(ADMIN))
    assert problem_of(r, 404, "not-found") == "there is no course 'nope'"
    r = c.put(
        f"{API}/instances/{own}/broadcast", json={"course": "os202"}, headers=world.as_(ADMIN)
    )
    assert r.status_code == 200 and r.json() == {"instance": own, "courses": ["os202"]}
    r = c.get(f"{API}/instances/{own}", headers=world.as_(CARLO))
    assert r.status_code == 200
    # the owner may stop a broadcast of her instance
    assert c.delete(f"{API}/instances/{own}/broadcast", headers=world.as_(ALICE)).status_code == 204
    assert_refused(c.get(f"{API}/instances/{own}", headers=world.as_(CARLO)), CARLO, own)


def test_members_see_a_broadcast_until_it_stops(world: World) -> None:
    c = world.c
    bcast = world.ids["bcast"]
    for user in (ALICE, BOBBY, WATCHER):
        r = c.get(f"{API}/broadcasts", headers=world.as_(user))
        assert r.status_code == 200
        assert r.json() == [
            {
                "instance": bcast,
                "name": "bcast",
                "ref": str(bcast),
                "course": "os101",
                "since": r.json()[0]["since"],
            }
        ]
        no_names(r, user)
        listed = c.get(f"{API}/instances", headers=world.as_(user)).json()
        assert {i["id"]: i["access"] for i in listed}[bcast] == "broadcast"
    assert c.get(f"{API}/broadcasts", headers=world.as_(CARLO)).json() == []
    mine = c.get(f"{API}/broadcasts", headers=world.as_(INSTRUCTOR)).json()
    assert [b["ref"] for b in mine] == ["bcast"]
    every = c.get(f"{API}/broadcasts", headers=world.as_(ADMIN)).json()
    assert [b["ref"] for b in every] == [f"{INSTRUCTOR}:bcast"]
    # a stopped broadcast: gone for its members, read, listing and stream alike
    r = c.delete(f"{API}/instances/bcast/broadcast?course=os101", headers=world.as_(INSTRUCTOR))
    assert r.status_code == 204
    r = c.delete(f"{API}/instances/bcast/broadcast", headers=world.as_(INSTRUCTOR))
    assert problem_of(r, 404, "not-found") == f"instance {bcast} is not broadcast"
    assert_refused(c.get(f"{API}/instances/{bcast}", headers=world.as_(ALICE)), ALICE, bcast)
    assert bcast not in {
        i["id"] for i in c.get(f"{API}/instances", headers=world.as_(ALICE)).json()
    }
    assert c.get(f"{API}/broadcasts", headers=world.as_(ALICE)).json() == []
    with c.websocket_connect(f"{API}/instances/{bcast}/stream?token={world.tokens[ALICE]}") as ws:
        assert ws.receive()["code"] == 1008


def test_a_broadcast_is_read_only_but_forkable(world: World) -> None:
    c = world.c
    bcast = world.ids["bcast"]
    h = world.as_(BOBBY)
    c.post(f"{API}/instances/{bcast}/calls/vm_page_alloc", json={}, headers=world.as_(INSTRUCTOR))
    for method, suffix, body in (
        ("POST", "/calls/vm_page_alloc", {"args": {}}),
        ("POST", "/calls", {"calls": [{"fn": "vm_page_alloc"}]}),
        ("POST", "/reset", None),
        ("POST", "/restore", {"to": 0}),
        ("PUT", "/sysctls/vm.v_free_min", {"value": 90}),
        ("POST", "/shares", {"user": BOBBY}),
        ("POST", "/workloads", {"kind": "churn", "steps": 1}),
        ("DELETE", "", None),
    ):
        r = c.request(method, f"{API}/instances/{bcast}{suffix}", json=body, headers=h)
        assert_refused(r, BOBBY, bcast)
    r = c.post(f"{API}/instances/{bcast}/fork", json={"at": 1, "name": "mine"}, headers=h)
    assert r.status_code == 201, r.text
    assert c.get(f"{API}/instances/mine/journal", headers=h).json()["seq"] == 1
    assert c.post(f"{API}/instances/mine/reset", headers=h).status_code == 200
    assert c.get(f"{API}/instances/{bcast}", headers=h).json()["seq"] == 1  # untouched


# ---------------------------------------------------------------- scenarios
def create(world: World, user: str, body: dict[str, Any], course: str = "os101") -> Any:
    return world.c.post(f"{API}/courses/{course}/scenarios", json=body, headers=world.as_(user))


def digest_of(world: World, user: str, ref: str | int) -> str:
    r = world.c.get(f"{API}/instances/{ref}", headers=world.as_(user))
    assert r.status_code == 200, r.text
    digest: str = r.json()["state_digest"]
    return digest


def test_scenarios_from_a_preset_an_instance_and_a_trace_have_their_source_digest(
    world: World,
) -> None:
    c = world.c
    hi = world.as_(INSTRUCTOR)
    r = create(world, INSTRUCTOR, {"name": "p", "preset": "tiny-16m", "seed": 3, "calls": SETUP})
    assert r.status_code == 201, r.text
    from_preset = r.json()
    assert from_preset["calls"] == 3 and from_preset["created_by"] == INSTRUCTOR
    # the same machine made by hand has the same digest
    r = c.post(
        f"{API}/instances", json={"name": "by-hand", "preset": "tiny-16m", "seed": 3}, headers=hi
    )
    assert r.status_code == 201
    r = c.post(f"{API}/instances/by-hand/calls", json={"calls": SETUP}, headers=hi)
    assert r.json()["errors"] == 0
    assert from_preset["state_digest"] == digest_of(world, INSTRUCTOR, "by-hand")
    # from an instance (the instructor reads Alice's): its digest, up to `at` if given
    c.post(f"{API}/instances/own/calls", json={"calls": SETUP[:2]}, headers=world.as_(ALICE))
    r = create(world, INSTRUCTOR, {"name": "i", "from_instance": f"{ALICE}:own"})
    assert r.status_code == 201, r.text
    assert r.json()["state_digest"] == digest_of(world, ALICE, "own") and r.json()["calls"] == 2
    r = create(world, INSTRUCTOR, {"name": "i0", "from_instance": f"{ALICE}:own", "at": 0})
    assert r.status_code == 201 and r.json()["calls"] == 0
    assert r.json()["state_digest"] != digest_of(world, ALICE, "own")
    # from a trace
    trace = c.get(f"{API}/instances/by-hand/trace", headers=hi).text
    r = create(world, INSTRUCTOR, {"name": "t", "trace": trace, "description": "lab 3"})
    assert r.status_code == 201, r.text
    assert r.json()["state_digest"] == from_preset["state_digest"]
    # the scenario's own trace gives the same digest again
    exported = c.get(f"{API}/scenarios/{r.json()['id']}/trace", headers=world.as_(ALICE))
    assert exported.status_code == 200
    assert json.loads(exported.text.splitlines()[0])["state_digest"] == from_preset["state_digest"]
    no_names(exported, ALICE)


def test_bad_scenarios_are_refused_saying_why(world: World) -> None:
    c = world.c
    r = create(world, INSTRUCTOR, {"name": "x"})
    assert "exactly one of trace, from_instance or preset" in r.text and r.status_code == 422
    r = create(world, INSTRUCTOR, {"name": "x", "preset": "tiny-16m", "from_instance": "bcast"})
    assert r.status_code == 422
    bad = [*SETUP[:1], {"fn": "no_such_function"}]
    r = create(world, INSTRUCTOR, {"name": "x", "preset": "tiny-16m", "calls": bad})
    detail = problem_of(r, 422, "validation")
    assert "call 2 (no_such_function) was refused" in detail and r.json()["call"] == 2
    trace = c.get(f"{API}/instances/bcast/trace", headers=world.as_(INSTRUCTOR)).text
    header, *rest = trace.splitlines()
    edited = json.dumps({**json.loads(header), "state_digest": "0" * 64})
    r = create(world, INSTRUCTOR, {"name": "x", "trace": "\n".join([edited, *rest])})
    assert "replaying it gives" in problem_of(r, 422, "validation")
    r = create(world, INSTRUCTOR, {"name": "x", "trace": "not json"})
    assert problem_of(r, 422, "validation") == "line 1 of the trace is not JSON"
    # an instance the instructor may not read: as missing, by the reference typed
    r = create(world, INSTRUCTOR, {"name": "x", "from_instance": f"{CARLO}:other"})
    assert problem_of(r, 404, "unknown-instance") == f"there is no instance {CARLO}:other"
    r = create(world, INSTRUCTOR, {"name": "x", "from_instance": str(world.ids["other"])})
    assert_refused(r, INSTRUCTOR, world.ids["other"])
    assert create(world, INSTRUCTOR, {"name": "x", "from_instance": "bcast"}).status_code == 201
    r = create(world, INSTRUCTOR, {"name": "x", "from_instance": "bcast"})
    assert "scenario 'x' already exists" in problem_of(r, 409, "conflict")


def test_only_the_course_s_instructors_and_admins_make_scenarios(world: World) -> None:
    body = {"name": "s", "preset": "tiny-16m"}
    for user in (ALICE, WATCHER):  # members: 403
        r = create(world, user, body)
        assert "only the course's instructors and admins" in problem_of(r, 403, "forbidden")
    for user, course in ((CARLO, "os101"), (INSTRUCTOR, "os202"), (ADMIN, "nope")):
        r = create(world, user, body, course)  # not a member / no such course: alike
        assert problem_of(r, 404, "not-found") == f"there is no course {course!r}"
        no_names(r, user)
    assert create(world, ADMIN, body, "os202").status_code == 201
    assert create(world, INSTRUCTOR, body).status_code == 201


def test_scenario_size_is_bounded_by_the_maker_s_quotas(world: World) -> None:
    accounts = world.c.app.state.lab.accounts  # type: ignore[attr-defined]
    accounts.set_quota(INSTRUCTOR, "batch_size", 2)
    r = create(world, INSTRUCTOR, {"name": "s", "preset": "tiny-16m", "calls": SETUP})
    assert "quota 'batch_size' allows 2" in problem_of(r, 413, "too-large")
    accounts.set_quota(INSTRUCTOR, "pages_per_instance", 1000)
    r = create(world, INSTRUCTOR, {"name": "s", "preset": "tiny-16m"})
    assert "quota 'pages_per_instance' is 1000" in problem_of(r, 413, "too-large")
    assert world.c.get(f"{API}/courses/os101/scenarios", headers=world.as_(ALICE)).json() == []


@pytest.fixture
def scenario(world: World) -> dict[str, Any]:
    r = create(world, INSTRUCTOR, {"name": "lab3", "preset": "tiny-16m", "seed": 5, "calls": SETUP})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def test_members_list_and_start_copies_with_the_scenario_digest(
    world: World, scenario: dict[str, Any]
) -> None:
    c = world.c
    sid = scenario["id"]
    for user in (ALICE, BOBBY, WATCHER, INSTRUCTOR, ADMIN):
        r = c.get(f"{API}/courses/os101/scenarios", headers=world.as_(user))
        assert [s["id"] for s in r.json()] == [sid], (user, r.text)
        assert ("created_by" in r.json()[0]) == (user in (INSTRUCTOR, ADMIN))
        assert_nothing_leaks(r.text, user)
        assert c.get(f"{API}/scenarios/{sid}", headers=world.as_(user)).json()["name"] == "lab3"
    r = c.post(f"{API}/scenarios/{sid}/instances", json={}, headers=world.as_(ALICE))
    assert r.status_code == 201, r.text
    copy = r.json()
    assert copy["name"] == "lab3" and copy["scenario"] == sid
    assert copy["state_digest"] == scenario["state_digest"] == digest_of(world, ALICE, "lab3")
    assert copy["calls"] == 3
    no_names(r, ALICE)
    # hers: she drives it; Bobby cannot see it
    r = c.post(f"{API}/instances/lab3/calls/vm_page_alloc", json={}, headers=world.as_(ALICE))
    assert r.status_code == 200
    assert_refused(
        c.get(f"{API}/instances/{ALICE}:lab3", headers=world.as_(BOBBY)), BOBBY, f"{ALICE}:lab3"
    )
    # a second copy needs another name; the quota counts copies
    r = c.post(f"{API}/scenarios/{sid}/instances", json={}, headers=world.as_(ALICE))
    assert problem_of(r, 409, "conflict") == "an instance named 'lab3' already exists"
    r = c.post(f"{API}/scenarios/{sid}/instances", json={"name": "again"}, headers=world.as_(ALICE))
    assert r.status_code == 201 and r.json()["state_digest"] == scenario["state_digest"]
    r = c.post(f"{API}/scenarios/{sid}/instances", json={"name": "5th"}, headers=world.as_(ALICE))
    assert "quota 'instances' allows 4" in problem_of(r, 403, "forbidden")
    r = c.post(f"{API}/scenarios/{sid}/instances", json={}, headers=world.as_(WATCHER))
    assert "quota 'instances' allows 0" in problem_of(r, 403, "forbidden")


def test_non_members_get_404_naming_nobody(world: World, scenario: dict[str, Any]) -> None:
    c = world.c
    sid = scenario["id"]
    h = world.as_(CARLO)
    for method, path, body in (
        ("GET", f"/scenarios/{sid}", None),
        ("GET", f"/scenarios/{sid}/trace", None),
        ("POST", f"/scenarios/{sid}/instances", {}),
        ("POST", f"/scenarios/{sid}/handout", {}),
        ("DELETE", f"/scenarios/{sid}", None),
    ):
        r = c.request(method, f"{API}{path}", json=body, headers=h)
        missing = c.request(method, f"{API}{path.replace(str(sid), '999')}", json=body, headers=h)
        assert problem_of(r, 404, "not-found") == f"there is no scenario {sid}"
        assert problem_of(missing, 404, "not-found") == "there is no scenario 999"
        no_names(r, CARLO)
    r = c.get(f"{API}/courses/os101/scenarios", headers=h)
    assert problem_of(r, 404, "not-found") == "there is no course 'os101'"
    assert c.get(f"{API}/courses/os202/scenarios", headers=h).json() == []


def test_handout_gives_every_student_a_copy(world: World, scenario: dict[str, Any]) -> None:
    c = world.c
    sid = scenario["id"]
    r = c.post(f"{API}/scenarios/{sid}/handout", json={}, headers=world.as_(ALICE))
    assert "only the course's instructors and admins" in problem_of(r, 403, "forbidden")
    # Alice already has one named lab3: hers is refused, the others go through
    c.post(f"{API}/scenarios/{sid}/instances", json={}, headers=world.as_(ALICE))
    r = c.post(f"{API}/scenarios/{sid}/handout", json={}, headers=world.as_(INSTRUCTOR))
    assert r.status_code == 200, r.text
    out = r.json()
    assert [x["user"] for x in out["created"]] == [BOBBY]  # the students; not the observer
    assert [(x["user"], x["type"]) for x in out["refused"]] == [(ALICE, "conflict")]
    assert_nothing_leaks(r.text, INSTRUCTOR)
    bobs = out["created"][0]
    assert bobs["state_digest"] == scenario["state_digest"] == digest_of(world, BOBBY, "lab3")
    assert c.get(f"{API}/instances/lab3", headers=world.as_(BOBBY)).json()["id"] == bobs["id"]
    # by name, to the users listed; a stranger refuses the whole hand-out
    r = c.post(
        f"{API}/scenarios/{sid}/handout",
        json={"name": "extra", "users": [ALICE, CARLO]},
        headers=world.as_(INSTRUCTOR),
    )
    assert problem_of(r, 422, "validation") == f"users: {CARLO!r} is not in course 'os101'"
    assert "extra" not in {
        i["name"] for i in c.get(f"{API}/instances", headers=world.as_(ALICE)).json()
    }
    r = c.post(
        f"{API}/scenarios/{sid}/handout",
        json={"name": "extra", "users": [ALICE]},
        headers=world.as_(INSTRUCTOR),
    )
    assert [x["user"] for x in r.json()["created"]] == [ALICE]
    digests = {
        digest_of(world, ALICE, "lab3"),
        digest_of(world, ALICE, "extra"),
        digest_of(world, BOBBY, "lab3"),
    }
    assert digests == {scenario["state_digest"]}
    # quotas are each student's: Alice (own, shared, lab3, extra) is full
    r = c.post(
        f"{API}/scenarios/{sid}/handout", json={"name": "more"}, headers=world.as_(INSTRUCTOR)
    )
    refused = {x["user"]: x["detail"] for x in r.json()["refused"]}
    assert "their quota 'instances' allows 4" in refused[ALICE]
    assert [x["user"] for x in r.json()["created"]] == [BOBBY]


def test_deleting_a_scenario_keeps_its_copies(world: World, scenario: dict[str, Any]) -> None:
    c = world.c
    sid = scenario["id"]
    c.post(f"{API}/scenarios/{sid}/instances", json={}, headers=world.as_(ALICE))
    r = c.delete(f"{API}/scenarios/{sid}", headers=world.as_(ALICE))
    assert "only the course's instructors and admins" in problem_of(r, 403, "forbidden")
    assert c.delete(f"{API}/scenarios/{sid}", headers=world.as_(INSTRUCTOR)).status_code == 204
    r = c.delete(f"{API}/scenarios/{sid}", headers=world.as_(INSTRUCTOR))
    assert problem_of(r, 404, "not-found") == f"there is no scenario {sid}"
    assert digest_of(world, ALICE, "lab3") == scenario["state_digest"]


def test_open_mode_has_no_courses(tmp_path: Any) -> None:
    from starlette.testclient import TestClient

    from app.lab.settings import Settings
    from app.main import create_app

    with TestClient(create_app(Settings(database_url="", default_preset="tiny-16m"))) as c:
        for method, path in (
            ("GET", "/broadcasts"),
            ("GET", "/courses/x/scenarios"),
            ("GET", "/scenarios/1"),
            ("PUT", "/instances/1/broadcast"),
        ):
            body = {"course": "x"} if method == "PUT" else None
            r = c.request(method, f"{API}{path}", json=body)
            assert r.status_code == 404 and "open mode" in r.json()["detail"], (path, r.text)
