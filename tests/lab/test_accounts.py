"""Accounts (app/lab/accounts.py) on SQLite and on Postgres (``database_url``): tokens,
rosters, bootstrap, quotas, shares, the access policy, and migration 0003."""

from __future__ import annotations

import csv
import hmac
import io
import json
from dataclasses import fields
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, text

from app.lab.accounts import (
    DEFAULT_ROLE_QUOTAS,
    ROLES,
    TOKEN_PREFIX,
    Accounts,
    Principal,
    Quotas,
    can_manage_user,
    can_read,
    can_write,
    token_hash,
)
from app.lab.presets import PRESETS
from app.lab.store import MIGRATIONS, Store
from tests.clock import Clock


@pytest.fixture
def accounts(store: Store, clock: Clock) -> Accounts:
    return Accounts(store, clock=clock, touch_interval_s=0)


def dump(store: Store) -> str:
    """Every row of every table, as text."""
    out = []
    with store.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                out.append(f"{table}: {tuple(row)!r}")
    return "\n".join(out)


# ---------------------------------------------------------------- tokens
def test_a_token_authenticates_its_user(accounts: Accounts) -> None:
    accounts.create_course("os101")
    ann = accounts.create_user("ann", "student", "os101")
    token = accounts.issue_token("ann", "laptop")
    assert token.startswith(TOKEN_PREFIX) and len(token) >= 40
    assert accounts.authenticate(token) == Principal("ann", "student", "os101", ann.id)
    assert accounts.issue_token("ann") != token
    assert accounts.authenticate(token + "x") is None
    assert accounts.authenticate(token[:-1]) is None
    assert accounts.authenticate("") is None
    assert accounts.authenticate("pl_" + "A" * 43) is None


def test_only_the_hash_of_a_token_is_stored(accounts: Accounts, store: Store) -> None:
    accounts.create_user("root", "admin")
    token = accounts.issue_token("root", "cli")
    roster = accounts.import_roster("bob,student,\ncy,observer,\n")
    handed_out = [row["token"] for row in csv.DictReader(io.StringIO(roster))]
    everything = dump(store)
    for t in (token, *handed_out):
        assert t not in everything
        assert t[len(TOKEN_PREFIX) :] not in everything
        assert token_hash(t) in everything
    if store.url.startswith("sqlite"):  # and not in the file's bytes either (WAL included)
        path = Path(store.url.split("///", 1)[1])
        for f in (path, path.with_name(path.name + "-wal")):
            if f.exists():
                assert token.encode() not in f.read_bytes()
    listed = accounts.list_tokens("root")
    assert [(t.user, t.label) for t in listed] == [("root", "cli")]
    assert token_hash(token) not in repr(listed) and token not in repr(listed)


def test_expired_tokens_are_refused(accounts: Accounts, clock: Clock) -> None:
    accounts.create_user("ann", "student")
    token = accounts.issue_token("ann", expires_in_s=3600)
    forever = accounts.issue_token("ann")
    (info, _) = accounts.list_tokens("ann")
    assert info.expires == clock.now + 3600
    clock.now += 3599.5
    assert accounts.authenticate(token) is not None
    clock.now += 0.5
    assert accounts.authenticate(token) is None
    clock.now += 10 * 365 * 86400
    assert accounts.authenticate(forever) is not None
    with pytest.raises(ValueError, match="expires_in_s"):
        accounts.issue_token("ann", expires_in_s=0)


def test_revoked_tokens_are_refused(accounts: Accounts, clock: Clock) -> None:
    accounts.create_user("ann", "student")
    accounts.create_user("bob", "student")
    token, other = accounts.issue_token("ann", "a"), accounts.issue_token("ann", "b")
    bobs = accounts.issue_token("bob")
    first, second = accounts.list_tokens("ann")
    (bob_token,) = accounts.list_tokens("bob")
    assert not accounts.revoke_token(bob_token.id, user="ann")  # not hers to revoke
    assert accounts.authenticate(bobs) is not None
    clock.now += 5
    assert accounts.revoke_token(first.id, user="ann")
    assert not accounts.revoke_token(first.id)  # once
    assert accounts.authenticate(token) is None
    assert accounts.authenticate(other) is not None
    assert accounts.list_tokens("ann")[0].revoked_at == clock.now
    assert accounts.revoke_all("ann") == 1
    assert accounts.authenticate(other) is None
    assert accounts.authenticate(bobs) is not None


