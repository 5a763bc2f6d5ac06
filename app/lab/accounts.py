"""Accounts of a lab server: courses, users with roles, API tokens, quotas, shares, and the
access policy the API enforces with them.

Tokens are random (``pl_`` + 32 random bytes, URL-safe), shown once and stored only as
their sha256 hex digest.  ``authenticate`` finds a token by its digest and then compares
the digests again with ``hmac.compare_digest``, so that no branch depends on how much of a
guessed token matched.  Rate-limiting guesses is the API's job.

Quotas: defaults per role (``DEFAULT_ROLE_QUOTAS``), changed at runtime by
``set_role_quota`` (stored in the ``settings`` table, key ``role_quotas``, so every host
sharing the database agrees), with per-user overrides (``users.quota``) merged on top.

The store is synchronous, like ``Store``: the API calls it off the event loop.  The tables
live on the store's ``metadata``; their schema is made by migration 0003.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Final, Literal, cast, get_args

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from app.lab.store import Store, metadata

Role = Literal["admin", "instructor", "student", "observer"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
TOKEN_PREFIX: Final = "pl_"
#: a token given from the environment must be at least this long (a random one is 46)
MIN_TOKEN_LENGTH: Final = 32
#: names appear in paths (``/instances/{owner}/{name}``) and in CSV rosters
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ROLE_QUOTAS_KEY: Final = "role_quotas"
#: settings keys of browser sessions: the signing key, and per token the time of its
#: last sign-out (``signed_out:<token id>``)
SESSION_SECRET_KEY: Final = "session_secret"
SIGNED_OUT_PREFIX: Final = "signed_out:"

# ---------------------------------------------------------------- tables (migration 0003)
courses = Table(
    "courses",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("created", Float, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("course", String(64), ForeignKey("courses.name"), nullable=True),
    Column("created", Float, nullable=False),
    Column("quota", JSON, nullable=True),
    CheckConstraint("role IN ('admin', 'instructor', 'student', 'observer')", name="users_role"),
    Index("users_by_course", "course"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("label", String(128), nullable=False, server_default=""),
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("last_used", Float, nullable=True),
    Index("tokens_by_user", "user_id"),
)

shares = Table(
    "shares",
    metadata,
    Column(
        "instance_id",
        Integer,
        ForeignKey("instances.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

# ---------------------------------------------------------------- tables (migration 0004)
#: an instance shown read-only to every member of a course
broadcasts = Table(
    "broadcasts",
    metadata,
    Column(
        "instance_id",
        Integer,
        ForeignKey("instances.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("course", String(64), ForeignKey("courses.name", ondelete="CASCADE"), primary_key=True),
    Column("created", Float, nullable=False),
)

#: a course's starting point: a trace every student gets a copy of
scenarios = Table(
    "scenarios",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("course", String(64), ForeignKey("courses.name", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_by", String(64), nullable=False),
    Column("created", Float, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("calls", Integer, nullable=False),
    Column("trace", Text, nullable=False),
    UniqueConstraint("course", "name", name="scenarios_course_name"),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
)


# ---------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from: what ``authenticate`` answers and the policy reads."""

    name: str
    role: Role
    course: str | None
    user_id: int


