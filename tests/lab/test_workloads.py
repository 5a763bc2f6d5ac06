"""The built-in workloads (``app.lab.workloads``): determinism, the kernel behaviour each
one is meant to show, the machine's invariants afterwards, and parameter validation."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import MachineConfig
from app.core.constants import PAGE_SIZE, PG_SWAPPED, PQ_CACHE, PQ_FREE, PQ_INACTIVE
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.objects import ObjType
from app.core.vm_meter import vmstats_rollup
from app.lab.machine_views import pageout_view
from app.lab.workloads import (
    CORE_ERRORS,
    WORKLOADS,
    Churn,
    DmaFragmentation,
    FileCache,
    MachineInfo,
    Pressure,
    Workload,
    get_kind,
    run_sync,
    step,
)


def boot(size: str = "16MiB", cpus: int = 2) -> Machine:
    return Machine.boot(MachineConfig.from_size(size, cpus=cpus, seed=1, pagedaemon=True))


def boot_numa() -> Machine:
    """Two sockets of two cores (the server-2s-64g layout, scaled down): colours 0-511
    belong to socket 0's CPUs 0-1, colours 512-1023 to socket 1's CPUs 2-3."""
    cfg = MachineConfig.from_size(
        "64MiB", sockets=2, cores=2, threads=1, cpus=4, seed=1, pagedaemon=True
    )
    return Machine.boot(cfg)


def machine_for(kind: str) -> Machine:
    return boot_numa() if kind == "numa-skew" else boot()


def free_plus_cache(m: Machine) -> int:
    return m.vmstats.v_free_count + m.vmstats.v_cache_count


def run_one(m: Machine, w: Workload) -> tuple[str, dict[str, Any], Any] | None:
    """One call, driven by hand (so a test can look at each call and its outcome); None
    when the workload is finished."""
    call = w.next_call(m)
    if call is None:
        return None
    fn, args, ctx = call
    try:
        outcome: Any = m.call(fn, args, cpu=ctx["cpu"], record=False).result
    except CORE_ERRORS as e:
        outcome = e
    w.observe(fn, args, ctx, outcome)
    return fn, args, outcome


# ===================================================================== registry
def test_the_registry_offers_the_six_workloads_with_valid_defaults() -> None:
    assert set(WORKLOADS) == {
        "churn",
        "pressure",
        "dontneed-storm",
        "dma-fragmentation",
        "numa-skew",
        "file-cache",
    }
    for name, kind in WORKLOADS.items():
        assert kind.name == name
        assert kind.description and "\n" not in kind.description
        assert kind.factory.__doc__, f"{name} says what it demonstrates"
        defaults = kind.validate({})
        assert defaults == {p.name: p.default for p in kind.params}
        described = kind.describe()
        assert [p["name"] for p in described["params"]] == list(defaults)
        for p in described["params"]:
            assert p["help"]
            if p["type"] == "int":
                assert p["min"] <= p["default"] <= p["max"]


# ===================================================================== determinism
_STEPS = {
    "churn": 3000,
    "pressure": 3000,
    "dontneed-storm": 3000,
    "dma-fragmentation": 3000,
    "numa-skew": 3000,
    "file-cache": 3000,
}


@pytest.mark.parametrize("kind", sorted(_STEPS))
def test_same_seed_same_machine_state_and_invariants_hold(kind: str) -> None:
    a, b = machine_for(kind), machine_for(kind)
    ra = run_sync(a, kind, {}, seed=11, steps=_STEPS[kind])
    rb = run_sync(b, kind, {}, seed=11, steps=_STEPS[kind])
    assert ra == rb
    assert ra["calls"] > 0
    assert ra["errors"] == 0, ra["last_error"]
    assert a.state_digest() == b.state_digest()
    a.check_invariants()


def test_a_different_seed_gives_a_different_churn() -> None:
    a, b = boot(), boot()
    run_sync(a, "churn", {}, seed=1, steps=2000)
    run_sync(b, "churn", {}, seed=2, steps=2000)
    assert a.state_digest() != b.state_digest()


def test_the_workload_uses_only_its_own_random_generator() -> None:
    import random

    a, b = boot(), boot()
    random.seed(1)
    run_sync(a, "churn", {}, seed=5, steps=1500)
    random.seed(2)
    run_sync(b, "churn", {}, seed=5, steps=1500)
    assert a.state_digest() == b.state_digest()


# ===================================================================== churn
def test_churn_keeps_its_working_set_bounded_and_runs_on_every_cpu() -> None:
    m = boot(cpus=4)
    w = WORKLOADS["churn"].create(m, {"working_set": 64, "objects": 3}, seed=3)
    assert isinstance(w, Churn)
    cpus: set[int] = set()
    for _ in range(6000):
        call = w.next_call(m)
        assert call is not None
        fn, args, ctx = call
        cpus.add(ctx["cpu"])
        w.observe(fn, args, ctx, m.call(fn, args, cpu=ctx["cpu"], record=False).result)
    assert not w.finished  # it runs forever
    assert cpus == {0, 1, 2, 3}
    resident = sum(len(m.vmobj.objects[oid].pages) for oid in w.objects)
    assert resident <= 64
    assert w.counters["freed"] > 0 and w.counters["allocated"] > 64
    assert w.errors == 0
    check_invariants(m)


# ===================================================================== pressure
def test_pressure_goes_below_paging_start_and_the_daemon_recovers_to_target2() -> None:
    m = boot("32MiB")
    vs = m.vmstats
    w = WORKLOADS["pressure"].create(m, {}, seed=1)
    assert isinstance(w, Pressure)
    lowest = free_plus_cache(m)
    passes_at_dip = None
    at_ramp_end = None
    while step(m, w) is not None:
        fc = free_plus_cache(m)
        lowest = min(lowest, fc)
        if passes_at_dip is None and fc < vs.v_paging_start:
            passes_at_dip = pageout_view(m)["passes"]
        if at_ramp_end is None and w.phase == "recover":
            at_ramp_end = fc
    assert w.errors == 0, w.last_error
    assert w.phase == "done"
    # the ramp pushed free + cache below the daemon's start threshold ...
    assert lowest < vs.v_paging_start
    assert w.stats()["min_free_plus_cache"] < vs.v_paging_start
    # ... the daemon ran passes after that, and laundered dirty anonymous pages (the
    # first pageout turns an anonymous object into a swap object, its pages PG_SWAPPED)
    assert passes_at_dip is not None and pageout_view(m)["passes"] > passes_at_dip
    assert sum(m.cpus[c].meter["v_pdpages"] for c in range(m.ncpus)) > 0
    laundered = int((m.pg.arrays["flags"] & PG_SWAPPED != 0).sum())
    assert laundered > 0
    assert any(m.vmobj.objects[oid].type == ObjType.OBJT_SWAP for oid in w.objects)
    # ... and, once allocation stopped short of it, brought free + cache back to its
    # final target and went idle
    assert at_ramp_end is not None and at_ramp_end < vs.v_paging_target2
    assert free_plus_cache(m) >= vs.v_paging_target2
    assert m.pd.vm_pages_needed == 0
    check_invariants(m)


def test_pressure_without_a_daemon_gives_up_after_its_tick_budget() -> None:
    m = Machine.boot(MachineConfig.from_size("16MiB", cpus=1, seed=1))
    w = WORKLOADS["pressure"].create(m, {"recover_ticks": 50}, seed=1)
    summary = run_sync(m, w, steps=200_000)
    assert summary["finished"] and summary["stats"]["phase"] == "gave-up"
    assert summary["stats"]["recover_ticks"] == 50
    check_invariants(m)


# ===================================================================== dontneed storm
def test_dontneed_storm_moves_pages_to_the_inactive_queue() -> None:
    m = boot()
    assert m.vmstats.v_inactive_count == 0
    summary = run_sync(m, "dontneed-storm", {"pages": 200, "rounds": 100}, seed=4, steps=100_000)
    assert summary["finished"] and summary["errors"] == 0
    stats = summary["stats"]
    # every vm_page_dontneed (directly or through madvise) consumed one dnweight value
    assert m.pagestate.dnweight == stats["dontneed_pages"] > 200
    assert summary["by_fn"]["madvise"] > 0 and summary["by_fn"]["vm_page_dontneed"] > 0
    obj = next(o for o in m.vmobj.objects.values() if len(o.pages) == 200)
    inactive = [i for i in obj.pages.values() if m.pg.queue[i] - m.pg.pc[i] == PQ_INACTIVE]
    assert len(inactive) >= 100
    vmstats_rollup(m)
    assert m.vmstats.v_inactive_count >= len(inactive)
    check_invariants(m)


# ===================================================================== DMA fragmentation
@pytest.mark.parametrize("size", ["16MiB", "64MiB"])
def test_dma_fragmentation_ends_with_a_contig_failure_a_fresh_machine_survives(
    size: str,
) -> None:
    m = boot(size)
    w = WORKLOADS["dma-fragmentation"].create(m, {}, seed=9)
    assert isinstance(w, DmaFragmentation)
    last = None
    while (done := run_one(m, w)) is not None:
        last = done
    assert w.finished and w.next_call(m) is None
    assert last is not None
    fn, args, outcome = last
    assert fn == "vm_page_alloc_contig" and outcome is None
    failed = w.stats()["failed_pages"]
    assert args["size"] == failed * PAGE_SIZE
    # not for lack of pages: enough of the reserve is free, only scattered
    assert m.call("vm_contig_avail_pages").result >= failed
    fresh = boot(size)
    assert fresh.call("vm_page_alloc_contig", {"size": failed * PAGE_SIZE}).result is not None
    assert w.errors == 0
    check_invariants(m)


def test_dma_fragmentation_fallback_takes_normal_memory() -> None:
    m = boot()
    summary = run_sync(m, "dma-fragmentation", {"fallback": True}, seed=9, steps=100_000)
    stats = summary["stats"]
    assert summary["finished"] and summary["errors"] == 0
    assert summary["by_fn"]["vm_contig_pg_alloc"] == 1
    # contigmalloc found the run above the reserve, and the workload gave it back
    assert stats["fallback_pfn"] * PAGE_SIZE >= m.contig.vm_low_phys_reserved
    held = stats["held_single_pages"]
    assert m.call("vm_contig_avail_pages").result == m.vmstats.v_dma_pages - held
    check_invariants(m)


# ===================================================================== NUMA skew
@pytest.mark.parametrize("socket", [0, 1])
def test_numa_skew_draws_down_only_its_sockets_colors(socket: int) -> None:
    m = boot_numa()
    info = MachineInfo.of(m)
    mine, other = info.socket_colors(socket), info.socket_colors(1 - socket)
    assert (mine.start, mine.stop) == ((0, 512) if socket == 0 else (512, 1024))
    before = list(m.pq.lcnt[PQ_FREE : PQ_FREE + 1024])
    summary = run_sync(m, "numa-skew", {"socket": socket, "pages": 1500}, seed=2, steps=50_000)
    assert summary["finished"] and summary["errors"] == 0
    assert summary["stats"]["cpus"] == list(info.socket_cpus(socket))
    assert "allocated_off_socket" not in summary["stats"]
    after = list(m.pq.lcnt[PQ_FREE : PQ_FREE + 1024])
    assert [after[c] for c in other] == [before[c] for c in other]
    assert sum(after[c] for c in mine) < sum(before[c] for c in mine)
    assert all(after[c] <= before[c] for c in mine)
    check_invariants(m)


def test_numa_skew_refuses_a_socket_the_machine_does_not_have() -> None:
    with pytest.raises(ValueError, match=r"'socket' must be from 0 to 0 .*got 1"):
        WORKLOADS["numa-skew"].create(boot(), {"socket": 1}, seed=0)


# ===================================================================== file cache
def test_file_cache_caches_pages_hits_them_and_recycles_them() -> None:
    m = boot()
    w = WORKLOADS["file-cache"].create(m, {}, seed=6)
    assert isinstance(w, FileCache)
    cached_as: dict[int, tuple[int, int]] = {}  # pfn -> (object, pindex) when cached
    max_cache = 0
    recycled = 0
    for _ in range(15_000):
        done = run_one(m, w)
        assert done is not None  # it runs forever
        fn, args, outcome = done
        assert not isinstance(outcome, Exception), outcome
        if fn in ("vm_page_cache", "vm_page_try_to_cache"):
            i = args["m"] - m.first_page
            if m.pg.queue[i] - m.pg.pc[i] == PQ_CACHE:
                cached_as[args["m"]] = (int(m.pg.obj[i]), int(m.pg.pindex[i]))
        elif fn == "vm_page_alloc" and outcome is not None:
            old = cached_as.pop(outcome, None)
            if old is not None and old != (args["object"], args["pindex"]):
                recycled += 1
        max_cache = max(max_cache, m.vmstats.v_cache_count)
    stats = w.stats()
    assert all(m.vmobj.objects[oid].type == ObjType.OBJT_VNODE for oid in w.files)
    assert stats["pinned_pages"] > 0
    # pages went to the cache queue ...
    assert max_cache > 0 and cached_as
    # ... some were found there again (reactivated from the cache: a hit, no I/O) ...
    assert stats["cache_hits"] > 0
    assert sum(m.cpus[c].meter["v_reactivated"] for c in range(m.ncpus)) >= stats["cache_hits"]
    # ... and some were reused by later allocations for other file pages
    assert recycled > 0
    assert stats["recycled_cache_pages"] >= recycled
    check_invariants(m)


def test_file_cache_without_pinning_keeps_memory_free() -> None:
    m = boot()
    summary = run_sync(m, "file-cache", {"pin": False, "file_pages": 8}, seed=1, steps=3000)
    assert summary["errors"] == 0
    assert "pinned_pages" not in summary["stats"]
    assert summary["by_fn"].get("vm_contig_pg_alloc", 0) == 0
    check_invariants(m)


# ===================================================================== validation
@pytest.mark.parametrize(
    ("kind", "params", "pattern"),
    [
        ("churn", {"objects": 100_000}, r"'objects' must be an integer from 1 to 4096; got 100000"),
        ("churn", {"objects": 0}, r"'objects' must be an integer from 1 to 4096; got 0"),
        ("churn", {"objects": True}, r"'objects' must be an integer .*got True"),
        ("churn", {"objects": "4"}, r"'objects' must be an integer .*got '4'"),
        ("churn", {"working_set": -1}, r"'working_set' must be an integer from 1 to"),
        ("churn", {"colour": 3}, r"no parameter 'colour'; its parameters: objects, working_set"),
        ("pressure", {"dirty_percent": 101}, r"'dirty_percent' must be .* 0 to 100; got 101"),
        ("dma-fragmentation", {"fallback": 1}, r"'fallback' must be true or false; got 1"),
        ("file-cache", {"cache_path": "lru"}, r"'cache_path' must be one of 'cache', .*'lru'"),
        ("numa-skew", {"socket": 64}, r"'socket' must be an integer from 0 to 63; got 64"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(
    kind: str, params: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        WORKLOADS[kind].validate(params)
    assert kind in str(info.value)


def test_unknown_kinds_seeds_and_steps_are_refused() -> None:
    m = boot()
    with pytest.raises(ValueError, match=r"no workload 'thrash'; workloads: churn, pressure"):
        get_kind("thrash")
    with pytest.raises(ValueError, match=r"seed must be an integer from 0 to 2\^64-1; got -1"):
        run_sync(m, "churn", {}, seed=-1, steps=1)
    with pytest.raises(ValueError, match=r"steps must be an integer >= 0; got -5"):
        run_sync(m, "churn", {}, seed=1, steps=-5)


def test_the_protocol_is_call_then_observe() -> None:
    m = boot()
    w = WORKLOADS["churn"].create(m, {}, seed=1)
    with pytest.raises(RuntimeError, match="asked for nothing"):
        w.observe("vm_page_alloc", {}, {"cpu": 0}, None)
    call = w.next_call(m)
    assert call is not None
    with pytest.raises(RuntimeError, match="observe the outcome of vm_object_allocate"):
        w.next_call(m)
    fn, args, ctx = call
    assert fn == "vm_object_allocate"
    assert ctx == {"cpu": ctx["cpu"], "thread": None, "nice": 0}
    w.observe(fn, args, ctx, m.call(fn, args, cpu=ctx["cpu"]).result)
    assert w.calls == 1


def test_a_core_error_is_counted_not_raised() -> None:
    class FreesAFreePage(Workload):
        kind = "test-bad"

        def _plan(self, machine: Machine) -> None:
            # vm_page_free of a page nobody busied: the kernel's KASSERT fires
            self._push(self._step("vm_page_free", {"m": machine.first_page + 2000}))
            self.finished = True

    m = boot()
    digest = state_digest(m)
    summary = run_sync(m, FreesAFreePage(MachineInfo.of(m), {}, 0), steps=10)
    assert summary["calls"] == 1 and summary["errors"] == 1 and summary["finished"]
    assert summary["errors_by_fn"] == {"vm_page_free": 1}
    assert "not busied" in summary["last_error"]
    assert state_digest(m) == digest  # a refused call changes nothing


def test_a_page_taken_behind_the_workloads_back_is_forgotten() -> None:
    m = boot()
    w = WORKLOADS["churn"].create(m, {"objects": 1, "tick_every": 0}, seed=1)
    assert isinstance(w, Churn)
    run_sync(m, w, steps=20)
    pfn = w.owned[0][0]
    # somebody else frees one of the workload's pages ...
    assert m.call("vm_page_busy_try", {"m": pfn}).result is False
    m.call("vm_page_free", {"m": pfn})
    summary = run_sync(m, w, steps=3000)
    # ... the workload notices the page is no longer its own and carries on
    assert summary["errors"] == 0
    assert summary["stats"]["lost_pages"] >= 1
    check_invariants(m)
