"""``Machine``: one simulated DragonFly machine — boot, the call registry's entry point
(``call``), and read-only views of its state.

    >>> from app.core.config import MachineConfig
    >>> m = Machine.boot(MachineConfig.from_size("64MiB", seed=1))
    >>> r = m.call("vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"})
    >>> m.call("vm_page_free", {"m": r.result}).result is None
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .config import MachineConfig
from .constants import (
    CNT_NAMES,
    PAGE_SIZE,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_SWAPINPROG,
    PBUSY_WANTED,
    PQ_COUNT,
    PQ_L2_MASK,
    VM_ALLOC_FLAG_NAMES,
)
from .ddb import ddb_command
from .errors import InvalidArgument
from .invariants import InvariantOps
from .objects import ObjType, VmObject
from .registry import REGISTRY, KernelFunction, Param, flag_names, queue_name
from .sched import MAX_THREADS, P_LOWMEMKILL, KernelGen, Thread
from .state import Trace
from .sysctl import sysctl_get, sysctl_set
from .vmstats import ALL_FIELDS, METER_FIELDS, predicate_table

_U64_MAX = (1 << 64) - 1
_QUEUE_NAMES = tuple(queue_name(q) for q in range(PQ_COUNT))


def _delta(old: list[int], new: list[int]) -> dict[str, int]:
    return {CNT_NAMES[k]: new[k] - old[k] for k in range(5) if new[k] != old[k]}


_KNOWN = {name: frozenset(p.name for p in spec.params) for name, spec in REGISTRY.items()}
#: older argument spellings, per function: alias -> the argument's name (``colour``)
_ALIASES = {
    name: {a: p.name for p in spec.params for a in p.aliases}
    for name, spec in REGISTRY.items()
    if any(p.aliases for p in spec.params)
}
_FLAG_BY_NAME = {name: bit for bit, name in VM_ALLOC_FLAG_NAMES.items()}
_FLAG_BY_NAME.update(
    {name.removeprefix("VM_ALLOC_"): bit for bit, name in VM_ALLOC_FLAG_NAMES.items()}
)


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


def parse_alloc_flags(value: Any) -> int:
    """VM_ALLOC_* flags from an int, ``"VM_ALLOC_NORMAL|VM_ALLOC_ZERO"``, ``"NORMAL|ZERO"``
    or a list of names; ``VM_ALLOC_CPU(n)`` is accepted too."""
    if isinstance(value, bool):
        raise InvalidArgument("allocation flags must be an integer or flag names, not a boolean")
    if isinstance(value, int):
        if not 0 <= value < 1 << 32:
            raise InvalidArgument(f"allocation flags {value} are out of range (0 .. 2^32-1)")
        return value
    names = value.split("|") if isinstance(value, str) else value
    if not isinstance(names, list | tuple):
        raise InvalidArgument("allocation flags must be an integer, a string or a list of names")
    flags = 0
    for raw in names:
        if not isinstance(raw, str):
            raise InvalidArgument("each allocation flag must be a name like 'VM_ALLOC_NORMAL'")
        name = raw.strip().upper()
        if name.startswith(("VM_ALLOC_CPU(", "CPU(")) and name.endswith(")"):
            inner = name[name.index("(") + 1 : -1]
            if not inner.isdigit():
                raise InvalidArgument(f"cannot read the CPU number in {raw!r}")
            flags |= (int(inner) << 16) | _FLAG_BY_NAME["VM_ALLOC_CPU_SPEC"]
            continue
        if name not in _FLAG_BY_NAME:
            known = ", ".join(VM_ALLOC_FLAG_NAMES.values())
            raise InvalidArgument(f"unknown allocation flag {raw!r}; known flags: {known}")
        flags |= _FLAG_BY_NAME[name]
    return flags


#: Per-area state initialisers, called at boot in this order when the area defines one.
AREA_INITS = ("_init_pmap", "_init_pagestate", "_init_hash", "_init_contig", "_init_pageout")

_CHANNEL_RE = re.compile(
    r"^(page:\d{1,15}|vm_pages_needed|v_free_count|vm_pageout_pages_needed|vm_pagedaemon_uptime)$"
)


def parse_named_flags(value: Any, names: dict[str, int], what: str) -> int:
    """Flags from an int, ``"A|B"`` or a list of names (from ``names``)."""
    if type(value) is int:
        if not 0 <= value < 1 << 32:
            raise InvalidArgument(f"{what} must be from 0 to 2^32-1")
        return value
    parts = value.split("|") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple) or not parts:
        raise InvalidArgument(f"{what} must be an integer or flag names joined by '|'")
    out = 0
    for raw in parts:
        key = raw.strip().upper() if isinstance(raw, str) else None
        if key not in names:
            raise InvalidArgument(f"unknown flag {raw!r} for {what}; known: {', '.join(names)}")
        out |= names[key]
    return out


class Machine(InvariantOps):
    """One simulated machine.  Build it with ``Machine.boot(config)``."""

    @classmethod
    def boot(cls, config: MachineConfig) -> Machine:
        """Boot a machine: ``vm_page_startup`` (+ NUMA organisation); with boot stage
        ``finished`` also ``vm_page_startup_finish`` and the pageout daemon's threshold
        initialisation."""
        config.validate()
        m = cls()  # no __init__: the state is built below (mypyc needs a plain construction)
        m._init_empty_state(config)
        m.vm_page_startup()
        for area in AREA_INITS:  # state of the areas above the allocator
            init = getattr(m, area, None)
            if init is not None:
                init()
        m.vm_numa_organize_all()
        if config.boot_stage == "finished":
            m.vm_page_startup_finish()
            m.vm_pageout_init()
            m.boot_stage = "finished"
            if config.pagedaemon:
                m.start_pagedaemon()
        return m

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
            raise InvalidArgument(f"there is no kernel function named {fn!r} here")
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
            conv = self._convert_args(spec, args or {})
            th = self.threads.get(cpu)
            if th is None:
                th = Thread(cpu, cpu)
            elif th.state != "idle":
                raise InvalidArgument(
                    f"thread {cpu} is {th.state} in {th.fn} (on {th.channel}); wake it, let it "
                    "time out (tick), or run the call on another thread"
                )
            th.cpu = cpu
            th.nice = 0
            th.systhread = False
            if th.p_flags & P_LOWMEMKILL:
                th.p_flags &= ~P_LOWMEMKILL
            self._enter(th)
            self.trace = None
            value = getattr(self, spec.method)(**conv)
            if self.runq:
                self.run_runnable()
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
        conv = self._convert_args(spec, args or {})
        th = self.threads.get(tid)
        if not spec.on_thread:
            th = Thread(tid, cpu)  # a simulator verb: runs outside any parked thread
        elif th is None:
            th = Thread(tid, cpu)  # transient until it sleeps
        elif th.state != "idle":
            raise InvalidArgument(
                f"thread {tid} is {th.state} in {th.fn} (on {th.channel}); wake it, let it "
                "time out (tick), or run the call on another thread"
            )
        th.cpu = cpu
        th.nice = nice
        th.systhread = bool(systhread)
        th.p_flags = (th.p_flags | P_LOWMEMKILL) if lowmemkill else (th.p_flags & ~P_LOWMEMKILL)
        self._enter(th)
        method = getattr(self, spec.method)
        trace = Trace() if record else None
        before = self._counter_snapshot() if record else None
        self.trace = trace
        blocked: dict[str, Any] | None = None
        result: Any = None
        try:
            if spec.sleeps:
                if th.tid not in self.threads:
                    self.threads[th.tid] = th
                    created = True
                else:
                    created = False
                try:
                    done, value = self.start_call(th, spec.name, dict(args or {}), method(**conv))
                except BaseException:
                    if created:
                        del self.threads[th.tid]
                    raise
                if done:
                    result = value
                    if created:
                        del self.threads[th.tid]  # never slept: leaves no trace
                else:
                    blocked = {
                        "thread": th.tid,
                        "channel": value.channel,
                        "wmesg": value.wmesg,
                        "timo": value.timo,
                    }
            else:
                result = method(**conv)
            resumed = self.run_runnable() if self.runq else []
            if self._tick_resumed:
                resumed = self._tick_resumed + resumed
                self._tick_resumed = []
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

    def _convert_args(self, spec: KernelFunction, args: dict[str, Any]) -> dict[str, Any]:
        if type(args) is not dict and not isinstance(args, dict):
            raise InvalidArgument("arguments must be an object of name: value pairs")
        known = _KNOWN[spec.name]
        aliases = _ALIASES.get(spec.name)
        if aliases is not None and not aliases.keys().isdisjoint(args):
            args = self._unalias(spec, args, aliases)
        if not args.keys() <= known:
            unknown = set(args) - known
            want = ", ".join(sorted(known)) or "none"
            raise InvalidArgument(
                f"{spec.name} has no argument {', '.join(sorted(unknown))}; its arguments: {want}"
            )
        out: dict[str, Any] = {}
        for p in spec.params:
            name = p.name
            if name in args:
                value = args[name]
            elif p.required:
                raise InvalidArgument(f"{spec.name} needs the argument {name!r} ({p.help})")
            else:
                value = p.default
            kind = p.kind
            if kind == "page" and type(value) is int:
                i = value - self.first_page
                if len(self.managed) == 1 and self.managed[0][0] <= i < self.managed[0][1]:
                    out[name] = i
                    continue
            elif (
                kind == "pindex"
                and type(value) is int
                and 0 <= value <= _U64_MAX
                or kind == "alloc_flags"
                and type(value) is int
                and 0 <= value < 1 << 32
            ):
                out[name] = value
                continue
            out[name] = self._convert(p, value)
        return out

    @staticmethod
    def _unalias(
        spec: KernelFunction, args: dict[str, Any], aliases: dict[str, str]
    ) -> dict[str, Any]:
        """``args`` with older spellings (``colour``) under the argument's name (``color``);
        both at once is refused."""
        out: dict[str, Any] = {}
        for key, value in args.items():
            name = aliases.get(key, key)
            if name in out:
                raise InvalidArgument(
                    f"{spec.name}: give {name!r} once ({key!r} is its older spelling)"
                )
            out[name] = value
        return out

    def _convert(self, p: Param, value: Any) -> Any:
        kind = p.kind
        if kind == "page":
            return self.page_index(value, p.name)
        if kind in ("object", "object_or_null"):
            if value is None and kind == "object_or_null":
                return None
            return self.object_by_id(value, p.name)
        if kind in ("pindex", "size_pages"):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64_MAX:
                raise InvalidArgument(
                    f"{p.name} must be an integer from 0 to 2^64-1, got {value!r}"
                )
            return value
        if kind == "alloc_flags":
            return parse_alloc_flags(value)
        if kind == "bool":
            if not isinstance(value, bool) and value not in (0, 1):
                raise InvalidArgument(f"{p.name} must be true or false, got {value!r}")
            return bool(value)
        if kind == "ticks":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 31:
                raise InvalidArgument(f"{p.name} must be a tick count from 0 to 2^31-1")
            return value
        if kind == "cpu":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < self.ncpus:
                raise InvalidArgument(f"{p.name} must be a CPU id from 0 to {self.ncpus - 1}")
            return value
        if kind == "objtype":
            if isinstance(value, str) and value.upper() in ObjType.__members__:
                return ObjType[value.upper()]
            names = ", ".join(ObjType.__members__)
            raise InvalidArgument(f"{p.name} must be one of {names}, got {value!r}")
        if kind == "color":
            if value is None:
                return None
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value <= PQ_L2_MASK
            ):
                raise InvalidArgument(f"{p.name} must be a colour from 0 to 1023 or null")
            return value
        if kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidArgument(f"{p.name} must be an integer")
            if (p.lo is not None and value < p.lo) or (p.hi is not None and value > p.hi):
                raise InvalidArgument(f"{p.name} must be from {p.lo} to {p.hi}, got {value}")
            return value
        if kind == "choice":
            choice_map = dict(p.choices)
            if isinstance(value, str) and value.upper() in choice_map:
                return choice_map[value.upper()]
            if type(value) is int and value in choice_map.values():
                return value
            raise InvalidArgument(f"{p.name} must be one of {', '.join(choice_map)}, got {value!r}")
        if kind == "flags":
            return parse_named_flags(value, dict(p.choices), p.name)
        if kind == "sysctl_name":
            if not isinstance(value, str) or not 0 < len(value) <= 128:
                raise InvalidArgument(f"{p.name} must be a sysctl name such as 'vm.v_free_min'")
            return value
        if kind == "int_or_null":
            if value is None:
                return None
            if type(value) is not int:
                raise InvalidArgument(f"{p.name} must be an integer or null")
            return value
        if kind == "choice_str":
            options = [n for n, _ in p.choices]
            if not isinstance(value, str) or value.strip().lower() not in options:
                raise InvalidArgument(
                    f"{p.name} must be one of {', '.join(options)}; got {value!r}"
                )
            return value.strip().lower()
        if kind == "channel":
            if not isinstance(value, str) or not _CHANNEL_RE.match(value):
                raise InvalidArgument(
                    f"{p.name} must be a wait channel such as 'page:<pfn>', 'vm_pages_needed', "
                    f"'v_free_count', 'vm_pageout_pages_needed' or 'vm_pagedaemon_uptime'; got {value!r}"
                )
            return value
        if kind == "wmesg":
            if not isinstance(value, str) or not 0 < len(value) <= 16 or not value.isprintable():
                raise InvalidArgument(
                    f"{p.name} must be a short printable string (1-16 characters)"
                )
            return value
        raise InvalidArgument(f"argument kind {kind} is not supported")

    def page_index(self, pfn: Any, what: str = "m") -> int:
        """Validate a pfn given by a user and return its page-array index."""
        if not isinstance(pfn, int) or isinstance(pfn, bool):
            raise InvalidArgument(f"{what} must be a page frame number (an integer), got {pfn!r}")
        i = pfn - self.first_page
        if not 0 <= i < self.page_range:
            raise InvalidArgument(
                f"pfn {pfn} ({pfn:#x}) is outside this machine's pages "
                f"({self.first_page:#x} .. {self.first_page + self.page_range - 1:#x})"
            )
        for a, z in self.managed:
            if a <= i < z:
                return i
        raise InvalidArgument(
            f"pfn {pfn:#x} is not a page the VM manages (a hole in phys_avail, the page "
            "array, the minidump bitmap, or beyond npages)"
        )

    def object_by_id(self, oid: Any, what: str = "object") -> VmObject:
        if not isinstance(oid, int) or isinstance(oid, bool):
            raise InvalidArgument(f"{what} must be an object id (an integer), got {oid!r}")
        obj = self.objects.get(oid)
        if obj is None:
            raise InvalidArgument(f"there is no object {oid}; create one with vm_object_allocate")
        return obj

    def _pfn_or_none(self, i: int) -> int | None:
        return None if i < 0 else self.first_page + i

    # ---- the implementations behind the registry -----------------------------------
    def _call_object_allocate(
        self, type: ObjType, size: int, pg_color: int | None, addr: int | None
    ) -> int:
        return self.vm_object_allocate(type, size, pg_color, addr)

    def _call_alloc(self, object: VmObject | None, pindex: int, page_req: int) -> int | None:
        return self._pfn_or_none(self.vm_page_alloc(object, pindex, page_req))

    def _page_result(self, gen: KernelGen) -> KernelGen:
        """Adapt a sleeping call that returns a page index to return its pfn (or None)."""
        i = yield from gen
        return self._pfn_or_none(i)

    def _call_grab(self, object: VmObject, pindex: int, flags: int) -> KernelGen:
        return self._page_result(self.vm_page_grab(object, pindex, flags))

    def _call_alloczwq(self, pindex: int, flags: int) -> KernelGen:
        return self._page_result(self.vm_page_alloczwq(pindex, flags))

    def _call_freezwq(self, m: int) -> KernelGen:
        return self.vm_page_freezwq(m)

    def _call_free(self, m: int) -> None:
        self.vm_page_free_toq(m)

    def _call_unqueue(self, m: int) -> None:
        self.vm_page_unqueue(m)

    def _call_unqueue_nowakeup(self, m: int) -> None:
        self.vm_page_unqueue_nowakeup(m)

    def _call_activate(self, m: int) -> None:
        self.vm_page_activate(m)

    def _call_soft_activate(self, m: int) -> None:
        self.vm_page_soft_activate(m)

    def _call_deactivate(self, m: int) -> None:
        self.vm_page_deactivate(m)

    def _call_busy_try(self, m: int, also_m_busy: bool) -> bool:
        return self.vm_page_busy_try(m, also_m_busy)

    def _call_wakeup(self, m: int) -> None:
        self.vm_page_wakeup(m)

    def _call_wire(self, m: int) -> None:
        self.vm_page_wire(m)

    def _call_unwire(self, m: int, activate: bool) -> None:
        if not self.pg.busy[m] & PBUSY_LOCKED:
            self._check_locked(m, "vm_page_unwire")
        self.vm_page_unwire(m, activate)

    def _call_insert(self, m: int, object: VmObject, pindex: int) -> bool:
        return self.vm_page_insert(m, object, pindex)

    def _call_remove(self, m: int) -> None:
        self.vm_page_remove(m)

    def _call_lookup(self, object: VmObject, pindex: int) -> int | None:
        return self._pfn_or_none(self.vm_page_lookup(object, pindex))

    def _call_vm_wait(self, timo: int) -> KernelGen:
        return self.vm_wait(timo)

    def _call_vm_wait_pfault(self) -> KernelGen:
        return self.vm_wait_pfault()

    def _call_vm_wait_nominal(self) -> KernelGen:
        return self.vm_wait_nominal()

    def _call_sysctl(self, name: str, value: int | None) -> int:
        if value is None:
            return sysctl_get(self, name)
        old, _new = sysctl_set(self, name, value)
        return old

    def _call_ddb(self, command: str) -> str:
        return ddb_command(self, command)

    _tick_resumed: list[dict[str, Any]] = []

    def _call_tick(self, n: int) -> int:
        self._tick_resumed = self.tick(n)
        return self.ticks

    def _call_wakeup_channel(self, channel: str) -> int:
        n = len(self.sleepq.get(channel, ()))
        self.wakeup(channel)
        return n

    def _call_busy_wait(self, m: int, also_m_busy: bool, msg: str) -> KernelGen:
        return self.vm_page_busy_wait(m, also_m_busy, msg)

    def _call_sleep_busy(self, m: int, also_m_busy: bool, msg: str) -> KernelGen:
        return self.vm_page_sleep_busy(m, also_m_busy, msg)

    def _call_io_start(self, m: int) -> None:
        self.vm_page_io_start(m)

    def _call_io_finish(self, m: int) -> None:
        self.vm_page_io_finish(m)

    def _call_sbusy_try(self, m: int) -> int:
        return self.vm_page_sbusy_try(m)

    def _call_sbusy_hold(self, m: int) -> None:
        self.vm_page_sbusy_hold(m)

    def _call_sbusy_drop(self, m: int) -> None:
        self.vm_page_sbusy_drop(m)

    def _call_flash(self, m: int) -> None:
        self.vm_page_flash(m)

    def _call_flag_set(self, m: int, bits: int) -> None:
        self.vm_page_flag_set(m, bits)

    def _call_flag_clear(self, m: int, bits: int) -> None:
        self.vm_page_flag_clear(m, bits)

    def _call_test_nominal(self) -> bool:
        return self.vm_test_nominal()

    def _call_pagedaemon_wakeup(self) -> None:
        self.pagedaemon_wakeup()

    def _call_rollup(self) -> None:
        self.vmstats_rollup()

    def _call_pg_color(self, cpuid: int, object: VmObject | None, pindex: int) -> int:
        return self.vm_get_pg_color(cpuid, object, pindex)

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

    # ================================================================= views
    def page_info(self, pfn: int) -> dict[str, Any]:
        """Every field of one page, decoded."""
        i = self.page_index(pfn, "pfn")
        pg = self.pg
        busy = pg.busy[i]
        q = pg.queue[i]
        oid = pg.obj[i]
        return {
            "pfn": pfn,
            "phys_addr": pfn * PAGE_SIZE,
            "queue": queue_name(q),
            "queue_index": q,
            "pc": pg.pc[i],
            "flags": pg.flags[i],
            "flag_names": flag_names(pg.flags[i]),
            "busy_count": busy,
            "busy": {
                "locked": bool(busy & PBUSY_LOCKED),
                "wanted": bool(busy & PBUSY_WANTED),
                "swapinprog": bool(busy & PBUSY_SWAPINPROG),
                "soft_count": busy & PBUSY_MASK,
            },
            "wire_count": pg.wire[i],
            "hold_count": pg.hold[i],
            "object": oid or None,
            "pindex": pg.pindex[i],
            "act_count": pg.act[i],
            "valid": pg.valid[i],
            "dirty": pg.dirty[i],
            "pat_mode": pg.pat[i],
            "waiters": self.waiters(f"page:{pfn}"),
            "mappings": self.pmap_view(i),
        }

    def threads_view(self) -> list[dict[str, Any]]:
        """Every known thread: what it runs, where it sleeps (channel, wmesg, deadline)."""
        return [self.threads[tid].view() for tid in sorted(self.threads)]

    def waiters(self, channel: str) -> list[int]:
        """Thread ids sleeping on ``channel``, in the order they went to sleep."""
        return [th.tid for th in self.sleepq.get(channel, [])]

    def queue_info(self, queue: int, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        pages: list[int] = []
        nxt = self.pg.next
        i = self.q_head[queue]
        pos = 0
        while i >= 0 and len(pages) < limit:
            if pos >= offset:
                pages.append(self.first_page + i)
            pos += 1
            i = nxt[i]
        return {
            "queue": queue_name(queue),
            "lcnt": self.q_lcnt[queue],
            "adds": self.q_adds[queue],
            "lastq": self.q_lastq[queue],
            "pages": pages,
        }

    def vmstats_view(self) -> dict[str, Any]:
        return {
            "global": self.vmstats.as_dict(),
            "cpus": [
                {
                    "cpu": cpu.cpuid,
                    "gd_vmstats": {n: cpu.vmstats.get(n) for n in ALL_FIELDS},
                    "gd_vmstats_adj": {n: cpu.adj.cnt[k] for k, n in enumerate(CNT_NAMES)},
                    "gd_cnt": dict(cpu.meter),
                }
                for cpu in self.cpus
            ],
            "predicates": predicate_table(self.cpus[0].vmstats),
        }

    def summary(self) -> dict[str, Any]:
        vs = self.vmstats
        return {
            "boot_stage": self.boot_stage,
            "ncpus": self.ncpus,
            "first_page": self.first_page,
            "vm_page_array_size": self.page_range,
            "v_page_count": vs.v_page_count,
            "v_free_count": vs.v_free_count,
            "v_cache_count": vs.v_cache_count,
            "v_inactive_count": vs.v_inactive_count,
            "v_active_count": vs.v_active_count,
            "v_wire_count": vs.v_wire_count,
            "v_dma_pages": vs.v_dma_pages,
            "dma_free_pages": self.vm_contig_alist.bl_free,
            "vm_low_phys_reserved": self.vm_low_phys_reserved,
            "vm_dma_reserved": self.vm_dma_reserved,
            "set_assoc_mask": self.set_assoc_mask,
            "page_hash_size": self.page_hash_size,
            "ticks": self.ticks,
        }
