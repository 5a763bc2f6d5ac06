"""Built-in workloads: deterministic streams of ordinary kernel calls that make one
behaviour of the page manager happen on a simulated machine.

A workload never reaches into the machine to change it: everything it does is a call
from the registry (``vm_page_alloc``, ``pmap_enter``, ``vm_page_cache``, ``tick``, ...),
run through ``Machine.call`` exactly as a user's call would be, so it can be journalled,
replayed and streamed like any other.  It may *read* the machine (vmstats, the queues,
an object's pages, a page's mappings) to decide what to do next; given the same machine
state and the same seed it makes the same calls.  All of its randomness comes from its
own ``random.Random(seed)``.

The protocol is a pull loop, so a driver can run a workload in slices::

    w = WORKLOADS["churn"].create(machine, {"working_set": 128}, seed=7)
    while (call := w.next_call(machine)) is not None:
        fn, args, ctx = call
        ...  # machine.call(fn, args, cpu=ctx["cpu"], ...), catching core errors
        w.observe(fn, args, ctx, result_or_error)

``step`` does one turn of that loop and ``run_sync`` runs up to ``steps`` of them.  Every
piece of state lives on the ``Workload`` object (no module-level state), and the state
is plain data plus ``functools.partial`` of bound methods, so it can be moved to a worker
process with the machine.

Pages a workload holds may be taken from it by the pageout daemon (a simulated thread
that runs after any call).  A workload therefore only acts on a page it does not hold
busied after checking, just before the call, that the page still belongs to it
(``Workload.owns``); steps taken while it holds the page hard-busied need no check,
because the daemon skips busy pages.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from app.core.constants import (
    PAGE_SIZE,
    PQ_CACHE,
    PQ_FREE,
    PQ_L2_SIZE,
)
from app.core.errors import (
    ConfigError,
    InvalidArgument,
    KernelPanic,
    SimulatorRefusal,
    WouldSleep,
)
from app.core.machine import CallResult, Machine

__all__ = [
    "CORE_ERRORS",
    "WORKLOADS",
    "Blocked",
    "Call",
    "Churn",
    "DmaFragmentation",
    "DontneedStorm",
    "FileCache",
    "MachineInfo",
    "NumaSkew",
    "ParamSpec",
    "Pressure",
    "Workload",
    "WorkloadKind",
    "get_kind",
    "outcome_of",
    "run_sync",
    "step",
]

#: One kernel call a workload asks for: (function name, arguments, context).  The context
#: holds the ``Machine.call`` keywords: ``cpu``, ``thread``, ``nice`` (and, if ever
#: needed, ``systhread`` / ``lowmemkill``).
Call = tuple[str, dict[str, Any], dict[str, Any]]

#: The errors a kernel call may raise that a driver counts instead of propagating.
CORE_ERRORS: tuple[type[Exception], ...] = (
    KernelPanic,
    SimulatorRefusal,
    InvalidArgument,
    WouldSleep,
    ConfigError,
)

_CTX_KEYS = ("cpu", "thread", "nice", "systhread", "lowmemkill")
_MAX_SEED = (1 << 64) - 1
_MB_PAGES = (1 << 20) // PAGE_SIZE


@dataclass(frozen=True)
class Blocked:
    """The outcome of a call that parked its thread instead of returning (what
    ``CallResult.blocked`` says: thread, channel, wmesg, timo)."""

    info: dict[str, Any]


# ===================================================================== machine facts
@dataclass(frozen=True)
class MachineInfo:
    """What a workload learns about a machine when it starts: plain numbers, so that it
    can be built from a machine in another process.  ``cpu_socket[c]`` is the socket of
    CPU ``c`` (0 everywhere without a probed topology); the thresholds are the global
    vmstats' at the start."""

    ncpus: int
    sockets: int
    cpu_socket: tuple[int, ...]
    first_page: int
    v_page_count: int
    v_free_count: int
    v_cache_count: int
    v_free_reserved: int
    v_free_min: int
    v_free_target: int
    v_paging_start: int
    v_paging_target1: int
    v_paging_target2: int
    v_inactive_target: int
    dma_pages: int
    dma_free_pages: int

    @classmethod
    def of(cls, machine: Machine) -> MachineInfo:
        """Read the facts off a machine (nothing is changed)."""
        topo = machine.config.topology
        sockets = topo.sockets if topo is not None else 1
        cpu_socket = tuple(
            topo.ids_of(c)[0] if topo is not None else 0 for c in range(machine.ncpus)
        )
        vs = machine.vmstats
        return cls(
            ncpus=machine.ncpus,
            sockets=sockets,
            cpu_socket=cpu_socket,
            first_page=machine.first_page,
            v_page_count=vs.v_page_count,
            v_free_count=vs.v_free_count,
            v_cache_count=vs.v_cache_count,
            v_free_reserved=vs.v_free_reserved,
            v_free_min=vs.v_free_min,
            v_free_target=vs.v_free_target,
            v_paging_start=vs.v_paging_start,
            v_paging_target1=vs.v_paging_target1,
            v_paging_target2=vs.v_paging_target2,
            v_inactive_target=vs.v_inactive_target,
            dma_pages=vs.v_dma_pages,
            dma_free_pages=machine.contig.alist.bl_free,
        )

    def socket_colors(self, socket: int) -> range:
        """The page colours ``vm_get_pg_color`` gives the CPUs of ``socket``: the
        socket's ``PQ_L2_SIZE / sockets`` slice (all colours on a one-socket machine)."""
        per_socket = PQ_L2_SIZE // self.sockets
        return range(socket * per_socket, (socket + 1) * per_socket)

    def socket_cpus(self, socket: int) -> tuple[int, ...]:
        return tuple(c for c, s in enumerate(self.cpu_socket) if s == socket)


# ===================================================================== parameters
@dataclass(frozen=True)
class ParamSpec:
    """One workload parameter: ``type`` is ``"int"``, ``"bool"`` or ``"choice"``;
    ints are checked against ``lo``/``hi`` (inclusive), choices against ``choices``."""

    name: str
    type: str
    default: Any
    help: str
    lo: int | None = None
    hi: int | None = None
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        if self.type == "int":
            return f"an integer from {self.lo} to {self.hi}"
        if self.type == "bool":
            return "true or false"
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def check(self, kind: str, value: Any) -> Any:
        """``value`` if it is allowed, else ``ValueError`` naming the parameter, what is
        allowed and what was given."""
        ok = False
        if self.type == "int":
            ok = (
                isinstance(value, int)
                and not isinstance(value, bool)
                and (self.lo is None or value >= self.lo)
                and (self.hi is None or value <= self.hi)
            )
        elif self.type == "bool":
            ok = isinstance(value, bool)
        elif self.type == "choice":
            ok = isinstance(value, str) and value in self.choices
        if not ok:
            shown = repr(value)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            raise ValueError(
                f"workload {kind!r}: parameter {self.name!r} must be {self.allowed()}; got {shown}"
            )
        return value

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "help": self.help,
        }
        if self.type == "int":
            out["min"] = self.lo
            out["max"] = self.hi
        if self.choices:
            out["choices"] = list(self.choices)
        return out


def _int(name: str, default: int, lo: int, hi: int, help: str) -> ParamSpec:
    return ParamSpec(name, "int", default, help, lo, hi)