def test_authentication_compares_in_constant_time(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts.create_user("ann", "student")
    token = accounts.issue_token("ann")
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert accounts.authenticate(token) is not None
    assert calls == [(token_hash(token), token_hash(token))]
    # and nothing is granted without it
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    assert accounts.authenticate(token) is None


def test_last_used_is_recorded_at_most_every_interval(store: Store, clock: Clock) -> None:
    accounts = Accounts(store, clock=clock, touch_interval_s=60)
    accounts.create_user("ann", "student")
    token = accounts.issue_token("ann")
    assert accounts.list_tokens("ann")[0].last_used is None
    start = clock.now
    accounts.authenticate(token)
    clock.now += 30
    accounts.authenticate(token)
    assert accounts.list_tokens("ann")[0].last_used == start
    clock.now += 30
    accounts.authenticate(token)
    assert accounts.list_tokens("ann")[0].last_used == start + 60


# ---------------------------------------------------------------- users and courses
def test_users_roles_and_deletion(accounts: Accounts, store: Store) -> None:
    accounts.create_course("os101")
    accounts.create_course("os102")
    accounts.create_user("tess", "instructor", "os101")
    accounts.create_user("ann", "student", "os101")
    accounts.create_user("bob", "student", "os102")
    assert accounts.courses() == ["os101", "os102"]
    assert [u.name for u in accounts.users()] == ["ann", "bob", "tess"]
    assert [u.name for u in accounts.users(course="os101")] == ["ann", "tess"]
    assert [u.name for u in accounts.users(role="student")] == ["ann", "bob"]
    token = accounts.issue_token("ann")
    accounts.set_role("ann", "observer")
    principal = accounts.authenticate(token)
    assert principal is not None and principal.role == "observer"
    accounts.set_course("ann", "os102")
    assert accounts.users(course="os102")[0].name == "ann"

    with pytest.raises(ValueError, match=r"role: 'root' is not one of admin, instructor"):
        accounts.create_user("eve", "root")
    with pytest.raises(ValueError, match=r"role: 'god'"):
        accounts.set_role("ann", "god")
    with pytest.raises(ValueError, match=r"name: user 'ann' already exists"):
        accounts.create_user("ann", "student")
    with pytest.raises(ValueError, match=r"course: 'os999' does not exist"):
        accounts.create_user("eve", "student", "os999")
    with pytest.raises(ValueError, match=r"name: 'a b' is not allowed"):
        accounts.create_user("a b", "student")
    with pytest.raises(ValueError, match=r"course: 'os101' already exists"):
        accounts.create_course("os101")

    store.add_instance(1, "box", "bob", "tiny-16m", PRESETS["tiny-16m"].config)
    accounts.share(1, "ann")
    accounts.delete_user("ann")
    assert accounts.user("ann") is None
    assert accounts.authenticate(token) is None
    assert accounts.shared_with(1) == set()
    with pytest.raises(ValueError, match=r"user: no user named 'ann'"):
        accounts.issue_token("ann")


def test_shares_go_with_their_instance(accounts: Accounts, store: Store) -> None:
    accounts.create_user("ann", "student")
    accounts.create_user("bob", "observer")
    store.add_instance(1, "box", "ann", "tiny-16m", PRESETS["tiny-16m"].config)
    store.add_instance(2, "other", "ann", "tiny-16m", PRESETS["tiny-16m"].config)
    accounts.share(1, "bob")
    accounts.share(1, "bob")  # again: no change
    accounts.share(2, "bob")
    assert accounts.shared_with(1) == {"bob"}
    assert accounts.unshare(2, "bob") and not accounts.unshare(2, "bob")
    store.delete_instance(1)
    assert accounts.shared_with(1) == set()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM shares")).scalar() == 0


# ---------------------------------------------------------------- roster
def test_a_roster_makes_users_and_the_tokens_to_hand_out(accounts: Accounts) -> None:
    roster = "name,role,course\nann,student,os101\n\nbob , student , os101\ncy,observer\n"
    handed = accounts.import_roster(roster, expires_in_s=86400)
    rows = list(csv.DictReader(io.StringIO(handed)))
    assert [r["name"] for r in rows] == ["ann", "bob", "cy"]
    assert accounts.courses() == ["os101"]  # created on the way
    for r in rows:
        principal = accounts.authenticate(r["token"])
        assert principal is not None and principal.name == r["name"]
        (info,) = accounts.list_tokens(r["name"])
        assert info.label == "roster" and info.expires is not None
    assert accounts.user("cy") is not None and accounts.user("cy").course is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("roster", "message"),
    [
        ("ann,student,os101\nbob,teacher,os101\n", r"roster line 2: role: 'teacher'"),
        ("ann,student,os101\nb c,student,os101\n", r"roster line 2: name: 'b c' is not allowed"),
        ("ann,student\n\nbob,student,os101,extra\n", r"roster line 3: expected 3 columns"),
        ("ann,student\nbob,student\nann,observer\n", r"roster line 3: name: 'ann' appears twice"),
        ("name,role,course\nann,student\nroot,student\n", r"roster line 3: .*'root' already"),
        ("ann,student,os 1\n", r"roster line 1: course: 'os 1'"),
        ("\n\n", r"roster: no users"),
    ],
)
def test_a_bad_roster_is_refused_whole_with_its_line(
    accounts: Accounts, roster: str, message: str
) -> None:
    accounts.create_user("root", "admin")
    with pytest.raises(ValueError, match=message):
        accounts.import_roster(roster)
    assert [u.name for u in accounts.users()] == ["root"]  # all or nothing
    assert accounts.courses() == []


