"""Tests for app.core.sysctl: the ``vm.*`` sysctls of spec §16.1–16.3.

Every expected number is worked out by hand from the spec; the arithmetic is in the comment
next to it.

The reference machine is ``MachineConfig.from_size("32MiB")``: phys_avail ((0x1000,
0x2000000),), as worked in tests/core/test_boot.py:
  total = 0x2000000 - 0x1000 = 33550336 bytes (8191 pages); page_range 8191
  npages = (33550336 - 8191 * 128) / 4096 = 7935; the page array + bitmap leave pfn 1..7934
  -> v_page_count P = 7934
  vm_low_phys_reserved = min(256 MiB, 33550336 / 4 = 0x7FFC00) -> pfn 1..2047 reserved
  vm_dma_reserved = min(128 MiB, 33550336 / 16) = 2096896 bytes -> keep 2096896/4096 = 511
  startup_finish returns 1536 pages (chunks of 512 from the top), leaving pfn 1..511
  -> bl_free 511; free F = (7934 - 2047) + 1536 = 7423; wired 511
  §4.2: v_free_min = 64 + 7934/200 = 64 + 39 = 103
        v_free_reserved = 103*4/8 + 7 = 51 + 7 = 58; v_free_severe = 51
        v_pageout_free_min = 103*2/8 + 7 = 25 + 7 = 32; v_interrupt_free_min = 12 + 7 = 19
        v_free_target = v_paging_wait = 206; v_paging_start = 309
        v_paging_target1 = 412; v_paging_target2 = 515; v_inactive_target = 7423/16 = 463
        vm_max_launder = physmem/256 + 16 = 8191/256 + 16 = 31 + 16 = 47
        vm_pageout_stats_scan = max(16, 7423/1024/16 = 0) = 16; stats_ticks = 100/10 = 10
"""

from __future__ import annotations

from typing import Any

import pytest

from app.core.boot import vm_page_startup_finish, vm_pageout_init
from app.core.config import MachineConfig
from app.core.errors import InvalidArgument
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.sysctl import (
    SYSCTLS,
    ensure_sysctl_state,
    format_sysctl,
    format_sysctl_all,
    loader_tunables,
    sysctl_get,
    sysctl_list,
    sysctl_set,
    sysctl_value,
)


def boot32(**kw: Any) -> Machine:
    return Machine.boot(MachineConfig.from_size("32MiB", **kw))


@pytest.fixture(scope="module")
def m32() -> Machine:
    """A read-only shared machine (tests that write boot their own)."""
    return boot32()


