"""What an instructor gives a whole course (``PAGELAB_AUTH=token``): broadcasts (one
instance shown read-only to every member) and scenarios (a starting point every member
copies into an instance of their own, all with the same digest).

Who may do what:

* broadcast an instance: its owner if an instructor, to their own course; an admin, any
  instance to any course.  Stop a broadcast: the same, and the instance's owner;
* create, delete and hand out a course's scenarios: its instructors and admins;
* list a course's scenarios and start a copy: its members (any role; the copy counts
  against the member's quotas) and admins.

A course you are not a member of answers like a missing one (404), so do its scenarios.
In the open lab (no accounts) these answer 404 ``not-found``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from app.core.config import MachineConfig
from app.lab.access import Principal
from app.lab.accounts import Accounts, Quotas
from app.lab.presets import PRESETS
from app.lab.scenarios import ReplayRefused, Scenario, Scenarios, check_replay
from app.lab.service import Ctx, Lab, LabError, config_pages
from app.lab.store import Entry, config_from_json

from .auth import PrincipalDep, may_read, quotas_of
from .deps import InstanceId, LabDep
from .errors import PROBLEM_RESPONSES
from .refs import MAX_REF, find, ref_of, unknown
from .routes import OFF_LOOP_BYTES, describe
from .schemas import MAX_BATCH_CALLS, BatchCall
from .timeline import MAX_TRACE_CALLS, parse_trace, render_trace
from .users import accounts_of, run

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES, tags=["courses"])
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
InstanceName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
CoursePath = Annotated[str, Path(min_length=1, max_length=64, description="course name")]
ScenarioId = Annotated[int, Path(ge=1, le=1 << 31, description="scenario id")]
#: longest trace a scenario takes inline (characters): about 2 million short calls
MAX_TRACE_CHARS = 128 * 1024 * 1024


# ---------------------------------------------------------------- broadcasts
class BroadcastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"course": "os101"}]})
    course: Name


@router.put("/instances/{instance_id}/broadcast", operation_id="broadcast_instance")
async def broadcast_instance(
    instance_id: InstanceId, body: BroadcastRequest, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Show this instance read-only to every member of a course: they see it in their
    listing (``access: broadcast``), read it, stream it and fork it into their own, never
    change it.  Its owner, if an instructor of that course, or an admin."""
    accounts = accounts_of(lab)
    lab.get(instance_id)
    if principal.role != "admin":
        if principal.role != "instructor":
            raise LabError(
                "forbidden",
                "only instructors (to their own course) and admins broadcast; to show an "
                "instance to a few people, share it (POST …/shares)",
            )
        if body.course != principal.course:
            raise LabError(
                "forbidden",
                f"you may broadcast to your own course ({principal.course!r}) only",
            )
    elif body.course not in await run(accounts.courses):
        raise LabError("not-found", f"there is no course {body.course!r}")
    await run(accounts.broadcast, instance_id, body.course)
    courses = await run(accounts.broadcast_courses, instance_id)
    return {"instance": instance_id, "courses": sorted(courses)}


