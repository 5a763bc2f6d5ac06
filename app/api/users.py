"""Accounts over the API (``PAGELAB_AUTH=token``): who am I, users, tokens, rosters,
courses and shares.  Admins manage everyone; instructors the students and observers of
their own course (``accounts.can_manage_user``).  In the open lab these answer 404
``not-found`` (there are no accounts), except ``GET /me``."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app.lab.accounts import Accounts, Role, can_manage_user, quotas_view
from app.lab.service import Lab, LabError

from .auth import PrincipalDep
from .deps import InstanceId, LabDep
from .errors import PROBLEM_RESPONSES

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES, tags=["accounts"])
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Expiry = Annotated[float | None, Field(default=None, gt=0, le=10 * 365 * 86400)]


def accounts_of(lab: Lab) -> Accounts:
    if lab.accounts is None:
        raise LabError(
            "not-found", "this server has no accounts: it runs in open mode (PAGELAB_AUTH=open)"
        )
    return lab.accounts


async def run(fn: Any, *args: Any, **kw: Any) -> Any:
    """An Accounts call off the event loop; its ValueErrors as problems."""
    try:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kw))
    except ValueError as e:
        text = str(e)
        if "already exists" in text:
            raise LabError("conflict", text) from None
        if "no user named" in text:
            raise LabError("not-found", text) from None
        raise LabError("validation", text) from None


def no_such_user(name: str) -> LabError:
    """A user you may not manage answers like one that does not exist."""
    return LabError("not-found", f"user: no user named {name!r}")


class UserCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "ann", "role": "student", "course": "os101"}]},
    )
    name: Name
    role: Role
    course: Name | None = None
    label: str = Field(default="", max_length=128)
    expires_in_s: Expiry = None


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=128)
    expires_in_s: Expiry = None


class RosterImport(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"roster": "name,role,course\nann,student,os101\n"}]},
    )
    roster: str = Field(min_length=1, max_length=1_000_000, description="CSV: name,role,course")
    label: str = Field(default="roster", max_length=128)
    expires_in_s: Expiry = None


class CourseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class ShareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user": "bob"}]})
    user: Name


@router.get("/me", operation_id="get_me")
async def get_me(lab: LabDep, principal: PrincipalDep) -> dict[str, Any]:
    """Who you are here: name, role, course, your effective quotas, what you use of them
    now (``usage``: instances, pages in all, open streams, running workloads, and the
    calls you may make at once) and the auth mode."""
    usage: dict[str, Any] = dict(lab.usage(principal.name))
    if lab.accounts is None:
        return {
            "name": principal.name,
            "role": principal.role,
            "course": principal.course,
            "quotas": None,  # no accounts: only the server's limits (PAGELAB_MAX_*) apply
            "usage": usage,
            "auth": "open",
        }
    quotas = await run(lab.accounts.effective_quotas, principal.name)
    usage["calls_available"] = lab.call_rate.remaining(principal.name, quotas)
    return {
        "name": principal.name,
        "role": principal.role,
        "course": principal.course,
        "quotas": quotas_view(quotas),
        "usage": usage,
        "auth": "token",
    }


@router.post("/courses", status_code=201, operation_id="create_course")
async def create_course(body: CourseCreate, lab: LabDep, principal: PrincipalDep) -> dict[str, Any]:
    """A new course (admins only)."""
    accounts = accounts_of(lab)
    if principal.role != "admin":
        raise LabError("forbidden", "only admins create courses")
    await run(accounts.create_course, body.name)
    return {"name": body.name}


@router.post("/users", status_code=201, operation_id="create_user")
async def create_user(body: UserCreate, lab: LabDep, principal: PrincipalDep) -> dict[str, Any]:
    """A new user and their first token: the token is shown here once, never again."""
    accounts = accounts_of(lab)
    if not can_manage_user(principal, body.role, body.course):
        raise LabError(
            "forbidden",
            f"you may not create a {body.role} in "
            + (f"course {body.course!r}" if body.course else "no course")
            + "; instructors create students and observers of their own course",
        )

    def make() -> tuple[Any, str]:
        user = accounts.create_user(body.name, body.role, body.course)
        return user, accounts.issue_token(body.name, body.label, body.expires_in_s)

    user, token = await run(make)
    return {"name": user.name, "role": user.role, "course": user.course, "token": token}


@router.post("/users/{name}/tokens", status_code=201, operation_id="issue_token")
async def issue_token(
    name: Annotated[str, Path(min_length=1, max_length=64)],
    body: TokenCreate,
    lab: LabDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """A new token for a user you manage (or yourself): shown here once."""
    accounts = accounts_of(lab)
    if name != principal.name:
        user = await run(accounts.user, name)
        if user is None or not can_manage_user(principal, user.role, user.course):
            raise no_such_user(name)
    token = await run(accounts.issue_token, name, body.label, body.expires_in_s)
    infos = await run(accounts.list_tokens, name)
    return {"user": name, "id": infos[-1].id, "token": token}


@router.delete("/tokens/{token_id}", status_code=204, operation_id="revoke_token")
async def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=1 << 62)], lab: LabDep, principal: PrincipalDep
) -> None:
    """Revoke a token: your own (admins: anyone's)."""
    accounts = accounts_of(lab)
    owner = None if principal.role == "admin" else principal.name
    if not await run(accounts.revoke_token, token_id, owner):
        raise LabError("not-found", f"there is no live token {token_id} of yours")


def _roster_rows(text: str) -> list[tuple[int, str, str, str | None]]:
    """(line, name, role, course) of each user row, as ``import_roster`` reads them."""
    rows = []
    reader = csv.reader(io.StringIO(text))
    for number, record in enumerate(reader, start=1):
        fields = [f.strip() for f in record]
        if not fields or all(not f for f in fields):
            continue
        if number == 1 and [f.lower() for f in fields] == ["name", "role", "course"]:
            continue
        if len(fields) == 2:
            fields.append("")
        if len(fields) == 3:
            rows.append((reader.line_num, fields[0], fields[1], fields[2] or None))
    return rows


@router.post(
    "/rosters",
    status_code=201,
    operation_id="import_roster",
    response_class=Response,
    responses={201: {"content": {"text/csv": {}}}},
)
async def import_roster(body: RosterImport, lab: LabDep, principal: PrincipalDep) -> Response:
    """Users from a CSV roster (``name,role,course``), all or nothing; answers the CSV
    ``name,token`` to hand out (the only place those tokens appear)."""
    accounts = accounts_of(lab)
    try:
        rows = _roster_rows(body.roster)
    except csv.Error as e:
        raise LabError("validation", f"roster: not CSV ({e})") from None
    for line, _, role, course in rows:
        if not can_manage_user(principal, role, course):
            raise LabError(
                "forbidden",
                f"roster line {line}: you may not create a {role} in "
                + (f"course {course!r}" if course else "no course"),
            )
    out = await run(
        accounts.import_roster,
        body.roster,
        body.label,
        body.expires_in_s,
        create_courses=principal.role == "admin",
    )
    return Response(
        out,
        status_code=201,
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="tokens.csv"'},
    )


@router.post("/instances/{instance_id}/shares", status_code=204, operation_id="share_instance")
async def share_instance(
    instance_id: InstanceId, body: ShareRequest, lab: LabDep, principal: PrincipalDep
) -> None:
    """Share your instance read-only with a user (the router's guard: owners only)."""
    accounts = accounts_of(lab)
    lab.get(instance_id)
    await run(accounts.share, instance_id, body.user)
