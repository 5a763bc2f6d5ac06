"""Scenarios and time travel, all built on the journal: the timeline of an instance's
calls, step back (restore), fork, traces (export and import), and snapshot files (export
and import, for big scenarios)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.core.config import MachineConfig
from app.lab.service import LabError
from app.lab.store import Entry, config_from_json, config_to_json

from . import compact
from .auth import PrincipalDep, charge, quotas_of
from .deps import InstanceId, LabDep
from .errors import PROBLEM_RESPONSES
from .routes import describe

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES, tags=["timeline"])
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]

TRACE_FORMAT = "pagelab-trace"
TRACE_VERSION = 1
#: Largest trace accepted by an import (lines after the header).
MAX_TRACE_CALLS = 2_000_000


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"to": 10}]})
    to: StrictInt = Field(ge=0, le=1 << 62, description="the seq of the last call to keep")


class ForkRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"at": 10, "name": "what-if"}]}
    )
    at: StrictInt = Field(ge=0, le=1 << 62, description="the seq of the last call to copy")
    name: Name


@router.get("/instances/{instance_id}/journal", operation_id="get_journal")
async def get_journal(
    instance_id: InstanceId,
    lab: LabDep,
    from_seq: Annotated[int, Query(alias="from", ge=0, le=1 << 62)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    """The calls the instance acknowledged, in order, from seq ``from`` + 1: what was
    called, where, by whom (api, batch, workload) and what it returned."""
    inst = lab.get(instance_id)
    async with inst.lock:
        await lab.sync(inst)
        entries = lab.entries(inst, from_seq, limit)
    return {
        "instance": inst.id,
        "generation": inst.generation,
        "seq": inst.seq,
        "entries": [e.view() for e in entries],
    }


@router.get(
    "/instances/{instance_id}/journal/{seq}/record",
    operation_id="get_call_record",
    response_class=Response,
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def get_call_record(
    instance_id: InstanceId,
    seq: Annotated[int, Path(ge=1, le=1 << 62, description="the call's seq")],
    lab: LabDep,
    principal: PrincipalDep,
) -> Response:
    """The full record of an acknowledged call (every page move, counter change and kernel
    event), however large: what a summarised record (``summarised: true``) points to.
    Rebuilt by replaying the journal up to the call, so it takes about as long as a fork
    at that call; costs one call of your quota."""
    await charge(lab, principal, 1)
    inst = lab.get(instance_id)
    record = await lab.full_record(inst, seq)
    body = await anyio.to_thread.run_sync(compact.encode, record)
    return Response(body, media_type="application/json")


@router.get("/instances/{instance_id}/journal/density", operation_id="get_journal_density")
async def get_journal_density(
    instance_id: InstanceId,
    lab: LabDep,
    bins: Annotated[int, Query(ge=1, le=4096)] = 256,
) -> dict[str, Any]:
    """The journal at a glance, for a timeline: seqs 1 to ``seq`` in at most ``bins`` bins
    of ``width`` seqs (bin ``i`` holds seqs ``i * width + 1`` to ``(i + 1) * width``), with
    per bin the calls journalled (``calls``) and those that returned NULL (``nulls``).
    The rest of a bin's seqs are calls that were refused (errors are not journalled)."""
    inst = lab.get(instance_id)
    return {"instance": inst.id, **await lab.density(inst, bins)}


@router.post("/instances/{instance_id}/restore", operation_id="restore_instance")
async def restore_instance(
    instance_id: InstanceId, body: RestoreRequest, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Step back: the machine as it was right after call ``to`` (a new generation)."""
    await charge(lab, principal, 1)
    inst = await lab.restore(instance_id, body.to)
    return await describe(lab, inst)


@router.post("/instances/{instance_id}/fork", status_code=201, operation_id="fork_instance")
async def fork_instance(
    instance_id: InstanceId, body: ForkRequest, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """A new instance (yours): the same machine after the same calls, up to call ``at``."""
    await charge(lab, principal, 1)
    inst = await lab.fork(
        instance_id, body.at, body.name, principal.name, await quotas_of(lab, principal)
    )
    return await describe(lab, inst)


@router.get(
    "/instances/{instance_id}/trace",
    operation_id="export_trace",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def export_trace(instance_id: InstanceId, lab: LabDep) -> Response:
    """The instance as a trace: JSON Lines, a header (format, version, configuration,
    preset, seed, digest) and then one call per line.  Importing it gives the same digest."""
    inst = lab.get(instance_id)
    if inst.base is not None:
        raise LabError(
            "conflict",
            f"instance {instance_id} started from an imported snapshot, which a trace cannot "
            f"hold: export it as a snapshot (GET /api/v1/instances/{instance_id}/snapshot)",
        )
    async with inst.lock:
        await lab.sync(inst)
        entries = lab.entries(inst)
    text = render_trace(inst.name, inst.preset, inst.config, entries, await lab.digest(inst))
    filename = f"{inst.name}.pagelab.jsonl"
    return Response(
        text,
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def render_trace(
    name: str, preset: str | None, config: MachineConfig, entries: list[Entry], digest: str
) -> str:
    """A trace's text: the header line (format, version, name, preset, seed, configuration,
    number of calls, digest) and one line per call."""
    header = {
        "format": TRACE_FORMAT,
        "version": TRACE_VERSION,
        "name": name,
        "preset": preset,
        "seed": config.seed,
        "config": config_to_json(config),
        "calls": len(entries),
        "state_digest": digest,
    }
    lines = [json.dumps(header)]
    for e in entries:
        line = {"seq": e.seq, "fn": e.fn, "args": e.args, "ctx": e.ctx}
        if e.source != "api":
            line["source"] = e.source
        lines.append(json.dumps(line, separators=(",", ":")))
    return "\n".join(lines) + "\n"


def _short_text(value: Any) -> bool:
    """A name the store keeps (1-64 printable characters)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable()