_TICK_EVERY = _int(
    "tick_every",
    64,
    0,
    100_000,
    "advance simulated time by one tick after this many calls (0: never), so the "
    "pageout daemon's timer and the per-CPU vmstats rollups run",
)


# ===================================================================== the base class
#: A queued step: the call, what to do with its outcome, and an optional check run just
#: before the call is issued (the step is dropped when the check fails).
_Step = tuple[
    str,
    dict[str, Any],
    dict[str, Any],
    "Callable[[Any], None] | None",
    "Callable[[Machine], bool] | None",
]


class Workload:
    """A deterministic generator of kernel calls (see the module docstring).

    Subclasses implement ``_plan(machine)``, which queues the next call(s) with
    ``_push`` (or sets ``finished``), and pass callbacks that learn from each outcome.
    Callbacks may queue follow-up calls at the front (``_then``): a page just allocated
    is still hard-busied, so its set-up calls run before anything else.
    """

    kind: ClassVar[str] = ""

    def __init__(self, info: MachineInfo, params: Mapping[str, Any], seed: int) -> None:
        self.info = info
        self.params = dict(params)
        self.seed = seed
        self.rng = random.Random(seed)
        self.phase = "start"
        self.finished = False
        self.calls = 0
        self.errors = 0
        self.blocked = 0
        self.by_fn: dict[str, int] = {}
        self.errors_by_fn: dict[str, int] = {}
        self.last_error: str | None = None
        #: workload-specific counts (pages allocated, cache hits, ...), for views
        self.counters: dict[str, int] = {}
        self._queue: deque[_Step] = deque()
        self._inflight: tuple[str, Callable[[Any], None] | None] | None = None
        self._since_tick = 0

    # ------------------------------------------------------------ protocol
    def next_call(self, machine: Machine) -> Call | None:
        """The next call to make, or None when the workload is finished.  Every call
        returned must be followed by ``observe`` before the next ``next_call``."""
        if self._inflight is not None:
            raise RuntimeError(
                f"workload {self.kind}: observe the outcome of {self._inflight[0]} before "
                "asking for the next call"
            )
        plans = 0
        while True:
            while self._queue:
                fn, args, ctx, on_result, guard = self._queue.popleft()
                if guard is not None and not guard(machine):
                    self._count("stale_steps")  # the page left us meanwhile: skip it
                    continue
                self._inflight = (fn, on_result)
                return fn, args, dict(ctx)
            if self.finished:
                return None
            plans += 1
            if plans > 100_000:
                raise RuntimeError(f"workload {self.kind} keeps planning no call")
            self._plan(machine)

    def observe(self, fn: str, args: dict[str, Any], ctx: dict[str, Any], outcome: Any) -> None:
        """Learn the outcome of the call ``next_call`` returned: its result, a
        ``Blocked`` or the core error it raised."""
        if self._inflight is None or self._inflight[0] != fn:
            want = self._inflight[0] if self._inflight is not None else "nothing"
            raise RuntimeError(f"workload {self.kind}: observed {fn}, but it asked for {want}")
        on_result = self._inflight[1]
        self._inflight = None
        self.calls += 1
        self.by_fn[fn] = self.by_fn.get(fn, 0) + 1
        self._since_tick = 0 if fn == "tick" else self._since_tick + 1
        if isinstance(outcome, Blocked):
            self.blocked += 1
        elif isinstance(outcome, Exception):
            self.errors += 1
            self.errors_by_fn[fn] = self.errors_by_fn.get(fn, 0) + 1
            self.last_error = f"{fn}: {outcome}"
        if on_result is not None:
            on_result(outcome)

    def stats(self) -> dict[str, Any]:
        """Where the workload is and what it has done (plain data)."""
        return {"phase": self.phase, "finished": self.finished, **self.counters}

    # ------------------------------------------------------------ for subclasses
    def _plan(self, machine: Machine) -> None:
        raise NotImplementedError

    @staticmethod
    def _ctx(cpu: int) -> dict[str, Any]:
        return {"cpu": cpu, "thread": None, "nice": 0}

    def _step(
        self,
        fn: str,
        args: dict[str, Any],
        cpu: int = 0,
        on_result: Callable[[Any], None] | None = None,
        guard: Callable[[Machine], bool] | None = None,
    ) -> _Step:
        return (fn, args, self._ctx(cpu), on_result, guard)

    def _push(self, *steps: _Step) -> None:
        """Queue steps after everything already queued."""
        self._queue.extend(steps)

    def _then(self, *steps: _Step) -> None:
        """Queue steps (in this order) before everything already queued."""
        self._queue.extendleft(reversed(steps))

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _tick_due(self) -> bool:
        every: int = self.params.get("tick_every", 0)
        return every > 0 and self._since_tick >= every

    def _tick(self, n: int = 1) -> _Step:
        return self._step("tick", {"n": n})

    def _cpu(self) -> int:
        return self.rng.randrange(self.info.ncpus)

    # ------------------------------------------------------------ reading the machine
    @staticmethod
    def owns(machine: Machine, oid: int, pindex: int, pfn: int) -> bool:
        """Whether page ``pfn`` is still object ``oid``'s page at ``pindex`` (the
        pageout daemon may have freed it meanwhile)."""
        obj = machine.vmobj.objects.get(oid)
        if obj is None:
            return False
        i: int = obj.pages.get(pindex, -1)
        return i >= 0 and i == pfn - machine.first_page

    @staticmethod
    def base_queue(machine: Machine, pfn: int) -> int:
        """The queue type the page is on (PQ_FREE, PQ_ACTIVE, ... or 0 for none)."""
        i = pfn - machine.first_page
        q = int(machine.pg.queue[i])
        return q - int(machine.pg.pc[i]) if q else 0

    @staticmethod
    def mapping(machine: Machine, pfn: int, pmap: int) -> list[bool] | None:
        """``pmap``'s mapping of the page as [writable, referenced, modified], or None."""
        maps = machine.pmap.mappings.get(pfn - machine.first_page)
        if not maps:
            return None
        return maps.get(pmap)

    @staticmethod
    def free_plus_cache(machine: Machine) -> int:
        vs = machine.vmstats
        return vs.v_free_count + vs.v_cache_count

    def _owned_guard(self, oid: int, pindex: int, pfn: int) -> Callable[[Machine], bool]:
        return partial(self.owns, oid=oid, pindex=pindex, pfn=pfn)


