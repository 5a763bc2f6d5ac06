"""Property tests: random machines driven by random sequences of registry calls.

After every step the whole machine must pass ``check_invariants``; a call that is refused
(``KernelPanic``, ``InvalidArgument``, ``WouldSleep``) must leave ``state_digest`` exactly as
it was; and replaying the recorded calls on a fresh machine with the same configuration must
give the same results and the same digest.

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
    PG_FICTITIOUS,
    PQ_FREE,
    PQ_HOLD,
    PQ_L2_SIZE,
)
from app.core.errors import InvalidArgument, KernelPanic, WouldSleep
from app.core.machine import Machine, parse_alloc_flags
from app.core.objects import ObjType

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

#: Refusals that report a hang rather than an illegal call: the kernel's thread would
#: block forever *after* doing its work so far (a vmstats rollup, vm_wait bookkeeping,
#: deactivating pages another caller busied), so that work stays done; the machine must
#: still be consistent (checked after every step).  See app.core.errors.WouldSleep.
STATE_CHANGING_REFUSALS = {
    ("WouldSleep", "vm_page_alloc"),
    ("WouldSleep", "vm_page_grab"),
    ("WouldSleep", "vm_page_alloczwq"),
}

Call = tuple[str, dict[str, Any], int, int, bool]  # fn, args, cpu, nice, systhread


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
    ) -> Any:
        m = self.m
        before = m.state_digest()
        self.log.append((fn, dict(args), cpu, nice, systhread))
        try:
            r = m.call(fn, args, cpu=cpu, nice=nice, systhread=systhread)
        except REFUSALS as e:
            self.outcomes.append(type(e).__name__)
            assert not expect_ok, f"{fn}({args}) on cpu {cpu} was refused: {e!r}"
            known = (type(e).__name__, getattr(e, "function", "")) in STATE_CHANGING_REFUSALS
            if not known:
                assert m.state_digest() == before, f"{fn}({args}) raised {e!r} after changing state"
            return e
        except BaseException:
            self.crashed = True
            raise
        self.outcomes.append(r.result)
        returns_page = fn in ("vm_page_alloc", "vm_page_grab", "vm_page_alloczwq")
        if returns_page and r.result is not None and r.result not in self.known:
            self.known.append(r.result)
        return r.result

    def cpu(self, data: st.DataObject) -> int:
        return data.draw(st.integers(0, self.m.ncpus - 1))

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
        oid = self.do("vm_object_allocate", {"type": typ, "size": size}, cpu=self.cpu(data))
        assert isinstance(oid, int)
        self.objects.append(oid)

    @rule(data=st.data())
    def page_alloc(self, data: st.DataObject) -> None:
        args = {
            "object": self.pick_object(data),
            "pindex": data.draw(st.integers(0, 7)),
            "page_req": draw_flags(data, self.m.ncpus),
        }
        res = self.do("vm_page_alloc", args, cpu=self.cpu(data), systhread=data.draw(st.booleans()))
        if isinstance(res, int):
            i = self.idx(res)
            assert self.m.pg.busy[i] == PBUSY_LOCKED and self.m.pg.queue[i] == 0  # spec §7.1

    @rule(data=st.data())
    def drain(self, data: st.DataObject) -> None:
        """Allocate a run of object-less pages to bring the machine near its limits."""
        flags = data.draw(st.sampled_from(["INTERRUPT", "NORMAL", "SYSTEM|NORMAL", "QUICK"]))
        cpu = self.cpu(data)
        for _ in range(data.draw(st.integers(8, 64))):
            if self.do("vm_page_alloc", {"page_req": flags}, cpu=cpu) is None:
                break

    @rule(data=st.data())
    def grab(self, data: st.DataObject) -> None:
        args = {
            "object": self.pick_object(data),
            "pindex": data.draw(st.integers(0, 7)),
            "flags": draw_flags(data, self.m.ncpus),
        }
        self.do("vm_page_grab", args, cpu=self.cpu(data))

    @rule(data=st.data())
    def alloczwq(self, data: st.DataObject) -> None:
        args = {"pindex": data.draw(st.integers(0, 7)), "flags": draw_flags(data, self.m.ncpus)}
        res = self.do("vm_page_alloczwq", args, cpu=self.cpu(data))
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
        self.do("vm_page_free", {"m": pfn}, cpu=self.cpu(data), expect_ok=True)
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
        res = self.do(fn, args, cpu=self.cpu(data))
        if fn == "vm_page_busy_try" and res is False and pfn not in self.known:
            self.known.append(pfn)

    @rule(data=st.data())
    def lookup(self, data: st.DataObject) -> None:
        args = {"object": self.pick_object(data), "pindex": data.draw(st.integers(0, 7))}
        res = self.do("vm_page_lookup", args, cpu=self.cpu(data))
        if isinstance(res, int):
            i = self.idx(res)
            assert self.m.pg.obj[i] == args["object"] and self.m.pg.pindex[i] == args["pindex"]

    @rule(data=st.data())
    def wait(self, data: st.DataObject) -> None:
        nice = data.draw(st.integers(-20, 20))
        self.do("vm_wait", {"timo": data.draw(st.integers(0, 5))}, cpu=self.cpu(data), nice=nice)

    @rule(data=st.data())
    def misc(self, data: st.DataObject) -> None:
        fn = data.draw(st.sampled_from(["vmstats_rollup", "pagedaemon_wakeup", "vm_test_nominal"]))
        self.do(fn, {}, cpu=self.cpu(data))
        if fn == "vmstats_rollup":
            for cpu in self.m.cpus:
                assert cpu.adj.cnt == [0, 0, 0, 0, 0]

    @rule(data=st.data())
    def pg_color(self, data: st.DataObject) -> None:
        args = {
            "cpuid": self.cpu(data),
            "object": self.pick_object(data),
            "pindex": data.draw(st.integers(0, (1 << 64) - 1)),
        }
        res = self.do("vm_get_pg_color", args)
        if isinstance(res, int):
            assert 0 <= res < PQ_L2_SIZE

    # ------------------------------------------------------------ checks
    @invariant()
    def consistent(self) -> None:
        self.m.check_invariants()

    def teardown(self) -> None:
        """Replay: the same calls on a fresh machine give the same results and state."""
        if not hasattr(self, "m") or self.crashed:
            return  # the failure itself is what hypothesis reports
        fresh = Machine.boot(self.cfg)
        for (fn, args, cpu, nice, systhread), expected in zip(self.log, self.outcomes, strict=True):
            try:
                got: Any = fresh.call(fn, args, cpu=cpu, nice=nice, systhread=systhread).result
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


def _random_script(rng: random.Random, ncpus: int, first: int, size: int, n: int) -> list[Call]:
    calls: list[Call] = [("vm_object_allocate", {}, 0, 0, False)]
    for _ in range(n):
        k = rng.randrange(6)
        cpu = rng.randrange(ncpus)
        if k == 0:
            calls.append(
                (
                    "vm_page_alloc",
                    {
                        "object": rng.choice([None, 1]),
                        "pindex": rng.randrange(8),
                        "page_req": "NORMAL|NULL_OK",
                    },
                    cpu,
                    0,
                    False,
                )
            )
        elif k == 1:
            calls.append(("vm_page_alloczwq", {"pindex": rng.randrange(8)}, cpu, 0, False))
        elif k == 2:
            fn = rng.choice(PAGE_OPS)
            calls.append((fn, {"m": first + rng.randrange(size)}, cpu, 0, False))
        elif k == 3:
            calls.append(
                ("vm_wait", {"timo": rng.randrange(3)}, cpu, rng.randrange(-20, 21), False)
            )
        elif k == 4:
            calls.append(("vmstats_rollup", {}, cpu, 0, False))
        else:
            calls.append(
                ("vm_page_lookup", {"object": 1, "pindex": rng.randrange(8)}, cpu, 0, False)
            )
    return calls


def _run(cfg: MachineConfig, calls: list[Call]) -> tuple[Machine, list[Any]]:
    m = Machine.boot(cfg)
    out: list[Any] = []
    for fn, args, cpu, nice, systhread in calls:
        try:
            r = m.call(fn, args, cpu=cpu, nice=nice, systhread=systhread)
            out.append((r.result, r.record))
        except REFUSALS as e:
            out.append(str(e))
    m.check_invariants()
    return m, out


def test_replaying_a_recorded_sequence_is_deterministic() -> None:
    cfg = MachineConfig.from_size("4MiB", sockets=2, cores=1, seed=99)
    probe = Machine.boot(cfg)
    calls = _random_script(
        random.Random(1234), probe.ncpus, probe.first_page, probe.page_range, 400
    )
    a, out_a = _run(cfg, calls)
    b, out_b = _run(cfg, calls)
    assert out_a == out_b  # results, records (moves, counters, events) and refusals
    assert a.state_digest() == b.state_digest()
    assert a.state_digest() != probe.state_digest()  # the calls did something
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
def test_retry_with_no_memory_reports_a_hang_after_waiting(fn: str) -> None:
    m = Machine.boot(MachineConfig(phys_avail=((0x200000, 0x280000),)))
    while m.call("vm_page_alloc", {"page_req": "INTERRUPT"}, record=False).result is not None:
        pass
    args: dict[str, Any] = {"flags": "NORMAL|RETRY"}
    if fn == "vm_page_grab":
        args["object"] = m.call("vm_object_allocate").result
    ticks = m.ticks
    with pytest.raises(WouldSleep):
        m.call(fn, args)
    # it slept (vm_wait, hz ticks each) before concluding nobody can free a page
    assert m.ticks > ticks
    assert m.vm_pages_waiting >= 1
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