# (C type, read-write) of every sysctl named in spec §16, copied from its tables.
SPEC_TABLE: dict[str, tuple[str, bool]] = {
    # §16.1 vm_page.c
    "vm.dma_reserved": ("u_long", False),
    "vm.dma_free_pages": ("u_int", False),
    "vm.page_hash_vnode_only": ("int", True),
    # §16.2 vm_pageout.c ("all read-write unless noted")
    "vm.anonmem_decline": ("u_int", True),
    "vm.filemem_decline": ("int", True),
    "vm.page_free_hysteresis": ("int", True),
    "vm.queue_idle_perc": ("int", True),
    "vm.max_launder": ("int", True),
    "vm.emerg_launder": ("int", True),
    "vm.pageout_stats_actcmp": ("int", True),
    "vm.pageout_stats_inamin": ("int", True),
    "vm.pageout_stats_inalim": ("int", True),
    "vm.pageout_stats_ticks": ("int", True),
    "vm.pageout_stats_scan": ("int", True),
    "vm.pageout_stats_rsecs": ("long", True),
    "vm.pageout_memuse_mode": ("int", True),
    "vm.pageout_allow_active": ("int", True),
    "vm.pageout_debug": ("int", True),
    "vm.swap_enabled": ("int", True),
    "vm.defer_swapspace_pageouts": ("int", True),
    "vm.disable_swapspace_pageouts": ("int", True),
    "vm.pageout_lock_miss": ("int", False),
    # issue 9 §2: SYSCTL_INT(_vm, OID_AUTO, max_wired, CTLFLAG_RW, &vm_page_max_wired, ...)
    "vm.max_wired": ("int", True),
    # §16.3 vm_meter.c: read-write thresholds (long: the struct fields are long, §4.1)
    "vm.v_free_min": ("u_long", True),  # §16.3: SYSCTL_ULONG
    "vm.v_free_target": ("u_long", True),  # §16.3: SYSCTL_ULONG
    "vm.v_free_reserved": ("u_long", True),  # §16.3: SYSCTL_ULONG
    "vm.v_inactive_target": ("u_long", True),  # §16.3: SYSCTL_ULONG
    "vm.v_pageout_free_min": ("u_long", True),  # §16.3: SYSCTL_ULONG
    "vm.v_free_severe": ("u_long", True),  # §16.3: SYSCTL_ULONG
    "vm.v_paging_wait": ("long", True),
    "vm.v_paging_start": ("long", True),
    "vm.v_paging_target1": ("long", True),
    "vm.v_paging_target2": ("long", True),
    # §16.3 read-only mirrors (v_page_size is the struct's u_int; event counters u_int)
    "vm.stats.vm.v_page_size": ("u_int", False),
    "vm.stats.vm.v_page_count": ("long", False),
    "vm.stats.vm.v_free_reserved": ("long", False),
    "vm.stats.vm.v_free_target": ("long", False),
    "vm.stats.vm.v_free_min": ("long", False),
    "vm.stats.vm.v_free_count": ("long", False),
    "vm.stats.vm.v_wire_count": ("long", False),
    "vm.stats.vm.v_active_count": ("long", False),
    "vm.stats.vm.v_inactive_target": ("long", False),
    "vm.stats.vm.v_inactive_count": ("long", False),
    "vm.stats.vm.v_cache_count": ("long", False),
    "vm.stats.vm.v_pageout_free_min": ("long", False),
    "vm.stats.vm.v_interrupt_free_min": ("long", False),
    # §16.3: the struct vmmeter counters (u_int), in vmmeter.h's order
    "vm.stats.vm.v_vm_faults": ("u_int", False),
    "vm.stats.vm.v_cow_faults": ("u_int", False),
    "vm.stats.vm.v_cow_optim": ("u_int", False),
    "vm.stats.vm.v_zfod": ("u_int", False),
    "vm.stats.vm.v_ozfod": ("u_int", False),
    "vm.stats.vm.v_swapin": ("u_int", False),
    "vm.stats.vm.v_swapout": ("u_int", False),
    "vm.stats.vm.v_swappgsin": ("u_int", False),
    "vm.stats.vm.v_swappgsout": ("u_int", False),
    "vm.stats.vm.v_vnodein": ("u_int", False),
    "vm.stats.vm.v_vnodeout": ("u_int", False),
    "vm.stats.vm.v_vnodepgsin": ("u_int", False),
    "vm.stats.vm.v_vnodepgsout": ("u_int", False),
    "vm.stats.vm.v_intrans": ("u_int", False),
    "vm.stats.vm.v_reactivated": ("u_int", False),
    "vm.stats.vm.v_pdwakeups": ("u_int", False),
    "vm.stats.vm.v_pdpages": ("u_int", False),
    "vm.stats.vm.v_dfree": ("u_int", False),
    "vm.stats.vm.v_pfree": ("u_int", False),
    "vm.stats.vm.v_tfree": ("u_int", False),
    "vm.stats.vm.v_forks": ("u_int", False),
    "vm.stats.vm.v_vforks": ("u_int", False),
    "vm.stats.vm.v_rforks": ("u_int", False),
    "vm.stats.vm.v_kthreads": ("u_int", False),
    "vm.stats.vm.v_forkpages": ("u_int", False),
    "vm.stats.vm.v_vforkpages": ("u_int", False),
    "vm.stats.vm.v_rforkpages": ("u_int", False),
    "vm.stats.vm.v_kthreadpages": ("u_int", False),
    "vm.stats.vm.v_ppwakeups": ("u_int", False),
}

