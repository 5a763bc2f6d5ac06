"""The HTTP API, ``/api/v1``: instances, kernel calls (single and batch), state views."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from pydantic import ValidationError

from app.core.config import MachineConfig, NumaRange, Topology, parse_size
from app.core.constants import PAGE_SIZE, VM_ALLOC_FLAG_NAMES
from app.core.ddb import DDB_COMMANDS, DDB_HELP, ddb_unknown
from app.core.errors import ConfigError, InvalidArgument
from app.core.objects import ObjType
from app.core.registry import FUNCTIONS, REGISTRY, parse_queue_type
from app.core.seams import check_policy, seams_catalogue
from app.lab.access import Principal, Relation
from app.lab.fields import VMSTATS_HELP
from app.lab.presets import PRESETS
from app.lab.records import full_record_path, summarise
from app.lab.service import Ctx, Instance, Lab, LabError

from . import compact
from .auth import PrincipalDep, charge, quotas_of
from .deps import InstanceId, LabDep
from .errors import PROBLEM_RESPONSES, PROBLEM_TYPES
from .refs import ref_of
from .schemas import (
    BatchRequest,
    BatchResponse,
    CallRequest,
    CallResponse,
    InstanceCreate,
    SysctlWrite,
)

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES)


@contextmanager
def _not_found() -> Iterator[None]:
    """A path naming something the machine does not have (a pfn, an object, a sysctl) is a
    404, not a 422: the core says why with an ``InvalidArgument``."""
    try:
        yield
    except InvalidArgument as e:
        # a pfn the machine does not have is answered alike here and in a call
        kind = e.kind if e.kind != "validation" else "not-found"
        raise LabError(kind, str(e)) from e


async def describe(lab: Lab, inst: Instance) -> dict[str, Any]:
    """``instance_view`` with the machine's summary and digest asked of the lab."""
    return instance_view(inst, await lab.digest(inst), await lab.summary(inst))


def instance_view(inst: Instance, digest: str, summary: dict[str, Any]) -> dict[str, Any]:
    cfg = inst.config
    return {
        "id": inst.id,
        "name": inst.name,
        "preset": inst.preset,
        "config": {
            "phys_avail": [list(r) for r in cfg.phys_avail],
            "cpus": cfg.cpus,
            "topology": (
                {
                    "sockets": cfg.topology.sockets,
                    "cores": cfg.topology.cores,
                    "threads": cfg.topology.threads,
                }
                if cfg.topology
                else None
            ),
            "numa": [
                {"base": r.base, "size": r.size, "socket": r.socket} for r in cfg.numa_ranges()
            ],
            "boot_stage": cfg.boot_stage,
            "seed": cfg.seed,
            "pagedaemon": cfg.pagedaemon,
            "dma_reserved": cfg.dma_reserved,
            "policy": dict(cfg.policy),
        },
        "summary": summary,
        "parked": inst.parked is not None,
        "calls": inst.calls,
        "seq": inst.seq,
        "generation": inst.generation,
        "state_digest": digest,
    }


def _config_of(body: InstanceCreate) -> MachineConfig:
    topo = (
        Topology(body.topology.sockets, body.topology.cores, body.topology.threads)
        if body.topology
        else None
    )
    _check_cpus(body.cpus, topo)
    cpus = topo.ncpus if topo else (body.cpus or 1)
    if body.phys_avail is not None:
        ranges = tuple((int(b), int(e)) for b, e in body.phys_avail)
    else:
        assert body.memory is not None
        size = parse_size(body.memory)
        ranges = ((PAGE_SIZE, size),)
    return MachineConfig(
        phys_avail=ranges,
        cpus=cpus,
        topology=topo,
        numa=tuple(NumaRange(n.base, n.size, n.socket) for n in body.numa),
        seed=body.seed,
        boot_stage=body.boot_stage,
        dma_reserved=body.dma_reserved,
        pagedaemon=body.pagedaemon,
        policy=_policy_of(body),
    )