# ===================================================================== churn
class Churn(Workload):
    """Steady page churn on every CPU: pages are allocated into a few anonymous objects
    (``vm_page_alloc``), activated or deactivated and unbusied, and later picked at
    random to be activated, deactivated, handed to ``vm_page_dontneed`` or busied and
    freed (``vm_page_busy_try`` + ``vm_page_free``).  At most ``working_set`` pages are
    held, so it runs forever without exhausting memory.

    Demonstrates the everyday life of the queues: per-CPU colour ranges
    (``vm_get_pg_color``: each CPU allocates from its own slice of the 1024 colours),
    pages moving FREE → ACTIVE ⇄ INACTIVE → FREE, the free queues' LIFO reuse (a freed
    page goes to the head of its colour and is the next one handed out there), and the
    per-CPU vmstats adjustments folded into the global counts on each tick."""

    kind = "churn"

    def __init__(self, info: MachineInfo, params: Mapping[str, Any], seed: int) -> None:
        super().__init__(info, params, seed)
        self.objects: list[int] = []
        self.next_pindex: list[int] = []
        #: pages held: (pfn, object id, pindex)
        self.owned: list[tuple[int, int, int]] = []

    def _plan(self, machine: Machine) -> None:
        if len(self.objects) < self.params["objects"]:
            self.phase = "setup"
            self._push(
                self._step(
                    "vm_object_allocate",
                    {"type": "OBJT_DEFAULT", "size": 1 << 32},
                    self._cpu(),
                    self._on_object,
                )
            )
            return
        self.phase = "churn"
        if self._tick_due():
            self._push(self._tick())
            return
        held = len(self.owned)
        if held == 0 or (held < self.params["working_set"] and self.rng.random() < 0.5):
            k = self.rng.randrange(len(self.objects))
            pindex = self.next_pindex[k]
            self.next_pindex[k] += 1
            oid = self.objects[k]
            self._push(
                self._step(
                    "vm_page_alloc",
                    {"object": oid, "pindex": pindex, "page_req": "VM_ALLOC_NORMAL"},
                    self._cpu(),
                    partial(self._on_alloc, oid, pindex),
                )
            )
            return
        k = self.rng.randrange(held)
        pfn, oid, pindex = self.owned[k]
        if not self.owns(machine, oid, pindex, pfn):
            self._forget(k)  # the pageout daemon (or another caller) took it
            self._count("lost_pages")
            return
        cpu = self._cpu()
        r = self.rng.random()
        if r < 0.3:
            # take it out of the working set now; put it back if the busy fails
            self._forget(k)
            self._push(
                self._step(
                    "vm_page_busy_try",
                    {"m": pfn, "also_m_busy": True},
                    cpu,
                    partial(self._on_busy_for_free, pfn, oid, pindex, cpu),
                )
            )
        elif r < 0.6:
            self._push(self._step("vm_page_activate", {"m": pfn}, cpu))
        elif r < 0.9:
            self._push(self._step("vm_page_deactivate", {"m": pfn}, cpu))
        else:
            self._push(
                self._step(
                    "vm_page_busy_try",
                    {"m": pfn, "also_m_busy": True},
                    cpu,
                    partial(self._on_busy_for_dontneed, pfn, cpu),
                )
            )

    def _forget(self, k: int) -> None:
        last = self.owned.pop()
        if k < len(self.owned):
            self.owned[k] = last

    def _on_object(self, outcome: Any) -> None:
        if isinstance(outcome, int):
            self.objects.append(outcome)
            self.next_pindex.append(0)

    def _on_alloc(self, oid: int, pindex: int, outcome: Any) -> None:
        if not isinstance(outcome, int) or isinstance(outcome, bool):
            self._count("alloc_failed")
            self._then(self._tick())  # let the daemon find memory
            return
        self._count("allocated")
        self.owned.append((outcome, oid, pindex))
        # a new page comes hard-busied on no queue: queue it, then release it
        queue_fn = "vm_page_activate" if self.rng.random() < 0.7 else "vm_page_deactivate"
        cpu = self._cpu()
        self._then(
            self._step(queue_fn, {"m": outcome}, cpu),
            self._step("vm_page_wakeup", {"m": outcome}, cpu),
        )

    def _on_busy_for_free(self, pfn: int, oid: int, pindex: int, cpu: int, outcome: Any) -> None:
        if outcome is False:  # vm_page_busy_try returns TRUE on failure
            self._then(self._step("vm_page_free", {"m": pfn}, cpu, self._on_freed))
        else:
            self.owned.append((pfn, oid, pindex))

    def _on_freed(self, outcome: Any) -> None:
        if not isinstance(outcome, Exception):
            self._count("freed")

    def _on_busy_for_dontneed(self, pfn: int, cpu: int, outcome: Any) -> None:
        if outcome is False:
            self._then(
                self._step("vm_page_dontneed", {"m": pfn}, cpu),
                self._step("vm_page_wakeup", {"m": pfn}, cpu),
            )

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "held": len(self.owned)}


