"""Broadcasts (app/lab/accounts.py), their place in the access policy (app/lab/access.py)
and course scenarios (app/lab/scenarios.py), on SQLite and on Postgres (``database_url``)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.core.machine import Machine
from app.lab.access import Access
from app.lab.accounts import Accounts, Principal
from app.lab.presets import PRESETS
from app.lab.scenarios import ReplayRefused, Scenarios, check_replay
from app.lab.service import Instance, replay
from app.lab.store import Entry, Store

TINY = PRESETS["tiny-16m"].config


@pytest.fixture
def accounts(store: Store) -> Accounts:
    a = Accounts(store, clock=lambda: 1_800_000_000.0, touch_interval_s=0)
    for course in ("os101", "os202"):
        a.create_course(course)
    a.create_user("tess", "instructor", "os101")
    a.create_user("ann", "student", "os101")
    a.create_user("obs", "observer", "os101")
    a.create_user("carl", "student", "os202")
    return a


def principal(accounts: Accounts, name: str) -> Principal:
    user = accounts.user(name)
    assert user is not None
    return Principal(user.name, user.role, user.course, user.id)


def instance(iid: int, name: str, owner: str) -> Instance:
    inst = Instance(iid, name, TINY, "tiny-16m")
    inst.owner = owner
    return inst


def test_broadcasts_are_stored_per_course_and_go_with_their_instance(
    accounts: Accounts, store: Store
) -> None:
    store.add_instance(1, "demo", "tess", "tiny-16m", TINY)
    store.add_instance(2, "other", "tess", "tiny-16m", TINY)
    accounts.broadcast(1, "os101")
    accounts.broadcast(1, "os101")  # again: no change
    accounts.broadcast(1, "os202")
    accounts.broadcast(2, "os101")
    assert accounts.broadcast_courses(1) == {"os101", "os202"}
    assert [(i, c) for i, c, _ in accounts.broadcasts("os101")] == [(1, "os101"), (2, "os101")]
    assert len(accounts.broadcasts()) == 3
    with pytest.raises(ValueError, match="does not exist"):
        accounts.broadcast(1, "nope")
    assert accounts.unbroadcast(1, "os202") == 1 and accounts.unbroadcast(1, "os202") == 0
    assert accounts.broadcast_courses(1) == {"os101"}
    store.delete_instance(1)
    assert accounts.broadcast_courses(1) == set()
    assert accounts.unbroadcast(2) == 1
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM broadcasts")).scalar() == 0


def test_a_broadcast_lets_the_course_read_and_nobody_more_write(
    accounts: Accounts, store: Store
) -> None:
    access = Access(accounts)
    store.add_instance(1, "demo", "tess", "tiny-16m", TINY)
    demo = instance(1, "demo", "tess")
    ann, obs, carl = (principal(accounts, n) for n in ("ann", "obs", "carl"))
    assert access.relation(ann, demo) is None and not access.can_read(obs, demo)
    accounts.broadcast(1, "os101")
    assert access.relation(ann, demo) == "broadcast" and access.can_read(obs, demo)
    assert access.relation(carl, demo) is None
    assert access.relation(principal(accounts, "tess"), demo) == "own"
    assert not access.can_write(ann, demo) and not access.can_write(obs, demo)
    # shared beats broadcast: the reason a listing shows is the most personal one
    accounts.share(1, "ann")
    assert access.relation(ann, demo) == "shared"


def test_scenarios_store(accounts: Accounts) -> None:
    scenarios = Scenarios(accounts.engine, clock=lambda: 5.0)
    a = scenarios.create("os101", "lab1", "first", "tess", "d" * 64, 3, "trace-a\n")
    b = scenarios.create("os101", "lab2", "", "tess", "e" * 64, 0, "trace-b\n")
    c = scenarios.create("os202", "lab1", "", "root", "f" * 64, 1, "trace-c\n")
    assert len({a.id, b.id, c.id}) == 3
    with pytest.raises(ValueError, match="scenario 'lab1' already exists in course 'os101'"):
        scenarios.create("os101", "lab1", "", "tess", "0" * 64, 0, "x")
    with pytest.raises(ValueError, match="is not allowed"):
        scenarios.create("os101", "no spaces", "", "tess", "0" * 64, 0, "x")
    listed = scenarios.list("os101")
    assert [s.name for s in listed] == ["lab1", "lab2"] and all(s.trace == "" for s in listed)
    assert len(scenarios.list()) == 3
    got = scenarios.get(a.id)
    assert got == a and got.trace == "trace-a\n" and got.created == 5.0
    assert scenarios.delete(a.id) and not scenarios.delete(a.id)
    assert scenarios.get(a.id) is None
    assert scenarios.get(c.id) == c  # another course's, untouched


def test_check_replay_gives_the_replay_digest_and_refuses_a_refused_call() -> None:
    calls = [
        Entry(0, 0, 1, "vm_page_alloc", {}, {"cpu": 0}),
        Entry(0, 0, 2, "vm_page_alloc", {}, {"cpu": 0}),
        Entry(0, 0, 3, "vmstats_rollup", {}, {"cpu": 0}),
    ]
    digest = check_replay(TINY, calls)
    assert digest == replay(TINY, calls).state_digest()
    assert digest != Machine.boot(TINY).state_digest()
    bad = [*calls[:2], Entry(0, 0, 3, "no_such_function", {}, {"cpu": 0}), calls[2]]
    with pytest.raises(ReplayRefused) as refused:
        check_replay(TINY, bad)
    assert refused.value.index == 3 and refused.value.fn == "no_such_function"
    assert "no_such_function" in str(refused.value)
