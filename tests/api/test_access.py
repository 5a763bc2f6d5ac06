"""Accounts and access over the API (issue 8 §1) in token mode, on a temporary SQLite
database: an access matrix over roles × instance kinds (own, another student's, shared,
another course's, broadcast to the course) for representative endpoints and the stream,
each instance named by id and by ``owner:name``, asserting the designed answer and that no
refusal names another user; token refusals (missing, unknown, expired, revoked); user
management; open mode unchanged."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

with warnings.catch_warnings():  # "use httpx2": the TestClient works, and speaks WebSocket
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from app.lab.settings import Settings
from app.main import create_app

API = "/api/v1"
ADMIN = "root7"
ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"
# names chosen so that none is part of another or of any ordinary text
INSTRUCTOR, ALICE, BOBBY, WATCHER, CARLO = "tessq7", "alicq7", "bobbq7", "obsvq7", "carlq7"
USERS = (ADMIN, INSTRUCTOR, ALICE, BOBBY, WATCHER, CARLO)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class World:
    def __init__(self, c: TestClient) -> None:
        self.c = c
        self.tokens: dict[str, str] = {ADMIN: ADMIN_TOKEN}
        self.ids: dict[str, int] = {}

    def as_(self, user: str) -> dict[str, str]:
        return auth(self.tokens[user])

    def add_user(self, by: str, name: str, role: str, course: str | None) -> None:
        r = self.c.post(
            f"{API}/users",
            json={"name": name, "role": role, "course": course},
            headers=self.as_(by),
        )
        assert r.status_code == 201, r.text
        self.tokens[name] = r.json()["token"]

    def add_instance(self, owner: str, name: str) -> int:
        r = self.c.post(
            f"{API}/instances",
            json={"name": name, "preset": "tiny-16m"},
            headers=self.as_(owner),
        )
        assert r.status_code == 201, r.text
        self.ids[name] = r.json()["id"]
        return self.ids[name]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        auth="token",
        admin_name=ADMIN,
        admin_token=ADMIN_TOKEN,
        default_preset="tiny-16m",
        boot_default=False,
        max_instances=16,
    )
    with TestClient(create_app(settings)) as c:
        w = World(c)
        for course in ("os101", "os202"):
            r = c.post(f"{API}/courses", json={"name": course}, headers=w.as_(ADMIN))
            assert r.status_code == 201, r.text
        w.add_user(ADMIN, INSTRUCTOR, "instructor", "os101")
        w.add_user(INSTRUCTOR, ALICE, "student", "os101")
        w.add_user(INSTRUCTOR, BOBBY, "student", "os101")
        w.add_user(INSTRUCTOR, WATCHER, "observer", "os101")
        w.add_user(ADMIN, CARLO, "student", "os202")
        w.add_instance(ALICE, "own")  # Alice's own
        w.add_instance(BOBBY, "peer")  # another student's, same course
        shared = w.add_instance(ALICE, "shared")  # Alice's, shared with Bobby and the observer
        w.add_instance(CARLO, "other")  # another course's
        bcast = w.add_instance(INSTRUCTOR, "bcast")  # the instructor's, broadcast to os101
        for user in (BOBBY, WATCHER):
            r = c.post(
                f"{API}/instances/{shared}/shares", json={"user": user}, headers=w.as_(ALICE)
            )
            assert r.status_code == 204, r.text
        r = c.put(
            f"{API}/instances/{bcast}/broadcast",
            json={"course": "os101"},
            headers=w.as_(INSTRUCTOR),
        )
        assert r.status_code == 200 and r.json()["courses"] == ["os101"], r.text
        yield w


# who may read / write which instance (by its name)
READ = {
    ADMIN: {"own", "peer", "shared", "other", "bcast"},
    INSTRUCTOR: {"own", "peer", "shared", "bcast"},
    ALICE: {"own", "shared", "bcast"},
    BOBBY: {"peer", "shared", "bcast"},
    WATCHER: {"shared", "bcast"},
    CARLO: {"other"},
}
WRITE = {
    ADMIN: {"own", "peer", "shared", "other", "bcast"},
    INSTRUCTOR: {"bcast"},
    ALICE: {"own", "shared"},
    BOBBY: {"peer"},
    WATCHER: set(),
    CARLO: {"other"},
}
INSTANCES = ("own", "peer", "shared", "other", "bcast")
OWNERS = {"own": ALICE, "peer": BOBBY, "shared": ALICE, "other": CARLO, "bcast": INSTRUCTOR}
#: the other users each one may know by name: admins everyone, an instructor the members
#: of their course (they manage them); nobody else anyone
KNOWS = {
    ADMIN: set(USERS),
    INSTRUCTOR: {INSTRUCTOR, ALICE, BOBBY, WATCHER},
}
#: why each user sees each instance (the listing's ``access``)
ACCESS = {
    (ADMIN, "own"): "admin",
    (ADMIN, "peer"): "admin",
    (ADMIN, "shared"): "admin",
    (ADMIN, "other"): "admin",
    (ADMIN, "bcast"): "admin",
    (INSTRUCTOR, "own"): "course",
    (INSTRUCTOR, "peer"): "course",
    (INSTRUCTOR, "shared"): "course",
    (INSTRUCTOR, "bcast"): "own",
    (ALICE, "own"): "own",
    (ALICE, "shared"): "own",
    (ALICE, "bcast"): "broadcast",
    (BOBBY, "peer"): "own",
    (BOBBY, "shared"): "shared",
    (BOBBY, "bcast"): "broadcast",
    (WATCHER, "shared"): "shared",
    (WATCHER, "bcast"): "broadcast",
    (CARLO, "other"): "own",
}


def assert_nothing_leaks(body: str, me: str, typed: str = "") -> None:
    """No user's name but mine (and those I may know, and what I typed) is in ``body``."""
    for name in USERS:
        if name != me and name not in typed and name not in KNOWS.get(me, ()):
            assert name not in body, (me, body)