# ===================================================================== pressure
class Pressure(Workload):
    """Memory pressure and the pageout daemon's recovery.

    Ramp: pages are allocated into anonymous objects, made valid and dirty
    (``vm_page_set_validdirty``; a ``dirty_percent`` share — the rest are valid and
    clean), mapped writable (``pmap_enter``) and written (``pmap_touch`` sets the pte's
    referenced and modified bits), activated and unbusied; a sliding set of the
    ``hot_pages`` newest pages keeps being touched, and a ``tick`` runs every
    ``tick_every`` allocations.  The ramp goes on until ``v_free_count + v_cache_count``
    falls below ``v_paging_start`` and ``overshoot_pages`` more pages were allocated
    (an allocation that fails — free below ``v_free_reserved`` with no cache to recycle —
    is answered by a tick).  Then allocation stops and only ticks (and touches of the hot
    pages) run until free + cache is back at ``v_paging_target2`` and the daemon is idle
    (``vm_pages_needed == 0``), or ``recover_ticks`` ran out.

    Demonstrates ``pagedaemon_wakeup`` at ``vm_paging_start``, the daemon's passes: the
    active scan ageing unreferenced pages (``act_count`` declining; referenced ones
    gaining) and deactivating them, the inactive scan giving dirty pages a second chance
    (PG_WINATCFLS) and then laundering them in clusters (``vm_pageout_flush``; anonymous
    objects become OBJT_SWAP), clean pages going to the cache and the cache scan freeing
    them, until the TARGET1 / TARGET2 targets are met.  The hot pages survive: their
    reference bits keep them active."""

    kind = "pressure"

    def __init__(self, info: MachineInfo, params: Mapping[str, Any], seed: int) -> None:
        super().__init__(info, params, seed)
        self.objects: list[int] = []
        self.next_pindex: list[int] = []
        self.hot: deque[tuple[int, int, int, int]] = deque()  # (pfn, oid, pindex, pmap)
        self._hot_cursor = 0
        self._touch_next = False
        self.allocated = 0
        self.after_dip = 0
        self.dipped = False
        self.min_free_cache = info.v_free_count + info.v_cache_count
        self.recover_ticks = 0
        self.consecutive_failures = 0

    def _plan(self, machine: Machine) -> None:
        fc = self.free_plus_cache(machine)
        if fc < self.min_free_cache:
            self.min_free_cache = fc
        vs = machine.vmstats
        if not self.dipped and fc < vs.v_paging_start:
            self.dipped = True
            self.counters["dipped_at_allocation"] = self.allocated
        if len(self.objects) < self.params["objects"]:
            self.phase = "setup"
            self._push(
                self._step(
                    "vm_object_allocate",
                    {"type": "OBJT_DEFAULT", "size": 1 << 32},
                    self._cpu(),
                    self._on_object,
                )
            )
            return
        if self.phase in ("setup", "start"):
            self.phase = "ramp"
        if self.phase == "ramp":
            if (
                (self.dipped and self.after_dip >= self.params["overshoot_pages"])
                or self.allocated >= self.params["max_pages"]
                or self.consecutive_failures >= 1000
            ):
                self.phase = "recover"
            else:
                self._plan_ramp(machine)
                return
        # recover: time passes; the hot set keeps being used
        if fc >= vs.v_paging_target2 and machine.pd.vm_pages_needed == 0:
            self.phase = "done"
            self.finished = True
            return
        if self.recover_ticks >= self.params["recover_ticks"]:
            self.phase = "gave-up"
            self.finished = True
            return
        if self._touch_next and self._push_hot_touch(machine):
            self._touch_next = False
            return
        self._touch_next = True
        self.recover_ticks += 1
        self._push(self._tick())

    def _plan_ramp(self, machine: Machine) -> None:
        if self._touch_next:
            self._touch_next = False
            if self._push_hot_touch(machine):
                return
        every = self.params["tick_every"]
        if every and self.allocated and self.allocated % every == 0 and self._since_tick > 0:
            self._push(self._tick())
            return
        k = self.allocated % len(self.objects)
        oid = self.objects[k]
        pindex = self.next_pindex[k]
        self.next_pindex[k] += 1
        self._push(
            self._step(
                "vm_page_alloc",
                {"object": oid, "pindex": pindex, "page_req": "VM_ALLOC_NORMAL"},
                self._cpu(),
                partial(self._on_alloc, oid, pindex, k + 1),
            )
        )

    def _push_hot_touch(self, machine: Machine) -> bool:
        """Touch the next hot page through its mapping, if it still has one (the daemon
        unmaps pages it deactivates, caches or launders)."""
        while self.hot:
            self._hot_cursor %= len(self.hot)
            pfn, oid, pindex, pmap = self.hot[self._hot_cursor]
            bits = (
                self.mapping(machine, pfn, pmap) if self.owns(machine, oid, pindex, pfn) else None
            )
            if bits is None:
                del self.hot[self._hot_cursor]
                self._count("hot_pages_lost")
                continue
            self._hot_cursor += 1
            # a laundered page was write-protected: a read keeps it referenced all the same
            self._push(
                self._step("pmap_touch", {"m": pfn, "pmap": pmap, "write": bits[0]}, self._cpu())
            )
            return True
        return False

    def _on_object(self, outcome: Any) -> None:
        if isinstance(outcome, int):
            self.objects.append(outcome)
            self.next_pindex.append(0)

    def _on_alloc(self, oid: int, pindex: int, pmap: int, outcome: Any) -> None:
        if not isinstance(outcome, int) or isinstance(outcome, bool):
            self.consecutive_failures += 1
            self._count("alloc_failed")
            self._then(self._tick())
            return
        self.consecutive_failures = 0
        self.allocated += 1
        if self.dipped:
            self.after_dip += 1
        self._count("allocated")
        pfn = outcome
        dirty = self.rng.randrange(100) < self.params["dirty_percent"]
        cpu = self._cpu()
        whole = {"m": pfn, "base": 0, "size": PAGE_SIZE}
        # everything below runs while the page is still hard-busied from the allocation
        self._then(
            self._step("vm_page_set_validdirty" if dirty else "vm_page_set_validclean", whole, cpu),
            self._step("pmap_enter", {"m": pfn, "pmap": pmap, "writeable": dirty}, cpu),
            self._step("pmap_touch", {"m": pfn, "pmap": pmap, "write": dirty}, cpu),
            self._step("vm_page_activate", {"m": pfn}, cpu),
            self._step("vm_page_wakeup", {"m": pfn}, cpu),
        )
        limit = self.params["hot_pages"]
        if limit:
            self.hot.append((pfn, oid, pindex, pmap))
            while len(self.hot) > limit:
                self.hot.popleft()
                self._hot_cursor = max(0, self._hot_cursor - 1)
            self._touch_next = True

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "min_free_plus_cache": self.min_free_cache,
            "went_below_paging_start": self.dipped,
            "allocated_after_dip": self.after_dip,
            "recover_ticks": self.recover_ticks,
            "hot": len(self.hot),
        }