@router.delete("/instances/{instance_id}/broadcast", status_code=204, operation_id="stop_broadcast")
async def stop_broadcast(
    instance_id: InstanceId,
    lab: LabDep,
    course: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> None:
    """Stop showing this instance to ``course`` (without: to every course it is shown
    to).  Its owner or an admin (the router's guard)."""
    accounts = accounts_of(lab)
    lab.get(instance_id)
    if await run(accounts.unbroadcast, instance_id, course) == 0:
        raise LabError(
            "not-found",
            f"instance {instance_id} is not broadcast"
            + (f" to course {course!r}" if course is not None else ""),
        )


@router.get("/broadcasts", operation_id="list_broadcasts")
async def list_broadcasts(lab: LabDep, principal: PrincipalDep) -> list[dict[str, Any]]:
    """The instances broadcast to your course (admins: every broadcast), with the
    reference to type for each."""
    accounts = accounts_of(lab)
    if principal.role == "admin":
        rows = await run(accounts.broadcasts)
    elif principal.course is None:
        rows = []
    else:
        rows = await run(accounts.broadcasts, principal.course)
    out = []
    for instance_id, course, since in rows:
        inst = lab.instances.get(instance_id)
        if inst is None:
            continue
        out.append(
            {
                "instance": inst.id,
                "name": inst.name,
                "ref": ref_of(inst, principal, owner_shown=principal.role == "admin"),
                "course": course,
                "since": since,
            }
        )
    return out


# ---------------------------------------------------------------- scenarios
class ScenarioCreate(BaseModel):
    """A scenario from exactly one of: a ``trace`` (the JSON Lines of ``GET …/trace``),
    an instance you may read (``from_instance``, a reference; its calls up to ``at``, or
    all), or a ``preset`` with setup ``calls`` (and optionally a ``seed``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "lab3", "from_instance": "demo"},
                {
                    "name": "lab4",
                    "preset": "tiny-16m",
                    "seed": 7,
                    "calls": [{"fn": "vm_page_alloc", "args": {}}],
                },
            ]
        },
    )
    name: Name
    description: str = Field(default="", max_length=2000)
    trace: str | None = Field(default=None, min_length=1, max_length=MAX_TRACE_CHARS)
    from_instance: str | None = Field(default=None, min_length=1, max_length=MAX_REF)
    at: StrictInt | None = Field(default=None, ge=0, le=1 << 62)
    preset: str | None = Field(default=None, min_length=1, max_length=64)
    seed: StrictInt | None = Field(default=None, ge=0, le=(1 << 64) - 1)
    calls: list[BatchCall] = Field(default_factory=list, max_length=MAX_BATCH_CALLS)

    @model_validator(mode="after")
    def _one_source(self) -> ScenarioCreate:
        given = [k for k in ("trace", "from_instance", "preset") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of trace, from_instance or preset (with calls), not "
                + (" and ".join(given) if given else "none")
            )
        if self.calls and self.preset is None:
            raise ValueError("calls go with a preset (a trace or an instance has its own)")
        if self.seed is not None and self.preset is None:
            raise ValueError("seed goes with a preset (a trace or an instance has its own)")
        if self.at is not None and self.from_instance is None:
            raise ValueError("at goes with from_instance")
        return self


class CopyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "lab3"}]})
    name: InstanceName | None = Field(default=None, description="default: the scenario's name")


class HandoutRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{}, {"name": "lab3", "users": ["ann"]}]}
    )
    name: InstanceName | None = Field(default=None, description="default: the scenario's name")
    users: list[Name] | None = Field(
        default=None, max_length=10_000, description="default: every student of the course"
    )


def _no_course(course: str) -> LabError:
    return LabError("not-found", f"there is no course {course!r}")


def _no_scenario(scenario_id: int) -> LabError:
    return LabError("not-found", f"there is no scenario {scenario_id}")


def _manages(principal: Principal, course: str) -> bool:
    return principal.role == "admin" or (
        principal.role == "instructor" and principal.course == course
    )


async def _course_for(accounts: Accounts, principal: Principal, course: str) -> None:
    """Refuse (as missing) a course the principal is not a member of (admins: any course
    that exists)."""
    if principal.role == "admin":
        if course not in await run(accounts.courses):
            raise _no_course(course)
    elif principal.course != course:
        raise _no_course(course)


def _forbidden_unless_manager(principal: Principal, what: str) -> None:
    if principal.role not in ("admin", "instructor"):
        raise LabError("forbidden", f"only the course's instructors and admins {what}")


def scenarios_of(lab: Lab) -> Scenarios:
    accounts = accounts_of(lab)
    return Scenarios(accounts.engine)


async def _scenario_for(lab: Lab, principal: Principal, scenario_id: int) -> Scenario:
    """The scenario with its trace, refused (as missing) outside the principal's course."""
    found: Scenario | None = await run(scenarios_of(lab).get, scenario_id)
    if found is None or (principal.role != "admin" and principal.course != found.course):
        raise _no_scenario(scenario_id)
    return found


def scenario_view(s: Scenario, principal: Principal) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": s.id,
        "course": s.course,
        "name": s.name,
        "description": s.description,
        "created": s.created,
        "calls": s.calls,
        "state_digest": s.digest,
    }
    if _manages(principal, s.course):  # members see what, not who
        view["created_by"] = s.created_by
    return view