def assert_refused(r: Any, me: str, ref: int | str) -> None:
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["type"] == "/problems/unknown-instance"
    assert body["detail"] == f"there is no instance {ref}"  # word for word a missing one
    for name in USERS:  # not even the names an admin or an instructor may know
        if name != me:
            assert name not in r.text.replace(str(ref), ""), (me, r.text)


ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "", None, "read"),
    ("GET", "/vmstats", None, "read"),
    ("GET", "/pagemap", None, "read"),
    ("GET", "/objects", None, "read"),
    ("GET", "/journal", None, "read"),
    ("GET", "/journal/density", None, "read"),
    ("GET", "/trace", None, "read"),
    ("GET", "/snapshot", None, "read"),
    ("GET", "/workloads", None, "read"),
    ("GET", "/sysctls/vm.v_free_min", None, "read"),
    ("POST", "/calls/vmstats_rollup", {"args": {}}, "write"),
    ("POST", "/calls", {"calls": [{"fn": "vmstats_rollup"}]}, "write"),
    ("POST", "/restore", {"to": 0}, "write"),
    ("POST", "/reset", None, "write"),
]


def ref_to(world: World, inst: str, style: str) -> str:
    """How the test names ``inst``: its id, or ``owner:name``."""
    return str(world.ids[inst]) if style == "id" else f"{OWNERS[inst]}:{inst}"


@pytest.mark.parametrize("style", ["id", "owner:name"])
@pytest.mark.parametrize("user", USERS)
def test_access_matrix(world: World, user: str, style: str) -> None:
    c = world.c
    missing = "999" if style == "id" else f"{ALICE}:nothing"
    assert_refused(c.get(f"{API}/instances/{missing}", headers=world.as_(user)), user, missing)
    for inst in INSTANCES:
        ref = ref_to(world, inst, style)
        for method, suffix, body, need in ENDPOINTS:
            allowed = inst in (READ if need == "read" else WRITE)[user]
            r = c.request(
                method, f"{API}/instances/{ref}{suffix}", json=body, headers=world.as_(user)
            )
            if allowed:
                assert r.status_code == 200, (user, inst, method, suffix, r.text)
                assert_nothing_leaks(r.text, user, ref)
            else:
                assert_refused(r, user, ref)
        # DELETE and PUT …/broadcast: only the refusals here (their own tests do them)
        if inst not in WRITE[user]:
            assert_refused(c.delete(f"{API}/instances/{ref}", headers=world.as_(user)), user, ref)
            r = c.put(
                f"{API}/instances/{ref}/broadcast",
                json={"course": "os101"},
                headers=world.as_(user),
            )
            assert_refused(r, user, ref)
    listed = c.get(f"{API}/instances", headers=world.as_(user))
    assert listed.status_code == 200
    assert {i["name"] for i in listed.json()} == READ[user]
    assert {i["name"]: i["access"] for i in listed.json()} == {
        inst: ACCESS[user, inst] for inst in READ[user]
    }
    assert_nothing_leaks(json.dumps(listed.json()), user)
    for item in listed.json():  # each listed ref reaches the instance
        r = c.get(f"{API}/instances/{item['ref']}", headers=world.as_(user))
        assert r.status_code == 200 and r.json()["id"] == item["id"], (user, item["ref"])


