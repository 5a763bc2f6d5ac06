"""Probes for an orchestrator or a load balancer: ``GET /healthz`` (alive) and
``GET /readyz`` (ready to serve).  Neither needs a token.

* ``/healthz`` answers as long as the event loop does: no database, no lock, nothing that
  could make a busy but healthy server look dead (the container's ``HEALTHCHECK``,
  ``python -m app.healthcheck``, asks it).
* ``/readyz`` runs ``READY_CHECKS`` in order and answers 200 with each one's detail when
  all pass, else a 503 problem (``/problems/not-ready``) naming the ones that failed.  A
  load balancer sends no traffic to a node that is not ready.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import anyio
import anyio.to_thread
from fastapi import APIRouter
from pydantic import BaseModel

from app.lab.service import Lab

from .deps import LabDep
from .errors import PROBLEM_RESPONSES, problem

#: How long the database may take to answer the readiness query.
DATABASE_TIMEOUT_S = 2.0

router = APIRouter(tags=["meta"], responses=PROBLEM_RESPONSES)


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check's outcome: ``detail`` says what was found, in plain words."""

    name: str
    ok: bool
    detail: str


ReadyCheck = Callable[[Lab], Awaitable[Check]]

#: At most one readiness query in flight per lab: a database that hangs ties up one worker
#: thread, not one more per probe (the next probes time out waiting for it instead).
_ping_slots: WeakKeyDictionary[Lab, anyio.CapacityLimiter] = WeakKeyDictionary()


async def database(lab: Lab) -> Check:
    """The lab's store answers a trivial query within ``DATABASE_TIMEOUT_S``."""
    store = lab.store
    if store is None:
        return Check("database", True, "none configured (PAGELAB_DATABASE_URL is empty)")
    backend = store.engine.dialect.name
    try:
        with anyio.fail_after(DATABASE_TIMEOUT_S):
            slot = _ping_slots.setdefault(lab, anyio.CapacityLimiter(1))
            await anyio.to_thread.run_sync(store.ping, abandon_on_cancel=True, limiter=slot)
    except TimeoutError:
        return Check("database", False, f"{backend} did not answer in {DATABASE_TIMEOUT_S:g} s")
    except Exception as e:  # any driver's error: the node cannot persist a call
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return Check("database", False, f"{backend} unreachable: {reason}")
    return Check("database", True, f"{backend} answers")


async def restored(lab: Lab) -> Check:
    """The instances in the store were brought back at start-up (the lifespan's
    ``restore_all`` finished)."""
    if lab.restored is None:
        return Check("restored", False, "the instances in the store are still being restored")
    return Check("restored", True, f"{lab.restored} instance(s) restored at start-up")


def placement(lab: Lab) -> str:
    """Where this server runs its machines (``engine`` in the answer):
    ``PAGELAB_PLACEMENT``, as ``in-process``, ``workers`` or ``ray``."""
    p = lab.settings.placement
    return "in-process" if p == "inprocess" else p


async def engine(lab: Lab) -> Check:
    """The compute engine that runs the machines is connected.  In-process it is this
    very process, so it always is; worker processes and Ray actors answer for their
    shards (``InstanceHost.load``): an engine that cannot is not ready."""
    where = placement(lab)
    if where == "in-process":
        return Check("engine", True, "in-process: the machines run in this process")
    try:
        shards = await anyio.to_thread.run_sync(lab.host.load)
    except Exception as e:  # a host that cannot say how it is, is not there
        return Check("engine", False, f"{where}: its hosts do not answer ({e})")
    return Check("engine", True, f"{where}: {len(shards)} host(s) answering")


#: What ``/readyz`` asks, in order.  Another placement extends or replaces entries here.
READY_CHECKS: list[ReadyCheck] = [database, restored, engine]


class CheckResult(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    status: str = "ready"
    engine: str
    checks: dict[str, CheckResult]


@router.get("/healthz", operation_id="health")
async def health() -> dict[str, str]:
    """Liveness: the server's event loop answers.  Needs nothing else (no database)."""
    return {"status": "alive"}


@router.get(
    "/readyz",
    operation_id="ready",
    response_model=Readiness,
)
async def ready(lab: LabDep) -> Any:
    """Readiness: the database answers, the stored instances are restored and the compute
    engine is connected.  200 with every check's detail, else a 503 problem naming the
    failing checks (its ``checks`` member has every one's detail too)."""
    results = [await check(lab) for check in READY_CHECKS]
    checks = {c.name: CheckResult(ok=c.ok, detail=c.detail) for c in results}
    failing = [c for c in results if not c.ok]
    if failing:
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in failing)
        return problem(
            "not-ready",
            f"this server is not ready ({reasons}); it answers 200 once every check passes",
            "/readyz",
            checks={name: r.model_dump() for name, r in checks.items()},
            engine=placement(lab),
        )
    return Readiness(engine=placement(lab), checks=checks)
