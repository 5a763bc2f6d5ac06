"""Property tests: random machines driven by random sequences of registry calls, on a
few simulated threads (and, on some machines, the pageout daemon's own thread).

Every function of ``app.core.registry.REGISTRY`` can be drawn: the ``registry_call`` rule
picks any name (aliases included) and builds its arguments from the ``Param`` kinds of
``app.core.callspec`` (a page the test tracks or a random managed pfn, a known object,
bounded ints biased to interesting values, choices/flags from their names, ...), so a
function added to the registry later is covered without touching this file; a ``Param``
kind this file cannot generate fails ``test_every_param_kind_has_a_generator``.  Targeted
rules reach what a blind draw almost never does: object pages that are valid, dirty,
mapped and queued (``populate``), mapped pages and their pmaps (``mapped_op``), busied
inactive pages for ``vm_pageout_page`` / ``vm_pageout_clean_helper``, cache / hold /
rename / page-hash set-ups, contiguous runs and their frees (blocking on a busied page),
and sysctl writes of the read-write tunables within range.

Rules of the game, checked on every call:

* a *refusal* (``KernelPanic``, ``InvalidArgument``) leaves ``state_digest`` exactly as it
  was; ``WouldSleep`` is only raised for the documented spins (``STATE_CHANGING_REFUSALS``
  / ``SPINS``);
* a call *blocks* only if its function sleeps (``sleeps=True``): its thread is then parked
  on the reported channel, and a parked thread refuses every new call (``InvalidArgument``)
  until a wakeup or a timeout resumes it — except the simulator verbs that run outside any
  thread (``tick``, ``wakeup``, ``sysctl``, ``ddb``);
* a function registered ``mutates=False`` leaves ``state_digest`` unchanged when it
  completes;
* nothing is left runnable after a call (woken threads run before it returns), and
  after every step the whole machine passes ``check_invariants``, no thread sleeps on a
  page whose busy word lacks PBUSY_WANTED (a lost wakeup: spec §9, "whoever clears busy
  must wakeup(m)"), and a machine booted with the pageout daemon still runs it;
* replaying the recorded calls on a fresh machine with the same configuration gives the
  same results, the same blocked calls, the same resumed threads and the same digest.

Bounded to 40 examples x 60 steps.  ``test_every_registry_function_is_reached`` drives the
same rules from a seeded ``random.Random`` and proves that every registry function
completes somewhere, and that every sleeping one blocks somewhere and, once woken,
finishes its call; ``test_the_pageout_daemon_runs_among_random_calls`` does the same for
the daemon thread.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from app.core.callspec import ARG_KINDS, KernelFunction, Param
from app.core.config import BootStage, MachineConfig
from app.core.constants import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PG_MAPPEDMULTI,
    PQ_ACTIVE,
    PQ_CACHE,
    PQ_FREE,
    PQ_HOLD,
    PQ_INACTIVE,
    PQ_L2_SIZE,
    PQ_NONE,
)
from app.core.convert import _convert_args, parse_alloc_flags
from app.core.errors import InvalidArgument, KernelPanic, SimulatorRefusal, WouldSleep
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.objects import ObjType
from app.core.registry import REGISTRY
from app.core.sysctl import SYSCTL_BY_NAME, SYSCTLS
from app.core.vm_pageout import PAGEDAEMON_TID

REFUSALS = (KernelPanic, SimulatorRefusal, InvalidArgument, WouldSleep)
CLASSES = ["VM_ALLOC_NORMAL", "VM_ALLOC_SYSTEM", "VM_ALLOC_INTERRUPT", "VM_ALLOC_QUICK"]
EXTRAS = ["VM_ALLOC_ZERO", "VM_ALLOC_FORCE_ZERO", "VM_ALLOC_NULL_OK", "VM_ALLOC_RETRY"]
PAGE_OPS = [
    "vm_page_activate",
    "vm_page_soft_activate",
    "vm_page_deactivate",
    "vm_page_unqueue",
    "vm_page_unqueue_nowakeup",
    "vm_page_busy_try",
    "vm_page_wakeup",
    "vm_page_wire",
    "vm_page_unwire",
    "vm_page_insert",
    "vm_page_remove",
    "vm_page_free",
    "vm_page_freezwq",
]
BUSY_OPS = [
    "vm_page_busy_wait",
    "vm_page_sleep_busy",
    "vm_page_io_start",
    "vm_page_io_finish",
    "vm_page_sbusy_try",
    "vm_page_sbusy_hold",
    "vm_page_sbusy_drop",
    "vm_page_flash",
    "vm_page_flag_set",
    "vm_page_flag_clear",
]
PG_BITS = [
    "PG_REFERENCED",
    "PG_NOSYNC",
    "PG_SWAPPED",
    "PG_WINATCFLS",
    "PG_CLEANCHK",
    "PG_FICTITIOUS",
    "PG_UNQUEUED",
    "PG_NEED_COMMIT",
    "PG_MAPPED",
    "PG_WRITEABLE",
]
CHANNELS = ["v_free_count", "vm_pages_needed", "vm_pageout_pages_needed", "vm_pagedaemon_uptime"]
#: Thread ids the test uses (thread i is also CPU i's default thread).
THREADS = 6
#: Every name a user may call (aliases included), in a fixed order.
ALL_NAMES = sorted(REGISTRY)
U64_MAX = (1 << 64) - 1

#: Refusals that report a hang rather than an illegal call, after work that stays done.
#: Only one is left now that threads can sleep: vm_page_alloc, when the CPU's counters allow
#: an allocation but every queue is empty, rolls the vmstats up and would then spin forever
#: (it also reaches grab/alloczwq through their vm_page_alloc; e.function names it).  The
#: rollup is the kernel's own work before the hang, so it stays; the machine must still be
#: consistent (checked after every step).  See app.core.errors.WouldSleep.
STATE_CHANGING_REFUSALS = {("WouldSleep", "vm_page_alloc")}
#: The documented spins (WouldSleep.function): the one above, and vm_page_grab's lookup of
#: a page whose busy word holds only WANTED/SWAPINPROG (raised before anything changes).
SPINS = {"vm_page_alloc", "vm_page_grab"}

#: sysctl tunables the test writes, with the range it writes them in (spec §16.1, §16.2:
#: booleans 0/1, act_count declines within 0..ACT_MAX = 64, actcmp within 0..48, small
#: page counts).  Writes outside a C type's range, of read-only names or of unknown names
#: are drawn too (refused).
SAFE_TUNABLES: dict[str, tuple[int, int]] = {
    "vm.page_hash_vnode_only": (0, 1),
    "vm.anonmem_decline": (0, 64),
    "vm.filemem_decline": (0, 64),
    "vm.queue_idle_perc": (0, 100),
    "vm.emerg_launder": (0, 1000),
    "vm.pageout_stats_actcmp": (0, 48),
    "vm.pageout_stats_inamin": (0, 64),
    "vm.pageout_stats_inalim": (0, 8192),
    "vm.pageout_stats_rsecs": (0, 600),
    "vm.pageout_memuse_mode": (0, 3),
    "vm.pageout_allow_active": (0, 1),
    "vm.pageout_debug": (0, 1),
    "vm.swap_enabled": (0, 1),
    "vm.defer_swapspace_pageouts": (0, 1),
    "vm.disable_swapspace_pageouts": (0, 1),
    "vm.page_free_hysteresis": (0, 64),
    "vm.max_launder": (0, 256),
    "vm.pageout_stats_ticks": (0, 30),
    "vm.pageout_stats_scan": (0, 64),
}
#: Thresholds (global vmstats, spec §4.2) written within a quarter of their current value.
THRESHOLDS = [
    "vm.v_free_min",
    "vm.v_free_target",
    "vm.v_free_reserved",
    "vm.v_inactive_target",
    "vm.v_pageout_free_min",
    "vm.v_free_severe",
    "vm.v_paging_wait",
    "vm.v_paging_start",
    "vm.v_paging_target1",
    "vm.v_paging_target2",
]
SYSCTL_NAMES = [s.name for s in SYSCTLS]

#: The functions that can sleep (``_block`` puts each in the situation that makes it).
SLEEPERS = sorted({spec.name for spec in REGISTRY.values() if spec.sleeps})

#: What ``prepared_call`` sets up before calling a page function.
PREPARED: dict[str, str] = {
    "vm_page_wire": "hard",
    "vm_page_io_start": "hard",
    "vm_page_io_finish": "soft",
    "vm_page_sbusy_drop": "soft",
    "vm_page_unwire": "hard_wired",
    "vm_page_wire_quick": "wired",
    "vm_page_unwire_quick": "wired",
    "vm_page_set_valid": "busied",
    "vm_page_set_validclean": "busied",
    "vm_page_set_validdirty": "busied",
    "vm_page_set_invalid": "busied",
    "vm_page_zero_invalid": "busied",
    "vm_page_copy": "busied",
    "vm_page_clear_dirty": "busied",
    "vm_page_clear_dirty_end_nonincl": "busied",
    "vm_page_clear_dirty_beg_nonincl": "busied",
    "vm_page_dirty": "hard",
    "vm_page_need_commit": "hard",
    "pmap_page_protect": "hard_mapped",
    "pmap_mapped_sync": "hard_mapped",
    "vm_page_protect": "hard_mapped",
    "vm_page_freezwq": "zwq",
}

#: Interesting values per parameter name (clipped to the parameter's lo/hi).
_BYTES = [0, 1, 511, 512, 513, 1024, 2048, 4095, 4096]
INT_HINTS: dict[str, list[int]] = {
    "base": _BYTES,
    "pgoff": _BYTES,
    "pgbytes": _BYTES,
    "size": _BYTES + [4097, 8192, 12288, 16384, 65536, 1 << 20, 1 << 43, U64_MAX],
    "pmap": [0, 0, 1, 1, 2, 3, (1 << 31) - 1],
    "pass_": [0, 0, 1, 2, 10, 0x7FFFFFFF],
    "quota": [-1, 0, 1, 2, 16, 64, 1 << 20],
    "avail_quota": [-1, 0, 1, 2, 16, 64],
    "inact_quota": [-1, 0, 1, 2, 16, 64],
    "avail": [-(1 << 31), -1, 0, 1, 16, 1000],
    "max_launder": [0, 1, 1, 2, 8, 1 << 20],
    "slot": [0, 1, 2, 1023],
    "paddr": [0, 4096, 1 << 32, U64_MAX],
    "low": [0, 0, 4096, 1 << 20, 1 << 22, U64_MAX],
    "high": [0, 0, 1 << 20, 1 << 22, 1 << 24, U64_MAX, U64_MAX],
    "alignment": [0, 4096, 4096, 8192, 65536, 3, 1 << 20],
    "boundary": [0, 0, 4096, 65536, 1 << 20, 12288],
    "n": [0, 1, 3, 11, 100],
}
#: Functions whose colour argument should name a queue of this type that holds pages.
COLOR_QUEUE = {
    "vm_pageout_scan_inactive": PQ_INACTIVE,
    "vm_pageout_scan_active": PQ_ACTIVE,
    "vm_pageout_page_stats": PQ_ACTIVE,
    "vm_pageout_scan_hold": PQ_HOLD,
}

Call = tuple[str, dict[str, Any], int, int, int, bool, bool]
# fn, args, cpu, thread, nice, systhread, lowmemkill


class Draw:
    """Random choices, from hypothesis (``data``) or from a seeded ``random.Random`` (the
    deterministic coverage test drives the same rules with the latter)."""

    def __init__(self, data: Any = None, rng: random.Random | None = None) -> None:
        self.data = data
        self.rng = rng

    @staticmethod
    def of(data: Any) -> Draw:
        return data if isinstance(data, Draw) else Draw(data=data)

    def int(self, lo: int, hi: int) -> int:
        if self.rng is not None:
            return self.rng.randint(lo, hi)
        value: int = self.data.draw(st.integers(lo, hi))
        return value

    def pick(self, seq: Any) -> Any:
        items = list(seq)
        if self.rng is not None:
            return self.rng.choice(items)
        return self.data.draw(st.sampled_from(items))

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def one_in(self, n: int) -> bool:
        return self.int(0, n - 1) == 0

    def some(self, seq: Any, lo: int, hi: int) -> list[Any]:
        items = list(seq)
        out: list[Any] = []
        for _ in range(self.int(lo, hi)):
            x = self.pick(items)
            if x not in out:
                out.append(x)
        return out


@st.composite
def configs(draw: st.DrawFn) -> MachineConfig:
    return _config(Draw(data=_Drawer(draw)))


class _Drawer:
    """Adapts a composite strategy's ``draw`` to the ``data.draw`` interface."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw


def _config(d: Draw) -> MachineConfig:
    """A small machine; finished boots run the pageout daemon half of the time."""
    size = d.pick(["1MiB", "2MiB", "4MiB", "16MiB"])
    cpus = d.int(1, 4)
    stage: BootStage = "early" if d.one_in(3) else "finished"
    pagedaemon = stage == "finished" and d.bool()
    seed = d.int(0, 1 << 16)
    if cpus in (2, 4) and d.bool():
        return MachineConfig.from_size(
            size, sockets=2, cores=cpus // 2, seed=seed, boot_stage=stage, pagedaemon=pagedaemon
        )
    return MachineConfig.from_size(
        size, cpus=cpus, seed=seed, boot_stage=stage, pagedaemon=pagedaemon
    )


def draw_flags(d: Draw, ncpus: int, extras: list[str] = EXTRAS) -> Any:
    """Random VM_ALLOC_* flags in a random spelling; rarely without a class (a KASSERT)
    or with VM_ALLOC_CPU(ncpus) (refused)."""
    names: list[str] = [] if d.one_in(20) else d.some(CLASSES, 1, 2)
    names += d.some(extras, 0, 2)
    if d.one_in(4):
        names.append(f"VM_ALLOC_CPU({d.int(0, ncpus)})")
    style = d.pick(["int", "str", "short", "list"])
    if not names:
        style = "int"
    if style == "int":
        return parse_alloc_flags(names)
    if style == "str":
        return "|".join(names)
    if style == "short":
        return "|".join(n.removeprefix("VM_ALLOC_") for n in names)
    return names


def _outcome(r: Any) -> Any:
    """What a completed call is compared by on replay."""
    return (r.result, r.blocked, r.record.get("resumed"))