@pytest.mark.parametrize("user", USERS)
def test_fork_matrix(world: World, user: str) -> None:
    """Forking is reading: whoever may read an instance may fork it into their own, within
    their quotas (an observer may hold no instance); the rest are refused as missing."""
    c = world.c
    for inst in INSTANCES:
        iid = world.ids[inst]
        r = c.post(
            f"{API}/instances/{iid}/fork",
            json={"at": 0, "name": f"fork-{inst}"},
            headers=world.as_(user),
        )
        if inst not in READ[user]:
            assert_refused(r, user, iid)
        elif user == WATCHER:
            assert r.status_code == 403 and "quota 'instances' allows 0" in r.json()["detail"]
        elif (user, inst) == (ALICE, "bcast"):  # her 4 instances: own, shared, 2 forks
            assert r.status_code == 403, r.text
            assert "quota 'instances' allows 4" in r.json()["detail"]
        else:
            assert r.status_code == 201, (user, inst, r.text)
            fork = r.json()
            assert (
                fork["state_digest"]
                == c.get(f"{API}/instances/{iid}", headers=world.as_(user)).json()["state_digest"]
            )
            mine = c.get(f"{API}/instances/fork-{inst}", headers=world.as_(user))
            assert mine.status_code == 200 and mine.json()["id"] == fork["id"]
            assert_nothing_leaks(r.text, user)


@pytest.mark.parametrize("style", ["id", "owner:name"])
@pytest.mark.parametrize("user", USERS)
def test_stream_matrix(world: World, user: str, style: str) -> None:
    for inst in INSTANCES:
        ref = ref_to(world, inst, style)
        url = f"{API}/instances/{ref}/stream?token={world.tokens[user]}"
        with world.c.websocket_connect(url) as ws:
            if inst in READ[user]:
                assert ws.receive_json()["type"] == "hello"
            else:
                msg = ws.receive()
                assert msg["type"] == "websocket.close", msg
                assert msg["code"] == 1008
                assert msg["reason"] == f"there is no instance {ref}"


def test_stream_needs_a_token_and_a_good_origin(world: World) -> None:
    iid = world.ids["own"]
    with world.c.websocket_connect(f"{API}/instances/{iid}/stream") as ws:
        msg = ws.receive()
        assert msg["type"] == "websocket.close" and msg["code"] == 4401
    with world.c.websocket_connect(
        f"{API}/instances/{iid}/stream", headers=world.as_(ALICE)
    ) as ws:  # the header works too
        assert ws.receive_json()["type"] == "hello"
    url = f"{API}/instances/{iid}/stream?token={world.tokens[ALICE]}"
    evil = {"Origin": "http://evil.example"}
    with pytest.raises(WebSocketDisconnect), world.c.websocket_connect(url, headers=evil) as ws:
        ws.receive_json()
    with world.c.websocket_connect(url, headers={"Origin": "http://testserver"}) as ws:
        assert ws.receive_json()["type"] == "hello"


def test_owner_deletes_and_others_cannot_see_the_difference(world: World) -> None:
    c = world.c
    iid = world.ids["peer"]
    assert_refused(c.get(f"{API}/instances/{iid}", headers=world.as_(ALICE)), ALICE, iid)
    r = c.delete(f"{API}/instances/{iid}", headers=world.as_(BOBBY))
    assert r.status_code == 204, r.text
    assert_refused(c.get(f"{API}/instances/{iid}", headers=world.as_(ALICE)), ALICE, iid)


def test_fork_is_a_read_and_the_fork_is_mine(world: World) -> None:
    c = world.c
    shared = world.ids["shared"]
    r = c.post(
        f"{API}/instances/{shared}/fork", json={"at": 0, "name": "mine"}, headers=world.as_(BOBBY)
    )
    assert r.status_code == 201, r.text
    fork = r.json()["id"]
    assert c.post(f"{API}/instances/{fork}/reset", headers=world.as_(BOBBY)).status_code == 200
    assert_refused(c.get(f"{API}/instances/{fork}", headers=world.as_(ALICE)), ALICE, fork)
    other = world.ids["other"]
    r = c.post(
        f"{API}/instances/{other}/fork", json={"at": 0, "name": "x"}, headers=world.as_(BOBBY)
    )
    assert_refused(r, BOBBY, other)