def _policy_of(body: InstanceCreate) -> tuple[tuple[str, str], ...]:
    """The body's seam choices, checked (``seams.check_policy``: unknown names are a
    ``validation`` problem with the names that exist)."""
    try:
        return check_policy(body.policy.items())
    except ConfigError as e:
        raise LabError("validation", str(e)) from None


def _check_cpus(cpus: int | None, topo: Topology | None) -> None:
    """Refuse a CPU count that disagrees with the topology given next to it (the
    topology would silently win)."""
    if cpus is not None and topo is not None and cpus != topo.ncpus:
        raise LabError(
            "validation",
            f"cpus {cpus} conflicts with the topology: {topo.sockets} socket(s) × "
            f"{topo.cores} core(s) × {topo.threads} thread(s) = {topo.ncpus} CPUs; give "
            "only the topology (it sets the count), or make them agree",
        )


def _preset_overrides(body: InstanceCreate) -> dict[str, Any]:
    """Fields given next to a preset replace the preset's (seed, CPUs, boot stage, ...)."""
    given = body.model_fields_set
    out: dict[str, Any] = {}
    for name in ("seed", "boot_stage", "pagedaemon", "dma_reserved"):
        if name in given:
            out[name] = getattr(body, name)
    if "topology" in given and body.topology is not None:
        topo = Topology(body.topology.sockets, body.topology.cores, body.topology.threads)
        _check_cpus(body.cpus, topo)
        out["topology"] = topo
        out["cpus"] = topo.ncpus
    elif "cpus" in given and body.cpus is not None:
        out["cpus"] = body.cpus
        out["topology"] = None
    if "numa" in given:
        out["numa"] = tuple(NumaRange(n.base, n.size, n.socket) for n in body.numa)
    if "policy" in given:
        out["policy"] = _policy_of(body)
    return out


# ------------------------------------------------------------------ instances
async def relation_of(lab: Lab, principal: Principal, inst: Instance) -> Relation | None:
    """Why ``principal`` may see ``inst`` (``Access.relation``; None: may not)."""
    if lab.accounts is None or principal.name == inst.owner:
        return "own"  # the open lab: everything is everyone's
    if principal.role == "admin":
        return "admin"
    return await anyio.to_thread.run_sync(lab.access.relation, principal, inst)


@router.get("/instances", operation_id="list_instances", tags=["instances"])
async def list_instances(lab: LabDep, principal: PrincipalDep) -> list[dict[str, Any]]:
    """Every simulated machine you may see, with its configuration and a vmstats summary.
    ``access`` says why you see it (``own``, ``admin``, ``course``: you teach its owner's
    course, ``shared`` with you, ``broadcast`` to your course: read-only but forkable);
    ``ref`` is what to type for it in a path (its name if it is yours, ``owner:name``
    where you may know the owner, else its id)."""
    out = []
    await lab.refresh_instances()  # cluster mode: other API nodes' instances too
    for inst in list(lab.instances.values()):
        relation = await relation_of(lab, principal, inst)
        if relation is None:
            continue
        view = await describe(lab, inst)
        view["ref"] = ref_of(inst, principal, owner_shown=relation in ("admin", "course"))
        view["access"] = relation
        out.append(view)
    return out