# Defaults of the finished 32 MiB machine (see the module docstring for the arithmetic).
DEFAULTS_32M: dict[str, int] = {
    "vm.dma_reserved": 2096896,  # min(128 MiB, 33550336 / 16), bytes
    "vm.dma_free_pages": 511,  # pfn 1..511 left in the alist after startup_finish
    "vm.page_hash_vnode_only": 0,
    "vm.anonmem_decline": 1,  # ACT_DECLINE
    "vm.filemem_decline": 2,
    "vm.page_free_hysteresis": 16,
    "vm.queue_idle_perc": 20,
    "vm.max_launder": 47,  # 8191 / 256 + 16 = 31 + 16
    "vm.emerg_launder": 100,
    "vm.pageout_stats_actcmp": 0,
    "vm.pageout_stats_inamin": 16,
    "vm.pageout_stats_inalim": 4096,
    "vm.pageout_stats_ticks": 10,  # hz 100 / 10
    "vm.pageout_stats_scan": 16,  # max(16, 7423 / 1024 / 16 = 0)
    "vm.pageout_stats_rsecs": 300,
    "vm.pageout_memuse_mode": 2,
    "vm.pageout_allow_active": 1,
    "vm.pageout_debug": 0,
    "vm.swap_enabled": 1,
    "vm.defer_swapspace_pageouts": 0,
    "vm.disable_swapspace_pageouts": 0,
    "vm.pageout_lock_miss": 0,
    "vm.max_wired": 2474,  # vm_page_max_wired = v_free_count / 3 = 7423 / 3 at daemon start
    "vm.v_free_min": 103,  # 64 + 7934 / 200
    "vm.v_free_target": 206,  # 2 * 103
    "vm.v_free_reserved": 58,  # 103 * 4 / 8 + 7
    "vm.v_inactive_target": 463,  # 7423 / 16
    "vm.v_pageout_free_min": 32,  # 103 * 2 / 8 + 7
    "vm.v_free_severe": 51,  # 103 * 4 / 8
    "vm.v_paging_wait": 206,  # 2 * 103
    "vm.v_paging_start": 309,  # 3 * 103
    "vm.v_paging_target1": 412,  # 4 * 103
    "vm.v_paging_target2": 515,  # 5 * 103
    "vm.stats.vm.v_page_size": 4096,
    "vm.stats.vm.v_page_count": 7934,
    "vm.stats.vm.v_free_reserved": 58,
    "vm.stats.vm.v_free_target": 206,
    "vm.stats.vm.v_free_min": 103,
    "vm.stats.vm.v_free_count": 7423,  # 5887 normal + 1536 returned
    "vm.stats.vm.v_wire_count": 511,  # 2047 reserve pages - 1536 returned
    "vm.stats.vm.v_active_count": 0,
    "vm.stats.vm.v_inactive_target": 463,
    "vm.stats.vm.v_inactive_count": 0,
    "vm.stats.vm.v_cache_count": 0,
    "vm.stats.vm.v_pageout_free_min": 32,
    "vm.stats.vm.v_interrupt_free_min": 19,  # 103 / 8 + 7 = 12 + 7
    "vm.stats.vm.v_vm_faults": 0,
    "vm.stats.vm.v_cow_faults": 0,
    "vm.stats.vm.v_cow_optim": 0,
    "vm.stats.vm.v_zfod": 0,
    "vm.stats.vm.v_ozfod": 0,
    "vm.stats.vm.v_swapin": 0,
    "vm.stats.vm.v_swapout": 0,
    "vm.stats.vm.v_swappgsin": 0,
    "vm.stats.vm.v_swappgsout": 0,
    "vm.stats.vm.v_vnodein": 0,
    "vm.stats.vm.v_vnodeout": 0,
    "vm.stats.vm.v_vnodepgsin": 0,
    "vm.stats.vm.v_vnodepgsout": 0,
    "vm.stats.vm.v_intrans": 0,
    "vm.stats.vm.v_reactivated": 0,
    "vm.stats.vm.v_pdwakeups": 0,
    "vm.stats.vm.v_pdpages": 0,
    "vm.stats.vm.v_dfree": 0,
    "vm.stats.vm.v_pfree": 0,
    "vm.stats.vm.v_tfree": 1536,  # each returned reserve page was freed once
    "vm.stats.vm.v_forks": 0,
    "vm.stats.vm.v_vforks": 0,
    "vm.stats.vm.v_rforks": 0,
    "vm.stats.vm.v_kthreads": 0,
    "vm.stats.vm.v_forkpages": 0,
    "vm.stats.vm.v_vforkpages": 0,
    "vm.stats.vm.v_rforkpages": 0,
    "vm.stats.vm.v_kthreadpages": 0,
    "vm.stats.vm.v_ppwakeups": 0,
}