# ===================================================================== dontneed storm
class DontneedStorm(Workload):
    """``MADV_DONTNEED`` storms on a mapped, resident object.

    Set-up: ``pages`` pages are allocated into one object, made valid
    (``vm_page_set_validclean``), mapped read-only and read (``pmap_enter`` +
    ``pmap_touch``), activated and unbusied.  Then ``rounds`` rounds each pick a range,
    bring it back in use (``madvise(MADV_WILLNEED)`` activates its pages) and throw it
    away again: with ``madvise(MADV_DONTNEED)`` over the range (``madvise_percent`` of
    the rounds), or page by page with ``vm_page_busy_try`` + ``vm_page_dontneed`` +
    ``vm_page_wakeup``.  A tick runs every ``tick_every`` calls.

    Demonstrates ``vm_page_dontneed``'s global ``dnweight`` dice: per 512 consecutive
    calls a page is left alone 16 times (and only loses one ``act_count``), goes to the
    inactive *tail* 48 times and to the inactive *head* 448 times — so pages given up
    this way are the next ones the pageout daemon would reclaim, ahead of pages that aged
    into the inactive queue; pages already inactive are left where they are."""

    kind = "dontneed-storm"

    def __init__(self, info: MachineInfo, params: Mapping[str, Any], seed: int) -> None:
        super().__init__(info, params, seed)
        self.object: int | None = None
        self.pages: list[int] = []  # pfn by pindex (-1: not resident)
        self.pmap = 1
        self.rounds_done = 0
        self._populated = 0

    def _plan(self, machine: Machine) -> None:
        npages = self.params["pages"]
        if self.object is None:
            self.phase = "setup"
            self._push(
                self._step(
                    "vm_object_allocate",
                    {"type": "OBJT_DEFAULT", "size": npages},
                    self._cpu(),
                    self._on_object,
                )
            )
            return
        if self._tick_due():
            self._push(self._tick())
            return
        if self._populated < npages:
            self.phase = "populate"
            pindex = self._populated
            self._populated += 1
            self._push(
                self._step(
                    "vm_page_alloc",
                    {"object": self.object, "pindex": pindex, "page_req": "VM_ALLOC_NORMAL"},
                    self._cpu(),
                    partial(self._on_alloc, pindex),
                )
            )
            return
        if self.rounds_done >= self.params["rounds"]:
            self.phase = "done"
            self.finished = True
            return
        self.phase = "storm"
        self.rounds_done += 1
        count = self.rng.randint(1, max(1, npages // 4))
        start = self.rng.randrange(npages - count + 1)
        cpu = self._cpu()
        self._push(
            self._step(
                "madvise",
                {"object": self.object, "pindex": start, "count": count, "advice": "MADV_WILLNEED"},
                cpu,
                partial(self._on_madvise, "willneed_pages"),
            )
        )
        if self.rng.randrange(100) < self.params["madvise_percent"]:
            self._push(
                self._step(
                    "madvise",
                    {
                        "object": self.object,
                        "pindex": start,
                        "count": count,
                        "advice": "MADV_DONTNEED",
                    },
                    cpu,
                    partial(self._on_madvise, "dontneed_pages"),
                )
            )
            return
        for pindex in range(start, start + count):
            pfn = self.pages[pindex]
            if pfn < 0:
                continue
            self._push(
                self._step(
                    "vm_page_busy_try",
                    {"m": pfn, "also_m_busy": True},
                    cpu,
                    partial(self._on_busy, pfn, cpu),
                    self._owned_guard(self.object, pindex, pfn),
                )
            )

    def _on_object(self, outcome: Any) -> None:
        if isinstance(outcome, int):
            self.object = outcome
            self.pages = [-1] * self.params["pages"]

    def _on_alloc(self, pindex: int, outcome: Any) -> None:
        if not isinstance(outcome, int) or isinstance(outcome, bool):
            self._count("alloc_failed")
            return
        pfn = outcome
        self.pages[pindex] = pfn
        self._count("allocated")
        cpu = self._cpu()
        self._then(
            self._step("vm_page_set_validclean", {"m": pfn, "base": 0, "size": PAGE_SIZE}, cpu),
            self._step("pmap_enter", {"m": pfn, "pmap": self.pmap, "writeable": False}, cpu),
            self._step("pmap_touch", {"m": pfn, "pmap": self.pmap, "write": False}, cpu),
            self._step("vm_page_activate", {"m": pfn}, cpu),
            self._step("vm_page_wakeup", {"m": pfn}, cpu),
        )

    def _on_madvise(self, counter: str, outcome: Any) -> None:
        if isinstance(outcome, int) and not isinstance(outcome, bool):
            self._count(counter, outcome)

    def _on_busy(self, pfn: int, cpu: int, outcome: Any) -> None:
        if outcome is False:
            self._count("dontneed_pages")
            self._then(
                self._step("vm_page_dontneed", {"m": pfn}, cpu),
                self._step("vm_page_wakeup", {"m": pfn}, cpu),
            )
        else:
            self._count("busy_skipped")

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "rounds": self.rounds_done}


# ===================================================================== DMA fragmentation
class DmaFragmentation(Workload):
    """Fragmenting the DMA reserve until a contiguous allocation fails.

    Fill: ``fill_percent`` of the reserve's free pages are taken one page at a time
    (``vm_page_alloc_contig`` of 4 KiB).  Scatter: ``free_percent`` of those pages,
    picked at random, are given back (``vm_page_free_contig``).  Probe:
    ``vm_page_alloc_contig`` is asked for ``start_pages`` pages, then twice as many, and
    so on; each success is given back at once so only fragmentation, not consumption,
    decides; the first failure (NULL) ends the workload.  With ``fallback`` the failed
    size is then asked of ``vm_contig_pg_alloc`` (contigmalloc's allocator: the reserve
    first, then normal memory) and given back.

    Demonstrates the reserve's allocator, an alist that hands out the lowest *naturally
    aligned power-of-two* block: once single pages are scattered over it, a request fails
    although more than enough pages are free in total — while the same request succeeds
    on a fresh machine.  ``low``/``alignment``/``boundary`` play no part (the kernel
    ignores them here)."""

    kind = "dma-fragmentation"

    def __init__(self, info: MachineInfo, params: Mapping[str, Any], seed: int) -> None:
        super().__init__(info, params, seed)
        self.to_fill = (info.dma_free_pages * params["fill_percent"] + 99) // 100
        #: single reserve pages held, in allocation order (a dict: O(1) removal)
        self.filled: dict[int, None] = {}
        self.fill_done = False
        self.to_free: list[int] | None = None
        self.probe_pages = params["start_pages"]
        self.failed_pages: int | None = None
        self.largest_ok = 0
        self._fallback_done = False

    def _plan(self, machine: Machine) -> None:
        if not self.fill_done and len(self.filled) >= self.to_fill:
            self.fill_done = True
        if not self.fill_done:
            self.phase = "fill"
            self._push(
                self._step("vm_page_alloc_contig", {"size": PAGE_SIZE}, self._cpu(), self._on_fill)
            )
            return
        if self.to_free is None:
            self.phase = "scatter"
            n = len(self.filled) * self.params["free_percent"] // 100
            # sample over the ordered list so the choice depends on the seed alone
            self.to_free = sorted(self.rng.sample(list(self.filled), n), reverse=True)
        if self.to_free:
            pfn = self.to_free.pop()
            self._push(
                self._step(
                    "vm_page_free_contig",
                    {"m": pfn, "size": PAGE_SIZE},
                    self._cpu(),
                    partial(self._on_freed, pfn),
                )
            )
            return
        if self.failed_pages is None:
            self.phase = "probe"
            self._push(
                self._step(
                    "vm_page_alloc_contig",
                    {"size": self.probe_pages * PAGE_SIZE},
                    self._cpu(),
                    partial(self._on_probe, self.probe_pages),
                )
            )
            return
        if self.params["fallback"] and not self._fallback_done:
            self.phase = "fallback"
            self._fallback_done = True
            size = self.failed_pages * PAGE_SIZE
            self._push(
                self._step(
                    "vm_contig_pg_alloc",
                    {"size": size, "mflags": "M_NOWAIT"},
                    self._cpu(),
                    partial(self._on_fallback, size),
                )
            )
            return
        self.phase = "done"
        self.finished = True

    def _on_fill(self, outcome: Any) -> None:
        if isinstance(outcome, int) and not isinstance(outcome, bool):
            self.filled[outcome] = None
        else:
            self.fill_done = True  # the reserve ran dry before fill_percent

    def _on_freed(self, pfn: int, outcome: Any) -> None:
        if outcome is None:
            del self.filled[pfn]
            self._count("scattered_free")

    def _on_probe(self, npages: int, outcome: Any) -> None:
        if isinstance(outcome, int) and not isinstance(outcome, bool):
            self.largest_ok = npages
            self.probe_pages = npages * 2
            self._then(
                self._step("vm_page_free_contig", {"m": outcome, "size": npages * PAGE_SIZE})
            )
        else:
            self.failed_pages = npages

    def _on_fallback(self, size: int, outcome: Any) -> None:
        if isinstance(outcome, int) and not isinstance(outcome, bool):
            self.counters["fallback_pfn"] = outcome
            self._then(self._step("vm_page_free_contig", {"m": outcome, "size": size}))
        else:
            self.counters["fallback_failed"] = 1

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "held_single_pages": len(self.filled),
            "largest_ok_pages": self.largest_ok,
            "failed_pages": self.failed_pages,
        }