def test_a_roster_may_refuse_unknown_courses(accounts: Accounts) -> None:
    with pytest.raises(ValueError, match=r"roster line 1: course: 'os101' does not exist"):
        accounts.import_roster("ann,student,os101\n", create_courses=False)
    accounts.create_course("os101")
    assert "ann," in accounts.import_roster("ann,student,os101\n", create_courses=False)


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_admin_is_idempotent(accounts: Accounts) -> None:
    token = accounts.bootstrap_admin("root")
    assert token is not None
    assert accounts.bootstrap_admin("root") is None  # already there: no new token
    assert len(accounts.list_tokens("root")) == 1
    principal = accounts.authenticate(token)
    assert principal is not None and principal.role == "admin"


def test_bootstrap_admin_with_a_token_from_the_environment(accounts: Accounts) -> None:
    env = "pl_" + "s3cret-from-the-environment-0123456789"
    for _ in range(3):
        assert accounts.bootstrap_admin("root", token_from_env=env) is None
    assert len(accounts.list_tokens("root")) == 1
    principal = accounts.authenticate(env)
    assert principal is not None and (principal.name, principal.role) == ("root", "admin")
    # revoked stays revoked across restarts
    (info,) = accounts.list_tokens("root")
    accounts.revoke_token(info.id)
    accounts.bootstrap_admin("root", token_from_env=env)
    assert accounts.authenticate(env) is None
    with pytest.raises(ValueError, match="token_from_env: at least 32"):
        accounts.bootstrap_admin("root", token_from_env="short")
    accounts.create_user("ann", "student")
    with pytest.raises(ValueError, match="'ann' exists and is a student"):
        accounts.bootstrap_admin("ann")
    with pytest.raises(ValueError, match="belongs to another user"):
        accounts.bootstrap_admin("root2", token_from_env=env)