def snapshot(m: Machine) -> tuple[str, dict[str, int], list[dict[str, Any]]]:
    """Everything a refused write must leave alone (state_digest does not cover the
    sysctl-held tunables, so compare them too)."""
    return state_digest(m), dict(ensure_sysctl_state(m)), sysctl_list(m)


# ---------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------


def test_every_spec_name_is_present_with_its_type_and_flag() -> None:
    got = {s.name: (s.ctype, s.writable) for s in SYSCTLS}
    assert got == SPEC_TABLE
    assert len(SYSCTLS) == len(SPEC_TABLE) == 75  # 3 + 20 + 10 + 13 + 29


def test_descriptions_and_units() -> None:
    by_name = {s.name: s for s in SYSCTLS}
    # §16.1: dma_free_pages carries dma_reserved's description, oddly
    assert by_name["vm.dma_free_pages"].description == "Memory reserved for DMA"
    assert by_name["vm.dma_reserved"].description == "Memory reserved for DMA"
    assert by_name["vm.dma_reserved"].unit == "bytes"
    assert by_name["vm.dma_free_pages"].unit == "pages"
    assert by_name["vm.pageout_stats_ticks"].unit == "ticks"
    assert by_name["vm.pageout_stats_rsecs"].unit == "seconds"
    # the four v_paging_* names are [U] in §16.3: their confidence says so, the
    # user-facing description carries no provenance marker
    for name in (
        "vm.v_paging_wait",
        "vm.v_paging_start",
        "vm.v_paging_target1",
        "vm.v_paging_target2",
    ):
        assert by_name[name].confidence == "U"
    for s in SYSCTLS:
        assert "[U" not in s.description and "unverified" not in s.description.lower()
    # the kernel's meanings (sys/vmmeter.h, vm_pageout.c)
    assert by_name["vm.stats.vm.v_ppwakeups"].description == "Wakeups on processes stalled on VM"
    assert by_name["vm.stats.vm.v_swappgsout"].description == "Swap pager pages paged out"
    assert by_name["vm.stats.vm.v_pfree"].description == "Pages freed by exiting processes"
    assert by_name["vm.max_wired"].description == "System-wide limit to wired page count"
    assert by_name["vm.pageout_lock_miss"].description == "vget() lock misses during pageout"
    assert by_name["vm.v_free_min"].confidence == "I"
    assert by_name["vm.page_hash_vnode_only"].confidence == "V"
    for s in SYSCTLS:
        assert s.description and "\n" not in s.description


def test_defaults_of_a_finished_32mib_machine(m32: Machine) -> None:
    listed = {d["name"]: d for d in sysctl_list(m32) if not d["name"].startswith("vm.cpu")}
    assert {name: d["value"] for name, d in listed.items()} == DEFAULTS_32M
    for name, expected in DEFAULTS_32M.items():
        assert sysctl_get(m32, name) == expected
        ctype, writable = SPEC_TABLE[name]
        assert listed[name]["type"] == ctype
        assert listed[name]["writable"] is writable
        assert set(listed[name]) >= {"name", "type", "writable", "unit", "description", "value"}


def test_early_boot_leaves_daemon_start_values_at_zero() -> None:
    m = boot32(boot_stage="early")
    # the pageout daemon has not started: thresholds and its computed tunables are 0
    for name in (
        "vm.v_free_min",
        "vm.v_free_reserved",
        "vm.v_paging_start",
        "vm.v_inactive_target",
        "vm.max_launder",
        "vm.pageout_stats_scan",
        "vm.pageout_stats_ticks",
    ):
        assert sysctl_get(m, name) == 0, name
    # static initialisers are there from the start
    assert sysctl_get(m, "vm.page_free_hysteresis") == 16
    assert sysctl_get(m, "vm.emerg_launder") == 100
    # startup_finish has not run: the whole reserve pfn 1..2047 is still in the alist
    assert sysctl_get(m, "vm.dma_free_pages") == 2047
    assert sysctl_get(m, "vm.dma_reserved") == 2096896  # computed by vm_page_startup
    assert sysctl_get(m, "vm.stats.vm.v_free_count") == 5887  # 7934 - 2047
    assert sysctl_get(m, "vm.stats.vm.v_wire_count") == 2047
    # and the daemon start fills them in
    vm_page_startup_finish(m)
    vm_pageout_init(m)
    assert sysctl_get(m, "vm.max_launder") == 47
    assert sysctl_get(m, "vm.v_free_min") == 103