def test_sharing_is_for_owners(world: World) -> None:
    c = world.c
    peer = world.ids["peer"]
    r = c.post(
        f"{API}/instances/{peer}/shares", json={"user": ALICE}, headers=world.as_(INSTRUCTOR)
    )
    assert_refused(r, INSTRUCTOR, peer)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}],
)
def test_bad_tokens_are_401(world: World, headers: dict[str, str]) -> None:
    for path in ("/instances", f"/instances/{world.ids['own']}", "/me", "/functions"):
        r = world.c.get(f"{API}{path}", headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["type"] == "/problems/unauthorized"
        assert_nothing_leaks(r.text, "")
    assert world.c.get("/healthz").status_code == 200  # not behind the token


def test_expired_and_revoked_tokens_are_401(world: World) -> None:
    c = world.c
    r = c.post(f"{API}/users/{ALICE}/tokens", json={"expires_in_s": 0.05}, headers=world.as_(ALICE))
    assert r.status_code == 201, r.text
    short = r.json()["token"]
    time.sleep(0.1)
    assert c.get(f"{API}/me", headers=auth(short)).status_code == 401
    r = c.post(f"{API}/users/{ALICE}/tokens", json={"label": "laptop"}, headers=world.as_(ALICE))
    token, tid = r.json()["token"], r.json()["id"]
    assert c.get(f"{API}/me", headers=auth(token)).status_code == 200
    # another user cannot revoke it (and learns nothing): 404
    r = c.delete(f"{API}/tokens/{tid}", headers=world.as_(BOBBY))
    assert r.status_code == 404
    assert_nothing_leaks(r.text, BOBBY)
    assert c.delete(f"{API}/tokens/{tid}", headers=auth(token)).status_code == 204
    assert c.get(f"{API}/me", headers=auth(token)).status_code == 401
    iid = world.ids["own"]
    with c.websocket_connect(f"{API}/instances/{iid}/stream?token={token}") as ws:
        assert ws.receive()["code"] == 4401


def test_me(world: World) -> None:
    me = world.c.get(f"{API}/me", headers=world.as_(ALICE)).json()
    assert me["name"] == ALICE and me["role"] == "student" and me["course"] == "os101"
    assert me["auth"] == "token" and me["quotas"]["instances"] == 4


def test_user_management(world: World) -> None:
    c = world.c
    # a student manages nobody; an instructor only students/observers of their course
    r = c.post(
        f"{API}/users",
        json={"name": "zz1", "role": "student", "course": "os101"},
        headers=world.as_(ALICE),
    )
    assert r.status_code == 403
    r = c.post(
        f"{API}/users",
        json={"name": "zz2", "role": "student", "course": "os202"},
        headers=world.as_(INSTRUCTOR),
    )
    assert r.status_code == 403
    r = c.post(
        f"{API}/users",
        json={"name": "zz3", "role": "instructor", "course": "os101"},
        headers=world.as_(INSTRUCTOR),
    )
    assert r.status_code == 403
    # tokens for a user one may not manage: as if there were no such user
    r = c.post(f"{API}/users/{CARLO}/tokens", json={}, headers=world.as_(INSTRUCTOR))
    assert r.status_code == 404 and r.json()["detail"] == f"user: no user named {CARLO!r}"
    r = c.post(f"{API}/users/{ALICE}/tokens", json={}, headers=world.as_(INSTRUCTOR))
    assert r.status_code == 201
    # a roster: CSV in, CSV of tokens out
    r = c.post(
        f"{API}/rosters",
        json={"roster": "name,role,course\nst1,student,os101\nst2,observer,os101\n"},
        headers=world.as_(INSTRUCTOR),
    )
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0] == "name,token" and [ln.split(",")[0] for ln in lines[1:]] == ["st1", "st2"]
    st1 = lines[1].split(",")[1]
    assert c.get(f"{API}/me", headers=auth(st1)).json()["name"] == "st1"
    r = c.post(
        f"{API}/rosters", json={"roster": "st3,student,os202\n"}, headers=world.as_(INSTRUCTOR)
    )
    assert r.status_code == 403


def test_names_are_per_owner(world: World) -> None:
    # Bobby may call his instance "own" too: Alice's does not get in the way, or show
    world.add_instance(BOBBY, "own")


