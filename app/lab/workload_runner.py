"""Running built-in workloads on instances: in slices that hold the instance's lock for
at most ``SLICE_S``, at a chosen rate or flat out, with pause, resume, step and stop.

A workload lives next to its instance's machine, in the instance host (it reads the
machine to choose its next call); the runner here schedules its slices.  Its calls take
the same path as API calls (``Shard.one``, then ``Lab.apply``): each is refused or
recorded exactly like one, gets a seq, and shows in the events stream with source
``workload:<id>``.  The calls a workload makes depend only on its kind, parameters, seed
and the machine's state, never on how its calls were sliced, so the same seed and
parameters with no other calls in between give the same digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from .hosts.base import Ctx, HostLost, UnknownKey
from .workloads import WORKLOADS

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    from .service import Instance, Lab

#: Finished or stopped workloads kept per instance for their status.
KEEP_ENDED = 16
RUNNING_STATES = frozenset({"running", "paused"})


@dataclass(eq=False)
class WorkloadRun:
    """One workload on one instance and what it has done."""

    id: int
    instance_id: int
    generation: int
    kind: str
    params: dict[str, Any]
    seed: int
    rate: float | None  # calls per second; None: as fast as it goes
    steps: int | None
    duration_s: float | None
    state: str = "running"
    #: who started it (counted against their ``workloads`` quota while it runs or waits)
    owner: str = ""
    reason: str | None = None
    calls: int = 0
    errors: int = 0
    last_error: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    step_budget: int = 0
    active_s: float = 0.0
    created: float = field(default_factory=time.time)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    #: the workload's own figures (phase, counters) and calls by function, as of its
    #: last slice (the workload itself lives in the instance host)
    stats: dict[str, Any] = field(default_factory=dict)
    by_fn: dict[str, int] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"workload:{self.id}"

    def calls_per_s(self) -> float:
        """Calls a second over the last second or so of running."""
        if len(self.samples) < 2:
            return 0.0
        t_end, c_end = self.samples[-1]
        for t, c in self.samples:
            if t_end - t <= 1.5:
                if t_end > t:
                    return (c_end - c) / (t_end - t)
                break
        return 0.0

    def progress(self) -> float | None:
        if self.state == "finished":
            return 1.0
        if self.steps is not None:
            return min(1.0, self.calls / self.steps)
        if self.duration_s is not None:
            return min(1.0, self.active_s / self.duration_s)
        return None

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "instance": self.instance_id,
            "kind": self.kind,
            "params": self.params,
            "seed": self.seed,
            "rate": "max" if self.rate is None else self.rate,
            "steps": self.steps,
            "duration_s": self.duration_s,
            "state": self.state,
            "reason": self.reason,
            "calls": self.calls,
            "errors": self.errors,
            "calls_per_s": round(self.calls_per_s(), 1),
            "progress": self.progress(),
            "last_error": self.last_error,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "created": self.created,
            "active_s": round(self.active_s, 3),
            "workload": dict(self.stats),
            "by_fn": dict(self.by_fn),
        }

    def cancel(self, reason: str = "the server is shutting down") -> None:
        if self.state in RUNNING_STATES:
            self.state = "stopped"
            self.reason = reason
        if self.task is not None:
            self.task.cancel()


class WorkloadError(Exception):
    """A workload request the lab refuses: ``kind`` is the problem kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class WorkloadRunner:
    """The workloads of one lab."""

    def __init__(self, lab: Lab, max_per_instance: int) -> None:
        self.lab = lab
        self.max_per_instance = max_per_instance
        self._next_id = 1

    async def start(
        self,
        inst: Instance,
        kind: str,
        params: dict[str, Any] | None,
        seed: int,
        rate: float | None,
        steps: int | None,
        duration_s: float | None,
        paused: bool = False,
        owner: str = "",
        max_for_owner: int | None = None,
    ) -> WorkloadRun:
        """Start a workload on ``inst``.  ``max_for_owner`` (token mode: the ``workloads``
        quota) bounds the workloads ``owner`` has running or paused on all instances."""
        spec = WORKLOADS.get(kind)
        if spec is None:
            raise WorkloadError(
                "validation", f"there is no workload {kind!r}; workloads: {', '.join(WORKLOADS)}"
            )
        running = sum(1 for r in inst.workloads.values() if r.state in RUNNING_STATES)
        if running >= self.max_per_instance:
            self.lab.metrics.refused("max_workloads")
            raise WorkloadError(
                "quota",
                f"an instance runs at most {self.max_per_instance} workloads at once; stop one "
                "first (POST …/workloads/{id}/stop)",
            )
        if max_for_owner is not None and self.running_of(owner) >= max_for_owner:
            self.lab.metrics.refused("workloads")
            raise WorkloadError(
                "forbidden",
                f"your quota 'workloads' allows {max_for_owner} running (or paused) at once "
                f"and you have {self.running_of(owner)}: stop one "
                "(POST …/workloads/{id}/stop), or ask an instructor or an admin to raise it",
            )
        wid = self._next_id
        self._next_id += 1
        lab = self.lab
        async with lab.hold(inst):
            try:
                made = await lab.ask(
                    inst, lambda k: lab.host.workload_start(k, wid, kind, params, seed)
                )
            except ValueError as e:
                raise WorkloadError("validation", str(e)) from None
            generation = inst.generation
        run = WorkloadRun(
            wid,
            inst.id,
            generation,
            kind,
            made,
            seed,
            rate,
            steps,
            duration_s,
            state="paused" if paused else "running",
            owner=owner,
        )
        run.stats = {"phase": "start", "finished": False}
        ended = [r for r in inst.workloads.values() if r.state not in RUNNING_STATES]
        for old in ended[: max(0, len(ended) - KEEP_ENDED + 1)]:
            del inst.workloads[old.id]
        inst.workloads[run.id] = run
        # it outlives the request that started it: a context of its own (no request id)
        run.task = asyncio.get_running_loop().create_task(
            self._drive(run), context=contextvars.Context()
        )
        return run

    def running_of(self, owner: str) -> int:
        """Workloads ``owner`` started that are running or paused, on every instance."""
        return sum(
            1
            for inst in self.lab.instances.values()
            for run in inst.workloads.values()
            if run.owner == owner and run.state in RUNNING_STATES
        )

    # ------------------------------------------------------------------ controls
    @staticmethod
    def pause(run: WorkloadRun) -> None:
        if run.state == "running":
            run.state = "paused"
        elif run.state != "paused":
            raise WorkloadError("conflict", f"workload {run.id} has {run.state}; start a new one")

    @staticmethod
    def resume(run: WorkloadRun) -> None:
        if run.state == "paused":
            run.state = "running"
            run.step_budget = 0
            run.wake.set()
        elif run.state != "running":
            raise WorkloadError("conflict", f"workload {run.id} has {run.state}; start a new one")

    @staticmethod
    def step(run: WorkloadRun, n: int) -> None:
        if run.state != "paused":
            raise WorkloadError(
                "conflict",
                f"workload {run.id} is {run.state}; step runs a paused workload "
                "(POST …/pause first)",
            )
        run.step_budget += n
        run.wake.set()

    @staticmethod
    def stop(run: WorkloadRun) -> None:
        if run.state in RUNNING_STATES:
            run.state = "stopped"
            run.reason = "stopped by request"
            run.wake.set()

    async def stop_settled(self, run: WorkloadRun) -> None:
        """``stop``, then wait for a slice already running (in a worker thread, under the
        instance's lock) to end, so that the run's status is final when this returns."""
        self.stop(run)
        inst = self.lab.instances.get(run.instance_id)
        if inst is not None:
            async with inst.lock:
                pass

    def pause_all(self, reason: str) -> int:
        """Pause every running workload (the server is stopping: ``Lab.drain``); a slice
        running now finishes first.  Returns how many were paused."""
        paused = 0
        for inst in self.lab.instances.values():
            for run in inst.workloads.values():
                if run.state == "running":
                    run.state = "paused"
                    run.reason = reason
                    paused += 1
        return paused

    def stop_tasks(self) -> None:
        """End every workload's task, leaving its state as it is (``Lab.shutdown``, once
        no slice runs: paused workloads stay paused in their status)."""
        for inst in self.lab.instances.values():
            for run in inst.workloads.values():
                if run.task is not None:
                    run.task.cancel()

    @staticmethod
    def set_rate(run: WorkloadRun, rate: float | None) -> None:
        run.rate = rate
        run.wake.set()

    # ------------------------------------------------------------------ the loop
    async def _drive(self, run: WorkloadRun) -> None:
        loop = asyncio.get_running_loop()
        tokens = 0.0
        last = loop.time()
        try:
            while run.state in RUNNING_STATES:
                if run.state == "paused" and run.step_budget == 0:
                    run.wake.clear()
                    await run.wake.wait()
                    last = loop.time()
                    continue
                limit = 1 << 30
                if run.state == "paused":
                    limit = run.step_budget
                elif run.rate is not None:
                    now = loop.time()
                    # at most a tenth of a second's worth at once: no bursts after a stall
                    tokens = min(tokens + (now - last) * run.rate, max(run.rate / 10, 1.0))
                    last = now
                    if tokens < 1.0:
                        run.wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(run.wake.wait(), (1.0 - tokens) / run.rate)
                        continue
                    limit = int(tokens)
                if run.steps is not None:
                    limit = min(limit, run.steps - run.calls)
                ran, done = await self._slice(run, limit)
                tokens = max(0.0, tokens - ran)
                if run.state == "paused":
                    run.step_budget = max(0, run.step_budget - ran)
                if run.state not in RUNNING_STATES:
                    break
                if (
                    done
                    or (run.steps is not None and run.calls >= run.steps)
                    or run.duration_s is not None
                    and run.active_s >= run.duration_s
                ):
                    run.state = "finished"
                # let the publisher and other requests take the lock between slices
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            if run.state == "running":  # a paused one stays paused (the server stopped)
                run.state = "stopped"
                run.reason = run.reason or "cancelled"
            raise
        except Exception as e:  # a workload bug: say so in its status, keep the server up
            run.state = "failed"
            run.reason = f"{type(e).__name__}: {e}"
        finally:
            inst = self.lab.instances.get(run.instance_id)
            if inst is not None and inst.generation == run.generation:
                with contextlib.suppress(Exception):  # gone with its host: nothing to drop
                    await self.lab.host.workload_drop(inst.key, run.id)

    async def _slice(self, run: WorkloadRun, limit: int) -> tuple[int, bool]:
        """Run up to ``limit`` calls (and at most ``WORKLOAD_SLICE_S`` seconds) under the
        lock.  Returns (calls made, whether the workload finished)."""
        lab = self.lab
        inst = lab.instances.get(run.instance_id)
        if inst is None:
            run.state = "stopped"
            run.reason = "the instance was deleted"
            return 0, False
        host = lab.host
        async with lab.hold(inst):
            if run.state not in RUNNING_STATES:  # stopped while this slice waited its turn
                return 0, False
            if inst.generation != run.generation:
                run.state = "stopped"
                run.reason = "the instance was reset"
                return 0, False
            watched = lab.stream.records_wanted(inst.id)
            waiting = tuple(inst.waiters)
            try:
                reply = await lab.ask(
                    inst,
                    lambda k: host.workload_slice(k, run.id, limit, watched, inst.seq, waiting),
                )
            except (HostLost, UnknownKey) as e:
                # its machine came back from the journal, but the workload's own state
                # (what it holds, its phase) was in the host that died
                run.state = "stopped"
                run.reason = "its instance host restarted; start the workload again"
                log.warning("workload lost with its host", workload=run.id, reason=str(e))
                return 0, False
            run.active_s += reply.active_s
            run.stats = reply.stats
            run.by_fn = reply.by_fn
            source = run.source
            for (fn, args, ctx_in), outcome in zip(reply.calls, reply.outcomes, strict=True):
                seq, r = lab.apply(inst, fn, args, Ctx.of(ctx_in), source, outcome, watched)
                run.calls += 1
                if seq is not None:
                    if run.first_seq is None:
                        run.first_seq = seq
                    run.last_seq = seq
                if isinstance(r, Exception):
                    run.errors += 1
                    detail = getattr(r, "message", None) or str(r)
                    run.last_error = f"{fn}: {detail}"
            ran = len(reply.calls)
            inst.calls += ran
            lab.flush(inst, wait=False)  # nobody waits: group-committed in order
            lab.resolve_waiters(inst, reply.resolved)
            await lab.snapshot_due(inst)
        run.samples.append((time.monotonic(), run.calls))
        return ran, reply.done


__all__ = ["RUNNING_STATES", "WorkloadError", "WorkloadRun", "WorkloadRunner"]