def test_dma_reserved_follows_the_loader_tunable() -> None:
    # vm.dma_reserved = 1 MiB from the loader: keep 256 pages in the reserve
    m = boot32(dma_reserved=1 << 20)
    assert sysctl_get(m, "vm.dma_reserved") == 1048576
    # §2.4 return loop: each chunk is at most bl_free - keep pages and the loop stops at
    # bl_free <= keep, so exactly keep = 1048576 / 4096 = 256 pages stay in the reserve
    assert sysctl_get(m, "vm.dma_free_pages") == 256
    tunables = {t["name"]: t for t in loader_tunables(m)}
    assert tunables["vm.dma_reserved"]["value"] == 1048576
    assert tunables["vm.dma_reserved"]["also_sysctl"] is True
    assert tunables["vm.contig_verbose"] == {
        "name": "vm.contig_verbose",
        "type": "int",
        "unit": "boolean",
        "description": tunables["vm.contig_verbose"]["description"],
        "value": 0,
        "also_sysctl": False,
    }


# ---------------------------------------------------------------------------------------
# reading live values
# ---------------------------------------------------------------------------------------


def test_stats_counters_read_the_global_vmstats_not_the_cpu_snapshot() -> None:
    m = boot32()
    r = m.call("vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"})
    assert r.result is not None
    # the allocation took the page off a free queue: cpu0's snapshot and pending
    # adjustment drop by one, the global count does not move until a rollup
    assert m.cpus[0].vmstats.v_free_count == 7422
    assert sysctl_get(m, "vm.stats.vm.v_free_count") == 7423
    m.call("vm_page_wire", {"m": r.result})
    assert sysctl_get(m, "vm.stats.vm.v_wire_count") == 511  # wire is pending in adj
    m.call("vmstats_rollup")
    assert sysctl_get(m, "vm.stats.vm.v_free_count") == 7422
    assert sysctl_get(m, "vm.stats.vm.v_wire_count") == 512
    check_invariants(m)


def test_event_counters_are_summed_over_cpus_as_u_int() -> None:
    m = boot32(cpus=2)
    # startup_finish freed the 1536 returned pages on cpu0
    assert sysctl_get(m, "vm.stats.vm.v_tfree") == 1536
    r = m.call("vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"}, cpu=1)
    m.call("vm_page_free", {"m": r.result}, cpu=1)
    assert m.cpus[1].meter["v_tfree"] == 1
    assert sysctl_get(m, "vm.stats.vm.v_tfree") == 1537  # 1536 + 1
    # a u_int sum wraps
    m.cpus[1].meter["v_tfree"] = (1 << 32) - 1
    assert sysctl_get(m, "vm.stats.vm.v_tfree") == 1535  # 1536 + 2^32 - 1 mod 2^32
    m.cpus[0].meter["v_pdwakeups"] = 3
    m.cpus[1].meter["v_pdwakeups"] = 4
    assert sysctl_get(m, "vm.stats.vm.v_pdwakeups") == 7


def test_per_cpu_vmmeter_shows_each_cpus_own_counters() -> None:
    m = boot32(cpus=2)
    r = m.call("vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"}, cpu=1)
    m.call("vm_page_free", {"m": r.result}, cpu=1)
    # startup_finish freed the 1536 returned reserve pages on cpu0; the free above is cpu1's
    assert sysctl_get(m, "vm.cpu0.vmmeter.v_tfree") == 1536
    assert sysctl_get(m, "vm.cpu1.vmmeter.v_tfree") == 1
    assert sysctl_get(m, "vm.stats.vm.v_tfree") == 1537  # the sum of the two
    assert sysctl_get(m, "vm.cpu1.vmmeter.v_vm_faults") == 0  # not this layer's counter
    listed = [d for d in sysctl_list(m) if d["name"].startswith("vm.cpu")]
    assert len(listed) == 2 * 29 and all(not d["writable"] for d in listed)
    assert listed[29]["name"] == "vm.cpu1.vmmeter.v_vm_faults"
    text = format_sysctl_all(m, "vm.cpu1.vmmeter")
    assert "vm.cpu1.vmmeter.v_tfree: 1\n" in text and "vm.cpu0" not in text
    with pytest.raises(InvalidArgument, match="node"):
        sysctl_get(m, "vm.cpu1.vmmeter")
    with pytest.raises(InvalidArgument, match="CPUs 0..1"):
        sysctl_get(m, "vm.cpu2.vmmeter.v_tfree")
    with pytest.raises(InvalidArgument, match="read-only"):
        sysctl_set(m, "vm.cpu0.vmmeter.v_tfree", 0)


