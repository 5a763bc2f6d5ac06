"""Quotas over the API (``PAGELAB_AUTH=token``), changed at run time: a role's quotas
(admins change them; instructors may read them) and one user's overrides (admins for
anyone; instructors for the students and observers of their course, never above their
own quotas).  A change applies to the next request at once: the quota cache and the
call-rate buckets follow it (``app.lab.quota``).  In the open lab these answer 404
``not-found``: there are no accounts and no quotas."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from app.lab.access import Principal
from app.lab.accounts import (
    QUOTA_FIELDS,
    Accounts,
    Quotas,
    Role,
    User,
    can_manage_user,
    quotas_view,
)
from app.lab.service import LabError

from .auth import PrincipalDep
from .deps import LabDep
from .errors import PROBLEM_RESPONSES
from .users import accounts_of, no_such_user, run

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES, tags=["quotas"])
UserName = Annotated[str, Path(min_length=1, max_length=64)]
Count = Annotated[StrictInt | None, Field(description="null: back to the default")]


class QuotaChange(BaseModel):
    """Some quotas to change: fields left out stay as they are, ``null`` goes back to the
    default (a role's built-in figure; for a user, their role's)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"calls_per_s": 1000, "streams": 8}, {"workloads": None}]},
    )
    instances: Count = None
    pages_per_instance: Count = None
    pages_total: Count = None
    calls_per_s: Annotated[
        StrictInt | StrictFloat | None,
        Field(description="calls a second (a token bucket's rate)"),
    ] = None
    batch_size: Count = None
    streams: Count = None
    workloads: Count = None

    def changes(self) -> dict[str, int | float | None]:
        return {name: getattr(self, name) for name in QUOTA_FIELDS if name in self.model_fields_set}


def _admin_only(principal: Principal, what: str) -> None:
    if principal.role != "admin":
        raise LabError("forbidden", f"only admins {what}")


def _role_view(role: Role, quotas: Quotas) -> dict[str, Any]:
    return {"role": role, "quotas": quotas_view(quotas)}


@router.get("/quotas/roles/{role}", operation_id="get_role_quotas")
async def get_role_quotas(role: Role, lab: LabDep, principal: PrincipalDep) -> dict[str, Any]:
    """A role's quotas now: the built-in defaults with the changes made at run time
    (admins and instructors)."""
    accounts = accounts_of(lab)
    if principal.role not in ("admin", "instructor"):
        raise LabError("forbidden", "only admins and instructors read a role's quotas")
    return _role_view(role, await run(accounts.role_quotas, role))


@router.put("/quotas/roles/{role}", operation_id="set_role_quotas")
async def set_role_quotas(
    role: Role, body: QuotaChange, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Change some of a role's quotas for everyone in it (who has no override of that
    quota); ``null`` restores the default.  Applies at once (admins)."""
    accounts = accounts_of(lab)
    _admin_only(principal, "change a role's quotas")
    return _role_view(role, await run(accounts.update_role_quota, role, body.changes()))


async def _managed(accounts: Accounts, principal: Principal, name: str, read: bool) -> User:
    """The user ``name`` if ``principal`` may manage their quota (or read it: their own),
    else the same 404 as a user that does not exist."""
    user: User | None = await run(accounts.user, name)
    if user is None:
        raise no_such_user(name)
    if read and name == principal.name:
        return user
    if not can_manage_user(principal, user.role, user.course) or (
        name == principal.name and principal.role != "admin"
    ):
        raise no_such_user(name)
    return user


async def _user_view(accounts: Accounts, user: User) -> dict[str, Any]:
    fresh = await run(accounts.user, user.name)
    overrides = fresh.quota if fresh is not None else {}
    quotas = await run(accounts.effective_quotas, user.name)
    return {
        "user": user.name,
        "role": user.role,
        "overrides": overrides,
        "quotas": quotas_view(quotas),
    }


@router.get("/users/{name}/quota", operation_id="get_user_quota")
async def get_user_quota(name: UserName, lab: LabDep, principal: PrincipalDep) -> dict[str, Any]:
    """A user's overrides and effective quotas (yourself, or a user you manage)."""
    accounts = accounts_of(lab)
    return await _user_view(accounts, await _managed(accounts, principal, name, read=True))


def _within_own(mine: Quotas, changes: dict[str, int | float | None]) -> None:
    """An instructor grants no more than they have themselves."""
    for field, value in changes.items():
        own = getattr(mine, field)
        if value is not None and value > own:
            raise LabError(
                "forbidden",
                f"{field}: you may grant at most your own quota ({own:g}), not {value:g}; "
                "an admin can grant more",
            )


@router.put("/users/{name}/quota", operation_id="set_user_quota")
async def set_user_quota(
    name: UserName, body: QuotaChange, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Override some of a user's quotas (``null`` removes that override: the role's
    figure applies again).  Admins for anyone, instructors for the students and
    observers of their course up to their own quotas.  Applies at once."""
    accounts = accounts_of(lab)
    user = await _managed(accounts, principal, name, read=False)
    changes = body.changes()
    if principal.role != "admin":
        _within_own(await run(accounts.effective_quotas, principal.name), changes)
    await run(accounts.update_quota, name, changes)
    return await _user_view(accounts, user)


@router.delete("/users/{name}/quota", status_code=204, operation_id="clear_user_quota")
async def clear_user_quota(name: UserName, lab: LabDep, principal: PrincipalDep) -> None:
    """Remove every override of a user: their role's quotas apply again, at once."""
    accounts = accounts_of(lab)
    await _managed(accounts, principal, name, read=False)
    await run(accounts.update_quota, name, {}, replace_all=True)
