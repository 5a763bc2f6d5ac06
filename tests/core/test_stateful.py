"""Property tests: random machines driven by random sequences of registry calls, on a
few simulated threads.

After every step the whole machine must pass ``check_invariants`` (which includes the sleep
queues) and no thread may sleep on a page whose busy word lacks PBUSY_WANTED (that sleeper
would never be woken: spec §9, "whoever clears busy must wakeup(m)").  A call is either
refused (``KernelPanic``, ``InvalidArgument``, ``WouldSleep``), which must leave
``state_digest`` exactly as it was, or completes, or *blocks* (parks its thread on a wait
channel: a valid outcome of a sleeping call).  A parked thread refuses every new call until
a wakeup or a timeout (``tick``) resumes it.  Replaying the recorded calls on a fresh machine
with the same configuration must give the same results, the same blocked calls, the same
resumed threads and the same digest.

Bounded to 40 examples x 50 steps (about 2000 random calls, plus the drains' allocations).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from app.core.config import BootStage, MachineConfig
from app.core.constants import (
    PBUSY_LOCKED,
    PBUSY_MASK,
    PBUSY_WANTED,
    PG_FICTITIOUS,
    PQ_FREE,
    PQ_HOLD,
    PQ_L2_SIZE,
    PQ_NONE,
)
from app.core.errors import InvalidArgument, KernelPanic, WouldSleep
from app.core.machine import Machine, parse_alloc_flags
from app.core.objects import ObjType
from app.core.registry import REGISTRY

REFUSALS = (KernelPanic, InvalidArgument, WouldSleep)
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
CHANNELS = ["v_free_count", "vm_pages_needed", "vm_pageout_pages_needed"]
#: Thread ids the test uses (thread i is also CPU i's default thread).
THREADS = 6
RETURNS_PAGE = {"vm_page_alloc", "vm_page_grab", "vm_page_alloczwq"}

#: Refusals that report a hang rather than an illegal call, after work that stays done.
#: Only one is left now that threads can sleep: vm_page_alloc, when the CPU's counters allow
#: an allocation but every queue is empty, rolls the vmstats up and would then spin forever
#: (it also reaches grab/alloczwq through their vm_page_alloc; e.function names it).  The
#: rollup is the kernel's own work before the hang, so it stays; the machine must still be
#: consistent (checked after every step).  See app.core.errors.WouldSleep.
STATE_CHANGING_REFUSALS = {("WouldSleep", "vm_page_alloc")}

Call = tuple[str, dict[str, Any], int, int, int, bool, bool]
# fn, args, cpu, thread, nice, systhread, lowmemkill


@st.composite
def configs(draw: st.DrawFn) -> MachineConfig:
    size = draw(st.sampled_from(["1MiB", "2MiB", "4MiB", "16MiB"]))
    cpus = draw(st.integers(1, 4))
    stage: BootStage = "early" if draw(st.booleans()) else "finished"
    seed = draw(st.integers(0, 1 << 16))
    if cpus in (2, 4) and draw(st.booleans()):
        return MachineConfig.from_size(
            size, sockets=2, cores=cpus // 2, seed=seed, boot_stage=stage
        )
    return MachineConfig.from_size(size, cpus=cpus, seed=seed, boot_stage=stage)


def draw_flags(data: st.DataObject, ncpus: int, extras: list[str] = EXTRAS) -> Any:
    """Random VM_ALLOC_* flags in a random spelling; rarely without a class (a KASSERT)
    or with VM_ALLOC_CPU(ncpus) (refused)."""
    if data.draw(st.integers(0, 19)) == 0:
        names: list[str] = []
    else:
        names = data.draw(st.lists(st.sampled_from(CLASSES), min_size=1, max_size=2, unique=True))
    names += data.draw(st.lists(st.sampled_from(extras), max_size=2, unique=True))
    cpu = data.draw(st.one_of(st.none(), st.integers(0, ncpus)))
    if cpu is not None:
        names.append(f"VM_ALLOC_CPU({cpu})")
    style = data.draw(st.sampled_from(["int", "str", "short", "list"]))
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
        self.objects: list[int] = []
        self.crashed = False

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
        """One call, logged for the replay.  ``digest=False`` skips the before/after digest
        comparison on a refusal (the drains: many cheap calls, refusals tested elsewhere)."""
        m = self.m
        tid = cpu if thread is None else thread
        th = m.threads.get(tid)
        parked = th is not None and th.state != "idle"
        before = m.state_digest() if digest else None
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
            assert not expect_ok, f"{fn}({args}) on cpu {cpu} was refused: {e!r}"
            if parked:
                assert isinstance(e, InvalidArgument), f"parked thread {tid}: {e!r}"
            known = (type(e).__name__, getattr(e, "function", "")) in STATE_CHANGING_REFUSALS
            if not known and before is not None:
                assert m.state_digest() == before, f"{fn}({args}) raised {e!r} after changing state"
            return e
        except BaseException:
            self.crashed = True
            raise
        assert not parked, f"thread {tid} was parked but ran {fn}"
        self.outcomes.append(_outcome(r))
        if r.blocked is not None:
            # a blocked call: only sleeping functions block; the thread is parked there
            assert REGISTRY[fn].sleeps and r.result is None
            th = m.threads[tid]
            assert th.state == "sleeping" and th.channel == r.blocked["channel"]
        for done in r.record.get("resumed", []):
            res = done.get("result")
            if done["fn"] in RETURNS_PAGE and isinstance(res, int) and res not in self.known:
                self.known.append(res)
        if fn in RETURNS_PAGE and r.result is not None and r.result not in self.known:
            self.known.append(r.result)
        return r.result

    def cpu(self, data: st.DataObject) -> int:
        return data.draw(st.integers(0, self.m.ncpus - 1))

    def thread(self, data: st.DataObject) -> int:
        """Mostly an idle thread; now and then any (a parked one must refuse the call)."""
        idle = [
            t
            for t in range(THREADS)
            if self.m.threads.get(t) is None or self.m.threads[t].state == "idle"
        ]
        if idle and data.draw(st.integers(0, 5)) > 0:
            return data.draw(st.sampled_from(idle))
        return data.draw(st.integers(0, THREADS - 1))

    def pick_pfn(self, data: st.DataObject) -> int:
        m = self.m
        anywhere = st.integers(m.first_page - 2, m.first_page + m.page_range + 1)
        if self.known and data.draw(st.integers(0, 3)) > 0:
            return data.draw(st.sampled_from(self.known))
        return data.draw(anywhere)

    def pick_object(self, data: st.DataObject) -> Any:
        if self.objects and data.draw(st.integers(0, 9)) > 0:
            return data.draw(st.sampled_from(self.objects))
        return data.draw(st.sampled_from([None, 0, 999]))

    def idx(self, pfn: int) -> int:
        return pfn - self.m.first_page

    def _managed(self, pfn: int) -> bool:
        i = self.idx(pfn)
        return any(a <= i < z for a, z in self.m.managed)

    def _base(self, i: int) -> int:
        q = self.m.pg.queue[i]
        return q - self.m.pg.pc[i] if q else 0

    # ------------------------------------------------------------ rules
    @precondition(lambda self: len(self.objects) < 6)
    @rule(data=st.data())
    def new_object(self, data: st.DataObject) -> None:
        typ = data.draw(st.sampled_from(list(ObjType.__members__)))
        size = data.draw(st.integers(0, 64))
        oid = self.do(
            "vm_object_allocate", {"type": typ, "size": size}, cpu=self.cpu(data), thread=THREADS
        )
        assert isinstance(oid, int)
        self.objects.append(oid)

    @rule(data=st.data())
    def page_alloc(self, data: st.DataObject) -> None:
        args = {
            "object": self.pick_object(data),
            "pindex": data.draw(st.integers(0, 7)),
            "page_req": draw_flags(data, self.m.ncpus),
        }
        res = self.do(
            "vm_page_alloc",
            args,
            cpu=self.cpu(data),
            systhread=data.draw(st.booleans()),
            thread=self.thread(data),
        )
        if isinstance(res, int):
            i = self.idx(res)
            # spec §7.1: hard-busied on no queue.  (WANTED can survive: a sleeper's WANTED
            # on a free page whose soft busy was dropped by io_finish, which wakes nobody,
            # is kept by the busy_try CAS that selects the page.)
            assert self.m.pg.busy[i] & ~PBUSY_WANTED == PBUSY_LOCKED
            assert self.m.pg.queue[i] == PQ_NONE

    @rule(data=st.data())
    def drain(self, data: st.DataObject) -> None:
        """Allocate a run of object-less pages to bring the machine near its limits."""
        flags = data.draw(st.sampled_from(["INTERRUPT", "NORMAL", "SYSTEM|NORMAL", "QUICK"]))
        cpu = self.cpu(data)
        for _ in range(data.draw(st.sampled_from([8, 64, 256, 1024]))):
            args = {"page_req": flags}
            res = self.do("vm_page_alloc", args, cpu=cpu, thread=THREADS, digest=False)
            if not isinstance(res, int):
                break

    @rule(data=st.data())
    def grab(self, data: st.DataObject) -> None:
        args = {
            "object": self.pick_object(data),
            "pindex": data.draw(st.integers(0, 7)),
            "flags": draw_flags(data, self.m.ncpus),
        }
        self.do("vm_page_grab", args, cpu=self.cpu(data), thread=self.thread(data))

    @rule(data=st.data())
    def alloczwq(self, data: st.DataObject) -> None:
        args = {"pindex": data.draw(st.integers(0, 7)), "flags": draw_flags(data, self.m.ncpus)}
        res = self.do("vm_page_alloczwq", args, cpu=self.cpu(data), thread=self.thread(data))
        if isinstance(res, int):
            i = self.idx(res)
            assert self.m.pg.wire[i] == 1 and self.m.pg.busy[i] == 0  # spec §7.2

    @rule(data=st.data())
    def free_owned(self, data: st.DataObject) -> None:
        """Free a page the test holds hard-busied: spec §8.2 says this must work."""
        pg = self.m.pg
        owned = []
        for pfn in self.known:
            i = self.idx(pfn)
            busy = pg.busy[i]
            if not busy & PBUSY_LOCKED or busy & PBUSY_MASK or self._base(i) == PQ_FREE:
                continue
            if pg.wire[i] and not pg.flags[i] & PG_FICTITIOUS:
                continue
            owned.append(pfn)
        if not owned:
            return
        pfn = data.draw(st.sampled_from(owned))
        i = self.idx(pfn)
        fictitious = bool(pg.flags[i] & PG_FICTITIOUS)
        self.do("vm_page_free", {"m": pfn}, cpu=self.cpu(data), expect_ok=True, thread=THREADS)
        if self.outcomes[-1][2] is not None:
            return  # threads the free woke ran afterwards and may have taken the page
        assert pg.busy[i] & PBUSY_LOCKED == 0 and pg.obj[i] == 0
        if not fictitious:
            assert self._base(i) in (PQ_FREE, PQ_HOLD)

    @rule(data=st.data())
    def page_op(self, data: st.DataObject) -> None:
        fn = data.draw(st.sampled_from(PAGE_OPS))
        pfn = self.pick_pfn(data)
        args: dict[str, Any] = {"m": pfn}
        if fn == "vm_page_unwire":
            args["activate"] = data.draw(st.booleans())
        elif fn == "vm_page_busy_try":
            args["also_m_busy"] = data.draw(st.booleans())
        elif fn == "vm_page_insert":
            args["object"] = self.pick_object(data)
            args["pindex"] = data.draw(st.integers(0, 7))
        res = self.do(fn, args, cpu=self.cpu(data), thread=self.thread(data))
        if fn == "vm_page_busy_try" and res is False and pfn not in self.known:
            self.known.append(pfn)

    @rule(data=st.data())
    def busy_op(self, data: st.DataObject) -> None:
        """The busy family of spec §9 on a random page, by a random thread."""
        fn = data.draw(st.sampled_from(BUSY_OPS))
        pfn = self.pick_pfn(data)
        args: dict[str, Any] = {"m": pfn}
        if fn in ("vm_page_busy_wait", "vm_page_sleep_busy"):
            args["also_m_busy"] = data.draw(st.booleans())
            if data.draw(st.booleans()):
                args["msg"] = data.draw(st.sampled_from(["pgwait", "busyw", "x"]))
        elif fn in ("vm_page_flag_set", "vm_page_flag_clear"):
            args["bits"] = "|".join(
                data.draw(st.lists(st.sampled_from(PG_BITS), min_size=1, max_size=2))
            )
        m = self.m
        word = m.pg.busy[self.idx(pfn)] if self._managed(pfn) else None
        res = self.do(fn, args, cpu=self.cpu(data), thread=self.thread(data))
        if fn == "vm_page_sbusy_try" and isinstance(res, int):
            assert word is not None and res == (1 if word & PBUSY_LOCKED else 0)  # spec §9
        if fn == "vm_page_busy_wait" and res is None and pfn not in self.known:
            self.known.append(pfn)

    @rule(data=st.data())
    def contend(self, data: st.DataObject) -> None:
        """Another thread wants a page somebody holds busy: busy_wait / sleep_busy on it, or
        a RETRY grab of it through its object; each should block (spec §7.3, §9)."""
        m = self.m
        pg = m.pg
        held = [p for p in self.known if pg.busy[self.idx(p)] & (PBUSY_LOCKED | PBUSY_MASK)]
        if not held:
            return
        pfn = data.draw(st.sampled_from(held))
        i = self.idx(pfn)
        how = data.draw(st.sampled_from(["busy_wait", "sleep_busy", "grab"]))
        also = data.draw(st.booleans())
        tid = self.thread(data)
        if how == "grab" and pg.obj[i]:
            args = {"object": int(pg.obj[i]), "pindex": int(pg.pindex[i]), "flags": "NORMAL|RETRY"}
            self.do("vm_page_grab", args, cpu=self.cpu(data), thread=tid)
        else:
            fn = "vm_page_sleep_busy" if how == "sleep_busy" else "vm_page_busy_wait"
            self.do(fn, {"m": pfn, "also_m_busy": also}, cpu=self.cpu(data), thread=tid)

    @rule(data=st.data())
    def lookup(self, data: st.DataObject) -> None:
        args = {"object": self.pick_object(data), "pindex": data.draw(st.integers(0, 7))}
        res = self.do("vm_page_lookup", args, cpu=self.cpu(data), thread=self.thread(data))
        if isinstance(res, int):
            i = self.idx(res)
            assert self.m.pg.obj[i] == args["object"] and self.m.pg.pindex[i] == args["pindex"]

    @rule(data=st.data())
    def wait(self, data: st.DataObject) -> None:
        fn = data.draw(st.sampled_from(["vm_wait", "vm_wait_pfault", "vm_wait_nominal"]))
        args = {"timo": data.draw(st.integers(0, 5))} if fn == "vm_wait" else {}
        self.do(
            fn,
            args,
            cpu=self.cpu(data),
            nice=data.draw(st.integers(-20, 20)),
            thread=self.thread(data),
            lowmemkill=data.draw(st.booleans()),
        )

    @rule(data=st.data())
    def tick(self, data: st.DataObject) -> None:
        n = data.draw(st.sampled_from([0, 1, 3, 11, 100]))
        ticks = self.m.ticks
        self.do("tick", {"n": n}, cpu=self.cpu(data), thread=THREADS)
        assert self.m.ticks == ticks + n
        for th in self.m.threads.values():  # no expired sleep is left behind
            assert th.deadline is None or th.deadline > self.m.ticks

    @rule(data=st.data())
    def wakeup(self, data: st.DataObject) -> None:
        chans = sorted(self.m.sleepq)
        pages = [f"page:{pfn}" for pfn in self.known[:4]]
        channel = data.draw(st.sampled_from(chans + CHANNELS + pages))
        n = len(self.m.sleepq.get(channel, ()))
        res = self.do("wakeup", {"channel": channel}, cpu=self.cpu(data), thread=THREADS)
        assert res == n

    @rule(data=st.data())
    def misc(self, data: st.DataObject) -> None:
        fn = data.draw(st.sampled_from(["vmstats_rollup", "pagedaemon_wakeup", "vm_test_nominal"]))
        res = self.do(fn, {}, cpu=self.cpu(data), thread=self.thread(data))
        if fn == "vmstats_rollup" and not isinstance(res, Exception):
            for cpu in self.m.cpus:
                assert cpu.adj.cnt == [0, 0, 0, 0, 0]

    @rule(data=st.data())
    def pg_color(self, data: st.DataObject) -> None:
        args = {
            "cpuid": self.cpu(data),
            "object": self.pick_object(data),
            "pindex": data.draw(st.integers(0, (1 << 64) - 1)),
        }
        res = self.do("vm_get_pg_color", args, thread=THREADS)
        if isinstance(res, int):
            assert 0 <= res < PQ_L2_SIZE

    # ------------------------------------------------------------ checks
    @invariant()
    def consistent(self) -> None:
        m = self.m
        m.check_invariants()
        assert not m.runq  # every woken thread ran before its waker's call returned
        for channel, sleepers in m.sleepq.items():
            assert sleepers
            if channel.startswith("page:"):
                # a page sleeper set WANTED; whoever cleared it had to wake the sleepers
                i = self.idx(int(channel[5:]))
                assert m.pg.busy[i] & PBUSY_WANTED, f"lost wakeup on {channel}"
            for th in sleepers:
                if channel.startswith("page:"):
                    assert th.deadline is None  # page sleeps never time out

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
        assert fresh.state_digest() == self.m.state_digest()


PageLab.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestPageLab = PageLab.TestCase


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
    m.check_invariants()
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
def _digest_kept_on_refusal(m: Machine, fn: str, args: dict[str, Any]) -> None:
    before = m.state_digest()
    with pytest.raises(KernelPanic):
        m.call(fn, args)
    assert m.state_digest() == before, "refused, but the state changed"
    m.check_invariants()


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
    m.check_invariants()
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
    deficit = m.vm_pageout_deficit
    r = m.call("tick", {"n": 100})  # timeout: the allocation fails again, another vm_wait
    assert [e["tid"] for e in r.record["events"] if e["event"] == "sleep"] == [1]
    assert m.vm_pageout_deficit == deficit + 1
    assert m.vm_pages_waiting == 2
    m.check_invariants()
    # 39 pages back: NORMAL may allocate (39 >= 39); 39 < 64 + 16 = 80 wakes nobody
    for pfn in pages[:39]:
        assert "resumed" not in m.call("vm_page_free", {"m": pfn}).record
    assert m.threads[1].state == "sleeping"
    r = m.call("tick", {"n": 100})
    (done,) = [e for e in r.record["events"] if e["event"] == "resumed"]
    assert (done["tid"], done["fn"], done["timed_out"]) == (1, fn, True)
    i = done["result"] - m.first_page
    if fn == "vm_page_grab":
        assert m.pg.busy[i] == PBUSY_LOCKED and m.objects[args["object"]].pages[0] == i
    else:
        assert m.pg.wire[i] == 1 and m.pg.busy[i] == 0
    assert m.gd.v_free_count == 38  # 39 - 1
    m.check_invariants()


def test_wiring_a_free_page_is_refused_before_anything_changes() -> None:
    """A wired page on PQ_FREE would trip the selectors' KASSERT (wire_count == 0) later,
    after the widening search had already written lastq; the simulator refuses the wire
    itself.  (One CPU, phys_avail [0x200000, 0xA00000).)"""
    m = Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),)))
    head = m.first_page + m.q_head[PQ_FREE + 609]
    m.call("vm_page_busy_try", {"m": head})
    _digest_kept_on_refusal(m, "vm_page_wire", {"m": head})
    m.call("vm_page_wakeup", {"m": head})
    m.call("vm_page_alloc", {"pindex": 600})
    m.check_invariants()


def test_inserting_a_free_page_into_an_object_is_refused() -> None:
    """vm_page_insert has no check of its own (spec §11.1), but a free page owned by an
    object would be handed out by vm_page_alloc while the object still maps it."""
    m = Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),)))
    a = m.call("vm_object_allocate").result
    _digest_kept_on_refusal(m, "vm_page_insert", {"m": 1625, "object": a, "pindex": 3})