def test_max_wired_is_vm_page_max_wired() -> None:
    m = boot32()
    # vm_pageout_init: vm_page_max_wired = v_free_count / 3 = 7423 / 3 = 2474
    assert sysctl_get(m, "vm.max_wired") == 2474 == m.pd.vm_page_max_wired
    assert sysctl_set(m, "vm.max_wired", 100) == (2474, 100)
    assert m.pd.vm_page_max_wired == 100
    assert sysctl_get(boot32(boot_stage="early"), "vm.max_wired") == 0  # before the daemon


# ---------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------


def test_v_free_min_write_goes_to_the_global_vmstats_only() -> None:
    m = boot32(cpus=2)
    assert sysctl_set(m, "vm.v_free_min", 200) == (103, 200)
    assert m.vmstats.v_free_min == 200
    assert sysctl_get(m, "vm.v_free_min") == 200
    assert sysctl_get(m, "vm.stats.vm.v_free_min") == 200  # the mirror reads the same field
    # nothing derived is recomputed (reserved would be 200*4/8 + 7 = 107 if it were)
    assert m.vmstats.v_free_reserved == 58
    assert m.vmstats.v_free_target == 206
    assert m.vmstats.v_paging_wait == 206
    # the per-CPU snapshots are untouched until a rollup
    assert m.cpus[0].vmstats.v_free_min == 103
    assert m.cpus[1].vmstats.v_free_min == 103
    # vmstats_rollup refreshes the calling CPU's snapshot only
    m.call("vmstats_rollup", cpu=1)
    assert m.cpus[1].vmstats.v_free_min == 200
    assert m.cpus[0].vmstats.v_free_min == 103
    check_invariants(m)


def test_the_new_threshold_changes_the_predicates_after_the_rollup() -> None:
    m = boot32()
    # vm_test_nominal() = vm_paging_min() on cpu0's snapshot: 103 > 7423 + 0 is false
    assert m.call("vm_test_nominal").result is False
    sysctl_set(m, "vm.v_free_min", 8000)
    assert m.call("vm_test_nominal").result is False  # the snapshot still has 103
    m.call("vmstats_rollup")
    assert m.call("vm_test_nominal").result is True  # 8000 > 7423 + 0
    sysctl_set(m, "vm.v_free_min", 103)
    m.call("vmstats_rollup")
    assert m.call("vm_test_nominal").result is False


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("vm.v_free_target", "v_free_target"),
        ("vm.v_free_reserved", "v_free_reserved"),
        ("vm.v_inactive_target", "v_inactive_target"),
        ("vm.v_pageout_free_min", "v_pageout_free_min"),
        ("vm.v_free_severe", "v_free_severe"),
        ("vm.v_paging_wait", "v_paging_wait"),
        ("vm.v_paging_start", "v_paging_start"),
        ("vm.v_paging_target1", "v_paging_target1"),
        ("vm.v_paging_target2", "v_paging_target2"),
    ],
)
def test_every_vm_meter_threshold_writes_its_own_field(name: str, field: str) -> None:
    m = boot32()
    before = m.vmstats.as_dict()
    old, new = sysctl_set(m, name, 12345)
    assert (old, new) == (before[field], 12345)
    after = m.vmstats.as_dict()
    assert after[field] == 12345
    # no other field moved
    assert {k: v for k, v in after.items() if k != field} == {
        k: v for k, v in before.items() if k != field
    }