# ===================================================================== NUMA skew
class NumaSkew(Workload):
    """All allocations from the CPUs of one socket.

    Pages are allocated (``vm_page_alloc`` into a few objects) on the CPUs of socket
    ``socket`` only, activated and unbusied; ``free_percent`` of the allocations are
    followed by freeing an older page (``vm_page_busy_try`` + ``vm_page_free``).  It
    stops after ``pages`` allocations, or earlier when the socket's free queues get low
    (so the allocator never has to widen its search into the other socket).

    Demonstrates the colour ↔ CPU ↔ socket mapping of ``vm_get_pg_color`` on a probed
    topology: the 1024 colours are split by socket, then core, then hyper-thread, so a
    socket's CPUs only draw down their socket's colour queues (which
    ``vm_numa_organize`` filled with that socket's memory), and freed pages go back to
    the same colours.  The other socket's free queues do not move."""

    kind = "numa-skew"

    def __init__(self, info: MachineInfo, params: Mapping[str, Any], seed: int) -> None:
        super().__init__(info, params, seed)
        socket = params["socket"]
        if socket >= info.sockets:
            raise ValueError(
                f"workload 'numa-skew': parameter 'socket' must be from 0 to "
                f"{info.sockets - 1} on this machine ({info.sockets} socket"
                f"{'s' if info.sockets > 1 else ''}); got {socket}"
            )
        self.cpus = info.socket_cpus(socket)
        self.colors = info.socket_colors(socket)
        self.objects: list[int] = []
        self.next_pindex: list[int] = []
        self.owned: list[tuple[int, int, int]] = []
        self.allocated = 0
        self.low_water: int | None = None
        self._unchecked: list[int] = []  # new pages whose colour is not checked yet

    def _socket_free(self, machine: Machine) -> int:
        lo = PQ_FREE + self.colors.start
        return sum(machine.pq.lcnt[lo : lo + len(self.colors)])

    def _plan(self, machine: Machine) -> None:
        for pfn in self._unchecked:
            # a page's colour (pc) is fixed at boot; off-socket means the search widened
            if int(machine.pg.pc[pfn - machine.first_page]) not in self.colors:
                self._count("allocated_off_socket")
        self._unchecked.clear()
        if len(self.objects) < self.params["objects"]:
            self.phase = "setup"
            self._push(
                self._step(
                    "vm_object_allocate",
                    {"type": "OBJT_DEFAULT", "size": 1 << 32},
                    self.rng.choice(self.cpus),
                    self._on_object,
                )
            )
            return
        if self._tick_due():
            self._push(self._tick())
            return
        socket_free = self._socket_free(machine)
        if self.low_water is None:
            # stay well clear of the point where the widening search leaves the socket
            self.low_water = max(64, socket_free // 8)
        if self.allocated >= self.params["pages"] or socket_free <= self.low_water:
            self.phase = "done" if self.allocated >= self.params["pages"] else "socket-low"
            self.finished = True
            return
        self.phase = "allocate"
        cpu = self.rng.choice(self.cpus)
        if self.owned and self.rng.randrange(100) < self.params["free_percent"]:
            k = self.rng.randrange(len(self.owned))
            pfn, oid, pindex = self.owned[k]
            last = self.owned.pop()
            if k < len(self.owned):
                self.owned[k] = last
            if self.owns(machine, oid, pindex, pfn):
                self._push(
                    self._step(
                        "vm_page_busy_try",
                        {"m": pfn, "also_m_busy": True},
                        cpu,
                        partial(self._on_busy_for_free, pfn, oid, pindex, cpu),
                    )
                )
                return
        k = self.rng.randrange(len(self.objects))
        oid = self.objects[k]
        pindex = self.next_pindex[k]
        self.next_pindex[k] += 1
        self._push(
            self._step(
                "vm_page_alloc",
                {"object": oid, "pindex": pindex, "page_req": "VM_ALLOC_NORMAL"},
                cpu,
                partial(self._on_alloc, oid, pindex, cpu),
            )
        )

    def _on_object(self, outcome: Any) -> None:
        if isinstance(outcome, int):
            self.objects.append(outcome)
            self.next_pindex.append(0)

    def _on_alloc(self, oid: int, pindex: int, cpu: int, outcome: Any) -> None:
        self.allocated += 1
        if not isinstance(outcome, int) or isinstance(outcome, bool):
            self._count("alloc_failed")
            return
        self._count("allocated")
        self._unchecked.append(outcome)
        self.owned.append((outcome, oid, pindex))
        self._then(
            self._step("vm_page_activate", {"m": outcome}, cpu),
            self._step("vm_page_wakeup", {"m": outcome}, cpu),
        )

    def _on_busy_for_free(self, pfn: int, oid: int, pindex: int, cpu: int, outcome: Any) -> None:
        if outcome is False:
            self._count("freed")
            self._then(self._step("vm_page_free", {"m": pfn}, cpu))
        else:
            self.owned.append((pfn, oid, pindex))

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "socket": self.params["socket"],
            "cpus": list(self.cpus),
            "colors": [self.colors.start, self.colors.stop - 1],
            "held": len(self.owned),
        }