def test_open_mode_is_unchanged(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(database_url="", default_preset="tiny-16m"))) as c:
        me = c.get(f"{API}/me").json()
        assert me["auth"] == "open" and me["role"] == "admin"
        listed = c.get(f"{API}/instances").json()
        assert [i["name"] for i in listed] == ["default"]
        assert (
            c.post(f"{API}/instances/1/calls/vmstats_rollup", json={"args": {}}).status_code == 200
        )
        assert c.post(f"{API}/users", json={"name": "x", "role": "student"}).status_code == 404


def test_token_mode_needs_a_database() -> None:
    with pytest.raises(ValueError, match="PAGELAB_DATABASE_URL"):
        Settings(database_url="", auth="token")


def test_quotas_refuse_with_the_quota_named_and_change_at_runtime(world: World) -> None:
    """Student defaults (app.lab.accounts): 4 instances, 262 144 pages (1 GiB) each,
    524 288 in all, batches of 10 000 calls; an observer may hold none."""
    c = world.c
    for name in ("third", "fourth"):  # Alice holds "own" and "shared": 2 of 4
        world.add_instance(ALICE, name)
    r = c.post(
        f"{API}/instances", json={"name": "fifth", "preset": "tiny-16m"}, headers=world.as_(ALICE)
    )
    assert r.status_code == 403, r.text
    assert "quota 'instances' allows 4" in r.json()["detail"]
    # a 2 GiB machine is 524 287 pages > 262 144 per instance: refused before booting
    r = c.post(f"{API}/instances", json={"name": "big", "memory": "2GiB"}, headers=world.as_(BOBBY))
    assert r.status_code == 413 and "pages_per_instance" in r.json()["detail"]
    r = c.post(
        f"{API}/instances", json={"name": "o", "preset": "tiny-16m"}, headers=world.as_(WATCHER)
    )
    assert r.status_code == 403 and "quota 'instances' allows 0" in r.json()["detail"]
    own = world.ids["own"]
    calls = {"calls": [{"fn": "vm_test_nominal"}] * 10_001}
    r = c.post(f"{API}/instances/{own}/calls", json=calls, headers=world.as_(ALICE))
    assert r.status_code == 413 and "quota 'batch_size' allows 10000" in r.json()["detail"]
    r = c.post(
        f"{API}/instances/{own}/calls",
        json={"calls": calls["calls"][:10_000]},
        headers=world.as_(ALICE),
    )
    assert r.status_code == 200
    # an admin raises Alice's instance quota at run time: the next create goes through
    c.app.state.lab.accounts.set_quota(ALICE, "instances", 5)  # type: ignore[attr-defined]
    assert world.add_instance(ALICE, "fifth") > 0
    me = c.get(f"{API}/me", headers=world.as_(ALICE)).json()
    assert me["quotas"]["instances"] == 5


QUOTA_READ_ROLES = {ADMIN, INSTRUCTOR}  # GET /quotas/roles/{role}
QUOTA_MANAGERS = {ADMIN, INSTRUCTOR}  # change Alice's quota (a student of os101)


@pytest.mark.parametrize("user", USERS)
def test_quota_matrix(world: World, user: str) -> None:
    """Role quotas: instructors read, admins change.  A user's quota: read by themselves
    and whoever manages them, changed only by those managers; anyone else gets exactly
    the answer for a user that does not exist."""
    c, h = world.c, world.as_(user)
    r = c.get(f"{API}/quotas/roles/student", headers=h)
    assert r.status_code == (200 if user in QUOTA_READ_ROLES else 403), (user, r.text)
    r = c.put(f"{API}/quotas/roles/observer", json={"streams": 2}, headers=h)
    assert r.status_code == (200 if user == ADMIN else 403), (user, r.text)
    missing = c.get(f"{API}/users/nobody7/quota", headers=h)
    assert missing.status_code == 404
    for method, body in (("GET", None), ("PUT", {"streams": 4}), ("DELETE", None)):
        r = c.request(method, f"{API}/users/{ALICE}/quota", json=body, headers=h)
        allowed = user in QUOTA_MANAGERS or (method == "GET" and user == ALICE)
        if allowed:
            assert r.status_code in (200, 204), (user, method, r.text)
        else:
            assert r.status_code == 404, (user, method, r.text)
            assert r.json()["detail"] == missing.json()["detail"].replace("nobody7", ALICE)