class PageLab(RuleBasedStateMachine):
    m: Machine
    cfg: MachineConfig

    @initialize(cfg=configs())
    def boot(self, cfg: MachineConfig) -> None:
        self.cfg = cfg
        self.m = Machine.boot(cfg)
        self.log: list[Call] = []
        self.outcomes: list[Any] = []
        self.known: list[int] = []  # pfns this test has handled
        self._known_set: set[int] = set()
        self.objects: list[int] = []
        self.contig: list[tuple[int, int]] = []  # (pfn, size) of contiguous allocations
        self.crashed = False
        #: per function: how its calls ended ("ok", "blocked", or the refusal's class)
        self.stats: Counter[tuple[str, str]] = Counter()

    # ------------------------------------------------------------ helpers
    def do(
        self,
        fn: str,
        args: dict[str, Any],
        cpu: int = 0,
        nice: int = 0,
        systhread: bool = False,
        expect_ok: bool = False,
        thread: int | None = None,
        lowmemkill: bool = False,
        digest: bool = True,
    ) -> Any:
        """One call, logged for the replay, with the rules of the game checked (the whole
        machine is checked after every step, by ``consistent``).  ``digest=False`` skips
        the digest comparisons (the drains: many cheap calls, refusals tested elsewhere)."""
        m = self.m
        tid = THREADS if thread is None else thread  # THREADS: the test's own helper calls
        spec = REGISTRY.get(fn)
        th = m.sched.threads.get(tid)
        parked = spec is not None and spec.on_thread and th is not None and th.state != "idle"
        before = state_digest(m) if digest else None
        self.log.append((fn, dict(args), cpu, tid, nice, systhread, lowmemkill))
        try:
            r = m.call(
                fn,
                args,
                cpu=cpu,
                thread=tid,
                nice=nice,
                systhread=systhread,
                lowmemkill=lowmemkill,
            )
        except REFUSALS as e:
            self.outcomes.append(type(e).__name__)
            self.stats[(fn, type(e).__name__)] += 1
            assert not expect_ok, f"{fn}({args}) on cpu {cpu} was refused: {e!r}"
            if parked:
                assert isinstance(e, InvalidArgument), f"parked thread {tid}: {e!r}"
            if isinstance(e, WouldSleep):
                assert e.function in SPINS, f"{fn}({args}): undocumented hang {e!r}"
            known = (type(e).__name__, getattr(e, "function", "")) in STATE_CHANGING_REFUSALS
            if not known and before is not None:
                assert state_digest(m) == before, f"{fn}({args}) raised {e!r} after changing state"
            return e
        except BaseException:
            self.crashed = True
            raise
        assert spec is not None
        assert not parked, f"thread {tid} was parked but ran {fn}"
        self.outcomes.append(_outcome(r))
        self.stats[(fn, "blocked" if r.blocked is not None else "ok")] += 1
        if r.blocked is not None:
            assert tid != THREADS, "the test's helper thread must never sleep"
            # a blocked call: only sleeping functions block; the thread is parked there
            assert spec.sleeps and r.result is None
            th = m.sched.threads[tid]
            if not any(done["tid"] == tid for done in r.record.get("resumed", [])):
                # (unless a thread it woke — the daemon — woke it again at once)
                assert th.state == "sleeping" and th.channel == r.blocked["channel"]
        if not spec.mutates and before is not None:
            assert state_digest(m) == before, f"{fn}({args}) is registered read-only"
        for done in r.record.get("resumed", []):
            # a woken thread finished its call, failed in it, or went back to sleep
            how = (
                "woken_ok"
                if "result" in done
                else "woken_" + ("error" if "error" in done else "slept")
            )
            self.stats[(done["fn"], how)] += 1
            done_spec = REGISTRY.get(done["fn"])
            if done_spec is not None:
                self._track(done_spec, done.get("result"))
        self._track(spec, r.result)
        assert not m.sched.runq  # every woken thread ran before its waker's call returned
        return r.result

    def _track(self, spec: KernelFunction, result: Any) -> None:
        """Remember pages and objects a call handed out."""
        if spec.returns == "page_or_null" and isinstance(result, int):
            self.remember(result)
        elif spec.returns == "pair" and isinstance(result, dict):
            if isinstance(result.get("page"), int):
                self.remember(result["page"])
        elif spec.returns == "object" and isinstance(result, int) and result not in self.objects:
            self.objects.append(result)

    def remember(self, pfn: int) -> None:
        if pfn not in self._known_set:
            self._known_set.add(pfn)
            self.known.append(pfn)

    def cpu(self, d: Draw) -> int:
        return d.int(0, self.m.ncpus - 1)

    def thread(self, d: Draw) -> int:
        """Mostly an idle thread; now and then any (a parked one must refuse the call)."""
        idle = [
            t
            for t in range(THREADS)
            if self.m.sched.threads.get(t) is None or self.m.sched.threads[t].state == "idle"
        ]
        if idle and not d.one_in(10):
            return int(d.pick(idle))
        return d.int(0, THREADS - 1)

    def idle_thread(self, d: Draw) -> int | None:
        idle = [
            t
            for t in range(THREADS)
            if self.m.sched.threads.get(t) is None or self.m.sched.threads[t].state == "idle"
        ]
        return int(d.pick(idle)) if idle else None

    def idx(self, pfn: int) -> int:
        return pfn - self.m.first_page

    def _managed(self, pfn: int) -> bool:
        i = self.idx(pfn)
        return any(a <= i < z for a, z in self.m.managed)

    def _base(self, i: int) -> int:
        q = self.m.pg.queue[i]
        return q - self.m.pg.pc[i] if q else 0

    # ------------------------------------------------------------ pools of pages
    def random_pfn(self, d: Draw) -> int:
        a, z = self.m.managed[d.int(0, len(self.m.managed) - 1)]
        return self.m.first_page + d.int(a, z - 1)

    def queued_page(self, d: Draw, bases: tuple[int, ...]) -> int | None:
        """Head or tail page of a random non-empty queue of one of these types."""
        lcnt = np.asarray(self.m.pq.lcnt)
        cands = [int(q) for b in bases for q in np.flatnonzero(lcnt[b : b + PQ_L2_SIZE]) + b]
        if not cands:
            return None
        q = d.pick(cands)
        i = self.m.pq.head[q] if d.bool() else self.m.pq.tail[q]
        return self.m.first_page + i

    def field_page(self, d: Draw) -> int | None:
        """A page with a non-zero hold count, soft-busy count, dirty mask or wire count."""
        arr = self.m.pg.arrays
        name = d.pick(["hold", "busy", "dirty", "wire", "valid"])
        hits = np.flatnonzero(arr[name])
        if name == "wire":  # the DMA reserve is wired; prefer the rest
            hits = hits[(arr["flags"][hits] & PG_FICTITIOUS) == 0]
        if not hits.size:
            return None
        return self.m.first_page + int(hits[d.int(0, min(hits.size, 64) - 1)])

    def pick_pfn(self, d: Draw) -> int:
        """A page argument: a tracked page, a mapped one, a queued one, one with some
        interesting field, any managed page, or (rarely) a pfn the VM does not manage."""
        m = self.m
        k = d.int(0, 15)
        if k < 7 and self.known:
            return int(d.pick(self.known))
        if k < 9 and m.pmap.mappings:
            return m.first_page + int(d.pick(sorted(m.pmap.mappings)))
        if k < 11:
            pfn = self.queued_page(d, (PQ_INACTIVE, PQ_ACTIVE, PQ_CACHE, PQ_HOLD))
            if pfn is not None:
                return pfn
        if k < 13:
            pfn = self.field_page(d)
            if pfn is not None:
                return pfn
        if k == 15 and d.one_in(3):
            return d.pick([m.first_page - 1, m.first_page + m.page_range, -1, 0])
        return self.random_pfn(d)

    def pick_object(self, d: Draw) -> Any:
        if self.objects and not d.one_in(10):
            return d.pick(self.objects)
        return d.pick([None, 0, 999])

    def resident_pair(self, d: Draw) -> tuple[int, int] | None:
        """(object id, pindex) of a resident page of a known object."""
        objs = [o for o in self.objects if self.m.vmobj.objects[o].pages]
        if not objs:
            return None
        obj = self.m.vmobj.objects[d.pick(objs)]
        keys = list(obj.pages.keys())
        return obj.id, int(keys[d.int(0, len(keys) - 1)])

    def page_color(self, d: Draw, fn: str) -> int:
        base = COLOR_QUEUE.get(fn)
        if base is not None:
            pfn = self.queued_page(d, (base,))
        else:
            pfn = int(d.pick(self.known)) if self.known else None
        if pfn is None or not self._managed(pfn):
            return d.int(0, PQ_L2_SIZE - 1)
        return int(self.m.pg.pc[self.idx(pfn)])

    # ------------------------------------------------------------ argument generation
    def gen_args(self, spec: KernelFunction, d: Draw) -> dict[str, Any]:
        """Arguments for any registry function, from its ``Param`` kinds.  Optional
        arguments are sometimes left to their defaults; now and then one argument gets a
        value of the wrong type or range, or an unknown argument is added (refusals)."""
        if spec.name == "sysctl":
            return self.sysctl_args(d)
        names = {p.name for p in spec.params}
        pair = None
        if {"object", "pindex"} <= names and not d.one_in(3):
            pair = self.resident_pair(d)
        args: dict[str, Any] = {}
        for p in spec.params:
            if not p.required and d.one_in(6):
                continue
            if d.one_in(50):
                args[p.name] = d.pick(["x", None, -1, 1.5, True, [1], 1 << 70])
                continue
            args[p.name] = self.gen_value(spec, p, d, pair)
        if spec.name == "vm_page_free_contig" and self.contig and d.bool():
            args["m"], args["size"] = d.pick(self.contig)  # a run the test holds
        page = args.get("m")
        if "pmap" in args and isinstance(page, int) and not d.one_in(4):
            maps = self.m.pmap.mappings.get(page - self.m.first_page)
            if maps:  # one of the page's own pmaps
                args["pmap"] = d.pick(sorted(maps))
        if d.one_in(80):
            args["no_such_argument"] = 1
        return args

    def gen_value(
        self, spec: KernelFunction, p: Param, d: Draw, pair: tuple[int, int] | None
    ) -> Any:
        kind = p.kind
        m = self.m
        if kind == "page":
            return self.pick_pfn(d)
        if kind in ("object", "object_or_null"):
            if kind == "object_or_null" and d.one_in(4):
                return None
            if pair is not None and p.name == "object":
                return pair[0]
            return self.pick_object(d)
        if kind == "pindex":
            if pair is not None and p.name == "pindex":
                return pair[1]
            if d.one_in(20):
                return d.pick([U64_MAX, 1 << 63, 1 << 32])
            return d.int(0, 15)
        if kind == "alloc_flags":
            return draw_flags(d, m.ncpus)
        if kind == "bool":
            return d.bool()
        if kind == "int":
            return self.gen_int(spec, p, d)
        if kind == "ticks":
            return d.pick([0, 0, 1, 2, 5, 10, 100])
        if kind == "cpu":
            return d.int(0, m.ncpus - 1) if not d.one_in(20) else m.ncpus
        if kind == "objtype":
            return d.pick(list(ObjType.__members__))
        if kind == "size_pages":
            return d.pick([0, 1, 1, 2, 3, 8, 16, 64, U64_MAX])
        if kind == "color":
            return None if d.bool() else self.page_color(d, spec.name)
        if kind in ("choice", "queue"):  # a queue type: its name or its index, as a choice
            name, value = d.pick(p.choices)
            return value if d.one_in(4) else name
        if kind == "flags":
            chosen = d.some(p.choices, 1, 3)
            style = d.int(0, 2)
            if style == 0:
                return "|".join(n for n, _ in chosen)
            if style == 1:
                return [n for n, _ in chosen]
            value = 0
            for _, v in chosen:
                value |= v
            return value
        if kind == "channel":
            chans = sorted(m.sched.sleepq) + CHANNELS
            chans += [f"page:{pfn}" for pfn in self.known[:4]]
            return d.pick(chans)
        if kind == "wmesg":
            return d.pick(["pgwait", "x", "busyw", "w" * 16])
        if kind == "sysctl_name":
            return d.pick(SYSCTL_NAMES + ["vm.nonexistent", "vm.stats", "vm.contig_verbose"])
        if kind == "int_or_null":
            return None if d.bool() else d.int(-2, 100)
        if kind in ("choice_str", "ddb_command"):
            return d.pick([n for n, _ in p.choices] + ["show  page", "show nothing"])
        raise AssertionError(f"no argument generator for kind {kind!r} ({spec.name}.{p.name})")

    def gen_int(self, spec: KernelFunction, p: Param, d: Draw) -> int:
        lo = -(1 << 63) if p.lo is None else p.lo
        hi = (1 << 64) if p.hi is None else p.hi
        if p.name in ("color", "index"):
            return self.page_color(d, spec.name)
        if spec.name == "tick":
            # bounded: a daemon in a shortage runs a pass per tick (~1 ms), so a tick of
            # 10^6 (allowed) would take many minutes; hi + 1 is refused at once
            return int(d.pick(INT_HINTS["n"] + [hi + 1]))
        if d.one_in(40):
            return d.pick([lo - 1, hi + 1]) if d.bool() else d.int(lo, min(hi, lo + 1000))
        hints = [v for v in INT_HINTS.get(p.name, []) if lo <= v <= hi]
        if hints and not d.one_in(5):
            return int(d.pick(hints))
        if d.bool():
            return d.pick([lo, hi, max(lo, min(hi, 0)), max(lo, min(hi, 1))])
        return d.int(lo, min(hi, lo + 64))

    def sysctl_args(self, d: Draw) -> dict[str, Any]:
        """A read of any sysctl, or a write: mostly of a read-write tunable within its
        safe range, sometimes of a threshold near its value, now and then one that must
        be refused (read-only, unknown, out of its C type, not an integer)."""
        k = d.int(0, 9)
        if k < 4:
            return {"name": d.pick(SYSCTL_NAMES)}
        if k < 7:
            name = d.pick(sorted(SAFE_TUNABLES))
            lo, hi = SAFE_TUNABLES[name]
            return {"name": name, "value": d.pick([lo, hi, d.int(lo, hi)])}
        if k < 9:
            name = d.pick(THRESHOLDS)
            cur = int(SYSCTL_BY_NAME[name].getter(self.m))
            return {"name": name, "value": d.int(cur - cur // 4, cur + cur // 4 + 1)}
        name = d.pick(SYSCTL_NAMES + ["vm.nonexistent", "vm.stats.vm"])
        value = d.pick([1 << 64, -(1 << 64), True, "1", 5])
        return {"name": name, "value": value}

    # ------------------------------------------------------------ checks
    def check(self) -> None:
        """The machine-wide checks, run after every step."""
        m = self.m
        check_invariants(m)
        assert not m.sched.runq  # every woken thread ran before its waker's call returned
        for channel, sleepers in m.sched.sleepq.items():
            assert sleepers
            if channel.startswith("page:"):
                # a page sleeper set WANTED; whoever cleared it had to wake the sleepers
                i = self.idx(int(channel[5:]))
                assert m.pg.busy[i] & PBUSY_WANTED, f"lost wakeup on {channel}"
            for th in sleepers:
                if channel.startswith("page:"):
                    assert th.deadline is None  # page sleeps never time out
        if m.config.pagedaemon and m.startup.boot_stage == "finished":
            th = m.sched.threads[PAGEDAEMON_TID]
            assert th.state != "idle", f"the pageout daemon stopped: {th.last_error}"

    @invariant()
    def consistent(self) -> None:
        self.check()

    # ============================================================ the generic rule
    def _registry_call(self, data: Any, fn: str | None = None) -> None:
        """Any registry function (or ``fn``), with generated arguments, on a random CPU and
        thread."""
        d = Draw.of(data)
        if fn is None:
            fn = d.pick(ALL_NAMES)
        spec = REGISTRY[fn]
        args = self.gen_args(spec, d)
        kw: dict[str, Any] = {}
        if d.one_in(4):
            kw = {
                "nice": d.int(-20, 20),
                "systhread": d.bool(),
                "lowmemkill": d.bool(),
            }
        self.do(fn, args, cpu=self.cpu(d), thread=self.thread(d), **kw)

    # registered several times: hypothesis picks among rules uniformly, and this one has
    # a hundred functions to spread over
    registry_call = rule(data=st.data())(_registry_call)
    registry_call_2 = rule(data=st.data())(_registry_call)
    registry_call_3 = rule(data=st.data())(_registry_call)
    registry_call_4 = rule(data=st.data())(_registry_call)

    # ============================================================ targeted rules
    @rule(data=st.data())
    def new_object(self, data: Any) -> None:
        d = Draw.of(data)
        if len(self.objects) >= 6:
            return
        typ = d.pick(list(ObjType.__members__))
        size = d.int(0, 64)
        oid = self.do(
            "vm_object_allocate", {"type": typ, "size": size}, cpu=self.cpu(d), thread=THREADS
        )
        assert isinstance(oid, int)

    @rule(data=st.data())
    def page_alloc(self, data: Any) -> None:
        d = Draw.of(data)
        args = {
            "object": self.pick_object(d),
            "pindex": d.int(0, 7),
            "page_req": draw_flags(d, self.m.ncpus),
        }
        res = self.do(
            "vm_page_alloc",
            args,
            cpu=self.cpu(d),
            systhread=d.bool(),
            thread=self.thread(d),
        )
        if isinstance(res, int):
            i = self.idx(res)
            # spec §7.1: hard-busied on no queue.  (WANTED can survive: a sleeper's WANTED
            # on a free page whose soft busy was dropped by io_finish, which wakes nobody,
            # is kept by the busy_try CAS that selects the page.)
            assert self.m.pg.busy[i] & ~PBUSY_WANTED == PBUSY_LOCKED
            assert self.m.pg.queue[i] == PQ_NONE

    @rule(data=st.data())
    def drain(self, data: Any) -> None:
        """Allocate a run of object-less pages to bring the machine near its limits."""
        d = Draw.of(data)
        flags = d.pick(["INTERRUPT", "NORMAL", "SYSTEM|NORMAL", "QUICK"])
        cpu = self.cpu(d)
        for _ in range(d.pick([8, 64, 256, 1024])):
            args = {"page_req": flags}
            res = self.do("vm_page_alloc", args, cpu=cpu, thread=THREADS, digest=False)
            if not isinstance(res, int):
                break

    def give_back(self, limit: int) -> None:
        """Free up to ``limit`` of the object-less pages the test holds hard-busied (what
        the drains took), so that memory waiters can make progress."""
        m = self.m
        pg = m.pg
        freed = 0
        for pfn in list(self.known):
            if freed >= limit:
                break
            i = self.idx(pfn)
            if (
                pg.busy[i] & (PBUSY_LOCKED | PBUSY_MASK) != PBUSY_LOCKED
                or pg.obj[i]
                or pg.wire[i]
                or pg.hold[i]
                or pg.flags[i] & PG_FICTITIOUS
                or pg.queue[i] != PQ_NONE
                or i in m.pmap.mappings
            ):
                continue
            self.do("vm_page_free", {"m": pfn}, thread=THREADS, expect_ok=True, digest=False)
            freed += 1

    @rule(data=st.data())
    def release_memory(self, data: Any) -> None:
        d = Draw.of(data)
        self.give_back(d.pick([16, 64, 1024]))

    @rule(data=st.data())
    def populate(self, data: Any) -> None:
        """A page as a process would leave it: grabbed into an object, made valid (and
        maybe dirty), maybe mapped and touched, put on the active or inactive queue,
        unbusied.  Consecutive pindexes give the pageout daemon clusters to launder."""
        d = Draw.of(data)
        m = self.m
        if not self.objects:
            self.new_object(d)
        tid = self.idle_thread(d)
        if not self.objects or tid is None:
            return
        cpu = self.cpu(d)
        oid = d.pick(self.objects)
        pindex = d.int(0, 15)
        flags = d.pick(["NORMAL", "NORMAL|ZERO", "SYSTEM", "INTERRUPT"])
        r = self.do(
            "vm_page_grab", {"object": oid, "pindex": pindex, "flags": flags}, cpu=cpu, thread=tid
        )
        if not isinstance(r, int):  # refused, NULL, or blocked
            return
        i = self.idx(r)
        if not m.pg.busy[i] & PBUSY_LOCKED:
            return
        how = d.pick(["valid", "valid", "dirty", "partial", "none"])
        if how == "valid":
            self.do("vm_page_set_validclean", {"m": r, "base": 0, "size": PAGE_SIZE}, cpu=cpu)
        elif how == "dirty":
            self.do("vm_page_set_validdirty", {"m": r, "base": 0, "size": PAGE_SIZE}, cpu=cpu)
        elif how == "partial":
            base = d.pick([0, 100, 512, 1000])
            self.do("vm_page_set_validdirty", {"m": r, "base": base, "size": 1024}, cpu=cpu)
        if d.bool():
            self.do("pmap_enter", {"m": r, "pmap": d.int(0, 3), "writeable": d.bool()}, cpu=cpu)
            if d.bool():
                self.do("pmap_enter", {"m": r, "pmap": d.int(0, 3), "writeable": True}, cpu=cpu)
            if i in m.pmap.mappings:
                pmap = d.pick(sorted(m.pmap.mappings[i]))
                self.do("pmap_touch", {"m": r, "pmap": pmap, "write": d.bool()}, cpu=cpu)
        where = d.pick(["vm_page_deactivate", "vm_page_activate", "vm_page_deactivate", None])
        if where is not None:
            self.do(where, {"m": r}, cpu=cpu)
        if d.one_in(4):
            self.do("vm_page_need_commit", {"m": r}, cpu=cpu)
        self.do("vm_page_wakeup", {"m": r}, cpu=cpu, thread=THREADS)

    @rule(data=st.data())
    def grab(self, data: Any) -> None:
        d = Draw.of(data)
        args = {
            "object": self.pick_object(d),
            "pindex": d.int(0, 7),
            "flags": draw_flags(d, self.m.ncpus),
        }
        self.do("vm_page_grab", args, cpu=self.cpu(d), thread=self.thread(d))

    @rule(data=st.data())
    def alloczwq(self, data: Any) -> None:
        d = Draw.of(data)
        args = {"pindex": d.int(0, 7), "flags": draw_flags(d, self.m.ncpus)}
        res = self.do("vm_page_alloczwq", args, cpu=self.cpu(d), thread=self.thread(d))
        if isinstance(res, int):
            i = self.idx(res)
            assert self.m.pg.wire[i] == 1 and self.m.pg.busy[i] == 0  # spec §7.2

    @rule(data=st.data())
    def free_owned(self, data: Any) -> None:
        """Free a page the test holds hard-busied: spec §8.2 says this must work."""
        d = Draw.of(data)
        pg = self.m.pg
        owned = []
        for pfn in self.known:
            i = self.idx(pfn)
            busy = pg.busy[i]
            if not busy & PBUSY_LOCKED or busy & PBUSY_MASK or self._base(i) == PQ_FREE:
                continue
            if pg.wire[i] and not pg.flags[i] & PG_FICTITIOUS:
                continue
            if i in self.m.pmap.mappings:
                continue  # a mapped page may not be freed (the pmap would keep it)
            owned.append(pfn)
        if not owned:
            return
        pfn = d.pick(owned)
        i = self.idx(pfn)
        fictitious = bool(pg.flags[i] & PG_FICTITIOUS)
        self.do("vm_page_free", {"m": pfn}, cpu=self.cpu(d), expect_ok=True, thread=THREADS)
        if self.outcomes[-1][2] is not None:
            return  # threads the free woke ran afterwards and may have taken the page
        assert pg.busy[i] & PBUSY_LOCKED == 0 and pg.obj[i] == 0
        if not fictitious:
            assert self._base(i) in (PQ_FREE, PQ_HOLD)

    @rule(data=st.data())
    def page_op(self, data: Any) -> None:
        d = Draw.of(data)
        fn = d.pick(PAGE_OPS)
        pfn = self.pick_pfn(d)
        args: dict[str, Any] = {"m": pfn}
        if fn == "vm_page_unwire":
            args["activate"] = d.bool()
        elif fn == "vm_page_busy_try":
            args["also_m_busy"] = d.bool()
        elif fn == "vm_page_insert":
            args["object"] = self.pick_object(d)
            args["pindex"] = d.int(0, 7)
        res = self.do(fn, args, cpu=self.cpu(d), thread=self.thread(d))
        if fn == "vm_page_busy_try" and res is False:
            self.remember(pfn)

    @rule(data=st.data())
    def busy_op(self, data: Any) -> None:
        """The busy family of spec §9 on a random page, by a random thread."""
        d = Draw.of(data)
        fn = d.pick(BUSY_OPS)
        pfn = self.pick_pfn(d)
        args: dict[str, Any] = {"m": pfn}
        if fn in ("vm_page_busy_wait", "vm_page_sleep_busy"):
            args["also_m_busy"] = d.bool()
            if d.bool():
                args["msg"] = d.pick(["pgwait", "busyw", "x"])
        elif fn in ("vm_page_flag_set", "vm_page_flag_clear"):
            args["bits"] = "|".join(d.some(PG_BITS, 1, 2))
        m = self.m
        word = m.pg.busy[self.idx(pfn)] if self._managed(pfn) else None
        res = self.do(fn, args, cpu=self.cpu(d), thread=self.thread(d))
        if fn == "vm_page_sbusy_try" and isinstance(res, int):
            assert word is not None and res == (1 if word & PBUSY_LOCKED else 0)  # spec §9
        if fn == "vm_page_busy_wait" and res is None and self._managed(pfn):
            self.remember(pfn)

    def _held_page(self, d: Draw, resident: bool = False) -> int | None:
        """A page somebody holds busy (hard or soft); if there is none, a page the test
        knows (an object's page with ``resident``), hard-busied now by thread THREADS."""
        m = self.m
        pg = m.pg
        busy = PBUSY_LOCKED | PBUSY_MASK
        cands = [p for p in self.known if pg.busy[self.idx(p)] & busy]
        if resident:
            cands = [p for p in cands if pg.obj[self.idx(p)]]
        if cands and not d.one_in(4):
            return int(d.pick(cands))
        if resident:
            pair = self.resident_pair(d)
            pfn = None if pair is None else m.first_page + m.vmobj.objects[pair[0]].pages[pair[1]]
        else:
            pfn = int(d.pick(self.known)) if self.known else None
        if pfn is None:
            return None
        if not pg.busy[self.idx(pfn)] & busy:
            self.do("vm_page_busy_try", {"m": pfn, "also_m_busy": False}, thread=THREADS)
        return pfn

    def _low_memory(self, d: Draw, flags: str) -> None:
        """Allocate (at most 1024) object-less pages until ``flags`` fails."""
        for _ in range(1024):
            r = self.do("vm_page_alloc", {"page_req": flags}, thread=THREADS, digest=False)
            if not isinstance(r, int):
                break

    def _block(self, data: Any, fn: str | None = None) -> None:
        """A thread calls a sleeping function in the situation that makes it sleep: on a
        page somebody else holds busy (busy_wait, sleep_busy, a RETRY grab and
        lookup_busy_wait: spec §7.3, §9, §11.2; freezwq of a busied zwq page, §7.2;
        free_contig of a normal-memory run with a busied page, §7.5), or short of memory
        (vm_wait, vm_wait_pfault, vm_wait_nominal, RETRY allocations: §7.3, §13).  Each
        should block; wakeups, page releases and ticks resume them later."""
        d = Draw.of(data)
        m = self.m
        pg = m.pg
        if fn is None:
            fn = d.pick(SLEEPERS)
        tid = self.idle_thread(d)
        if tid is None:
            return
        cpu = self.cpu(d)
        also = d.bool()
        args: dict[str, Any]
        if fn in ("vm_page_busy_wait", "vm_page_sleep_busy"):
            pfn = self._held_page(d)
            if pfn is None:
                return
            args = {"m": pfn, "also_m_busy": also}
        elif fn == "vm_page_lookup_busy_wait" or (fn == "vm_page_grab" and d.bool()):
            pfn = self._held_page(d, resident=True)
            if pfn is None:
                return
            i = self.idx(pfn)
            args = {"object": int(pg.obj[i]), "pindex": int(pg.pindex[i])}
            if fn == "vm_page_grab":
                args["flags"] = "NORMAL|RETRY"
            else:
                args["also_m_busy"] = also
        elif fn == "vm_page_freezwq":
            pfn = self.do("vm_page_alloczwq", {"flags": "INTERRUPT"}, cpu=cpu, thread=tid)
            if not isinstance(pfn, int):  # none to be had (or it blocked in vm_wait)
                return
            self.do("vm_page_busy_try", {"m": pfn, "also_m_busy": False}, thread=THREADS)
            args = {"m": pfn}
        elif fn == "vm_page_free_contig":
            runs = [
                (p, z)
                for p, z in self.contig
                if z > PAGE_SIZE and not pg.flags[self.idx(p)] & PG_FICTITIOUS
            ]
            if not runs:
                # more pages than the DMA reserve has free: the fallback takes normal memory
                size = (m.contig.alist.bl_free + 2) * PAGE_SIZE
                r = self.do("vm_contig_pg_alloc", {"size": size}, cpu=cpu, thread=THREADS)
                if not isinstance(r, int):
                    return
                self.contig.append((r, size))
                runs = [(r, size)]
            pfn, size = d.pick(runs)
            k = d.int(0, (size >> PAGE_SHIFT) - 1)
            self.do("vm_page_busy_try", {"m": pfn + k, "also_m_busy": False}, thread=THREADS)
            args = {"m": pfn, "size": size}
        else:
            self._low_memory(d, "INTERRUPT" if fn == "vm_wait_pfault" else "NORMAL")
            if fn == "vm_page_grab":
                oid = self.pick_object(d)
                args = {"object": oid, "pindex": d.int(16, 31), "flags": "NORMAL|RETRY"}
            elif fn == "vm_page_alloczwq":
                args = {"flags": "NORMAL|RETRY"}
            elif fn == "vm_wait":
                args = {"timo": d.int(0, 5)}
            else:
                args = {}
        r = self.do(fn, args, cpu=cpu, thread=tid, nice=d.int(-5, 5))
        if fn == "vm_page_free_contig" and not isinstance(r, Exception):
            self.contig.remove((args["m"], args["size"]))

    contend = rule(data=st.data())(_block)

    @rule(data=st.data())
    def mapped_op(self, data: Any) -> None:
        """The pmap on a page that really is mapped, through one of its own pmaps."""
        d = Draw.of(data)
        m = self.m
        if not m.pmap.mappings:
            cands = [
                p
                for p in self.known
                if self._base(self.idx(p)) in (PQ_NONE, PQ_ACTIVE, PQ_INACTIVE)
            ]
            if not cands:
                return
            pfn = d.pick(cands)
            self.do("pmap_enter", {"m": pfn, "pmap": d.int(0, 3), "writeable": d.bool()})
            return
        i = int(d.pick(sorted(m.pmap.mappings)))
        pfn = m.first_page + i
        pmap = int(d.pick(sorted(m.pmap.mappings[i])))
        fn = d.pick(
            [
                "pmap_touch",
                "pmap_touch",
                "pmap_remove",
                "pmap_enter",
                "pmap_ts_referenced",
                "pmap_is_modified",
                "pmap_clear_reference",
                "pmap_clear_modify",
                "pmap_page_protect",
                "pmap_mapped_sync",
                "vm_page_protect",
                "vm_page_test_dirty",
                "vm_page_dontneed",
                "vm_page_hash_enter",
            ]
        )
        args: dict[str, Any] = {"m": pfn}
        if fn in ("pmap_touch", "pmap_remove", "pmap_enter"):
            args["pmap"] = pmap if not d.one_in(5) else d.int(0, 5)
        if fn == "pmap_touch":
            args["write"] = d.bool()
        elif fn == "pmap_enter":
            args["writeable"] = d.bool()
        elif fn in ("pmap_page_protect", "vm_page_protect"):
            args["prot"] = d.pick(["VM_PROT_NONE", "VM_PROT_READ", "VM_PROT_READ|VM_PROT_WRITE"])
        cpu = self.cpu(d)
        if fn in ("pmap_page_protect", "pmap_mapped_sync", "vm_page_protect") and d.bool():
            self.do("vm_page_busy_try", {"m": pfn, "also_m_busy": False}, cpu=cpu, thread=THREADS)
        r = self.do(fn, args, cpu=cpu, thread=self.thread(d))
        if fn == "pmap_touch" and not isinstance(r, Exception):
            assert m.pmap.mappings[i][args["pmap"]][1]  # the A bit is now set

    @rule(data=st.data())
    def pageout_page(self, data: Any) -> None:
        """The daemon's decision for one page (spec §15.3): busy an inactive page, then
        vm_pageout_page or vm_pageout_clean_helper; the decision always lets it go."""
        d = Draw.of(data)
        m = self.m
        arr = m.pg.arrays
        q = arr["queue"]
        free = np.flatnonzero((q >= PQ_INACTIVE) & (q < PQ_ACTIVE) & (arr["busy"] == 0))
        if not free.size:
            self.populate(d)  # make one for next time
            return
        i = int(free[d.int(0, free.size - 1)])
        pfn = m.first_page + i
        cpu = self.cpu(d)
        if not m.pg.busy[i] & PBUSY_LOCKED:
            self.do("vm_page_busy_try", {"m": pfn, "also_m_busy": True}, cpu=cpu, thread=THREADS)
        fn = d.pick(["vm_pageout_page", "vm_pageout_page", "vm_pageout_clean_helper"])
        args: dict[str, Any] = {"m": pfn, "flags": d.pick([0, 1, 2, 3])}
        if fn == "vm_pageout_page":
            args["pass_"] = d.pick([0, 0, 1, 10])
            args["max_launder"] = d.pick([0, 1, 1, 4])
        ran = len(self.outcomes)
        r = self.do(fn, args, cpu=cpu, thread=self.thread(d))
        if isinstance(r, int) and self.outcomes[ran][2] is None:
            # every branch of the decision table unbusies (or frees) the page
            assert not m.pg.busy[i] & PBUSY_LOCKED, f"{fn} left {pfn:#x} busied"

    def _prepared_call(self, data: Any, fn: str | None = None) -> None:
        """A page function on a page first brought into the state its assertions ask for
        (busied for valid changes, spec §1.2; soft-busied for io_finish/sbusy_drop, §9;
        wired for the quick (un)wiring, §10.1; busied and mapped for the protection
        calls, §14; a vm_page_alloczwq page for vm_page_freezwq, §7.2), which a blind draw
        rarely meets.  The other arguments are generated as in ``registry_call``."""
        d = Draw.of(data)
        m = self.m
        if fn is None:
            fn = d.pick(sorted(PREPARED))
        need = PREPARED[fn]
        cpu = self.cpu(d)
        tid = self.idle_thread(d)
        if tid is None:
            return
        if need == "zwq":
            pfn = self.do("vm_page_alloczwq", {"flags": "INTERRUPT"}, cpu=cpu, thread=tid)
            if not isinstance(pfn, int):
                return
            if d.bool():  # somebody else holds it busy: the free sleeps on it
                self.do("vm_page_busy_try", {"m": pfn, "also_m_busy": False}, thread=THREADS)
        else:
            pair = self.resident_pair(d) if not d.one_in(3) else None
            if pair is not None:
                pfn = m.first_page + m.vmobj.objects[pair[0]].pages[pair[1]]
            elif self.known:
                pfn = int(d.pick(self.known))
            else:
                return
        i = self.idx(pfn)
        pg = m.pg
        if need == "busied":
            need = d.pick(["hard", "soft"])
        if need in ("wired", "hard_wired") and not pg.wire[i]:
            if not pg.busy[i] & PBUSY_LOCKED:
                self.do("vm_page_busy_try", {"m": pfn, "also_m_busy": False}, cpu=cpu)
            self.do("vm_page_wire", {"m": pfn}, cpu=cpu)
        if need == "hard_mapped" and i not in m.pmap.mappings:
            self.do("pmap_enter", {"m": pfn, "pmap": d.int(0, 3), "writeable": d.bool()}, cpu=cpu)
        if need in ("hard", "hard_wired", "hard_mapped") and not pg.busy[i] & PBUSY_LOCKED:
            self.do("vm_page_busy_try", {"m": pfn, "also_m_busy": False}, cpu=cpu)
        if need == "soft" and not pg.busy[i] & PBUSY_MASK:
            self.do("vm_page_sbusy_hold", {"m": pfn}, cpu=cpu)
        spec = REGISTRY[fn]
        args = self.gen_args(spec, d)
        for p in spec.params:
            if p.kind == "page":
                args[p.name] = pfn if p.name in ("m", "dst") else self.pick_pfn(d)
        self.do(fn, args, cpu=cpu, thread=tid)

    prepared_call = rule(data=st.data())(_prepared_call)
    prepared_call_2 = rule(data=st.data())(_prepared_call)

    @rule(data=st.data())
    def cache_or_free(self, data: Any) -> None:
        """vm_page_cache / vm_page_try_to_cache on a busied queued page (both always unbusy
        it: spec §8.7, §8.8), or vm_page_try_to_free on an unbusied one (§8.9)."""
        d = Draw.of(data)
        m = self.m
        pfn = self.queued_page(d, (PQ_ACTIVE, PQ_INACTIVE, PQ_CACHE))
        if pfn is None:
            return
        i = self.idx(pfn)
        cpu = self.cpu(d)
        fn = d.pick(["vm_page_cache", "vm_page_try_to_cache", "vm_page_try_to_free"])
        if fn != "vm_page_try_to_free" and not m.pg.busy[i] & PBUSY_LOCKED:
            self.do("vm_page_busy_try", {"m": pfn, "also_m_busy": False}, cpu=cpu, thread=THREADS)
        ran = len(self.outcomes)
        r = self.do(fn, {"m": pfn}, cpu=cpu, thread=self.thread(d))
        if isinstance(r, Exception) or self.outcomes[ran][2] is not None:
            return
        if fn == "vm_page_try_to_free":
            if r is True:
                assert self._base(i) in (PQ_FREE, PQ_HOLD)  # §8.9: freed
        else:
            assert not m.pg.busy[i] & PBUSY_LOCKED, f"{fn} left {pfn:#x} busied"

    @rule(data=st.data())
    def hold_cycle(self, data: Any) -> None:
        """Hold a page, free it while held (to PQ_HOLD), unhold it (to PQ_FREE)."""
        d = Draw.of(data)
        m = self.m
        held = np.flatnonzero(m.pg.arrays["hold"])
        cpu = self.cpu(d)
        if held.size and d.bool():
            pfn = m.first_page + int(held[d.int(0, held.size - 1)])
            self.do("vm_page_unhold", {"m": pfn}, cpu=cpu, thread=self.thread(d))
            return
        pfn = self.pick_pfn(d)
        self.do("vm_page_hold", {"m": pfn}, cpu=cpu, thread=self.thread(d))

    @rule(data=st.data())
    def hash_and_lookups(self, data: Any) -> None:
        """The page hash (spec §11.3) on a PG_MAPPEDMULTI page of an object, and the lookup
        variants of §11.2 on its (object, pindex)."""
        d = Draw.of(data)
        m = self.m
        pg = m.pg
        multi = np.flatnonzero(
            (pg.arrays["flags"] & PG_MAPPEDMULTI).astype(bool) & (pg.arrays["obj"] != 0)
        )
        if multi.size:
            i = int(multi[d.int(0, multi.size - 1)])
        else:
            pair = self.resident_pair(d)
            if pair is None:
                return
            i = m.vmobj.objects[pair[0]].pages[pair[1]]
        pfn = m.first_page + i
        oid, pindex = int(pg.obj[i]), int(pg.pindex[i])
        cpu = self.cpu(d)
        fn = d.pick(
            [
                "vm_page_hash_enter",
                "vm_page_hash_get",
                "vm_page_lookup_sbusy_try",
                "vm_page_lookup_busy_try",
                "vm_page_lookup_busy_wait",
                "vm_page_next",
                "vm_page_lookup",
            ]
        )
        if fn in ("vm_page_hash_enter", "vm_page_next"):
            args: dict[str, Any] = {"m": pfn}
        else:
            args = {"object": oid, "pindex": pindex}
            if fn in ("vm_page_lookup_busy_try", "vm_page_lookup_busy_wait"):
                args["also_m_busy"] = d.bool()
            elif fn == "vm_page_lookup_sbusy_try":
                args["pgoff"] = d.pick([0, 512, 4096])
                args["pgbytes"] = d.pick([0, 512, 4096])
        if fn != "vm_page_hash_enter" and d.bool():
            self.do("vm_page_hash_enter", {"m": pfn}, cpu=cpu, thread=THREADS)
        word = pg.busy[i]
        ran = len(self.outcomes)
        r = self.do(fn, args, cpu=cpu, thread=self.thread(d))
        if isinstance(r, int) and fn == "vm_page_hash_get" and self.outcomes[ran][2] is None:
            # spec §11.3: a hit is the page at (object, pindex), soft-busied (count + 1)
            assert r == pfn and pg.busy[i] == word + 1

    @rule(data=st.data())
    def rename(self, data: Any) -> None:
        """vm_page_rename (spec §11.4) of a busied object page to another identity."""
        d = Draw.of(data)
        m = self.m
        pair = self.resident_pair(d)
        if pair is None:
            return
        i = m.vmobj.objects[pair[0]].pages[pair[1]]
        pfn = m.first_page + i
        cpu = self.cpu(d)
        if not m.pg.busy[i] & PBUSY_LOCKED:
            self.do("vm_page_busy_try", {"m": pfn, "also_m_busy": False}, cpu=cpu, thread=THREADS)
        args = {"m": pfn, "new_object": d.pick(self.objects), "new_pindex": d.int(0, 15)}
        r = self.do("vm_page_rename", args, cpu=cpu, thread=self.thread(d))
        if r is None:
            # renamed, and always dirtied (spec §11.4)
            assert m.pg.obj[i] == args["new_object"] and m.pg.pindex[i] == args["new_pindex"]
            assert m.pg.dirty[i] == 0xFF

    @rule(data=st.data())
    def contig(self, data: Any) -> None:
        """Contiguous memory (spec §7.4–7.7): take a run from the DMA reserve or, when the
        request does not fit there, from normal memory; give one back, sometimes while
        another thread holds one of its pages busy (the free then sleeps on that page)."""
        d = Draw.of(data)
        m = self.m
        cpu = self.cpu(d)
        if self.contig and d.bool():
            pfn, size = d.pick(self.contig)
            if d.one_in(3) and size > PAGE_SIZE:
                # another thread busies a page in the run first
                k = d.int(0, (size >> PAGE_SHIFT) - 1)
                self.do("vm_page_busy_try", {"m": pfn + k, "also_m_busy": False}, cpu=cpu)
            r = self.do(
                "vm_page_free_contig", {"m": pfn, "size": size}, cpu=cpu, thread=self.thread(d)
            )
            if not isinstance(r, Exception):
                self.contig.remove((pfn, size))
            return
        free = m.contig.alist.bl_free
        npg = d.pick([1, 1, 2, 3, 4, free + 1, free + 2])
        size = npg * PAGE_SIZE - d.pick([0, 0, 100])
        if d.bool():
            args = {"size": size, "high": d.pick([0, 0, 1 << 22])}
            r = self.do("vm_page_alloc_contig", args, cpu=cpu, thread=self.thread(d))
        else:
            args = {"size": size, "mflags": d.pick(["M_WAITOK", "M_NOWAIT", "M_NOWAIT|M_ZERO"])}
            r = self.do("vm_contig_pg_alloc", args, cpu=cpu, thread=self.thread(d))
        if isinstance(r, int):
            self.contig.append((r, size))
            i = self.idx(r)
            assert all(m.pg.wire[i + k] >= 1 for k in range(npg))  # spec §7.4, §7.7: wired

    @rule(data=st.data())
    def sysctl(self, data: Any) -> None:
        d = Draw.of(data)
        args = self.sysctl_args(d)
        r = self.do("sysctl", args, cpu=self.cpu(d), thread=self.thread(d))
        if isinstance(r, int) and args.get("value") is not None:
            # a write returns the old value; reading back gives the new one
            assert SYSCTL_BY_NAME[args["name"]].getter(self.m) == args["value"]

    @rule(data=st.data())
    def lookup(self, data: Any) -> None:
        d = Draw.of(data)
        args = {"object": self.pick_object(d), "pindex": d.int(0, 7)}
        res = self.do("vm_page_lookup", args, cpu=self.cpu(d), thread=self.thread(d))
        if isinstance(res, int):
            i = self.idx(res)
            assert self.m.pg.obj[i] == args["object"] and self.m.pg.pindex[i] == args["pindex"]

    @rule(data=st.data())
    def wait(self, data: Any) -> None:
        d = Draw.of(data)
        fn = d.pick(["vm_wait", "vm_wait_pfault", "vm_wait_nominal"])
        args = {"timo": d.int(0, 5)} if fn == "vm_wait" else {}
        self.do(
            fn,
            args,
            cpu=self.cpu(d),
            nice=d.int(-20, 20),
            thread=self.thread(d),
            lowmemkill=d.bool(),
        )

    @rule(data=st.data())
    def tick(self, data: Any) -> None:
        d = Draw.of(data)
        n = d.pick([0, 1, 3, 11, 100])
        ticks = self.m.sched.ticks
        self.do("tick", {"n": n}, cpu=self.cpu(d), thread=self.thread(d))
        assert self.m.sched.ticks == ticks + n
        for th in self.m.sched.threads.values():  # no expired sleep is left behind
            assert th.deadline is None or th.deadline > self.m.sched.ticks

    @rule(data=st.data())
    def wakeup(self, data: Any) -> None:
        d = Draw.of(data)
        chans = sorted(self.m.sched.sleepq)
        pages = [f"page:{pfn}" for pfn in self.known[:4]]
        channel = d.pick(chans + CHANNELS + pages)
        n = len(self.m.sched.sleepq.get(channel, ()))
        res = self.do("wakeup", {"channel": channel}, cpu=self.cpu(d), thread=self.thread(d))
        assert res == n

    @rule(data=st.data())
    def misc(self, data: Any) -> None:
        d = Draw.of(data)
        fn = d.pick(["vmstats_rollup", "pagedaemon_wakeup", "vm_test_nominal"])
        res = self.do(fn, {}, cpu=self.cpu(d), thread=self.thread(d))
        if fn == "vmstats_rollup" and not isinstance(res, Exception):
            for cpu in self.m.cpus:
                assert cpu.adj.cnt == [0, 0, 0, 0, 0]

    @rule(data=st.data())
    def pg_color(self, data: Any) -> None:
        d = Draw.of(data)
        args = {
            "cpuid": self.cpu(d),
            "object": self.pick_object(d),
            "pindex": d.int(0, (1 << 64) - 1),
        }
        res = self.do("vm_get_pg_color", args, thread=THREADS)
        if isinstance(res, int):
            assert 0 <= res < PQ_L2_SIZE

    def teardown(self) -> None:
        """Replay: the same calls on a fresh machine give the same results and state."""
        if not hasattr(self, "m") or self.crashed:
            return  # the failure itself is what hypothesis reports
        fresh = Machine.boot(self.cfg)
        for call, expected in zip(self.log, self.outcomes, strict=True):
            fn, args, cpu, tid, nice, systhread, lowmemkill = call
            try:
                got: Any = _outcome(
                    fresh.call(
                        fn,
                        args,
                        cpu=cpu,
                        thread=tid,
                        nice=nice,
                        systhread=systhread,
                        lowmemkill=lowmemkill,
                    )
                )
            except REFUSALS as e:
                got = type(e).__name__
            assert got == expected, f"replay of {fn}({args}) gave {got!r}, first run {expected!r}"
        assert fresh.state_digest() == state_digest(self.m)


PageLab.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=60,
    deadline=None,
    derandomize=True,  # CI runs a fixed, reproducible set of sequences
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestPageLab = PageLab.TestCase

#: The rules, for the seeded driver (the generic one weighted as hypothesis sees it).
RULES = [
    PageLab._registry_call,
    PageLab._registry_call,
    PageLab._registry_call,
    PageLab._registry_call,
    PageLab.new_object,
    PageLab.page_alloc,
    PageLab.drain,
    PageLab.release_memory,
    PageLab.populate,
    PageLab.grab,
    PageLab.alloczwq,
    PageLab.free_owned,
    PageLab.page_op,
    PageLab.busy_op,
    PageLab._block,
    PageLab.mapped_op,
    PageLab.pageout_page,
    PageLab._prepared_call,
    PageLab._prepared_call,
    PageLab.cache_or_free,
    PageLab.hold_cycle,
    PageLab.hash_and_lookups,
    PageLab.rename,
    PageLab.contig,
    PageLab.sysctl,
    PageLab.lookup,
    PageLab.wait,
    PageLab.tick,
    PageLab.wakeup,
    PageLab.misc,
    PageLab.pg_color,
]


#: Targeted rules that set the scene for functions (by name prefix) in the seeded tour.
SCENES = {
    "pmap_": PageLab.mapped_op,
    "vm_pageout_page": PageLab.pageout_page,
    "vm_pageout_clean_helper": PageLab.pageout_page,
    "vm_page_hash": PageLab.hash_and_lookups,
    "vm_page_lookup": PageLab.hash_and_lookups,
    "vm_page_free_contig": PageLab.contig,
    "vm_page_alloc_contig": PageLab.contig,
    "vm_contig": PageLab.contig,
    "vm_page_cache": PageLab.cache_or_free,
    "vm_page_try_to": PageLab.cache_or_free,
    "vm_page_rename": PageLab.rename,
    "vm_page_hold": PageLab.hold_cycle,
    "vm_page_unhold": PageLab.hold_cycle,
}


def _drive(seed: int, steps: int) -> PageLab:
    """Run the state machine's rules from a seeded RNG (no hypothesis), with the same
    checks, and the replay at the end: a cheap way to hunt over many seeds, e.g.
    ``for s in range(1000): _drive(s, 200)``."""
    rng = random.Random(seed)
    d = Draw(rng=rng)
    lab = PageLab()
    lab.boot(_config(d))
    for _ in range(steps):
        fn = PageLab._registry_call if rng.random() < 0.4 else rng.choice(RULES)
        fn(lab, d)
        lab.check()
    lab.teardown()
    return lab


# =========================================================== coverage of the registry
def test_every_param_kind_has_a_generator() -> None:
    """Each argument kind of the registry (and every kind callspec lists) can be drawn,
    and what is drawn mostly passes argument conversion: a new kind, or a new function
    whose arguments this file cannot build, fails here."""
    lab = PageLab()
    lab.boot(MachineConfig.from_size("2MiB", cpus=2))
    d = Draw(rng=random.Random(7))
    lab.do("vm_object_allocate", {})
    lab.do("vm_page_alloc", {"object": 1, "pindex": 0})
    for kind in ARG_KINDS:
        probe = Param("x", kind, lo=0, hi=9, choices=(("A", 1), ("B", 2)))
        spec = KernelFunction("probe", "probe", (probe,), "none", "", lambda vm: None)
        for _ in range(5):
            lab.gen_value(spec, spec.params[0], d, None)
    for name, spec in sorted(REGISTRY.items()):
        converted = 0
        for _ in range(20):
            try:
                _convert_args(lab.m, spec, lab.gen_args(spec, d))
                converted += 1
            except InvalidArgument:
                pass
        assert converted >= 10, f"{name}: generated arguments are mostly refused"


def _release(lab: PageLab) -> None:
    """Let every parked thread go: give the drained memory back, drop the busies of the
    pages they sleep on, wake the other channels, and run 100 ticks (hz: every vm_wait
    timeout expires)."""
    m = lab.m
    lab.give_back(1 << 20)
    for channel in sorted(m.sched.sleepq):
        if channel.startswith("page:"):
            pfn = int(channel[5:])
            for _ in range(m.pg.busy[lab.idx(pfn)] & PBUSY_MASK):
                lab.do("vm_page_sbusy_drop", {"m": pfn})
            if m.pg.busy[lab.idx(pfn)] & PBUSY_LOCKED:
                lab.do("vm_page_wakeup", {"m": pfn})
    for channel in sorted(m.sched.sleepq):
        if channel != "vm_pages_needed":  # the daemon's own channel
            lab.do("wakeup", {"channel": channel})
    lab.do("tick", {"n": 100}, thread=THREADS)


def test_every_registry_function_is_reached() -> None:
    """The rules, driven from a seeded RNG, reach every registry function: each completes
    at least once (through the generic rule, the prepared one where the function asserts
    a page state, or its targeted rule in ``SCENES``), and each sleeping function blocks
    at least once (``_block``, each on a fresh machine) and, once released, finishes its
    call on the woken thread.  Every call is checked as in the hypothesis test, the
    machine after every step, and the replay at the end."""
    rng = random.Random(2024)
    d = Draw(rng=rng)
    lab = PageLab()
    lab.boot(MachineConfig.from_size("2MiB", cpus=2, seed=5))
    for _ in range(30):
        rng.choice(RULES)(lab, d)
        lab.check()
    primary = sorted({spec.name for spec in REGISTRY.values()})
    for fn in primary:
        scene = [r for k, r in SCENES.items() if fn.startswith(k)]
        for attempt in range(60):
            if lab.stats[(fn, "ok")]:
                break
            if lab.idle_thread(d) is None:
                _release(lab)
            if attempt % 4 == 3:
                rng.choice(RULES)(lab, d)  # change the scene
            elif attempt % 4 == 1 and scene:
                scene[0](lab, d)  # the function's own targeted rule
            elif fn in PREPARED and attempt % 2:
                lab._prepared_call(d, fn)
            else:
                lab._registry_call(d, fn)
            lab.check()
    missing = [fn for fn in primary if not lab.stats[(fn, "ok")]]
    assert not missing, f"never completed: {missing}"
    lab.teardown()
    for fn in SLEEPERS:
        blab = PageLab()
        blab.boot(MachineConfig.from_size("1MiB", cpus=2, seed=3))
        for _ in range(3):
            blab.populate(d)
        for _ in range(10):
            if blab.stats[(fn, "blocked")]:
                break
            blab._block(d, fn)
            blab.check()
        assert blab.stats[(fn, "blocked")], f"{fn} never blocked"
        _release(blab)
        blab.check()
        assert blab.stats[(fn, "woken_ok")], f"{fn}: no woken thread finished its call"
        blab.teardown()


def test_the_pageout_daemon_runs_among_random_calls() -> None:
    """On a machine booted with the daemon, random steps around a memory shortage: the
    daemon thread wakes (ticks and pagedaemon_wakeup drive it), runs paging passes
    between the other threads' calls, and never dies (``check`` after every step)."""
    rng = random.Random(11)
    d = Draw(rng=rng)
    lab = PageLab()
    lab.boot(MachineConfig.from_size("1MiB", cpus=2, seed=1, pagedaemon=True))
    for step in range(90):
        if step == 30:
            lab._low_memory(d, "INTERRUPT")
            lab.do("tick", {"n": 3})
        else:
            rng.choice(RULES)(lab, d)
        lab.check()
    assert lab.m.pd.passes > 0  # paging passes ran (spec §15.2)
    lab.teardown()


# =========================================================== plain determinism test


def _random_script(rng: random.Random, ncpus: int, pool: list[int], n: int) -> list[Call]:
    """Random calls on three threads, with busy-word sleeps and ticks among them (a parked
    thread's later calls are refused the same way on every run).  Page operations pick
    from ``pool``, a few pfns, so that they meet each other's busy pages."""
    calls: list[Call] = [("vm_object_allocate", {}, 0, 0, 0, False, False)]
    for _ in range(n):
        k = rng.randrange(8)
        cpu = rng.randrange(ncpus)
        tid = rng.randrange(3)
        pfn = rng.choice(pool)
        if k == 0:
            args = {"object": rng.choice([None, 1]), "pindex": rng.randrange(8)}
            args["page_req"] = "NORMAL|NULL_OK"
            calls.append(("vm_page_alloc", args, cpu, tid, 0, False, False))
        elif k == 1:
            calls.append(
                ("vm_page_alloczwq", {"pindex": rng.randrange(8)}, cpu, tid, 0, False, False)
            )
        elif k == 2:
            fn = rng.choice(PAGE_OPS)
            calls.append((fn, {"m": pfn}, cpu, tid, 0, False, False))
        elif k == 3:
            nice = rng.randrange(-20, 21)
            calls.append(("vm_wait", {"timo": rng.randrange(3)}, cpu, tid, nice, False, False))
        elif k == 4:
            fn = rng.choice(["vmstats_rollup", "tick"])
            calls.append((fn, {}, cpu, 3, 0, False, False))
        elif k == 5:
            fn = rng.choice(BUSY_OPS[:-2])  # the busy word, not the flags
            calls.append((fn, {"m": pfn}, cpu, tid, 0, False, False))
        elif k == 6:
            calls.append(("wakeup", {"channel": f"page:{pfn}"}, cpu, 3, 0, False, False))
        else:
            args = {"object": 1, "pindex": rng.randrange(8)}
            calls.append(("vm_page_lookup", args, cpu, tid, 0, False, False))
    return calls


def _run(cfg: MachineConfig, calls: list[Call]) -> tuple[Machine, list[Any]]:
    m = Machine.boot(cfg)
    out: list[Any] = []
    for fn, args, cpu, tid, nice, systhread, lowmemkill in calls:
        try:
            r = m.call(
                fn,
                args,
                cpu=cpu,
                thread=tid,
                nice=nice,
                systhread=systhread,
                lowmemkill=lowmemkill,
            )
            out.append((r.result, r.blocked, r.record))
        except REFUSALS as e:
            out.append(str(e))
    check_invariants(m)
    return m, out


def test_replaying_a_recorded_sequence_is_deterministic() -> None:
    cfg = MachineConfig.from_size("4MiB", sockets=2, cores=1, seed=99)
    probe = Machine.boot(cfg)
    a, z = probe.managed[-1]  # the highest managed pages: the first ones allocated
    pool = [probe.first_page + i for i in range(z - 12, z)]
    calls = _random_script(random.Random(1234), probe.ncpus, pool, 400)
    a, out_a = _run(cfg, calls)
    b, out_b = _run(cfg, calls)
    assert out_a == out_b  # results, blocked calls, records (incl. resumed) and refusals
    assert a.state_digest() == b.state_digest()
    assert a.state_digest() != probe.state_digest()  # the calls did something
    # the script did exercise the scheduler: some calls blocked, some threads resumed
    assert any(isinstance(o, tuple) and o[1] is not None for o in out_a)
    assert any(isinstance(o, tuple) and "resumed" in o[2] for o in out_a)
    other, _ = _run(MachineConfig.from_size("4MiB", sockets=2, cores=1, seed=100), calls)
    assert other.state_digest() != a.state_digest()


# ============================================ refusals at the edge of the model
def _digest_kept_on_refusal(
    m: Machine, fn: str, args: dict[str, Any], exc: type[Exception] = KernelPanic
) -> None:
    before = state_digest(m)
    with pytest.raises(exc):
        m.call(fn, args)
    assert state_digest(m) == before, "refused, but the state changed"
    check_invariants(m)


def test_alloc_that_would_spin_reports_a_hang_and_stays_consistent() -> None:
    """Early boot (thresholds 0): once every free queue is empty the counters still allow
    an allocation, so the kernel's vm_page_alloc would roll up and loop forever.  The
    rollup happens (as in the kernel), then WouldSleep reports the hang; the rolled-up
    global counters now equal the recount."""
    m = Machine.boot(MachineConfig(phys_avail=((0x200000, 0x280000),), boot_stage="early"))
    for _ in range(200):
        try:
            m.call("vm_page_alloc", {}, record=False)
        except WouldSleep as e:
            assert e.function == "vm_page_alloc"
            break
    else:
        pytest.fail("the allocation never ran dry")
    check_invariants(m)
    assert m.vmstats.v_free_count == 0
    assert all(cpu.adj.cnt[0] == 0 for cpu in m.cpus)


@pytest.mark.parametrize("fn", ["vm_page_grab", "vm_page_alloczwq"])
def test_retry_with_no_memory_blocks_until_memory_returns(fn: str) -> None:
    """phys_avail [0x200000, 0x280000): 128 pages, page array 128 * 128 B = 4 pages plus one
    minidump page off the top -> P = 123 free pages (first_page 512); v_free_min = 64 +
    123 / 200 = 64, v_free_reserved = 64 * 4 / 8 + 7 = 39.  With every page allocated, a
    RETRY request sleeps in vm_wait(0) slices of hz = 100 ticks, retrying after each."""
    m = Machine.boot(MachineConfig(phys_avail=((0x200000, 0x280000),)))
    assert (m.vmstats.v_page_count, m.gd.v_free_min, m.gd.v_free_reserved) == (123, 64, 39)
    pages = []
    while (r := m.call("vm_page_alloc", {"page_req": "INTERRUPT"}, record=False)).result:
        pages.append(r.result)
    assert len(pages) == 123
    args: dict[str, Any] = {"flags": "NORMAL|RETRY"}
    if fn == "vm_page_grab":
        args["object"] = m.call("vm_object_allocate").result
    r = m.call(fn, args, thread=1)
    assert r.blocked == {"thread": 1, "channel": "v_free_count", "wmesg": "vmwait", "timo": 100}
    deficit = m.pd.vm_pageout_deficit
    r = m.call("tick", {"n": 100})  # timeout: the allocation fails again, another vm_wait
    assert [e["tid"] for e in r.record["events"] if e["event"] == "sleep"] == [1]
    assert m.pd.vm_pageout_deficit == deficit + 1
    assert m.pd.vm_pages_waiting == 2
    check_invariants(m)
    # 39 pages back: NORMAL may allocate (39 >= 39); 39 < 64 + 16 = 80 wakes nobody
    for pfn in pages[:39]:
        assert "resumed" not in m.call("vm_page_free", {"m": pfn}).record
    assert m.sched.threads[1].state == "sleeping"
    r = m.call("tick", {"n": 100})
    (done,) = [e for e in r.record["events"] if e["event"] == "resumed"]
    assert (done["tid"], done["fn"], done["timed_out"]) == (1, fn, True)
    i = done["result"] - m.first_page
    if fn == "vm_page_grab":
        assert m.pg.busy[i] == PBUSY_LOCKED and m.vmobj.objects[args["object"]].pages[0] == i
    else:
        assert m.pg.wire[i] == 1 and m.pg.busy[i] == 0
    assert m.gd.v_free_count == 38  # 39 - 1
    check_invariants(m)


def test_wiring_a_free_page_is_refused_before_anything_changes() -> None:
    """A wired page on PQ_FREE would trip the selectors' KASSERT (wire_count == 0) later,
    after the widening search had already written lastq; the simulator refuses the wire
    itself.  (One CPU, phys_avail [0x200000, 0xA00000).)"""
    m = Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),)))
    head = m.first_page + m.pq.head[PQ_FREE + 609]
    m.call("vm_page_busy_try", {"m": head})
    _digest_kept_on_refusal(m, "vm_page_wire", {"m": head}, SimulatorRefusal)
    m.call("vm_page_wakeup", {"m": head})
    m.call("vm_page_alloc", {"pindex": 600})
    check_invariants(m)


def test_inserting_a_free_page_into_an_object_is_refused() -> None:
    """vm_page_insert has no check of its own (spec §11.1), but a free page owned by an
    object would be handed out by vm_page_alloc while the object still maps it."""
    m = Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),)))
    a = m.call("vm_object_allocate").result
    _digest_kept_on_refusal(
        m, "vm_page_insert", {"m": 1625, "object": a, "pindex": 3}, SimulatorRefusal
    )
