"""``Machine``: one simulated DragonFly machine — boot, the call registry's entry point
(``call``), and read-only views of its state.

    >>> from app.core.config import MachineConfig
    >>> m = Machine.boot(MachineConfig.from_size("64MiB", seed=1))
    >>> r = m.call("vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"})
    >>> m.call("vm_page_free", {"m": r.result}).result is None
    True
"""

from __future__ import annotations

from typing import Any

from app.core import invariants
from app.core.boot import boot_machine
from app.core.callrecord import counter_snapshot, make_record
from app.core.config import MachineConfig
from app.core.convert import CALL_PLANS, _convert_args
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
from app.core.registry import REGISTRY, KernelFunction
from app.core.state import MachineState, Trace


class CallResult:
    """What one call returned and what it changed.  ``blocked`` is set when the call
    put its thread to sleep (thread, channel, wmesg, timo); ``result`` is then None and
    the call completes later, when a wakeup or timeout resumes the thread.  ``record`` is
    empty for a call made with ``record=False``."""

    __slots__ = ("fn", "result", "record", "blocked")

    def __init__(
        self,
        fn: str,
        result: Any,
        record: dict[str, Any] | None = None,
        blocked: dict[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        self.result = result
        self.record: dict[str, Any] = {} if record is None else record
        self.blocked = blocked

    def __repr__(self) -> str:
        return f"CallResult(fn={self.fn!r}, result={self.result!r}, blocked={self.blocked!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CallResult):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]

    def as_dict(self) -> dict[str, Any]:
        return {
            "fn": self.fn,
            "result": self.result,
            "record": self.record,
            "blocked": self.blocked,
        }


class Machine(MachineState):
    """One simulated machine.  Build it with ``Machine.boot(config)``."""

    __slots__ = ()  # every field is MachineState's: a write to any other name fails

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
        call woke run afterwards (``record["resumed"]``).

        The common case (every argument named once, plain values, the CPU's own thread,
        a function that cannot sleep) takes the quick plan (``convert.CALL_PLANS``) and one
        reusable thread object per CPU; the rest takes the full path.  Both run the same
        checks and the same kernel code."""
        plan = CALL_PLANS.get(fn)
        if plan is None:
            raise InvalidArgument(
                f"there is no kernel function named {fn!r} here{did_you_mean(str(fn), REGISTRY)}"
            )
        spec, quick, nargs, simple = plan
        if args is None:
            args = {}
        conv: Any = None
        if type(args) is dict and len(args) == nargs:
            try:
                conv = quick(self, args)
            except KeyError:
                conv = None  # a name missing or misspelt: the full conversion explains it
        if (
            simple
            and thread is None
            and not (nice or systhread or lowmemkill)
            and type(cpu) is int
            and 0 <= cpu < self.ncpus
        ):
            if conv is None:
                conv = _convert_args(self, spec, args)
            sched = self.sched
            threads = sched.threads
            th = threads.get(cpu) if threads else None
            if th is None:
                # the CPU's own thread, transient (never in ``threads``): one object per CPU
                # serves every such call, as a fresh one would (the core writes no field of
                # curthread, and this path runs it with nice 0, no systhread, no
                # P_LOWMEMKILL)
                idle = sched.idle_threads
                if idle is None:
                    idle = sched.idle_threads = {}
                th = idle.get(cpu)
                if th is None:
                    th = idle[cpu] = Thread(cpu, cpu)
            elif th.state != "idle":
                raise InvalidArgument(
                    f"thread {cpu} is {th.state} in {th.fn} (on {th.channel}); "
                    + sleep_remedy(self, th)
                )
            else:
                th.cpu = cpu
                th.nice = 0
                th.systhread = False
                th.p_flags &= ~P_LOWMEMKILL
            # _enter, inline
            self.curthread = th
            c = self.cpus[cpu]
            self.cpu = c
            self.gd = c.vmstats
            self.adj = c.adj
            self.curthread_nice = 0
            self.curthread_systhread = False
            if not record:
                # by arity: the compiled core then calls without building an argument tuple
                impl = spec.impl
                n = len(conv)
                if n == 1:
                    value = impl(self, conv[0])
                elif n == 3:
                    value = impl(self, conv[0], conv[1], conv[2])
                else:
                    value = impl(self, *conv)
                if sched.runq:
                    run_runnable(self)
                return CallResult(spec.name, value)
            trace = Trace()
            self.trace = trace
            before = counter_snapshot(self)
            try:
                value = spec.impl(self, *conv)
                resumed = run_runnable(self) if sched.runq else None
            finally:
                self.trace = None
            rec = make_record(self, trace, before)
            if resumed:
                rec["resumed"] = resumed
            return CallResult(spec.name, value, rec)
        return self._call_full(spec, args, conv, cpu, thread, nice, systhread, lowmemkill, record)

    def _call_full(
        self,
        spec: KernelFunction,
        args: dict[str, Any],
        conv: Any,
        cpu: Any,
        thread: Any,
        nice: Any,
        systhread: bool,
        lowmemkill: bool,
        record: bool,
    ) -> CallResult:
        """``call`` for the rest: another thread, nice, a systhread, P_LOWMEMKILL, a
        simulator verb (``tick``), or a function that may sleep."""
        if type(cpu) is not int or not 0 <= cpu < self.ncpus:
            raise InvalidArgument(
                f"cpu {cpu!r} does not exist: this machine has CPUs 0..{self.ncpus - 1}"
            )
        if type(nice) is not int or not -20 <= nice <= 20:
            raise InvalidArgument("nice must be an integer from -20 to 20")
        tid = cpu if thread is None else thread
        if type(tid) is not int or not 0 <= tid < MAX_THREADS:
            raise InvalidArgument(f"thread must be an integer from 0 to {MAX_THREADS - 1}")
        if conv is None:
            conv = _convert_args(self, spec, args)
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
        before = counter_snapshot(self) if record else None
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
                    done, value = start_call(self, th, spec.name, dict(args), impl(self, *conv))
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
        rec = make_record(self, trace, before)
        if resumed:
            rec["resumed"] = resumed
        return CallResult(spec.name, result, rec, blocked=blocked)

    def tick_call(self, n: int) -> CallResult:
        """The ``tick`` verb with a record."""
        return self.call("tick", {"n": n})