@router.post("/instances", status_code=201, operation_id="create_instance", tags=["instances"])
async def create_instance(
    body: InstanceCreate, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Boot a new machine (from a preset, a memory size or phys_avail ranges); it is yours."""
    owner = principal.name
    quotas = await quotas_of(lab, principal)
    if body.preset is not None:
        inst = await lab.create_preset(
            body.name, body.preset, _preset_overrides(body), owner, quotas
        )
    else:
        inst = await lab.create(body.name, _config_of(body), owner=owner, quotas=quotas)
    return await describe(lab, inst)


@router.get("/instances/{instance_id}", operation_id="get_instance", tags=["instances"])
async def get_instance(instance_id: InstanceId, lab: LabDep) -> dict[str, Any]:
    inst = lab.get(instance_id)
    return await describe(lab, inst)


@router.delete(
    "/instances/{instance_id}", status_code=204, operation_id="delete_instance", tags=["instances"]
)
async def delete_instance(instance_id: InstanceId, lab: LabDep) -> None:
    await lab.delete(instance_id)


@router.post("/instances/{instance_id}/reset", operation_id="reset_instance", tags=["instances"])
async def reset_instance(
    instance_id: InstanceId, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Re-boot with the same configuration and seed."""
    await charge(lab, principal, 1)
    inst = await lab.reset(instance_id)
    return await describe(lab, inst)


# ------------------------------------------------------------------ calls
@router.post(
    "/instances/{instance_id}/calls/{fn}",
    operation_id="call_function",
    tags=["calls"],
    response_model=CallResponse,
)
async def call_function(
    instance_id: InstanceId,
    fn: Annotated[str, Path(min_length=1, max_length=64, description="kernel function name")],
    body: CallRequest,
    request: Request,
    principal: PrincipalDep,
) -> Response:
    """Run one kernel function by name with named arguments."""
    # the small-call path, kept lean: the lab straight from the app, and the answer
    # written by msgspec (the fields of CallResponse, which documents it)
    lab: Lab = request.app.state.lab
    if lab.quota_cache is not None:  # token mode: one call from the caller's bucket
        await charge(lab, principal, 1)
    c = body.ctx
    ctx = Ctx(c.cpu, c.thread, c.nice, c.lowmemkill, c.systhread)
    result, outcome, seq = await lab.call(
        instance_id,
        fn,
        body.args,
        ctx,
        wait=body.wait,
        timeout_s=body.timeout_s,
        record=body.record,
    )
    record = (
        summarise(result.record, lab.settings.record_max_moves, full_record_path(instance_id, seq))
        if body.record
        else None
    )
    answer = {
        "fn": result.fn,
        "seq": seq,
        "result": result.result,
        "blocked": result.blocked,
        "completed": outcome,
        "timed_out": None,
        "record": record,
    }
    if body.wait and result.blocked is not None:
        # the wait either saw the thread finish or ended (timeout_s, the server's cap, a
        # shutdown) while it still sleeps: say which, not just "completed": null
        answer["timed_out"] = outcome is None
        if outcome is None:
            limit = min(body.timeout_s or lab.settings.max_wait_s, lab.settings.max_wait_s)
            answer["wait_note"] = (
                f"the wait ended after at most {limit:g} s without the thread being woken: "
                f"thread {result.blocked['thread']} still sleeps on "
                f"{result.blocked['channel']} (blocked.why says what ends it)"
            )
    return Response(compact.encode(answer), media_type="application/json")


#: Bodies and answers above this size are parsed and encoded in a worker thread, so that
#: a 200 000-call batch never holds the event loop (other users' calls) for long.
OFF_LOOP_BYTES = 64 * 1024


@router.post(
    "/instances/{instance_id}/calls",
    operation_id="call_batch",
    tags=["calls"],
    response_model=BatchResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}},
                compact.MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/CompactBatchRequest"}
                },
            },
        },
        "responses": {
            "200": {
                "content": {
                    compact.MEDIA_TYPE: {
                        "schema": {"$ref": "#/components/schemas/CompactBatchResponse"}
                    }
                }
            }
        },
    },
)
async def call_batch(
    instance_id: InstanceId, request: Request, lab: LabDep, principal: PrincipalDep
) -> Response:
    """Run a list of calls in order; each gets its own result or error.  A big batch runs
    in slices of at most 10 ms, between which other requests on the instance are served.

    Two formats, chosen by the body's content type (the answer comes in the same one):
    ``application/json``, one object per call (``BatchRequest``), and the compact
    ``application/vnd.pagelab.batch+json`` (``CompactBatchRequest``): a table of call
    forms (function, argument names, context) and two columns, ``fn`` (a form's index
    per call) and ``args`` (each call's values), answered in columns
    (``CompactBatchResponse``: results, seq runs, and only the refused and blocked calls
    listed).  The compact format is several times faster to read and write for large
    batches; the calls, refusals, seqs, journal and records are the same
    (``docs/batch-format.md``)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith(compact.MEDIA_TYPE):
        return await _call_batch_compact(instance_id, raw, lab, principal)
    # msgspec reads a well-formed body; pydantic reads what msgspec refuses (and says
    # what is wrong in the API's usual words), off the event loop when it is large
    fast = await compact.parse_readable(raw)
    if fast is not None:
        calls, stop_on_error, record = fast
    else:
        body = (
            await anyio.to_thread.run_sync(_parse_batch, raw)
            if len(raw) > OFF_LOOP_BYTES
            else _parse_batch(raw)
        )
        default = Ctx()  # shared: a context is only read
        calls = [
            (c.fn, c.args, Ctx(**c.ctx.model_dump()) if c.ctx else default) for c in body.calls
        ]
        stop_on_error, record = body.stop_on_error, body.record
    await _admit_batch(lab, principal, len(calls))
    results = await lab.batch(instance_id, calls, stop_on_error=stop_on_error, record=record)
    if record:
        bound = lab.settings.record_max_moves
        for item in results:
            if "record" in item:
                full = full_record_path(instance_id, item["seq"])
                item["record"] = summarise(item["record"], bound, full)
    digest = await lab.digest(lab.get(instance_id))
    errors = sum(1 for r in results if "error" in r)
    rest = {"completed": len(results) - errors, "errors": errors, "state_digest": digest}
    return Response(await compact.encode_batch(results, rest), media_type="application/json")


async def _call_batch_compact(
    instance_id: int, raw: bytes, lab: Lab, principal: Principal
) -> Response:
    """``call_batch`` in the compact format (``app.api.compact``)."""
    body = await compact.parse(raw)
    await _admit_batch(lab, principal, len(body.fn))
    cols = await lab.batch_columns(
        instance_id,
        compact.forms_of(body),
        body.fn,
        body.args if body.args is not None else [[]] * len(body.fn),
        stop_on_error=body.stop_on_error,
        record=body.record,
    )
    records: list[dict[str, Any] | None] | None = None
    if body.record:
        bound = lab.settings.record_max_moves
        records = [
            None
            if rec is None or seq is None
            else summarise(rec, bound, full_record_path(instance_id, seq))
            for rec, seq in zip(cols.records, cols.seqs, strict=True)
        ]
    digest = await lab.digest(lab.get(instance_id))
    return Response(compact.answer(body, cols, digest, records), media_type=compact.MEDIA_TYPE)


async def _admit_batch(lab: Lab, principal: Principal, n: int) -> None:
    """Refuse a batch of ``n`` calls above the server's cap or the caller's batch quota,
    and take its calls from the caller's rate bucket (the whole batch is paid for before
    any of it runs: refused, nothing ran)."""
    if n > lab.settings.max_batch:  # before building a context per call
        raise LabError("too-large", f"a batch holds at most {lab.settings.max_batch} calls")
    quotas = await quotas_of(lab, principal)
    if quotas is not None:
        if n > quotas.batch_size:
            held = lab.call_rate.bucket(quotas).capacity if quotas.calls_per_s > 0 else 0
            raise lab.refuse(
                "batch_size",
                "too-large",
                f"your quota 'batch_size' allows {quotas.batch_size} calls in one batch, not "
                f"{n} (and your call bucket, filled at your quota "
                f"'calls_per_s' of {quotas.calls_per_s:g} a second, holds {held}): split "
                "it, or ask an instructor or an admin to raise them",
            )
        await charge(lab, principal, n)


def _parse_batch(raw: bytes) -> BatchRequest:
    """The batch body, validated as FastAPI would, with the same problem document."""
    try:
        return BatchRequest.model_validate_json(raw)
    except ValidationError as e:
        errors = [{**err, "loc": ("body", *err["loc"])} for err in e.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _choices(p: Any) -> list[str]:
    """The names a parameter accepts: its own choices, the VM_ALLOC_* flags for
    allocation flags, the OBJT_* types for an object type."""
    if p.choices:
        return [n for n, _ in p.choices]
    if p.kind == "alloc_flags":
        return list(VM_ALLOC_FLAG_NAMES.values())
    if p.kind == "objtype":
        return list(ObjType.__members__)
    return []


@router.get(
    "/functions",
    operation_id="list_functions",
    tags=["meta"],
    responses={
        200: {
            "headers": {
                "Link": {
                    "description": '`</model>; rel="describedby"`: the account of the model',
                    "schema": {"type": "string"},
                }
            }
        }
    },
)
async def list_functions(response: Response) -> list[dict[str, Any]]:
    """Every callable kernel function with its arguments and the kernel function it models.

    What each one models (its kernel source file, the quirks kept on purpose, what the
    simulator does differently and what it refuses) is described at [/model](/model); the
    answer points there in its `Link` header too."""
    response.headers["Link"] = '</model>; rel="describedby"'
    out = []
    for f in FUNCTIONS:
        out.append(
            {
                "name": f.name,
                "models": f.models,
                "aliases": list(f.aliases),
                "help": f.help,
                "returns": f.returns,
                "mutates": f.mutates,
                "sleeps": f.sleeps,
                "params": [
                    {
                        "name": p.name,
                        "kind": p.kind,
                        "required": p.required,
                        "default": None if p.required else p.default,
                        "help": p.help,
                        **({"min": p.lo} if p.lo is not None else {}),
                        **({"max": p.hi} if p.hi is not None else {}),
                        **({"choices": _choices(p)} if _choices(p) else {}),
                        # older spellings still accepted, for one release (colour)
                        **({"aliases": list(p.aliases)} if p.aliases else {}),
                    }
                    for p in f.params
                ],
            }
        )
    return out


@router.get("/seams", operation_id="list_seams", tags=["meta"])
async def list_seams() -> list[dict[str, Any]]:
    """The named seams: the policy decisions a machine may take differently from the
    kernel (``policy`` when creating an instance), each with the kernel function it sits
    in, what it decides and its choices (``kernel``, the default, first)."""
    return seams_catalogue()


@router.get("/presets", operation_id="list_presets", tags=["meta"])
async def list_presets() -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "description": p.description,
            "cpus": p.config.cpus,
            "phys_avail": [list(r) for r in p.config.phys_avail],
        }
        for p in PRESETS.values()
    ]


# ------------------------------------------------------------------ state views
@router.get("/instances/{instance_id}/pages/{pfn}", operation_id="get_page", tags=["state"])
async def get_page(
    instance_id: InstanceId,
    pfn: Annotated[int, Path(ge=-(1 << 63), le=(1 << 63) - 1)],
    lab: LabDep,
) -> dict[str, Any]:
    """Every field of a page, decoded, and why it can or cannot be freed or reused now.
    A pfn the machine does not have is a ``no-such-page`` problem (404), as it is in a
    call's argument."""

    with _not_found():  # a pfn outside the machine or in a hole: no such page
        page: dict[str, Any] = await lab.view(instance_id, "page", pfn=pfn)
    return page