async def _source_of(
    lab: Lab, principal: Principal, body: ScenarioCreate
) -> tuple[MachineConfig, str | None, list[Entry], str | None]:
    """The configuration, preset and calls a scenario replays, and the digest its source
    claims (a trace's header), from whichever source the body names."""
    if body.trace is not None:
        header, entries = await anyio.to_thread.run_sync(parse_trace, body.trace)
        try:
            config = config_from_json(header["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise LabError(
                "validation", f"the trace header's config is not readable: {e}"
            ) from None
        claimed = header.get("state_digest")
        return config, header.get("preset"), entries, claimed if isinstance(claimed, str) else None
    if body.from_instance is not None:
        ref = body.from_instance
        inst = find(lab, principal, ref)
        if inst is None or not await may_read(lab, principal, inst.id):
            raise unknown(ref)
        at = inst.seq if body.at is None else body.at
        if at > inst.seq:
            raise LabError(
                "validation", f"at: instance {ref} has calls 0 to {inst.seq}, not {body.at}"
            )
        if inst.base is not None:
            raise LabError(
                "conflict",
                f"instance {ref} started from an imported snapshot, which a scenario (a trace) "
                "cannot hold: make the scenario from a preset and calls instead",
            )
        async with inst.lock:
            await lab.sync(inst)
            entries = await anyio.to_thread.run_sync(
                lambda: [e for e in lab.entries(inst) if e.seq <= at]
            )
        return inst.config, inst.preset, entries, None
    assert body.preset is not None
    preset = PRESETS.get(body.preset)
    if preset is None:
        raise LabError(
            "not-found", f"there is no preset {body.preset!r}; presets: {', '.join(PRESETS)}"
        )
    config = preset.config
    if body.seed is not None:
        config = dataclasses.replace(config, seed=body.seed)
    entries = [
        Entry(
            0,
            0,
            seq,
            c.fn,
            c.args,
            (Ctx(**c.ctx.model_dump()) if c.ctx else Ctx()).compact(),
            "scenario",
        )
        for seq, c in enumerate(body.calls, start=1)
    ]
    return config, body.preset, entries, None


def _check_size(lab: Lab, config: MachineConfig, calls: int, quotas: Quotas | None) -> None:
    """A scenario is replayed like one batch on a machine of its size: the maker's
    ``batch_size`` and ``pages_per_instance`` quotas bound it."""
    how = "ask an admin to raise it"
    if quotas is not None and calls > quotas.batch_size:
        raise lab.refuse(
            "batch_size",
            "too-large",
            f"this scenario has {calls} calls; your quota 'batch_size' allows "
            f"{quotas.batch_size} in one replay: shorten it, or {how}",
        )
    if calls > MAX_TRACE_CALLS:
        raise LabError("too-large", f"a scenario holds at most {MAX_TRACE_CALLS} calls")
    pages = config_pages(config)
    if quotas is not None and pages > quotas.pages_per_instance:
        raise lab.refuse(
            "pages_per_instance",
            "too-large",
            f"this scenario's machine has {pages} pages; your quota 'pages_per_instance' is "
            f"{quotas.pages_per_instance}: choose less memory, or {how}",
        )


def _parse_scenario(raw: bytes) -> ScenarioCreate:
    """The body, validated as FastAPI would, with the same problem document."""
    try:
        return ScenarioCreate.model_validate_json(raw)
    except ValidationError as e:
        errors = [{**err, "loc": ("body", *err["loc"])} for err in e.errors(include_url=False)]
        raise RequestValidationError(errors) from None


@router.post(
    "/courses/{course}/scenarios",
    status_code=201,
    operation_id="create_scenario",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ScenarioCreate"}}
            },
        }
    },
)
async def create_scenario(
    course: CoursePath, request: Request, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """A course scenario from a trace, an instance you may read, or a preset with setup
    calls.  It is replayed once here (every call must be accepted) and kept with the
    digest every copy will have.  The course's instructors and admins."""
    accounts = accounts_of(lab)
    await _course_for(accounts, principal, course)
    _forbidden_unless_manager(principal, "create scenarios")
    raw = await request.body()  # a trace may be large: parsed off the event loop
    body = (
        await anyio.to_thread.run_sync(_parse_scenario, raw)
        if len(raw) > OFF_LOOP_BYTES
        else _parse_scenario(raw)
    )
    config, preset, entries, claimed = await _source_of(lab, principal, body)
    try:
        config = lab.check_config(config)
    except ValueError as e:  # ConfigError: the machine this server cannot host
        raise LabError("validation", f"the scenario's machine: {e}") from None
    _check_size(lab, config, len(entries), await quotas_of(lab, principal))
    try:
        digest = await anyio.to_thread.run_sync(check_replay, config, entries)
    except ReplayRefused as e:
        raise LabError(
            "validation", f"the scenario's {e}; fix or remove that call", call=e.index
        ) from None
    if claimed is not None and claimed != digest:
        raise LabError(
            "validation",
            f"the trace says its digest is {claimed} but replaying it gives {digest}: "
            "it was edited or made by another version of the simulator",
        )
    text = await anyio.to_thread.run_sync(render_trace, body.name, preset, config, entries, digest)
    made = await run(
        scenarios_of(lab).create,
        course,
        body.name,
        body.description,
        principal.name,
        digest,
        len(entries),
        text,
    )
    return scenario_view(made, principal)


@router.get("/courses/{course}/scenarios", operation_id="list_scenarios")
async def list_scenarios(
    course: CoursePath, lab: LabDep, principal: PrincipalDep
) -> list[dict[str, Any]]:
    """A course's scenarios (its members and admins)."""
    accounts = accounts_of(lab)
    await _course_for(accounts, principal, course)
    found = await run(scenarios_of(lab).list, course)
    return [scenario_view(s, principal) for s in found]


@router.get("/scenarios/{scenario_id}", operation_id="get_scenario")
async def get_scenario(
    scenario_id: ScenarioId, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    return scenario_view(await _scenario_for(lab, principal, scenario_id), principal)


@router.get(
    "/scenarios/{scenario_id}/trace",
    operation_id="get_scenario_trace",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def get_scenario_trace(
    scenario_id: ScenarioId, lab: LabDep, principal: PrincipalDep
) -> Response:
    """The scenario as a trace (JSON Lines, as ``GET …/instances/{id}/trace``)."""
    found = await _scenario_for(lab, principal, scenario_id)
    return Response(
        found.trace,
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{found.name}.pagelab.jsonl"'},
    )


@router.delete("/scenarios/{scenario_id}", status_code=204, operation_id="delete_scenario")
async def delete_scenario(scenario_id: ScenarioId, lab: LabDep, principal: PrincipalDep) -> None:
    """Delete a scenario (the copies already made stay).  Its course's instructors and
    admins."""
    await _scenario_for(lab, principal, scenario_id)
    _forbidden_unless_manager(principal, "delete scenarios")
    if not await run(scenarios_of(lab).delete, scenario_id):
        raise _no_scenario(scenario_id)


@dataclass(frozen=True, slots=True)
class _Replay:
    """What a copy boots: a scenario's trace, parsed once."""

    scenario: Scenario
    config: MachineConfig
    preset: str | None
    entries: list[Entry]


async def _replay_of(found: Scenario) -> _Replay:
    header, entries = await anyio.to_thread.run_sync(parse_trace, found.trace)
    return _Replay(found, config_from_json(header["config"]), header.get("preset"), entries)


async def _copy(
    lab: Lab, replay: _Replay, name: str, owner: str, quotas: Quotas | None
) -> dict[str, Any]:
    inst = await lab.create(name, replay.config, replay.preset, replay.entries, owner, quotas)
    view = await describe(lab, inst)
    view["scenario"] = replay.scenario.id
    return view


@router.post("/scenarios/{scenario_id}/instances", status_code=201, operation_id="start_scenario")
async def start_scenario(
    scenario_id: ScenarioId, body: CopyRequest, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Your own copy of a scenario of your course (counted against your instance and page
    quotas): the same machine, with the scenario's digest."""
    found = await _scenario_for(lab, principal, scenario_id)
    quotas = await quotas_of(lab, principal)
    return await _copy(
        lab, await _replay_of(found), body.name or found.name, principal.name, quotas
    )


@router.post("/scenarios/{scenario_id}/handout", operation_id="hand_out_scenario")
async def hand_out_scenario(
    scenario_id: ScenarioId, body: HandoutRequest, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """A copy for every student of the scenario's course (or the ``users`` named), each
    theirs and counted against their quotas.  A student whose quota or a name in use
    refuses the copy is listed under ``refused``; the others get theirs.  The course's
    instructors and admins."""
    accounts = accounts_of(lab)
    found = await _scenario_for(lab, principal, scenario_id)
    _forbidden_unless_manager(principal, "hand out scenarios")
    members = {u.name: u for u in await run(accounts.users, found.course)}
    if body.users is None:
        targets = sorted(n for n, u in members.items() if u.role == "student")
    else:
        strangers = [n for n in body.users if n not in members]
        if strangers:
            raise LabError(
                "validation",
                f"users: {', '.join(map(repr, strangers[:5]))} "
                f"{'is' if len(strangers) == 1 else 'are'} not in course {found.course!r}",
            )
        targets = list(dict.fromkeys(body.users))
    name = body.name or found.name
    replay = await _replay_of(found)
    created, refused = [], []
    for user in targets:
        quotas = await run(accounts.effective_quotas, user)
        try:
            view = await _copy(lab, replay, name, user, quotas)
        except LabError as e:
            detail = e.message.replace("your quota", "their quota").replace("you have", "they have")
            refused.append({"user": user, "type": e.kind, "detail": detail})
            continue
        created.append(
            {"user": user, "id": view["id"], "name": name, "state_digest": view["state_digest"]}
        )
    return {"scenario": found.id, "created": created, "refused": refused}