@dataclass(frozen=True, slots=True)
class TokenMatch:
    """A token that authenticated: whose it is, its id and when it expires (or None)."""

    principal: Principal
    token_id: int
    expires: float | None


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    course: str | None
    created: float
    #: this user's overrides only (``effective_quotas`` merges them on the role's)
    quota: dict[str, int | float]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never its text, never its hash."""

    id: int
    user: str
    label: str
    created: float
    expires: float | None
    revoked_at: float | None
    last_used: float | None


@dataclass(frozen=True, slots=True)
class Quotas:
    """What one user may hold and do at once.  ``calls_per_s`` is a token bucket's rate;
    the others are counts (pages are 4 KiB pages)."""

    instances: int
    pages_per_instance: int
    pages_total: int
    calls_per_s: float
    batch_size: int
    streams: int
    workloads: int


QUOTA_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(Quotas))

#: the most any quota may be set to: far above what one server can give, low enough that a
#: typo (an extra zero or three) is refused rather than believed
QUOTA_CEILINGS: Final[Mapping[str, int | float]] = {
    "instances": 10_000,
    "pages_per_instance": 1 << 32,
    "pages_total": 1 << 40,
    "calls_per_s": 10_000_000.0,
    "batch_size": 10_000_000,
    "streams": 10_000,
    "workloads": 10_000,
}

DEFAULT_ROLE_QUOTAS: Final[Mapping[Role, Quotas]] = {
    # "unlimited" within what one server can hold: 16 Mi pages is MachineConfig's ceiling
    "admin": Quotas(
        instances=1000,
        pages_per_instance=16 * 1024 * 1024,
        pages_total=1 << 30,
        calls_per_s=100_000.0,
        batch_size=1_000_000,
        streams=100,
        workloads=100,
    ),
    # enough to prepare scenarios and to watch a class of 40 at once
    "instructor": Quotas(
        instances=64,
        pages_per_instance=4 * 1024 * 1024,
        pages_total=16 * 1024 * 1024,
        calls_per_s=5_000.0,
        batch_size=200_000,
        streams=50,
        workloads=8,
    ),
    # a few machines of up to 1 GiB each, 2 GiB in all
    "student": Quotas(
        instances=4,
        pages_per_instance=256 * 1024,
        pages_total=512 * 1024,
        calls_per_s=500.0,
        batch_size=10_000,
        streams=4,
        workloads=1,
    ),
    # reads what it is shown; its call rate covers views
    "observer": Quotas(
        instances=0,
        pages_per_instance=0,
        pages_total=0,
        calls_per_s=50.0,
        batch_size=0,
        streams=2,
        workloads=0,
    ),
}


# ---------------------------------------------------------------- validation
def check_name(value: str, field: str = "name") -> str:
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        raise ValueError(
            f"{field}: {value!r} is not allowed; use 1 to 64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return value


def check_role(value: str) -> Role:
    if value not in ROLES:
        raise ValueError(f"role: {value!r} is not one of {', '.join(ROLES)}")
    return value


def check_quota(field: str, value: object) -> int | float:
    """A quota value: a non-negative int (``calls_per_s``: a non-negative number)."""
    if field not in QUOTA_FIELDS:
        raise ValueError(f"quota field: {field!r} is not one of {', '.join(QUOTA_FIELDS)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field}: {value!r} is not a number")
    ceiling = QUOTA_CEILINGS[field]
    if field == "calls_per_s":
        if not 0 <= value <= ceiling:
            raise ValueError(f"{field}: {value!r} must be a number from 0 to {ceiling:g}")
        return float(value)
    if not isinstance(value, int) and not float(value).is_integer():
        raise ValueError(f"{field}: {value!r} must be a whole number from 0 to {ceiling}")
    if not 0 <= value <= ceiling:
        raise ValueError(f"{field}: {value!r} must be a whole number from 0 to {ceiling}")
    return int(value)


def token_hash(token: str) -> str:
    """What the store keeps of a token: its sha256, in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


# ---------------------------------------------------------------- access policy (no I/O)
def can_read(
    principal: Principal,
    instance_owner: str,
    instance_course: str | None,
    shared_with: set[str],
    broadcast_courses: set[str],
) -> bool:
    """May ``principal`` see (read, stream) an instance?  ``instance_course`` is its
    owner's course; ``shared_with`` the names it is shared with read-only;
    ``broadcast_courses`` the courses it is broadcast to."""
    if principal.role == "admin" or principal.name == instance_owner:
        return True
    if principal.name in shared_with:
        return True
    if principal.course is not None and principal.course in broadcast_courses:
        return True
    return (
        principal.role == "instructor"
        and principal.course is not None
        and instance_course == principal.course
    )


