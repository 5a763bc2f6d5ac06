"""Simulated execution context (spec §19): threads on CPUs, ``tsleep``/``wakeup`` wait
channels, simulated time (``ticks``, ``hz``) and what runs on the clock.

A kernel function that can sleep is written as a generator: it ``yield``s a ``Sleep``
(the ``tsleep`` call) and receives ``True`` when it is resumed because its timeout
expired, ``False`` when a ``wakeup`` on its channel released it.  A call whose thread
sleeps is *parked*: the thread keeps its suspended call, and the caller is told which
channel it sleeps on.  ``wakeup(channel)`` makes every thread sleeping there runnable; runnable
threads run (resume their call until it returns or sleeps again) when the current call
is done, in the order they became runnable — as on a uniprocessor kernel that switches
at the end of the system call.  ``tick`` advances ``ticks``: hardclock rolls the per-CPU
vmstats up and expired sleeps are resumed with ``timed_out``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from app.core.errors import InvalidArgument, KernelPanic, SimulatorRefusal, WouldSleep
from app.core.state import MachineState
from app.core.vm_meter import hardclock_rollup

#: ``p_flags`` bit set by the OOM killer on its victim (spec §13.5).
P_LOWMEMKILL = 0x00010000


#: Thread ids run from 0 to MAX_THREADS - 1.
MAX_THREADS = 4096


#: Most ticks one ``tick`` call may advance.
MAX_TICKS_PER_CALL = 1_000_000


@dataclass(frozen=True)
class Sleep:
    """``tsleep(channel, 0, wmesg, timo)``: ``timo`` in ticks, 0 = no timeout."""

    channel: str
    timo: int
    wmesg: str


KernelGen = Generator[Sleep, bool, Any]


class Thread:
    """A simulated kernel thread (or the kernel half of a process)."""

    __slots__ = (
        "tid",
        "name",
        "cpu",
        "nice",
        "p_flags",
        "systhread",
        "is_pagedaemon",
        "gen",
        "fn",
        "args",
        "channel",
        "wmesg",
        "deadline",
        "seq",
        "timed_out",
        "state",
        "last_fn",
        "last_result",
        "last_error",
        "completed",
    )

    def __init__(self, tid: int, cpu: int, name: str = "") -> None:
        self.tid = tid
        self.name = name or f"thread{tid}"
        self.cpu = cpu
        self.nice = 0
        self.p_flags = 0
        self.systhread = False
        self.is_pagedaemon = False
        self.gen: KernelGen | None = None
        self.fn = ""
        self.args: dict[str, Any] = {}
        self.channel = ""
        self.wmesg = ""
        self.deadline: int | None = None
        self.seq = 0
        self.timed_out = False
        self.state = "idle"  # idle | sleeping | runnable
        self.last_fn = ""
        self.last_result: Any = None
        self.last_error: str | None = None
        self.completed = 0

    def view(self) -> dict[str, Any]:
        return {
            "tid": self.tid,
            "name": self.name,
            "cpu": self.cpu,
            "nice": self.nice,
            "p_flags": self.p_flags,
            "lowmemkill": bool(self.p_flags & P_LOWMEMKILL),
            "systhread": self.systhread,
            "state": self.state,
            "call": self.fn or None,
            "args": self.args if self.fn else None,
            "channel": self.channel or None,
            "wmesg": self.wmesg or None,
            "deadline": self.deadline,
            "last_call": self.last_fn or None,
            "last_result": self.last_result,
            "last_error": self.last_error,
            "completed_calls": self.completed,
        }

    def state_tuple(self) -> tuple[Any, ...]:
        if self.state == "idle":
            # cpu/nice/flags of an idle thread are just the last call's context
            return (
                self.tid,
                self.state,
                self.completed,
                self.last_fn,
                repr(self.last_result),
                self.last_error,
            )
        return (
            self.tid,
            self.name,
            self.cpu,
            self.nice,
            self.p_flags,
            self.systhread,
            self.is_pagedaemon,
            self.state,
            self.fn,
            repr(sorted(self.args.items())),
            self.channel,
            self.deadline,
            self.seq,
            self.completed,
            repr(self.last_result),
            self.last_error,
        )


def _init_sched(vm: MachineState) -> None:
    vm.sched.threads = {}
    vm.sched.sleepq = {}
    vm.sched.runq = deque()
    vm.sched.sleep_seq = 0
    vm.curthread = get_thread(vm, 0, 0)


# ------------------------------------------------------------ threads
def get_thread(vm: MachineState, tid: int, cpu: int) -> Thread:
    """The thread ``tid`` (created on first use, on ``cpu``)."""
    th = vm.sched.threads.get(tid)
    if th is None:
        if len(vm.sched.threads) >= 4096:
            raise InvalidArgument("too many threads (limit 4096)")
        th = Thread(tid, cpu)
        vm.sched.threads[tid] = th
    return th


def _enter(vm: MachineState, th: Thread) -> None:
    """Make ``th`` the running thread (``curthread``) on its CPU."""
    vm.curthread = th
    vm.select_cpu(th.cpu)
    vm.curthread_nice = th.nice
    vm.curthread_systhread = th.systhread


def curthread_is_pagedaemon(vm: MachineState) -> bool:
    return vm.curthread.is_pagedaemon


def curthread_lowmemkill(vm: MachineState) -> bool:
    return bool(vm.curthread.p_flags & P_LOWMEMKILL)


# ------------------------------------------------------------ why a thread is asleep
def sleep_remedy(vm: MachineState, th: Thread, other_thread: bool = True) -> str:
    """What ends ``th``'s sleep, in words for an error message: a wakeup on its
    channel, its timeout only when it has one (``tick``, with the tick it expires at),
    and (``other_thread``) running the call on another thread meanwhile.  Reads only."""
    if th.state == "runnable":
        return "it runs when the current call ends" + (
            "; or run the call on another thread" if other_thread else ""
        )
    if th.channel.startswith("page:"):
        # a bare wakeup only makes a busy waiter look again and sleep again
        pfn = th.channel.partition(":")[2]
        ways = [
            f"release page {pfn} from another thread (vm_page_wakeup m={pfn} for a hard "
            "busy, vm_page_io_finish for a soft busy), which wakes it"
        ]
    else:
        ways = [f"wake it (wakeup on {th.channel})"]
    if th.deadline is not None:
        left = th.deadline - vm.sched.ticks
        ways.append(
            f"let it time out (tick: its sleep ends at tick {th.deadline}, "
            f"{max(left, 0)} tick(s) from now)"
        )
    if other_thread:
        ways.append("run the call on another thread")
    text = "; ".join(ways[:-1]) + "; or " + ways[-1] if len(ways) > 1 else ways[0]
    if th.deadline is None:
        text += "; it has no timeout (timo 0), so ticks alone never end it"
    return text


# ------------------------------------------------------------ running calls
def start_call(
    vm: MachineState, th: Thread, fn: str, args: dict[str, Any], gen: KernelGen
) -> tuple[bool, Any]:
    """Run a sleeping-capable call on ``th`` until it returns (``(True, value)``) or
    sleeps (``(False, Sleep)``: the thread is parked)."""
    if th.state != "idle":
        raise InvalidArgument(
            f"thread {th.tid} is {th.state} in {th.fn} on {th.channel}; {sleep_remedy(vm, th)}"
        )
    th.fn = fn
    th.args = args
    th.gen = gen
    return _step(vm, th, None)


def _step(vm: MachineState, th: Thread, send: bool | None) -> tuple[bool, Any]:
    gen = th.gen
    assert gen is not None
    _enter(vm, th)
    try:
        sleep = gen.send(send) if send is not None else next(gen)
    except StopIteration as done:
        if send is None:
            # returned without sleeping: like a call of a function that cannot sleep,
            # it leaves no trace on the thread (its history lists calls that slept)
            th.gen = None
            th.fn = ""
            th.args = {}
            th.state = "idle"
        else:
            _finish(vm, th, done.value, None)
        return True, done.value
    except (KernelPanic, SimulatorRefusal, WouldSleep) as e:
        if send is None:  # refused at the start: the thread records nothing
            th.gen = None
            th.fn = ""
            th.args = {}
            th.state = "idle"
        else:
            _finish(vm, th, None, str(e))
        raise
    th.state = "sleeping"
    th.channel = sleep.channel
    th.wmesg = sleep.wmesg
    th.deadline = vm.sched.ticks + sleep.timo if sleep.timo > 0 else None
    vm.sched.sleep_seq += 1
    th.seq = vm.sched.sleep_seq
    vm.sched.sleepq.setdefault(sleep.channel, []).append(th)
    vm.event("sleep", tid=th.tid, channel=sleep.channel, wmesg=sleep.wmesg, timo=sleep.timo)
    return False, sleep


def _finish(vm: MachineState, th: Thread, value: Any, error: str | None) -> None:
    th.last_fn = th.fn
    th.last_result = value
    th.last_error = error
    th.completed += 1
    th.gen = None
    th.fn = ""
    th.args = {}
    th.state = "idle"
    th.channel = ""
    th.wmesg = ""
    th.deadline = None


def wakeup(vm: MachineState, channel: str) -> None:
    """``wakeup(chan)``: every thread sleeping on ``channel`` becomes runnable."""
    sleepers = vm.sched.sleepq.pop(channel, None)
    if vm.trace is not None:
        ev: dict[str, Any] = {"event": "wakeup", "channel": channel}
        if sleepers:
            ev["woke"] = [t.tid for t in sleepers]
        vm.trace.events.append(ev)
    if not sleepers:
        return
    for th in sleepers:
        th.state = "runnable"
        th.timed_out = False
        vm.sched.runq.append(th)


def _unsleep(vm: MachineState, th: Thread) -> None:
    lst = vm.sched.sleepq.get(th.channel)
    if lst is not None:
        lst.remove(th)
        if not lst:
            del vm.sched.sleepq[th.channel]


def run_runnable(vm: MachineState) -> list[dict[str, Any]]:
    """Resume runnable threads until none is left; returns what each resumed call did."""
    done: list[dict[str, Any]] = []
    saved = vm.curthread
    guard = 0
    while vm.sched.runq:
        guard += 1
        if guard > 100_000:
            raise WouldSleep("scheduler", "runq", "threads keep waking each other forever")
        th = vm.sched.runq.popleft()
        if th.state != "runnable":
            continue
        timed_out = th.timed_out
        fn = th.fn
        try:
            finished, value = _step(vm, th, timed_out)
        except (KernelPanic, SimulatorRefusal, WouldSleep) as e:
            done.append({"tid": th.tid, "fn": fn, "error": str(e)})
            continue
        if finished:
            done.append({"tid": th.tid, "fn": fn, "result": value, "timed_out": timed_out})
            vm.event("resumed", tid=th.tid, fn=fn, result=value, timed_out=timed_out)
        else:
            done.append({"tid": th.tid, "fn": fn, "blocked": value.channel})
    _enter(vm, saved)
    return done


# ------------------------------------------------------------ time
def tick(vm: MachineState, n: int = 1) -> list[dict[str, Any]]:
    """Advance simulated time by ``n`` ticks.  Each tick: hardclock rolls every CPU's
    vmstats adjustments up and refreshes its snapshot [I], then sleeps whose timeout
    expired are resumed (``timed_out``)."""
    if not 0 <= n <= MAX_TICKS_PER_CALL:
        raise InvalidArgument(f"tick takes 0 .. {MAX_TICKS_PER_CALL} ticks at a time")
    resumed: list[dict[str, Any]] = []
    for _ in range(n):
        vm.sched.ticks += 1
        hardclock_rollup(vm)
        _expire_sleeps(vm)
        _clock_hooks(vm)
        resumed.extend(run_runnable(vm))
        if not vm.sched.sleepq and not vm.sched.runq and _clock_idle(vm):
            # nothing can happen on later ticks but the (idempotent) rollup
            vm.sched.ticks += n - 1 - _
            break
    return resumed


def _expire_sleeps(vm: MachineState) -> None:
    expired = [
        th
        for lst in vm.sched.sleepq.values()
        for th in lst
        if th.deadline is not None and th.deadline <= vm.sched.ticks
    ]
    expired.sort(key=lambda t: t.seq)
    for th in expired:
        _unsleep(vm, th)
        th.state = "runnable"
        th.timed_out = True
        vm.sched.runq.append(th)


def _clock_hooks(vm: MachineState) -> None:
    """Per-tick work of other subsystems (the pageout daemon's timer)."""


def _clock_idle(vm: MachineState) -> bool:
    """True when no clock hook needs future ticks."""
    return True