def parse_trace(text: str) -> tuple[dict[str, Any], list[Entry]]:
    """A trace's header and calls; ``LabError`` saying which line is wrong and why."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise LabError("validation", "the trace is empty: it needs a header line and calls")
    try:
        header = json.loads(lines[0])
    except ValueError:
        raise LabError("validation", "line 1 of the trace is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != TRACE_FORMAT:
        raise LabError(
            "validation",
            f'line 1 must be the header {{"format": "{TRACE_FORMAT}", "version": 1, ...}}',
        )
    if header.get("version") != TRACE_VERSION:
        raise LabError(
            "validation",
            f"this server reads trace version {TRACE_VERSION}, not {header.get('version')!r}",
        )
    preset = header.get("preset")
    if preset is not None and not _short_text(preset):
        raise LabError("validation", "the header's preset must be a short name or null")
    if len(lines) - 1 > MAX_TRACE_CALLS:
        raise LabError("too-large", f"a trace holds at most {MAX_TRACE_CALLS} calls")
    entries: list[Entry] = []
    last = 0
    for n, line in enumerate(lines[1:], start=2):
        try:
            item = json.loads(line)
        except ValueError:
            raise LabError("validation", f"line {n} of the trace is not JSON") from None
        if not isinstance(item, dict) or not _short_text(item.get("fn")):
            raise LabError(
                "validation", f'line {n} must be a call such as {{"fn": "vm_page_alloc"}}'
            )
        source = item.get("source", "api")
        if not _short_text(source):
            raise LabError("validation", f"line {n}: source must be a short name (1-64 characters)")
        seq = item.get("seq", last + 1)
        args, ctx = item.get("args", {}), item.get("ctx", {"cpu": 0})
        if type(seq) is not int or seq <= last:
            raise LabError("validation", f"line {n}: seq must be an integer above {last}")
        if not isinstance(args, dict) or not isinstance(ctx, dict):
            raise LabError("validation", f"line {n}: args and ctx must be objects")
        entries.append(Entry(0, 0, seq, item["fn"], args, ctx, source))
        last = seq
    return header, entries


@router.post(
    "/traces",
    status_code=201,
    operation_id="import_trace",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def import_trace(
    request: Request,
    lab: LabDep,
    principal: PrincipalDep,
    name: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
) -> dict[str, Any]:
    """Import a trace (``GET …/instances/{id}/trace``) as a new instance named ``name``:
    its configuration booted and its calls replayed.  The answer's digest equals the
    trace's."""
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise LabError("bad-request", "the trace must be UTF-8 JSON Lines") from None
    header, entries = parse_trace(text)
    await charge(lab, principal, 1)
    try:
        config = config_from_json(header["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise LabError("validation", f"the trace header's config is not readable: {e}") from None
    inst = await lab.create(
        name,
        config,
        header.get("preset"),
        entries,
        owner=principal.name,
        quotas=await quotas_of(lab, principal),
    )
    return await describe(lab, inst)


@router.get(
    "/instances/{instance_id}/snapshot",
    operation_id="export_snapshot",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def export_snapshot(instance_id: InstanceId, lab: LabDep) -> Response:
    """The instance's full state as a snapshot file (versioned, compressed, no pickle):
    for scenarios too big to replay.  Refused (409) while a simulated thread sleeps in a
    call: the answer says what ends its sleep (a wakeup or a release; a tick only when the
    sleep has a timeout)."""
    inst = lab.get(instance_id)
    data = await lab.export_snapshot(inst)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"content-disposition": f'attachment; filename="{inst.name}.pagelab-snapshot"'},
    )


@router.post(
    "/snapshots",
    status_code=201,
    operation_id="import_snapshot",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def import_snapshot(
    request: Request,
    lab: LabDep,
    principal: PrincipalDep,
    name: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
) -> dict[str, Any]:
    """Import a snapshot file (``GET …/instances/{id}/snapshot``) as a new instance named
    ``name``, yours: the same machine, digest for digest.  A file that is not a sound
    snapshot is refused (422) saying why."""
    body = await request.body()
    if not body:
        raise LabError("validation", "the request body must be a snapshot file; it is empty")
    inst = await lab.import_snapshot(
        name, body, owner=principal.name, quotas=await quotas_of(lab, principal)
    )
    return await describe(lab, inst)