def can_write(principal: Principal, instance_owner: str) -> bool:
    """May ``principal`` change (call, reset, restore, delete, share) an instance?  Only
    its owner and admins; an observer never."""
    if principal.role == "admin":
        return True
    return principal.role != "observer" and principal.name == instance_owner


def can_manage_user(principal: Principal, role: str, course: str | None) -> bool:
    """May ``principal`` create (or change, delete, issue tokens for) a user with this
    role in this course?  Admins anyone; instructors students and observers of their own
    course; nobody else."""
    if principal.role == "admin":
        return True
    return (
        principal.role == "instructor"
        and role in ("student", "observer")
        and principal.course is not None
        and course == principal.course
    )


# ---------------------------------------------------------------- the accounts store
class Accounts:
    """Users, courses, tokens, quotas and shares in the store's database (at revision
    0003 or later: ``Store(url)`` upgrades it).

    ``clock`` gives the time in seconds (``time.time``); ``touch_interval_s``: a token's
    ``last_used`` is written at most this often, so that authenticating every request is
    not a write on every request."""

    def __init__(
        self,
        store_or_engine: Store | Engine,
        clock: Callable[[], float] = time.time,
        touch_interval_s: float = 60.0,
    ) -> None:
        self.engine: Engine = (
            store_or_engine.engine if isinstance(store_or_engine, Store) else store_or_engine
        )
        self.clock = clock
        self.touch_interval_s = touch_interval_s
        #: bumped by every quota or role change made here (``QuotaCache`` reloads then)
        self.quota_generation = 0

    # ------------------------------------------------------------ courses
    def create_course(self, name: str) -> None:
        """A new course; an existing one is refused."""
        check_name(name, "course")
        with self.engine.begin() as conn:
            if self._course_exists(conn, name):
                raise ValueError(f"course: {name!r} already exists")
            conn.execute(insert(courses).values(name=name, created=self.clock()))

    def courses(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(courses.c.name).order_by(courses.c.name)).scalars())

    @staticmethod
    def _course_exists(conn: Connection, name: str) -> bool:
        return (
            conn.execute(select(courses.c.name).where(courses.c.name == name)).first() is not None
        )

    # ------------------------------------------------------------ users
    def create_user(self, name: str, role: str, course: str | None = None) -> User:
        """A new user.  The course must exist (``create_course``)."""
        with self.engine.begin() as conn:
            return self._create_user(conn, name, role, course)

    def _create_user(self, conn: Connection, name: str, role: str, course: str | None) -> User:
        check_name(name)
        checked = check_role(role)
        if course is not None:
            check_name(course, "course")
            if not self._course_exists(conn, course):
                raise ValueError(f"course: {course!r} does not exist")
        if self._user_row(conn, name) is not None:
            raise ValueError(f"name: user {name!r} already exists")
        created = self.clock()
        try:
            uid = conn.execute(
                insert(users)
                .values(name=name, role=checked, course=course, created=created, quota=None)
                .returning(users.c.id)
            ).scalar_one()
        except IntegrityError as e:  # created meanwhile by someone else
            raise ValueError(f"name: user {name!r} already exists") from e
        return User(int(uid), name, checked, course, created, {})

    def user(self, name: str) -> User | None:
        with self.engine.connect() as conn:
            row = self._user_row(conn, name)
        return None if row is None else _user(row)

    def users(self, course: str | None = None, role: str | None = None) -> list[User]:
        """Users by name, optionally only those of one course and/or one role."""
        q = select(users).order_by(users.c.name)
        if course is not None:
            q = q.where(users.c.course == course)
        if role is not None:
            q = q.where(users.c.role == check_role(role))
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(q)]

    def set_role(self, name: str, role: str) -> None:
        checked = check_role(role)
        with self.engine.begin() as conn:
            uid = self._user_id(conn, name)
            conn.execute(update(users).where(users.c.id == uid).values(role=checked))
        self.quota_generation += 1

    def set_course(self, name: str, course: str | None) -> None:
        with self.engine.begin() as conn:
            uid = self._user_id(conn, name)
            if course is not None and not self._course_exists(conn, course):
                raise ValueError(f"course: {course!r} does not exist")
            conn.execute(update(users).where(users.c.id == uid).values(course=course))

    def delete_user(self, name: str) -> None:
        """The user, their tokens and the shares to them.  (Their instances are the
        service's to delete: ``instances.owner`` is a name, not a reference.)"""
        with self.engine.begin() as conn:
            uid = self._user_id(conn, name)
            # explicit, not only ON DELETE CASCADE: SQLite enforces foreign keys only on
            # connections that asked for it
            conn.execute(delete(tokens).where(tokens.c.user_id == uid))
            conn.execute(delete(shares).where(shares.c.user_id == uid))
            conn.execute(delete(users).where(users.c.id == uid))
        self.quota_generation += 1

    @staticmethod
    def _user_row(conn: Connection, name: str) -> Any:
        return conn.execute(select(users).where(users.c.name == name)).first()

    def _user_id(self, conn: Connection, name: str) -> int:
        uid = conn.execute(select(users.c.id).where(users.c.name == name)).scalar()
        if uid is None:
            raise ValueError(f"user: no user named {name!r}")
        return int(uid)

    # ------------------------------------------------------------ tokens
    def issue_token(self, user: str, label: str = "", expires_in_s: float | None = None) -> str:
        """A new token for ``user``: its text is returned here once and stored nowhere."""
        if expires_in_s is not None and not expires_in_s > 0:
            raise ValueError(f"expires_in_s: {expires_in_s!r} must be > 0 seconds (or None)")
        if len(label) > 128:
            raise ValueError("label: at most 128 characters")
        with self.engine.begin() as conn:
            uid = self._user_id(conn, user)
            return self._issue(conn, uid, label, expires_in_s)

    def _issue(
        self, conn: Connection, uid: int, label: str, expires_in_s: float | None, text: str = ""
    ) -> str:
        token = text or new_token()
        now = self.clock()
        conn.execute(
            insert(tokens).values(
                user_id=uid,
                hash=token_hash(token),
                label=label,
                created=now,
                expires=None if expires_in_s is None else now + expires_in_s,
            )
        )
        return token

    def authenticate(self, token: str) -> Principal | None:
        """Whose token this is, or None: unknown, revoked and expired tokens alike."""
        match = self.identify(token)
        return None if match is None else match.principal

    def identify(self, token: str) -> TokenMatch | None:
        """``authenticate``, also naming the token (its id and expiry): what a browser
        session is signed in with."""
        if not isinstance(token, str) or not token or len(token) > 512:
            return None
        digest = token_hash(token)
        q = (
            select(
                tokens.c.id,
                tokens.c.hash,
                tokens.c.expires,
                tokens.c.revoked_at,
                tokens.c.last_used,
                users.c.id.label("user_id"),
                users.c.name,
                users.c.role,
                users.c.course,
            )
            .join(users, users.c.id == tokens.c.user_id)
            .where(tokens.c.hash == digest)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        # the database's index lookup is not constant-time; this comparison is, and
        # nothing is granted without it
        if row is None or not hmac.compare_digest(str(row.hash), digest):
            return None
        now = self.clock()
        if row.revoked_at is not None or (row.expires is not None and now >= row.expires):
            return None
        self._touch(row.id, row.last_used, now)
        principal = Principal(row.name, cast(Role, row.role), row.course, int(row.user_id))
        return TokenMatch(principal, int(row.id), row.expires)

    def _touch(self, token_id: int, last_used: float | None, now: float) -> None:
        if last_used is None or now - last_used >= self.touch_interval_s:
            with self.engine.begin() as conn:
                conn.execute(update(tokens).where(tokens.c.id == token_id).values(last_used=now))

    def revoke_token(self, token_id: int, user: str | None = None) -> bool:
        """Revoke a token (of ``user``, if given: the API passes the caller's name so a
        user cannot revoke another's).  False if there is no such (unrevoked) token."""
        q = update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
        with self.engine.begin() as conn:
            if user is not None:
                q = q.where(tokens.c.user_id == self._user_id(conn, user))
            return conn.execute(q.values(revoked_at=self.clock())).rowcount == 1

    def revoke_all(self, user: str) -> int:
        """Revoke every token of ``user``; how many were live."""
        with self.engine.begin() as conn:
            uid = self._user_id(conn, user)
            result = conn.execute(
                update(tokens)
                .where(tokens.c.user_id == uid, tokens.c.revoked_at.is_(None))
                .values(revoked_at=self.clock())
            )
            return int(result.rowcount)

    def list_tokens(self, user: str) -> list[TokenInfo]:
        """A user's tokens (revoked and expired ones too), oldest first."""
        q = (
            select(
                tokens.c.id,
                tokens.c.label,
                tokens.c.created,
                tokens.c.expires,
                tokens.c.revoked_at,
                tokens.c.last_used,
            )
            .where(tokens.c.user_id == users.c.id, users.c.name == user)
            .order_by(tokens.c.id)
        )
        with self.engine.connect() as conn:
            self._user_id(conn, user)
            return [
                TokenInfo(int(r.id), user, r.label, r.created, r.expires, r.revoked_at, r.last_used)
                for r in conn.execute(q)
            ]

    # ------------------------------------------------------------ roster and bootstrap
    def import_roster(
        self,
        csv_text: str,
        label: str = "roster",
        expires_in_s: float | None = None,
        create_courses: bool = True,
    ) -> str:
        """Users from a CSV roster (``name,role,course``; a header row of those names is
        optional; course may be empty), each with a new token.  All or nothing: a bad row
        refuses the whole roster with its line number.  Courses not yet known are created
        (unless ``create_courses`` is False).  Answers the CSV to hand out,
        ``name,token`` — the only place those tokens ever appear."""
        rows: list[tuple[int, str, Role, str | None]] = []
        seen: set[str] = set()
        reader = csv.reader(io.StringIO(csv_text))
        for number, record in enumerate(reader, start=1):
            line = reader.line_num
            fields_ = [f.strip() for f in record]
            if not fields_ or all(not f for f in fields_):
                continue
            if number == 1 and [f.lower() for f in fields_] == ["name", "role", "course"]:
                continue
            if len(fields_) == 2:
                fields_.append("")
            if len(fields_) != 3:
                raise ValueError(
                    f"roster line {line}: expected 3 columns (name,role,course), got {len(fields_)}"
                )
            name, role, course = fields_
            try:
                check_name(name)
                checked = check_role(role)
                if course:
                    check_name(course, "course")
            except ValueError as e:
                raise ValueError(f"roster line {line}: {e}") from None
            if name in seen:
                raise ValueError(f"roster line {line}: name: {name!r} appears twice")
            seen.add(name)
            rows.append((line, name, checked, course or None))
        if not rows:
            raise ValueError("roster: no users in it")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["name", "token"])
        with self.engine.begin() as conn:
            existing = set(
                conn.execute(
                    select(users.c.name).where(users.c.name.in_([r[1] for r in rows]))
                ).scalars()
            )
            known_courses = set(conn.execute(select(courses.c.name)).scalars())
            for line, user_name, _, user_course in rows:
                if user_name in existing:
                    raise ValueError(f"roster line {line}: name: user {user_name!r} already exists")
                if user_course is not None and user_course not in known_courses:
                    if not create_courses:
                        raise ValueError(
                            f"roster line {line}: course: {user_course!r} does not exist"
                        )
                    conn.execute(insert(courses).values(name=user_course, created=self.clock()))
                    known_courses.add(user_course)
            for _, user_name, user_role, user_course in rows:
                user = self._create_user(conn, user_name, user_role, user_course)
                writer.writerow([user_name, self._issue(conn, user.id, label, expires_in_s)])
        return out.getvalue()

    def bootstrap_admin(self, name: str, token_from_env: str | None = None) -> str | None:
        """Make sure admin ``name`` exists; idempotent (run at every start).

        With ``token_from_env`` (e.g. ``PAGELAB_ADMIN_TOKEN``), that text is the admin's
        token (added once; if it was revoked it stays revoked).  Without, a token is made
        only when the admin is created, and returned (to print once); otherwise None.
        A user of that name who is not an admin is refused, not promoted."""
        if token_from_env is not None and len(token_from_env) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"token_from_env: at least {MIN_TOKEN_LENGTH} characters;"
                " make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        with self.engine.begin() as conn:
            row = self._user_row(conn, name)
            created = row is None
            if row is None:
                uid = self._create_user(conn, name, "admin", None).id
            elif row.role != "admin":
                raise ValueError(f"name: user {name!r} exists and is a {row.role}, not an admin")
            else:
                uid = int(row.id)
            if token_from_env is not None:
                owner = conn.execute(
                    select(tokens.c.user_id).where(tokens.c.hash == token_hash(token_from_env))
                ).scalar()
                if owner is None:
                    self._issue(conn, uid, "bootstrap", None, text=token_from_env)
                elif owner != uid:
                    raise ValueError("token_from_env: that token belongs to another user")
                return None
            return self._issue(conn, uid, "bootstrap", None) if created else None

    # ------------------------------------------------------------ quotas
    def role_quotas(self, role: str) -> Quotas:
        """A role's quotas: the defaults with the runtime changes."""
        checked = check_role(role)
        with self.engine.connect() as conn:
            changes = self._role_changes(conn)
        return _merged(DEFAULT_ROLE_QUOTAS[checked], changes.get(checked, {}))

    def effective_quotas(self, user: str) -> Quotas:
        """A user's quotas: their role's, with their own overrides on top."""
        with self.engine.connect() as conn:
            row = self._user_row(conn, user)
            if row is None:
                raise ValueError(f"user: no user named {user!r}")
            changes = self._role_changes(conn)
        role = cast(Role, row.role)
        base = _merged(DEFAULT_ROLE_QUOTAS[role], changes.get(role, {}))
        return _merged(base, row.quota or {})

    def set_quota(self, user: str, field: str, value: int | float | None) -> None:
        """Override one quota for one user; None removes the override."""
        self.update_quota(user, {field: value})

    def set_role_quota(self, role: str, field: str, value: int | float | None) -> None:
        """Change one quota of a role for everyone in it (who has no override); None
        restores the default."""
        self.update_role_quota(role, {field: value})

    def update_quota(
        self, user: str, changes: Mapping[str, int | float | None], replace_all: bool = False
    ) -> dict[str, int | float]:
        """Override some of one user's quotas (None removes that override; with
        ``replace_all`` the others are removed too), all or nothing.  Answers the user's
        overrides now."""
        checked = _checked_changes(changes)
        with self.engine.begin() as conn:
            row = self._user_row(conn, user)
            if row is None:
                raise ValueError(f"user: no user named {user!r}")
            quota = {} if replace_all else dict(row.quota or {})
            _apply(quota, checked)
            conn.execute(update(users).where(users.c.id == row.id).values(quota=quota or None))
        self.quota_generation += 1
        return quota

    def update_role_quota(self, role: str, changes: Mapping[str, int | float | None]) -> Quotas:
        """Change some quotas of a role (None restores that default), all or nothing.
        Answers the role's quotas now."""
        checked_role = check_role(role)
        checked = _checked_changes(changes)
        with self.engine.begin() as conn:
            all_changes = self._role_changes(conn)
            mine = dict(all_changes.get(checked_role, {}))
            _apply(mine, checked)
            all_changes = {**all_changes, checked_role: mine}
            had = conn.execute(
                select(settings.c.key).where(settings.c.key == ROLE_QUOTAS_KEY)
            ).first()
            if had is None:
                conn.execute(insert(settings).values(key=ROLE_QUOTAS_KEY, value=all_changes))
            else:
                conn.execute(
                    update(settings)
                    .where(settings.c.key == ROLE_QUOTAS_KEY)
                    .values(value=all_changes)
                )
        self.quota_generation += 1
        return _merged(DEFAULT_ROLE_QUOTAS[checked_role], mine)

    @staticmethod
    def _role_changes(conn: Connection) -> dict[str, dict[str, int | float]]:
        value = conn.execute(
            select(settings.c.value).where(settings.c.key == ROLE_QUOTAS_KEY)
        ).scalar()
        return dict(value) if isinstance(value, dict) else {}

    # ------------------------------------------------------------ shares
    def share(self, instance_id: int, user: str) -> None:
        """Share an instance read-only with ``user`` (again: no change)."""
        with self.engine.begin() as conn:
            uid = self._user_id(conn, user)
            had = conn.execute(
                select(shares.c.user_id).where(
                    shares.c.instance_id == instance_id, shares.c.user_id == uid
                )
            ).first()
            if had is None:
                conn.execute(insert(shares).values(instance_id=instance_id, user_id=uid))

    def unshare(self, instance_id: int, user: str) -> bool:
        with self.engine.begin() as conn:
            uid = self._user_id(conn, user)
            result = conn.execute(
                delete(shares).where(shares.c.instance_id == instance_id, shares.c.user_id == uid)
            )
            return int(result.rowcount) == 1

    def shared_with(self, instance_id: int) -> set[str]:
        """The names an instance is shared with (``can_read``'s ``shared_with``)."""
        q = select(users.c.name).join(shares, shares.c.user_id == users.c.id)
        with self.engine.connect() as conn:
            return set(conn.execute(q.where(shares.c.instance_id == instance_id)).scalars())

    # ------------------------------------------------------------ browser sessions
    # A session is a signed cookie naming a token's id and the time of sign-in (the API's
    # ``app.api.cookies``); every request re-checks it here against the token's row, so
    # that revoking or expiring the token, or signing out, ends the session at once.
    def session_secret(self) -> str:
        """The key that signs session cookies when ``PAGELAB_SESSION_SECRET`` is unset:
        made once and kept in ``settings``, so that every host sharing the database
        agrees (the first host to store one wins a race)."""
        q = select(settings.c.value).where(settings.c.key == SESSION_SECRET_KEY)
        with self.engine.connect() as conn:
            value = conn.execute(q).scalar()
        if isinstance(value, str) and value:
            return value
        try:
            with self.engine.begin() as conn:
                fresh = secrets.token_urlsafe(48)
                conn.execute(insert(settings).values(key=SESSION_SECRET_KEY, value=fresh))
                return fresh
        except IntegrityError:  # another host stored one meanwhile: everyone uses theirs
            with self.engine.connect() as conn:
                return str(conn.execute(q).scalar_one())

    def session_principal(self, token_id: int, issued: float, max_age_s: float) -> Principal | None:
        """Who a session signed in at ``issued`` with token ``token_id`` is, or None when
        it has ended: the token is gone, revoked or expired, the session is older than
        ``max_age_s``, or it was signed out (``end_sessions``) since.  A session older
        than its token (an id reused after a deletion) is refused too."""
        signed_out = f"{SIGNED_OUT_PREFIX}{token_id}"
        q = (
            select(
                tokens.c.created,
                tokens.c.expires,
                tokens.c.revoked_at,
                tokens.c.last_used,
                users.c.id.label("user_id"),
                users.c.name,
                users.c.role,
                users.c.course,
                settings.c.value.label("signed_out"),
            )
            .select_from(
                tokens.join(users, users.c.id == tokens.c.user_id).outerjoin(
                    settings, settings.c.key == signed_out
                )
            )
            .where(tokens.c.id == token_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        now = self.clock()
        if row is None or row.revoked_at is not None or issued < row.created:
            return None
        if (row.expires is not None and now >= row.expires) or now - issued >= max_age_s:
            return None
        if isinstance(row.signed_out, int | float) and issued <= row.signed_out:
            return None
        self._touch(token_id, row.last_used, now)
        return Principal(row.name, cast(Role, row.role), row.course, int(row.user_id))

    def end_sessions(self, token_id: int) -> None:
        """Sign out: every session signed in with token ``token_id`` until now ends (the
        token itself stays good for a new sign-in)."""
        key = f"{SIGNED_OUT_PREFIX}{token_id}"
        now = self.clock()
        with self.engine.begin() as conn:
            had = conn.execute(select(settings.c.key).where(settings.c.key == key)).first()
            if had is None:
                conn.execute(insert(settings).values(key=key, value=now))
            else:
                conn.execute(update(settings).where(settings.c.key == key).values(value=now))

    # ------------------------------------------------------------ broadcasts
    def broadcast(self, instance_id: int, course: str) -> None:
        """Show an instance read-only to every member of ``course`` (again: no change)."""
        with self.engine.begin() as conn:
            if not self._course_exists(conn, course):
                raise ValueError(f"course: {course!r} does not exist")
            had = conn.execute(
                select(broadcasts.c.course).where(
                    broadcasts.c.instance_id == instance_id, broadcasts.c.course == course
                )
            ).first()
            if had is None:
                conn.execute(
                    insert(broadcasts).values(
                        instance_id=instance_id, course=course, created=self.clock()
                    )
                )

    def unbroadcast(self, instance_id: int, course: str | None = None) -> int:
        """Stop showing an instance to ``course`` (None: to every course); how many ended."""
        q = delete(broadcasts).where(broadcasts.c.instance_id == instance_id)
        if course is not None:
            q = q.where(broadcasts.c.course == course)
        with self.engine.begin() as conn:
            return int(conn.execute(q).rowcount)

    def broadcast_courses(self, instance_id: int) -> set[str]:
        """The courses an instance is broadcast to (``can_read``'s ``broadcast_courses``)."""
        q = select(broadcasts.c.course).where(broadcasts.c.instance_id == instance_id)
        with self.engine.connect() as conn:
            return set(conn.execute(q).scalars())

    def broadcasts(self, course: str | None = None) -> list[tuple[int, str, float]]:
        """(instance id, course, since) of every broadcast, or of those to ``course``."""
        q = select(broadcasts.c.instance_id, broadcasts.c.course, broadcasts.c.created)
        if course is not None:
            q = q.where(broadcasts.c.course == course)
        q = q.order_by(broadcasts.c.course, broadcasts.c.instance_id)
        with self.engine.connect() as conn:
            return [(int(r.instance_id), r.course, float(r.created)) for r in conn.execute(q)]


def _user(row: Any) -> User:
    return User(
        int(row.id), row.name, cast(Role, row.role), row.course, row.created, dict(row.quota or {})
    )


def _checked_changes(
    changes: Mapping[str, int | float | None],
) -> dict[str, int | float | None]:
    """Quota changes validated (every field known, every value in range) before any is
    applied."""
    out: dict[str, int | float | None] = {}
    for field, value in changes.items():
        if field not in QUOTA_FIELDS:
            check_quota(field, 0)  # raises: names the known fields
        out[field] = None if value is None else check_quota(field, value)
    return out


def _apply(quota: dict[str, int | float], changes: Mapping[str, int | float | None]) -> None:
    for field, value in changes.items():
        if value is None:
            quota.pop(field, None)
        else:
            quota[field] = value


def _merged(base: Quotas, changes: Mapping[str, object]) -> Quotas:
    # a field a later version dropped is ignored rather than refused
    known = {k: check_quota(k, v) for k, v in changes.items() if k in QUOTA_FIELDS}
    return replace(base, **known) if known else base  # type: ignore[arg-type]


def quotas_view(quotas: Quotas) -> dict[str, int | float]:
    """Quotas as plain JSON (``GET /api/v1/me``)."""
    return dict(asdict(quotas))