def test_pageout_tunables_write_where_the_kernel_code_reads_them() -> None:
    m = boot32()
    other = boot32()
    assert sysctl_set(m, "vm.page_free_hysteresis", 40) == (16, 40)
    assert m.pd.vm_page_free_hysteresis == 40  # what vm_page_free_wakeup reads
    assert sysctl_set(m, "vm.max_launder", 5) == (47, 5)
    assert m.pd.vm_max_launder == 5
    assert sysctl_set(m, "vm.pageout_stats_scan", 64) == (16, 64)
    assert m.pd.vm_pageout_stats_scan == 64
    assert sysctl_set(m, "vm.pageout_stats_ticks", 1) == (10, 1)
    assert m.pd.vm_pageout_stats_ticks == 1
    assert sysctl_set(m, "vm.page_hash_vnode_only", 1) == (0, 1)
    assert sysctl_value(m, "vm.page_hash_vnode_only") == 1
    assert sysctl_set(m, "vm.pageout_stats_rsecs", 1 << 40) == (300, 1 << 40)  # a long
    assert sysctl_set(m, "vm.anonmem_decline", 3) == (1, 3)
    assert ensure_sysctl_state(m)["vm.anonmem_decline"] == 3
    # another machine is untouched
    assert sysctl_get(other, "vm.page_free_hysteresis") == 16
    assert sysctl_get(other, "vm.page_hash_vnode_only") == 0
    assert sysctl_get(other, "vm.anonmem_decline") == 1


def test_ensure_sysctl_state_is_idempotent() -> None:
    m = boot32()
    values = ensure_sysctl_state(m)
    assert values["vm.emerg_launder"] == 100
    sysctl_set(m, "vm.emerg_launder", 7)
    assert ensure_sysctl_state(m) is values
    assert values["vm.emerg_launder"] == 7  # kept, not reset to the default
    with pytest.raises(InvalidArgument):
        sysctl_value(m, "vm.v_free_min")  # not a sysctl_values tunable


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("vm.page_hash_vnode_only", (1 << 31) - 1),  # INT_MAX
        ("vm.page_hash_vnode_only", -(1 << 31)),  # INT_MIN
        ("vm.anonmem_decline", (1 << 32) - 1),  # UINT_MAX
        ("vm.anonmem_decline", 0),
        ("vm.v_free_min", 0),  # §16.3: SYSCTL_ULONG, 0 .. ULONG_MAX
        ("vm.v_free_min", (1 << 64) - 1),  # ULONG_MAX
    ],
)
def test_values_at_the_edge_of_their_c_type_are_accepted(name: str, value: int) -> None:
    m = boot32()
    assert sysctl_set(m, name, value)[1] == value
    assert sysctl_get(m, name) == value


# ---------------------------------------------------------------------------------------
# refusals: nothing changes
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("vm.page_hash_vnode_only", 1 << 31, "int"),  # INT_MAX + 1
        ("vm.page_hash_vnode_only", -(1 << 31) - 1, "int"),  # INT_MIN - 1
        ("vm.anonmem_decline", -1, "u_int"),
        ("vm.anonmem_decline", 1 << 32, "u_int"),  # UINT_MAX + 1
        ("vm.pageout_stats_rsecs", 1 << 63, "long"),  # LONG_MAX + 1
        ("vm.v_free_min", -5, "unsigned: a negative write is refused"),  # §16.3
        ("vm.v_free_min", 1 << 64, "u_long"),
        ("vm.v_free_min", True, "integer"),  # a bool is not an int here
        ("vm.page_hash_vnode_only", False, "integer"),
        ("vm.v_free_min", 1.0, "integer"),
        ("vm.v_free_min", "200", "integer"),
        ("vm.v_free_min", None, "integer"),
        ("vm.dma_reserved", 0, "vm.dma_reserved is read-only"),
        ("vm.dma_free_pages", 0, "vm.dma_free_pages is read-only"),
        ("vm.pageout_lock_miss", 1, "vm.pageout_lock_miss is read-only"),
        ("vm.stats.vm.v_free_count", 1, "vm.stats.vm.v_free_count is read-only"),
        ("vm.stats.vm.v_free_min", 1, "vm.stats.vm.v_free_min is read-only"),
        ("vm.stats.vm.v_tfree", 0, "vm.stats.vm.v_tfree is read-only"),
        ("vm.contig_verbose", 1, "loader tunable"),
        ("vm.v_fre_min", 1, "vm.v_free_min"),  # suggestion
        ("vm.stats", 1, "node"),
    ],
)
def test_refused_writes_change_nothing(name: str, value: Any, message: str) -> None:
    m = boot32(cpus=2)
    before = snapshot(m)
    with pytest.raises(InvalidArgument, match=message):
        sysctl_set(m, name, value)
    assert snapshot(m) == before