# ---------------------------------------------------------------- quotas
def test_quotas_per_role_and_overrides(accounts: Accounts) -> None:
    for role in ROLES:
        accounts.create_user(f"a-{role}", role)
        assert accounts.effective_quotas(f"a-{role}") == DEFAULT_ROLE_QUOTAS[role]
    assert DEFAULT_ROLE_QUOTAS["observer"].instances == 0
    admin, instructor, student = (DEFAULT_ROLE_QUOTAS[r] for r in ROLES[:3])
    for f in fields(Quotas):
        assert getattr(admin, f.name) >= getattr(instructor, f.name) >= getattr(student, f.name)

    accounts.create_user("ann", "student")
    accounts.set_role_quota("student", "instances", 6)
    accounts.set_quota("ann", "batch_size", 50_000)
    accounts.set_quota("ann", "calls_per_s", 1000)
    ann = accounts.effective_quotas("ann")
    assert (ann.instances, ann.batch_size, ann.calls_per_s) == (6, 50_000, 1000.0)
    assert accounts.effective_quotas("a-student").batch_size == student.batch_size
    assert accounts.role_quotas("student").instances == 6
    assert accounts.user("ann").quota == {"batch_size": 50_000, "calls_per_s": 1000.0}  # type: ignore[union-attr]
    # the override wins over a later role change; removing it restores the role's
    accounts.set_role_quota("student", "batch_size", 1)
    assert accounts.effective_quotas("ann").batch_size == 50_000
    accounts.set_quota("ann", "batch_size", None)
    assert accounts.effective_quotas("ann").batch_size == 1
    accounts.set_role_quota("student", "batch_size", None)
    accounts.set_role_quota("student", "instances", None)
    assert accounts.role_quotas("student") == student
    # a role change takes the new role's quotas
    accounts.set_role("a-student", "instructor")
    assert accounts.effective_quotas("a-student") == instructor

    with pytest.raises(ValueError, match=r"quota field: 'cpus' is not one of instances, "):
        accounts.set_quota("ann", "cpus", 4)
    with pytest.raises(ValueError, match=r"instances: -1 must be a whole number from 0 to 10000"):
        accounts.set_role_quota("student", "instances", -1)
    with pytest.raises(ValueError, match=r"calls_per_s: inf must be a number from 0 to 1e\+07"):
        accounts.set_quota("ann", "calls_per_s", float("inf"))
    # several changes are all or nothing: one bad value refuses them all
    with pytest.raises(ValueError, match=r"streams: 100001 must be a whole number"):
        accounts.update_quota("ann", {"workloads": 3, "streams": 100_001})
    assert "workloads" not in accounts.user("ann").quota  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"streams: 1.5 must be a whole number"):
        accounts.set_quota("ann", "streams", 1.5)
    with pytest.raises(ValueError, match=r"role: 'guest'"):
        accounts.set_role_quota("guest", "streams", 1)
    with pytest.raises(ValueError, match=r"pages_total: True is not a number"):
        accounts.set_quota("ann", "pages_total", True)


def test_role_quotas_survive_a_restart(database_url: str) -> None:
    store = Store(database_url)
    try:
        Accounts(store).set_role_quota("observer", "streams", 9)
    finally:
        store.close()
    again = Store(database_url)
    try:
        assert Accounts(again.engine).role_quotas("observer").streams == 9
    finally:
        again.close()


# ---------------------------------------------------------------- access policy
ME, PEER, STRANGER = "me", "peer", "stranger"
MY_COURSE, OTHER_COURSE = "os101", "os102"