# ===================================================================== file cache
class FileCache(Workload):
    """A file cache: vnode pages read, mapped, unmapped, cached, reclaimed and reused.

    Set-up: ``files`` OBJT_VNODE objects of ``file_pages`` pages (0: sized so that the
    files hold twice the memory left free); with ``pin``, free memory is first pinned
    by a driver (``vm_contig_pg_alloc`` in 4 MiB runs: wired, off the queues) until only
    ``v_paging_target2 + window + 64`` pages are free — enough for the daemon to reach
    its target, too few for the files.  Then, forever: a file is picked (small file
    numbers are hotter: a skewed choice) and its next page "read".  A page not resident
    is allocated (``vm_page_alloc``), filled from "disk" (``vm_page_set_validclean``),
    mapped read-only (``pmap_enter``), read (``pmap_touch``), activated and unbusied; a
    resident page on the cache queue is a cache hit: busied, reactivated
    (``vm_page_activate``, counted in ``v_reactivated``) and mapped again.  Each mapped
    page stays mapped for the next ``window`` reads, then is unmapped (``pmap_remove``)
    and given up: ``vm_page_busy_try`` + ``vm_page_cache``, or (``cache_path``)
    ``vm_page_deactivate`` + ``vm_page_try_to_cache``.

    Demonstrates the cache queue: clean, unmapped pages that still belong to their
    object — a later read of the same page finds it there (a cache hit, no I/O), while
    allocations reuse cache pages when free memory is short (``vm_page_alloc`` recycling
    a cache page below ``v_free_reserved``, or the pageout daemon's cache scan freeing
    them while ``v_free_count < v_free_target``)."""

    kind = "file-cache"

    PIN_CHUNK = 4 * _MB_PAGES

    def __init__(self, info: MachineInfo, params: Mapping[str, Any], seed: int) -> None:
        super().__init__(info, params, seed)
        self.files: list[int] = []
        self.cursor: list[int] = []
        # Left free after pinning: the daemon's final target plus the mapped window, so
        # that free + cache (the cache is reusable memory) can always get back to
        # v_paging_target2; with less the daemon could never rest and would rescan every
        # colour several times a tick for nothing.
        if params["pin"]:
            self.keep_free = info.v_paging_target2 + params["window"] + 64
        else:
            self.keep_free = info.v_free_count
        self.file_pages: int = params["file_pages"] or min(
            65536, max(16, -(-2 * self.keep_free // params["files"]))
        )
        self.pinned = 0
        self.pin_done = False
        self._rolled_up = False
        self.window: deque[tuple[int, int, int]] = deque()  # mapped pages (pfn, oid, pindex)
        #: pages this workload put on the cache queue: pfn -> (object, pindex)
        self.cached: dict[int, tuple[int, int]] = {}
        self.pmap = 1
        self.max_cache = info.v_cache_count

    def _plan(self, machine: Machine) -> None:
        cache = machine.vmstats.v_cache_count
        if cache > self.max_cache:
            self.max_cache = cache
        if len(self.files) < self.params["files"]:
            self.phase = "setup"
            self._push(
                self._step(
                    "vm_object_allocate",
                    {"type": "OBJT_VNODE", "size": self.file_pages},
                    self._cpu(),
                    self._on_object,
                )
            )
            return
        if not self.pin_done and not self.params["pin"]:
            self.pin_done = True
        if not self.pin_done:
            self.phase = "pin"
            if not self._rolled_up:
                # the global free count lags the per-CPU adjustments: fold them in first
                self._rolled_up = True
                self._push(self._step("vmstats_rollup", {}, self._cpu()))
                return
            self._rolled_up = False
            # measured, not precomputed: contigmalloc takes the DMA reserve first
            need = machine.vmstats.v_free_count - self.keep_free
            if need > 0:
                npages = min(self.PIN_CHUNK, need)
                self._push(
                    self._step(
                        "vm_contig_pg_alloc",
                        {"size": npages * PAGE_SIZE, "mflags": "M_NOWAIT"},
                        self._cpu(),
                        partial(self._on_pinned, npages),
                    )
                )
                return
            self.pin_done = True
        self.phase = "read"
        if self._tick_due():
            self._push(self._tick())
            return
        if len(self.window) > self.params["window"]:
            pfn, oid, pindex = self.window.popleft()
            self._plan_release(machine, pfn, oid, pindex)
            return
        self._plan_read(machine)

    def _pick_file(self) -> int:
        # min of two uniform draws: file k is chosen with probability ~ (2n - 2k - 1) / n²
        n = len(self.files)
        return min(self.rng.randrange(n), self.rng.randrange(n))

    def _plan_read(self, machine: Machine) -> None:
        f = self._pick_file()
        oid = self.files[f]
        pindex = self.cursor[f]
        self.cursor[f] = (pindex + 1) % self.file_pages
        cpu = self._cpu()
        i: int = machine.vmobj.objects[oid].pages.get(pindex, -1)
        if i < 0:
            self._push(
                self._step(
                    "vm_page_alloc",
                    {"object": oid, "pindex": pindex, "page_req": "VM_ALLOC_NORMAL"},
                    cpu,
                    partial(self._on_alloc, oid, pindex, cpu),
                )
            )
            return
        pfn = machine.first_page + i
        if self.mapping(machine, pfn, self.pmap) is not None:
            self._count("mapped_hits")
            self._push(self._step("pmap_touch", {"m": pfn, "pmap": self.pmap, "write": False}, cpu))
            return
        from_cache = self.base_queue(machine, pfn) == PQ_CACHE
        self._push(
            self._step(
                "vm_page_busy_try",
                {"m": pfn, "also_m_busy": True},
                cpu,
                partial(self._on_busy_for_read, pfn, oid, pindex, cpu, from_cache),
            )
        )

    def _plan_release(self, machine: Machine, pfn: int, oid: int, pindex: int) -> None:
        if not self.owns(machine, oid, pindex, pfn) or (
            self.mapping(machine, pfn, self.pmap) is None
        ):
            self._count("released_by_daemon")
            return
        cpu = self._cpu()
        self._push(
            self._step(
                "pmap_remove",
                {"m": pfn, "pmap": self.pmap},
                cpu,
                partial(self._on_unmapped, pfn, oid, pindex, cpu),
            )
        )

    # ------------------------------------------------------------ outcomes
    def _on_object(self, outcome: Any) -> None:
        if isinstance(outcome, int):
            self.files.append(outcome)
            self.cursor.append(0)

    def _on_pinned(self, npages: int, outcome: Any) -> None:
        if isinstance(outcome, int) and not isinstance(outcome, bool):
            self.pinned += npages
            self.counters["pinned_pages"] = self.pinned
        else:
            self.pin_done = True  # no contiguous run left: read with what is free

    def _map_and_release(self, pfn: int, oid: int, pindex: int, cpu: int, *first: _Step) -> None:
        """Run ``first``, then activate, map and read a page the workload holds
        hard-busied, and unbusy it.  Activation comes first: the fault path takes a page
        out of the cache before it maps it (``pmap_enter`` refuses cached pages)."""
        self._then(
            *first,
            self._step("vm_page_activate", {"m": pfn}, cpu),
            self._step("pmap_enter", {"m": pfn, "pmap": self.pmap, "writeable": False}, cpu),
            self._step("pmap_touch", {"m": pfn, "pmap": self.pmap, "write": False}, cpu),
            self._step("vm_page_wakeup", {"m": pfn}, cpu),
        )
        self.window.append((pfn, oid, pindex))

    def _on_alloc(self, oid: int, pindex: int, cpu: int, outcome: Any) -> None:
        if not isinstance(outcome, int) or isinstance(outcome, bool):
            self._count("alloc_failed")
            self._then(self._tick())
            return
        pfn = outcome
        self._count("reads_from_disk")
        if pfn in self.cached:
            # a page this workload cached earlier, now reused for other data
            old = self.cached.pop(pfn)
            if old != (oid, pindex):
                self._count("recycled_cache_pages")
        # the read from "disk" fills the page: valid and clean
        fill = self._step("vm_page_set_validclean", {"m": pfn, "base": 0, "size": PAGE_SIZE}, cpu)
        self._map_and_release(pfn, oid, pindex, cpu, fill)

    def _on_busy_for_read(
        self, pfn: int, oid: int, pindex: int, cpu: int, from_cache: bool, outcome: Any
    ) -> None:
        if outcome is not False:
            self._count("busy_skipped")
            return
        if from_cache:
            self._count("cache_hits")
            self.cached.pop(pfn, None)
        else:
            self._count("resident_hits")
        self._map_and_release(pfn, oid, pindex, cpu)

    def _on_unmapped(self, pfn: int, oid: int, pindex: int, cpu: int, outcome: Any) -> None:
        if isinstance(outcome, Exception):
            return
        use_cache = {
            "cache": True,
            "try_to_cache": False,
            "mixed": self.rng.random() < 0.5,
        }[self.params["cache_path"]]
        self._then(
            self._step(
                "vm_page_busy_try",
                {"m": pfn, "also_m_busy": True},
                cpu,
                partial(self._on_busy_for_cache, pfn, oid, pindex, cpu, use_cache),
                self._owned_guard(oid, pindex, pfn),  # the daemon ran after pmap_remove
            )
        )

    def _on_busy_for_cache(
        self, pfn: int, oid: int, pindex: int, cpu: int, use_cache: bool, outcome: Any
    ) -> None:
        if outcome is not False:
            self._count("busy_skipped")
            return
        self.cached[pfn] = (oid, pindex)
        if use_cache:
            self._then(self._step("vm_page_cache", {"m": pfn}, cpu, self._on_cached))
        else:
            self._then(
                self._step("vm_page_deactivate", {"m": pfn}, cpu),
                self._step("vm_page_try_to_cache", {"m": pfn}, cpu, self._on_cached),
            )

    def _on_cached(self, outcome: Any) -> None:
        if not isinstance(outcome, Exception) and outcome is not False:
            self._count("cached")

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "max_cache_count": self.max_cache,
            "mapped": len(self.window),
            "keep_free": self.keep_free,
            "file_pages": self.file_pages,
        }


# ===================================================================== registry
@dataclass(frozen=True)
class WorkloadKind:
    """A workload the service offers: its name, a one-line description, its parameters
    (with defaults, types, bounds and help) and the class that runs it."""

    name: str
    description: str
    params: tuple[ParamSpec, ...]
    factory: type[Workload] = field(repr=False)

    def validate(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Every parameter, given or defaulted, checked; ``ValueError`` otherwise."""
        given = dict(params or {})
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(
                f"workload {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters: {', '.join(p.name for p in self.params) or 'none'}"
            )
        return {p.name: p.check(self.name, given.get(p.name, p.default)) for p in self.params}

    def create(
        self, machine: Machine | MachineInfo, params: Mapping[str, Any] | None, seed: int
    ) -> Workload:
        """A new workload for ``machine`` (or facts read off one)."""
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= _MAX_SEED:
            raise ValueError(
                f"workload {self.name!r}: seed must be an integer from 0 to 2^64-1; got {seed!r}"
            )
        info = machine if isinstance(machine, MachineInfo) else MachineInfo.of(machine)
        return self.factory(info, self.validate(params), seed)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params": [p.describe() for p in self.params],
        }


_OBJECTS_HELP = "anonymous objects the pages are spread over"

WORKLOADS: dict[str, WorkloadKind] = {
    k.name: k
    for k in (
        WorkloadKind(
            "churn",
            "alloc/free/activate/deactivate on every CPU with a bounded working set (runs forever)",
            (
                _int("objects", 4, 1, 4096, _OBJECTS_HELP),
                _int("working_set", 256, 1, 1 << 20, "most pages held at once"),
                _TICK_EVERY,
            ),
            Churn,
        ),
        WorkloadKind(
            "pressure",
            "allocate dirty, referenced pages below vm_paging_start, then watch the pageout "
            "daemon recover free+cache to v_paging_target2",
            (
                _int("objects", 4, 1, 4096, _OBJECTS_HELP),
                _int(
                    "overshoot_pages",
                    256,
                    0,
                    1 << 22,
                    "pages still allocated after free+cache fell below v_paging_start",
                ),
                _int("max_pages", 1 << 22, 1, 1 << 24, "stop the ramp after this many pages"),
                _int(
                    "hot_pages",
                    64,
                    0,
                    65536,
                    "newest pages kept referenced by touching them (the working set)",
                ),
                _int("dirty_percent", 100, 0, 100, "share of the pages written (dirty)"),
                _int("tick_every", 32, 1, 100_000, "one tick after this many allocations"),
                _int(
                    "recover_ticks",
                    100_000,
                    1,
                    10_000_000,
                    "most ticks to wait for the daemon to recover",
                ),
            ),
            Pressure,
        ),
        WorkloadKind(
            "dontneed-storm",
            "map an object's pages, then MADV_DONTNEED them (madvise or vm_page_dontneed) "
            "again and again",
            (
                _int("pages", 256, 1, 65536, "resident pages of the object"),
                _int("rounds", 200, 1, 1_000_000, "WILLNEED + DONTNEED rounds"),
                _int(
                    "madvise_percent",
                    50,
                    0,
                    100,
                    "share of rounds using madvise() over a range (else vm_page_dontneed per page)",
                ),
                _TICK_EVERY,
            ),
            DontneedStorm,
        ),
        WorkloadKind(
            "dma-fragmentation",
            "scatter single pages over the DMA reserve, then grow vm_page_alloc_contig "
            "requests until one fails",
            (
                _int("fill_percent", 100, 1, 100, "share of the reserve's free pages taken"),
                _int("free_percent", 50, 1, 99, "share of the taken pages given back at random"),
                _int("start_pages", 1, 1, 65536, "first contiguous request, in pages"),
                ParamSpec(
                    "fallback",
                    "bool",
                    False,
                    "after the failure, ask contigmalloc (vm_contig_pg_alloc) for the same size",
                ),
            ),
            DmaFragmentation,
        ),
        WorkloadKind(
            "numa-skew",
            "allocate only from one socket's CPUs: only that socket's colours are drawn down",
            (
                _int("socket", 0, 0, 63, "the socket whose CPUs allocate"),
                _int("pages", 2048, 1, 1 << 22, "allocations to make"),
                _int("free_percent", 25, 0, 90, "share of allocations followed by a free"),
                _int("objects", 4, 1, 4096, _OBJECTS_HELP),
                _TICK_EVERY,
            ),
            NumaSkew,
        ),
        WorkloadKind(
            "file-cache",
            "vnode pages read, mapped, unmapped and cached; cache hits and cache pages "
            "recycled under memory pressure (runs forever)",
            (
                _int("files", 16, 1, 4096, "OBJT_VNODE objects"),
                _int(
                    "file_pages",
                    0,
                    0,
                    65536,
                    "pages per file (0: the files hold twice the memory left free)",
                ),
                ParamSpec(
                    "pin",
                    "bool",
                    True,
                    "first pin memory with contigmalloc until only v_paging_target2 + "
                    "window + 64 pages are free, so the files do not fit",
                ),
                _int("window", 32, 1, 4096, "reads a page stays mapped for"),
                ParamSpec(
                    "cache_path",
                    "choice",
                    "mixed",
                    "how an unmapped page is given up: vm_page_cache, "
                    "vm_page_deactivate + vm_page_try_to_cache, or either at random",
                    choices=("cache", "try_to_cache", "mixed"),
                ),
                _TICK_EVERY,
            ),
            FileCache,
        ),
    )
}


def get_kind(name: str) -> WorkloadKind:
    """The workload kind called ``name``; ``ValueError`` listing the kinds otherwise."""
    kind = WORKLOADS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ValueError(f"there is no workload {name!r}; workloads: {', '.join(WORKLOADS)}")
    return kind


# ===================================================================== driving
def outcome_of(res: CallResult) -> Any:
    """What ``Workload.observe`` is told of a call that ran: its result, or ``Blocked``."""
    return res.result if res.blocked is None else Blocked(res.blocked)


def step(machine: Machine, workload: Workload) -> tuple[str, Any] | None:
    """One turn of the loop: ask for a call, run it (``record=False``), tell the workload
    what happened.  Returns (function, outcome) — the outcome being the result, a
    ``Blocked`` or the core error raised — or None when the workload is finished."""
    call = workload.next_call(machine)
    if call is None:
        return None
    fn, args, ctx = call
    kwargs = {k: ctx[k] for k in _CTX_KEYS if k in ctx}
    outcome: Any
    try:
        res = machine.call(fn, args, record=False, **kwargs)
    except CORE_ERRORS as e:
        outcome = e
    else:
        outcome = outcome_of(res)
    workload.observe(fn, args, ctx, outcome)
    return fn, outcome


def run_sync(
    machine: Machine,
    kind: str | WorkloadKind | Workload,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    steps: int = 1000,
) -> dict[str, Any]:
    """Run up to ``steps`` calls of a workload on ``machine`` and summarise them:
    ``calls``, ``errors``, ``blocked``, ``by_fn`` (calls per function), ``errors_by_fn``,
    ``last_error``, ``finished`` and the workload's ``stats``.  ``kind`` is a name, a
    ``WorkloadKind``, or a workload already running (then ``params`` and ``seed`` are
    not used and the counts are its totals)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0; got {steps!r}")
    if isinstance(kind, Workload):
        workload = kind
    else:
        spec = kind if isinstance(kind, WorkloadKind) else get_kind(kind)
        workload = spec.create(machine, params, seed)
    for _ in range(steps):
        if step(machine, workload) is None:
            break
    return {
        "kind": workload.kind,
        "seed": workload.seed,
        "calls": workload.calls,
        "errors": workload.errors,
        "blocked": workload.blocked,
        "by_fn": dict(sorted(workload.by_fn.items())),
        "errors_by_fn": dict(sorted(workload.errors_by_fn.items())),
        "last_error": workload.last_error,
        "finished": workload.finished,
        "stats": workload.stats(),
    }