def test_read_only_check_comes_before_the_value_check() -> None:
    m = boot32()
    with pytest.raises(InvalidArgument, match="^vm.dma_reserved is read-only$"):
        sysctl_set(m, "vm.dma_reserved", -5)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("vm.contig_verbose", "loader tunable"),
        ("vm.page_hash_debug", "compiled out"),
        ("vm.v_cache_min", "removed"),
        ("vm.vmstats", "opaque"),
        ("vm.stats.vm", "node"),
        ("v_free_min", "did you mean vm.v_free_min"),  # the vm. prefix forgotten
        ("vm.free_min", "vm.v_free_min"),
        ("vm.page_hash_vnode", "vm.page_hash_vnode_only"),
        ("vm.nothing_like_it_at_all", "^unknown sysctl 'vm.nothing_like_it_at_all'$"),
        ("vm.stats.v", "unknown sysctl"),  # a partial component is not a node
        (42, "must be a string"),
    ],
)
def test_unknown_and_non_sysctl_names_are_refused_helpfully(name: Any, message: str) -> None:
    m = boot32()
    with pytest.raises(InvalidArgument, match=message):
        sysctl_get(m, name)


def test_suggestions_never_name_something_that_is_not_a_sysctl() -> None:
    m = boot32()
    # vm.v_cache_min is close to "vm.v_cache_mi" but no longer exists: not suggested
    with pytest.raises(InvalidArgument) as info:
        sysctl_get(m, "vm.v_cache_mi")
    assert "v_cache_min" not in str(info.value)


# ---------------------------------------------------------------------------------------
# BSD sysctl output
# ---------------------------------------------------------------------------------------


def test_format_one_sysctl(m32: Machine) -> None:
    assert format_sysctl(m32, "vm.v_free_min") == "vm.v_free_min: 103"
    assert format_sysctl(m32, "vm.dma_reserved") == "vm.dma_reserved: 2096896"
    assert format_sysctl(m32, "vm.stats.vm.v_page_size") == "vm.stats.vm.v_page_size: 4096"
    with pytest.raises(InvalidArgument, match="loader tunable"):
        format_sysctl(m32, "vm.contig_verbose")


def test_format_a_subtree(m32: Machine) -> None:
    text = format_sysctl_all(m32, "vm.stats.vm")
    lines = text.split("\n")
    assert lines[-1] == ""  # newline-terminated
    lines = lines[:-1]
    assert len(lines) == 42  # 13 vmstats mirrors + 29 struct vmmeter counters
    assert lines[0] == "vm.stats.vm.v_page_size: 4096"
    assert "vm.stats.vm.v_free_count: 7423" in lines
    assert "vm.stats.vm.v_interrupt_free_min: 19" in lines
    assert all(line.startswith("vm.stats.vm.") for line in lines)
    assert format_sysctl_all(m32, "vm.v_free_min") == "vm.v_free_min: 103\n"


def test_format_everything(m32: Machine) -> None:
    lines = format_sysctl_all(m32).splitlines()
    assert len(lines) == 75 + 29  # the table, then vm.cpu0.vmmeter's 29 fields
    assert lines[:75] == [f"{name}: {value}" for name, value in DEFAULTS_32M.items()]
    assert lines[75] == "vm.cpu0.vmmeter.v_vm_faults: 0"
    assert format_sysctl_all(m32, "vm") == format_sysctl_all(m32)
    for bad in ("vm.nope", "vm.stat", "v"):
        with pytest.raises(InvalidArgument):
            format_sysctl_all(m32, bad)


def test_daemon_start_keeps_a_tunable_set_before_it() -> None:
    m = boot32(boot_stage="early")
    sysctl_set(m, "vm.max_launder", 5)
    sysctl_set(m, "vm.pageout_stats_ticks", 3)
    vm_page_startup_finish(m)
    vm_pageout_init(m)
    # §4.2: "only if the sysctl is still 0" -> the administrator's values survive
    assert sysctl_get(m, "vm.max_launder") == 5
    assert sysctl_get(m, "vm.pageout_stats_ticks") == 3
