"""``Machine``: one simulated DragonFly machine — boot, the call registry's entry point
(``call``), and read-only views of its state.

    >>> from app.core.config import MachineConfig
    >>> m = Machine.boot(MachineConfig.from_size("64MiB", seed=1))
    >>> r = m.call("vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"})
    >>> m.call("vm_page_free", {"m": r.result}).result is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.core import invariants
from app.core.boot import boot_machine
from app.core.config import MachineConfig
from app.core.constants import (
    CNT_NAMES,
    PQ_COUNT,
)
from app.core.convert import _convert_args
from app.core.errors import InvalidArgument, did_you_mean
from app.core.kern_synch import (
    MAX_THREADS,
    P_LOWMEMKILL,
    Thread,
    _enter,
    run_runnable,
    sleep_remedy,
    start_call,
)
from app.core.registry import REGISTRY, queue_name
from app.core.state import MachineState, Trace
from app.core.vmstats import METER_FIELDS

_QUEUE_NAMES = tuple(queue_name(q) for q in range(PQ_COUNT))


def _delta(old: list[int], new: list[int]) -> dict[str, int]:
    return {CNT_NAMES[k]: new[k] - old[k] for k in range(5) if new[k] != old[k]}


@dataclass
class CallResult:
    """What one call returned and what it changed.  ``blocked`` is set when the call
    put its thread to sleep (thread, channel, wmesg, timo); ``result`` is then None and
    the call completes later, when a wakeup or timeout resumes the thread."""

    fn: str
    result: Any
    record: dict[str, Any] = field(default_factory=dict)
    blocked: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "fn": self.fn,
            "result": self.result,
            "record": self.record,
            "blocked": self.blocked,
        }


class Machine(MachineState):
    """One simulated machine.  Build it with ``Machine.boot(config)``."""

    def check_invariants(self) -> None:
        """Raise ``InvariantError`` unless the whole machine is consistent
        (``invariants.check_invariants``)."""
        invariants.check_invariants(self)

    def state_digest(self) -> str:
        """A hash of all state: equal digests mean equal machines
        (``invariants.state_digest``)."""
        return invariants.state_digest(self)

    @classmethod
    def boot(cls, config: MachineConfig) -> Machine:
        """Boot a machine: ``vm_page_startup`` (+ NUMA organisation); with boot stage
        ``finished`` also ``vm_page_startup_finish`` and the pageout daemon's threshold
        initialisation."""
        config.validate()
        m = cls()  # no __init__: the state is built below (mypyc needs a plain construction)
        boot_machine(m, config)
        return m

    def sleep_remedy(self, th: Thread, other_thread: bool = True) -> str:
        """What ends thread ``th``'s sleep, in words (``kern_synch.sleep_remedy``): a
        wakeup, its timeout only if it has one, another thread meanwhile."""
        return sleep_remedy(self, th, other_thread)

    # ================================================================= calls
    def call(
        self,
        fn: str,
        args: dict[str, Any] | None = None,
        *,
        cpu: int = 0,
        thread: int | None = None,
        nice: int = 0,
        systhread: bool = False,
        lowmemkill: bool = False,
        record: bool = True,
    ) -> CallResult:
        """Run kernel function ``fn`` with named ``args`` as thread ``thread`` (default:
        the CPU's own thread, ``thread == cpu``) on ``cpu`` with ``nice`` (and
        ``P_LOWMEMKILL`` when ``lowmemkill``).  All arguments are validated first; a
        KASSERT is raised as ``KernelPanic`` before any state changes (a guard of the
        simulator's own, where the kernel would not panic, as ``SimulatorRefusal``).  A call that
        sleeps parks its thread and returns ``blocked`` (the channel); threads that this
        call woke run afterwards (``record["resumed"]``)."""
        spec = REGISTRY.get(fn)
        if spec is None:
            raise InvalidArgument(
                f"there is no kernel function named {fn!r} here{did_you_mean(str(fn), REGISTRY)}"
            )
        if (
            not record
            and thread is None
            and not nice
            and not systhread
            and not lowmemkill
            and spec.on_thread
            and not spec.sleeps
            and type(cpu) is int
            and 0 <= cpu < self.ncpus
        ):
            # The common case (a plain call on the CPU's own thread, no record): the same
            # steps as below with the checks that cannot fail here left out.
            conv = _convert_args(self, spec, args or {})
            th = self.sched.threads.get(cpu)
            if th is None:
                # the CPU's own thread, transient (never in ``threads``): one object per CPU
                # serves every such call, as a fresh one would (the core writes no field of
                # curthread; the four below are set on every call)
                idle = self.sched.idle_threads
                if idle is None:
                    idle = self.sched.idle_threads = {}
                th = idle.get(cpu)
                if th is None:
                    th = idle[cpu] = Thread(cpu, cpu)
            elif th.state != "idle":
                raise InvalidArgument(
                    f"thread {cpu} is {th.state} in {th.fn} (on {th.channel}); "
                    + sleep_remedy(self, th)
                )
            th.cpu = cpu
            th.nice = 0
            th.systhread = False
            th.p_flags &= ~P_LOWMEMKILL
            _enter(self, th)
            self.trace = None
            value = spec.impl(self, *conv)
            if self.sched.runq:
                run_runnable(self)
            return CallResult(spec.name, value)
        if type(cpu) is not int or not 0 <= cpu < self.ncpus:
            raise InvalidArgument(
                f"cpu {cpu!r} does not exist: this machine has CPUs 0..{self.ncpus - 1}"
            )
        if type(nice) is not int or not -20 <= nice <= 20:
            raise InvalidArgument("nice must be an integer from -20 to 20")
        tid = cpu if thread is None else thread
        if type(tid) is not int or not 0 <= tid < MAX_THREADS:
            raise InvalidArgument(f"thread must be an integer from 0 to {MAX_THREADS - 1}")
        conv = _convert_args(self, spec, args or {})
        th = self.sched.threads.get(tid)
        if not spec.on_thread:
            th = Thread(tid, cpu)  # a simulator verb: runs outside any parked thread
        elif th is None:
            th = Thread(tid, cpu)  # transient until it sleeps
        elif th.state != "idle":
            raise InvalidArgument(
                f"thread {tid} is {th.state} in {th.fn} (on {th.channel}); "
                + sleep_remedy(self, th)
            )
        th.cpu = cpu
        th.nice = nice
        th.systhread = bool(systhread)
        th.p_flags = (th.p_flags | P_LOWMEMKILL) if lowmemkill else (th.p_flags & ~P_LOWMEMKILL)
        _enter(self, th)
        impl = spec.impl
        trace = Trace() if record else None
        before = self._counter_snapshot() if record else None
        self.trace = trace
        blocked: dict[str, Any] | None = None
        result: Any = None
        try:
            if spec.sleeps:
                if th.tid not in self.sched.threads:
                    self.sched.threads[th.tid] = th
                    created = True
                else:
                    created = False
                try:
                    done, value = start_call(
                        self, th, spec.name, dict(args or {}), impl(self, *conv)
                    )
                except BaseException:
                    if created:
                        del self.sched.threads[th.tid]
                    raise
                if done:
                    result = value
                    if created:
                        del self.sched.threads[th.tid]  # never slept: leaves no trace
                else:
                    blocked = {
                        "thread": th.tid,
                        "channel": value.channel,
                        "wmesg": value.wmesg,
                        "timo": value.timo,
                    }
            else:
                result = impl(self, *conv)
            resumed = run_runnable(self) if self.sched.runq else []
            if self.sched.tick_resumed:
                resumed = self.sched.tick_resumed + resumed
                self.sched.tick_resumed = []
        finally:
            self.trace = None
        if trace is None or before is None:
            return CallResult(spec.name, result, blocked=blocked)
        rec = self._make_record(trace, before)
        if resumed:
            rec["resumed"] = resumed
        return CallResult(spec.name, result, rec, blocked=blocked)

    def tick_call(self, n: int) -> CallResult:
        """The ``tick`` verb with a record."""
        return self.call("tick", {"n": n})

    # ---- records ---------------------------------------------------------------------
    def _counter_snapshot(self) -> tuple[list[int], list[int], list[int], dict[str, int]]:
        cpu = self.cpu
        return (self.vmstats.cnt[:], cpu.adj.cnt[:], cpu.vmstats.cnt[:], cpu.meter.copy())

    def _make_record(
        self, trace: Trace, before: tuple[list[int], list[int], list[int], dict[str, int]]
    ) -> dict[str, Any]:
        queue = self.pg.queue
        first = self.first_page
        moves = [
            {"pfn": first + i, "from": _QUEUE_NAMES[q0], "to": _QUEUE_NAMES[queue[i]]}
            for i, q0 in trace.first_queue.items()
        ]
        g0, a0, s0, m0 = before
        cpu = self.cpu
        counters: dict[str, dict[str, int]] = {}
        new = self.vmstats.cnt
        if new != g0:
            counters["vmstats"] = _delta(g0, new)
        new = cpu.adj.cnt
        if new != a0:
            counters[f"cpu{cpu.cpuid}.gd_vmstats_adj"] = _delta(a0, new)
        new = cpu.vmstats.cnt
        if new != s0:
            counters[f"cpu{cpu.cpuid}.gd_vmstats"] = _delta(s0, new)
        meter = cpu.meter
        if meter != m0:
            counters[f"cpu{cpu.cpuid}.gd_cnt"] = {
                k: meter[k] - m0[k] for k in METER_FIELDS if meter[k] != m0[k]
            }
        return {"cpu": cpu.cpuid, "moves": moves, "counters": counters, "events": trace.events}
