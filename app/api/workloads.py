"""Built-in workloads: start, watch, pause, resume, step, change rate and stop them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from app.lab.service import Lab, LabError
from app.lab.workload_runner import WorkloadError, WorkloadRun
from app.lab.workloads import WORKLOADS

from .auth import PrincipalDep, quotas_of
from .deps import InstanceId, LabDep
from .errors import PROBLEM_RESPONSES

router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES, tags=["workloads"])
WorkloadId = Annotated[int, Path(ge=1, le=1 << 31, description="workload id")]

#: Fastest rate a workload can be asked for in calls per second (above it, ask for "max").
MAX_RATE = 1_000_000
MAX_STEPS = 1 << 40
MAX_DURATION_S = 7 * 24 * 3600

Rate = Annotated[
    StrictInt | StrictFloat | Literal["max"],
    Field(description='calls per second (greater than 0), or "max" for as fast as it goes'),
]


def _check_rate(rate: int | float | str) -> None:
    if rate != "max" and not (isinstance(rate, int | float) and 0 < rate <= MAX_RATE):
        raise ValueError(f'rate must be from 0 (exclusive) to {MAX_RATE} calls/s, or "max"')


class WorkloadStart(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "churn", "rate": "max", "steps": 100000},
                {"kind": "pressure", "params": {}, "seed": 7, "rate": 2000},
            ]
        },
    )
    kind: str = Field(min_length=1, max_length=64, description="GET /api/v1/workload-kinds")
    params: dict[str, Any] = Field(default_factory=dict)
    seed: StrictInt = Field(default=0, ge=0, le=(1 << 64) - 1)
    rate: Rate = "max"
    steps: StrictInt | None = Field(default=None, ge=1, le=MAX_STEPS, description="calls to make")
    duration_s: StrictInt | StrictFloat | None = Field(
        default=None, gt=0, le=MAX_DURATION_S, description="seconds of running time"
    )
    paused: StrictBool = Field(default=False, description="start paused (then step or resume)")

    @model_validator(mode="after")
    def valid_rate(self) -> WorkloadStart:
        _check_rate(self.rate)
        return self


class WorkloadPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: Rate

    @model_validator(mode="after")
    def valid_rate(self) -> WorkloadPatch:
        _check_rate(self.rate)
        return self


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: StrictInt = Field(default=1, ge=1, le=1_000_000, description="calls to make")


def _run(lab: Lab, instance_id: int, workload_id: int) -> WorkloadRun:
    inst = lab.get(instance_id)
    run = inst.workloads.get(workload_id)
    if run is None:
        raise LabError(
            "not-found",
            f"instance {instance_id} has no workload {workload_id}; "
            f"GET /api/v1/instances/{instance_id}/workloads lists them",
        )
    return run


def _control(action: Any) -> None:
    try:
        action()
    except WorkloadError as e:
        raise LabError(e.kind, e.message) from None


@router.get("/workload-kinds", operation_id="list_workload_kinds")
async def list_workload_kinds() -> list[dict[str, Any]]:
    """Every built-in workload with its parameters (type, default, bounds, help)."""
    return [{"kind": k.name, **k.describe()} for k in WORKLOADS.values()]


@router.post("/instances/{instance_id}/workloads", status_code=201, operation_id="start_workload")
async def start_workload(
    instance_id: InstanceId, body: WorkloadStart, lab: LabDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Start a workload: ordinary kernel calls made in slices of at most 10 ms.  Its
    calls count against your quota ``workloads`` (how many run at once), not against
    ``calls_per_s``: the runner paces them."""
    inst = lab.get(instance_id)
    await lab.use(inst)  # a parked machine comes back first
    quotas = await quotas_of(lab, principal)
    try:
        run = await lab.workloads.start(
            inst,
            body.kind,
            body.params,
            body.seed,
            None if body.rate == "max" else float(body.rate),
            body.steps,
            None if body.duration_s is None else float(body.duration_s),
            paused=body.paused,
            owner=principal.name,
            max_for_owner=None if quotas is None else quotas.workloads,
        )
    except WorkloadError as e:
        raise LabError(e.kind, e.message) from None
    return run.view()


@router.get("/instances/{instance_id}/workloads", operation_id="list_workloads")
async def list_workloads(instance_id: InstanceId, lab: LabDep) -> list[dict[str, Any]]:
    return [run.view() for run in lab.get(instance_id).workloads.values()]


@router.get("/instances/{instance_id}/workloads/{workload_id}", operation_id="get_workload")
async def get_workload(
    instance_id: InstanceId, workload_id: WorkloadId, lab: LabDep
) -> dict[str, Any]:
    """Progress, calls done, calls/s, state."""
    return _run(lab, instance_id, workload_id).view()


@router.patch("/instances/{instance_id}/workloads/{workload_id}", operation_id="set_workload_rate")
async def set_workload_rate(
    instance_id: InstanceId, workload_id: WorkloadId, body: WorkloadPatch, lab: LabDep
) -> dict[str, Any]:
    run = _run(lab, instance_id, workload_id)
    lab.workloads.set_rate(run, None if body.rate == "max" else float(body.rate))
    return run.view()


@router.post(
    "/instances/{instance_id}/workloads/{workload_id}/pause", operation_id="pause_workload"
)
async def pause_workload(
    instance_id: InstanceId, workload_id: WorkloadId, lab: LabDep
) -> dict[str, Any]:
    run = _run(lab, instance_id, workload_id)
    _control(lambda: lab.workloads.pause(run))
    return run.view()


@router.post(
    "/instances/{instance_id}/workloads/{workload_id}/resume", operation_id="resume_workload"
)
async def resume_workload(
    instance_id: InstanceId, workload_id: WorkloadId, lab: LabDep
) -> dict[str, Any]:
    run = _run(lab, instance_id, workload_id)
    _control(lambda: lab.workloads.resume(run))
    return run.view()


@router.post("/instances/{instance_id}/workloads/{workload_id}/step", operation_id="step_workload")
async def step_workload(
    instance_id: InstanceId, workload_id: WorkloadId, body: StepRequest, lab: LabDep
) -> dict[str, Any]:
    """Make ``n`` more calls of a paused workload (it stays paused)."""
    run = _run(lab, instance_id, workload_id)
    _control(lambda: lab.workloads.step(run, body.n))
    return run.view()


@router.post("/instances/{instance_id}/workloads/{workload_id}/stop", operation_id="stop_workload")
async def stop_workload(
    instance_id: InstanceId, workload_id: WorkloadId, lab: LabDep
) -> dict[str, Any]:
    run = _run(lab, instance_id, workload_id)
    await lab.workloads.stop_settled(run)  # the answer's counts are final
    return run.view()