@router.get("/instances/{instance_id}/queues", operation_id="get_queue_counts", tags=["state"])
async def get_queue_counts(instance_id: InstanceId, lab: LabDep) -> dict[str, Any]:
    """lcnt of all 5 × 1024 queues as compact arrays (for the visualiser)."""

    queues: dict[str, Any] = await lab.view(instance_id, "queues")
    return queues


@router.get(
    "/instances/{instance_id}/queues/{queue}/{color}", operation_id="get_queue", tags=["state"]
)
async def get_queue(
    instance_id: InstanceId,
    queue: Annotated[
        str,
        Path(
            min_length=1,
            max_length=32,
            description="a queue type: PQ_FREE, free (any case) or its index (1, 1025, ...)",
        ),
    ],
    color: Annotated[int, Path(ge=0, le=1023)],
    lab: LabDep,
    offset: Annotated[int, Query(ge=0, le=1 << 31)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> dict[str, Any]:
    """A queue's header (lcnt, adds, lastq) and its pages head → tail, paged.  The queue
    type is read as a call's queue argument is (``PQ_FREE``, ``free``, ``1``); the answer
    names it ``PQ_FREE:<colour>``."""
    base = parse_queue_type(queue)  # InvalidArgument: a validation problem, as in a call
    info: dict[str, Any] = await lab.view(
        instance_id, "queue", queue=base + color, offset=offset, limit=limit
    )
    return info


@router.get("/instances/{instance_id}/vmstats", operation_id="get_vmstats", tags=["state"])
async def get_vmstats(instance_id: InstanceId, lab: LabDep) -> dict[str, Any]:
    """Global and per-CPU vmstats, and which paging predicates hold now."""
    view: dict[str, Any] = await lab.view(instance_id, "vmstats")
    view["fields"] = {
        name: {"unit": unit, "help": text} for name, (unit, text) in VMSTATS_HELP.items()
    }
    return view


@router.get("/instances/{instance_id}/objects", operation_id="list_objects", tags=["state"])
async def list_objects(instance_id: InstanceId, lab: LabDep) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = await lab.view(instance_id, "objects")
    return objects


@router.get(
    "/instances/{instance_id}/objects/{object_id}", operation_id="get_object", tags=["state"]
)
async def get_object(
    instance_id: InstanceId, object_id: Annotated[int, Path(ge=1, le=1 << 31)], lab: LabDep
) -> dict[str, Any]:
    with _not_found():
        obj: dict[str, Any] = await lab.view(instance_id, "object", object_id=object_id)
    return obj


@router.get("/instances/{instance_id}/threads", operation_id="list_threads", tags=["state"])
async def list_threads(instance_id: InstanceId, lab: LabDep) -> dict[str, Any]:
    """Threads and the wait channels they sleep on."""

    threads: dict[str, Any] = await lab.view(instance_id, "threads")
    return threads


@router.get("/instances/{instance_id}/pagemap", operation_id="get_pagemap", tags=["state"])
async def get_pagemap(
    instance_id: InstanceId,
    lab: LabDep,
    lo: Annotated[int | None, Query(ge=0, le=1 << 40, description="first pfn")] = None,
    hi: Annotated[int | None, Query(ge=1, le=1 << 40, description="pfn after the last")] = None,
    width: Annotated[int, Query(ge=1, le=4096, description="most buckets")] = 512,
) -> dict[str, Any]:
    """Every page's state (free, cache, inactive, active, hold, wired, busy, DMA reserve,
    none, unmanaged) counted in at most ``width`` buckets over pfns ``[lo, hi)``."""

    with _not_found():
        counts: dict[str, Any] = await lab.view(instance_id, "pagemap", lo=lo, hi=hi, width=width)
    return counts


@router.get("/instances/{instance_id}/dma", operation_id="get_dma", tags=["state"])
async def get_dma(instance_id: InstanceId, lab: LabDep) -> dict[str, Any]:
    """The DMA reserve's alist: free runs and bounds."""
    dma: dict[str, Any] = await lab.view(instance_id, "dma")
    return dma


@router.get("/instances/{instance_id}/pageout", operation_id="get_pageout", tags=["state"])
async def get_pageout(instance_id: InstanceId, lab: LabDep) -> dict[str, Any]:
    pageout: dict[str, Any] = await lab.view(instance_id, "pageout")
    return pageout


@router.get("/instances/{instance_id}/topology", operation_id="get_topology", tags=["state"])
async def get_topology(instance_id: InstanceId, lab: LabDep) -> dict[str, Any]:
    """CPUs by socket, core and thread; NUMA ranges with the socket and colours the
    kernel gives them (physid % sockets)."""
    topology: dict[str, Any] = await lab.view(instance_id, "topology")
    return topology


@router.get("/instances/{instance_id}/console", operation_id="get_console", tags=["state"])
async def get_console(instance_id: InstanceId, lab: LabDep) -> dict[str, Any]:
    """The kernel console: the boot messages ("DMA space used: …") and the last lines."""
    console: dict[str, Any] = await lab.view(instance_id, "console")
    return console


@router.get("/instances/{instance_id}/sysctls", operation_id="list_sysctls", tags=["sysctl"])
async def list_sysctls(instance_id: InstanceId, lab: LabDep) -> list[dict[str, Any]]:
    """Every sysctl with type, unit, description, writability and value."""
    sysctls: list[dict[str, Any]] = await lab.view(instance_id, "sysctls")
    return sysctls


@router.get("/instances/{instance_id}/sysctls/{name}", operation_id="get_sysctl", tags=["sysctl"])
async def get_sysctl(
    instance_id: InstanceId, name: Annotated[str, Path(max_length=128)], lab: LabDep
) -> dict[str, Any]:
    with _not_found():
        value = await lab.view(instance_id, "sysctl", name=name)
    return {"name": name, "value": value}


@router.put("/instances/{instance_id}/sysctls/{name}", operation_id="set_sysctl", tags=["sysctl"])
async def set_sysctl(
    instance_id: InstanceId,
    name: Annotated[str, Path(max_length=128)],
    body: SysctlWrite,
    lab: LabDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    await get_sysctl(instance_id, name, lab)  # 404 for a name that does not exist
    await charge(lab, principal, 1)
    result, _, _seq = await lab.call(
        instance_id, "sysctl", {"name": name, "value": body.value}, Ctx(), record=False
    )
    new = await lab.view(instance_id, "sysctl", name=name)
    return {"name": name, "old": result.result, "new": new}


@router.get(
    "/instances/{instance_id}/ddb/{command}",
    operation_id="ddb",
    tags=["ddb"],
    response_class=PlainTextResponse,
)
async def ddb(
    instance_id: InstanceId,
    command: Annotated[str, Path(min_length=1, max_length=128)],
    lab: LabDep,
) -> str:
    """DDB ``show page`` / ``show pageq`` in the kernel's text format.  Any other command
    (``show page 3075``: DragonFly's ``show page`` takes no page) is a ``not-found``
    problem that lists the commands DDB has and points to the page view."""
    words = " ".join(command.split())
    if words not in DDB_COMMANDS:
        inst = lab.get(instance_id)
        raise LabError(
            "not-found",
            ddb_unknown(command).replace("/instances/ID/", f"/instances/{inst.id}/"),
            commands=list(DDB_HELP),
        )
    text: str = await lab.view(instance_id, "ddb", command=words)
    return text


meta_router = APIRouter(responses=PROBLEM_RESPONSES)


@meta_router.get(
    "/problems/{kind}", operation_id="problem_type", tags=["meta"], response_class=PlainTextResponse
)
async def problem_type(kind: Annotated[str, Path(max_length=32)]) -> str:
    """What a problem type URI means."""
    if kind not in PROBLEM_TYPES:
        raise LabError("not-found", f"there is no problem type {kind!r}")
    status, title, text = PROBLEM_TYPES[kind]
    return f"{title} (HTTP {status})\n\n{text}\n"


#: Documents served so that an offline lab has them too.
DOCS_DIR = pathlib.Path(__file__).resolve().parents[2] / "docs"
STREAM_PROTOCOL_DOC = DOCS_DIR / "stream-protocol.md"
MODEL_DOC = DOCS_DIR / "model.md"


def _markdown(path: pathlib.Path, what: str) -> PlainTextResponse:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise LabError("not-found", f"the {what} document is not installed here") from None
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


@meta_router.get(
    "/protocol/stream",
    operation_id="stream_protocol",
    tags=["meta"],
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {}}}},
)
async def stream_protocol() -> PlainTextResponse:
    """The WebSocket stream's protocol (Markdown)."""
    return _markdown(STREAM_PROTOCOL_DOC, "protocol")


@meta_router.get(
    "/model",
    operation_id="model_doc",
    tags=["meta"],
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {}}}},
)
async def model_doc() -> PlainTextResponse:
    """What the simulator models of DragonFly's page layer (Markdown): every callable
    function by kernel source file, the formulas, the kernel quirks kept on purpose, the
    simplifications and simulator-only refusals, and the sources."""
    return _markdown(MODEL_DOC, "model")


__all__ = ["REGISTRY", "meta_router", "router"]