#: situation -> (owner, owner's course, shared with, broadcast to)
SITUATIONS: dict[str, tuple[str, str | None, set[str], set[str]]] = {
    "own": (ME, MY_COURSE, set(), set()),
    "same course": (PEER, MY_COURSE, set(), set()),
    "other course": (STRANGER, OTHER_COURSE, set(), set()),
    "shared with me": (STRANGER, OTHER_COURSE, {ME}, set()),
    "shared with another": (STRANGER, OTHER_COURSE, {PEER}, set()),
    "broadcast to my course": (STRANGER, OTHER_COURSE, set(), {MY_COURSE}),
    "broadcast elsewhere": (PEER, MY_COURSE, set(), {OTHER_COURSE}),
}
#: role -> situation -> (read, write)
EXPECTED: dict[str, dict[str, tuple[bool, bool]]] = {
    "admin": {s: (True, True) for s in SITUATIONS},
    "instructor": {
        "own": (True, True),
        "same course": (True, False),
        "other course": (False, False),
        "shared with me": (True, False),
        "shared with another": (False, False),
        "broadcast to my course": (True, False),
        "broadcast elsewhere": (True, False),  # same course anyway
    },
    "student": {
        "own": (True, True),
        "same course": (False, False),
        "other course": (False, False),
        "shared with me": (True, False),
        "shared with another": (False, False),
        "broadcast to my course": (True, False),
        "broadcast elsewhere": (False, False),
    },
    "observer": {
        "own": (True, False),  # an observer owns nothing (0 instances); if so, read only
        "same course": (False, False),
        "other course": (False, False),
        "shared with me": (True, False),
        "shared with another": (False, False),
        "broadcast to my course": (True, False),
        "broadcast elsewhere": (False, False),
    },
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_access_matrix(role: str, situation: str) -> None:
    me = Principal(ME, role, MY_COURSE, 1)  # type: ignore[arg-type]
    owner, course, shared, broadcast = SITUATIONS[situation]
    got = (can_read(me, owner, course, shared, broadcast), can_write(me, owner))
    assert got == EXPECTED[role][situation]


def test_no_course_reads_no_course() -> None:
    """Users without a course get nothing from course rules (None is not a course)."""
    for role in ("instructor", "student", "observer"):
        me = Principal(ME, role, None, 1)
        assert not can_read(me, PEER, None, set(), set())


def test_who_may_manage_whom() -> None:
    admin = Principal("root", "admin", None, 1)
    tess = Principal("tess", "instructor", MY_COURSE, 2)
    ann = Principal("ann", "student", MY_COURSE, 3)
    assert can_manage_user(admin, "instructor", OTHER_COURSE)
    assert can_manage_user(tess, "student", MY_COURSE)
    assert can_manage_user(tess, "observer", MY_COURSE)
    assert not can_manage_user(tess, "student", OTHER_COURSE)
    assert not can_manage_user(tess, "instructor", MY_COURSE)
    assert not can_manage_user(tess, "admin", None)
    assert not can_manage_user(ann, "student", MY_COURSE)


# ---------------------------------------------------------------- migration 0003
def _alembic(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def test_a_database_at_0002_upgrades_to_accounts_keeping_its_rows(database_url: str) -> None:
    config = json.dumps({"phys_avail": [[4096, 16777216]], "cpus": 1, "seed": 3})
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic(conn), "0002")
            conn.execute(
                text(
                    "INSERT INTO instances (id, name, owner, preset, config, generation, created)"
                    " VALUES (5, 'box', 'ann', NULL, :config, 2, 1764650000.5)"
                ),
                {"config": config},
            )
            conn.execute(
                text(
                    "INSERT INTO journal (instance_id, generation, seq, fn, args, ctx, source)"
                    " VALUES (5, 2, 1, 'vm_page_alloc', '{}', :ctx, 'api')"
                ),
                {"ctx": '{"cpu":0}'},
            )
    finally:
        engine.dispose()
    assert _revision(database_url) == "0002"

    store = Store(database_url)
    try:
        assert _revision(database_url) == ScriptDirectory(str(MIGRATIONS)).get_current_head()
        assert [(i.id, i.name, i.owner, i.generation) for i in store.load_instances()] == [
            (5, "box", "ann", 2)
        ]
        assert [e.fn for e in store.entries(5, 2)] == ["vm_page_alloc"]
        accounts = Accounts(store)
        assert accounts.users() == [] and accounts.courses() == []
        accounts.import_roster("ann,student,os101\nbob,observer,os101\n")
        accounts.share(5, "bob")
        assert accounts.shared_with(5) == {"bob"}
        # and back down: the accounts go, the instances stay
        with store.engine.begin() as conn:
            command.downgrade(_alembic(conn), "0002")
        assert _revision(database_url) == "0002"
        with store.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
        assert {"instances", "journal"} <= tables
        assert not tables & {"users", "tokens", "courses", "shares", "settings"}
        # (raw SQL: today's Store reads the columns later revisions added)
        with store.engine.connect() as conn:
            assert [r[0] for r in conn.execute(text("SELECT id FROM instances"))] == [5]
    finally:
        store.close()
