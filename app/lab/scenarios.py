"""Course scenarios: a starting point (a configuration and the calls that set it up) that
every member of a course can copy into an instance of their own, all with one digest.

A scenario is kept as a trace (the JSON Lines of ``GET …/trace``) with the digest its
replay gives and its number of calls, in the ``scenarios`` table (migration 0004).  It is
checked when it is made: ``check_replay`` boots the configuration and runs every call,
refusing the scenario at the first call the kernel refuses (a copy must be the same
machine as the instructor meant, not one with a call silently skipped).

The store is synchronous, like ``Accounts``: the API calls it off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from app.core.config import MachineConfig
from app.core.invariants import state_digest
from app.core.machine import Machine

from .accounts import check_name, scenarios
from .hosts.shard import CORE_ERRORS, run_entry
from .store import Entry


@dataclass(frozen=True, slots=True)
class Scenario:
    id: int
    course: str
    name: str
    description: str
    created_by: str
    created: float
    #: the state digest of every copy
    digest: str
    #: calls replayed on boot
    calls: int
    #: the trace itself (JSON Lines); empty when listed without it
    trace: str = ""


class ReplayRefused(Exception):
    """A scenario's call the kernel refused: which one (1-based), and why."""

    def __init__(self, index: int, fn: str, reason: str) -> None:
        super().__init__(f"call {index} ({fn}) was refused: {reason}")
        self.index = index
        self.fn = fn
        self.reason = reason


def check_replay(config: MachineConfig, entries: list[Entry]) -> str:
    """Boot ``config``, run ``entries`` in order, and answer the state digest; the first
    call the kernel refuses raises ``ReplayRefused`` (CPU-bound: run it in a thread)."""
    m = Machine.boot(config)
    for index, e in enumerate(entries, start=1):
        try:
            run_entry(m, e)
        except CORE_ERRORS as err:
            raise ReplayRefused(index, e.fn, str(err)) from None
    return state_digest(m)


class Scenarios:
    """The ``scenarios`` table."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def create(
        self,
        course: str,
        name: str,
        description: str,
        created_by: str,
        digest: str,
        calls: int,
        trace: str,
    ) -> Scenario:
        """A new scenario of ``course``; a name the course already uses is refused."""
        check_name(name)
        created = self.clock()
        row: dict[str, Any] = {
            "course": course,
            "name": name,
            "description": description,
            "created_by": created_by,
            "created": created,
            "digest": digest,
            "calls": calls,
            "trace": trace,
        }
        try:
            with self.engine.begin() as conn:
                taken = conn.execute(
                    select(scenarios.c.id).where(
                        scenarios.c.course == course, scenarios.c.name == name
                    )
                ).first()
                if taken is not None:
                    raise ValueError(
                        f"name: a scenario {name!r} already exists in course {course!r}"
                    )
                sid = conn.execute(insert(scenarios).values(**row).returning(scenarios.c.id))
                new_id = int(sid.scalar_one())
        except IntegrityError as e:  # made meanwhile by someone else
            raise ValueError(
                f"name: a scenario {name!r} already exists in course {course!r}"
            ) from e
        return Scenario(new_id, **row)

    def list(self, course: str | None = None) -> list[Scenario]:
        """Scenarios (without their traces), of one course or all, by course and name."""
        cols = [c for c in scenarios.c if c.name != "trace"]
        q = select(*cols).order_by(scenarios.c.course, scenarios.c.name)
        if course is not None:
            q = q.where(scenarios.c.course == course)
        with self.engine.connect() as conn:
            return [_scenario(r, "") for r in conn.execute(q)]

    def get(self, scenario_id: int) -> Scenario | None:
        """One scenario with its trace."""
        with self.engine.connect() as conn:
            row = conn.execute(select(scenarios).where(scenarios.c.id == scenario_id)).first()
        return None if row is None else _scenario(row, row.trace)

    def delete(self, scenario_id: int) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(delete(scenarios).where(scenarios.c.id == scenario_id))
            return int(done.rowcount) == 1


def _scenario(row: Any, trace: str) -> Scenario:
    return Scenario(
        int(row.id),
        row.course,
        row.name,
        row.description,
        row.created_by,
        float(row.created),
        row.digest,
        int(row.calls),
        trace,
    )
