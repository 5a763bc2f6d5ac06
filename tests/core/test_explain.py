"""Tests for the "why" layer of the core (issue 11): the explanations that calls which do
nothing or return NULL put in their record's events — ``vm_page_dontneed``'s dice
(``dontneed``), ``madvise``'s skipped pages (``madvise``), the DMA reserve
(``alloc_contig``) and contigmalloc's fallback (``contig_pg_alloc``) — and the lag of the
global counts behind the per-CPU adjustments (``count_lag``).  Each expected number is
worked out by hand from the spec (the arithmetic is next to it); the wording is checked
where it carries a number or a condition.  Explanations read only: a machine that records
them ends in the same state as one that does not.

Machines (worked out in tests/core/test_pagestate.py and tests/core/test_contig.py):

* ``boot8()``: phys_avail [0x200000, 0xA00000), one CPU; objects with ``pg_color 0`` get
  pfn 1625 at pindex 600 (colour 600's free head).
* ``boot32()``: the DMA reserve is alist blocks 1..511 (bl_free 511).
* ``boot_nores()``: phys_avail ((0x400000, 0x1400000),): first_page 1024, pfn
  1024..4990 managed and free (v_page_count 3967), the reserve empty (bl_free 0).
"""

from __future__ import annotations

from typing import Any

from app.core.config import MachineConfig
from app.core.constants import CNT_INACTIVE, PQ_INACTIVE
from app.core.invariants import state_digest
from app.core.machine import Machine
from app.core.vm_meter import count_lag
from app.core.vm_page.queues import queue_pages

P600 = 1625  # boot8: the page of pindex 600 (colour 600's free head)
Q_INACT_600 = PQ_INACTIVE + 600


def boot8() -> Machine:
    return Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),)))


def boot32() -> Machine:
    return Machine.boot(MachineConfig.from_size("32MiB"))


def boot_nores() -> Machine:
    return Machine.boot(MachineConfig(phys_avail=((0x400000, 0x1400000),)))


def events(machine: Machine, fn: str, kind: str, /, **args: Any) -> list[dict[str, Any]]:
    """Run ``fn`` with a record; its events of ``kind``."""
    r = machine.call(fn, args)
    return [e for e in r.record["events"] if e["event"] == kind]


def one(machine: Machine, fn: str, kind: str, /, **args: Any) -> dict[str, Any]:
    (e,) = events(machine, fn, kind, **args)
    return e


def active_page(m: Machine) -> tuple[int, int]:
    """(object, pfn 1625): a hard-busied object page on PQ_ACTIVE (act_count ACT_INIT 5)."""
    obj = int(m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 4096}).result)
    m.vmobj.objects[obj].pg_color = 0
    p = m.call("vm_page_alloc", {"object": obj, "pindex": 600}).result
    assert p == P600
    m.call("vm_page_activate", {"m": p})
    return obj, p


# ------------------------------------------------------------------ vm_page_dontneed
def test_dontneed_left_alone_names_the_dice_value_and_the_one_in_32_rule() -> None:
    m = boot8()
    _, p = active_page(m)
    # §8.10: dnw = ++dnweight = 1; 1 & 0x1F0 == 0 (1 mod 512 = 1 < 16): left alone, and
    # act_count 5 (ACT_INIT, set by vm_page_activate) >= ACT_INIT drops to 4.
    e = one(m, "vm_page_dontneed", "dontneed", m=p)
    assert (e["pfn"], e["dnw"], e["phase"], e["of"], e["branch"]) == (p, 1, 1, 512, "left alone")
    assert e["queue"] == "PQ_ACTIVE"
    assert "dnw mod 512 = 1 < 16" in e["why"] and "1 in 32" in e["why"]
    assert "act_count 5 -> 4" in e["why"]
    assert m.pg.act[p - m.first_page] == 4
    # the second call (dnw 2) finds act_count 4 < ACT_INIT: it stays
    e = one(m, "vm_page_dontneed", "dontneed", m=p)
    assert e["dnw"] == 2 and "act_count 4 stays" in e["why"]


def test_dontneed_to_the_head_is_the_28_in_32_case() -> None:
    m = boot8()
    _, p = active_page(m)
    m.pagestate.dnweight = 99  # dnw 100: 100 & 0x1F0 = 0x60 != 0; 100 & 0x070 = 0x60 != 0 -> head
    e = one(m, "vm_page_dontneed", "dontneed", m=p)
    assert (e["dnw"], e["phase"], e["dnw_mod_128"]) == (100, 100, 100)
    assert e["branch"] == "deactivated to the inactive head"
    assert "mod 512 = 100 >= 16 and dnw mod 128 = 100 >= 16" in e["why"]
    assert "28 in 32" in e["why"]
    assert queue_pages(m, Q_INACT_600)[0] == p - m.first_page  # it is the head


def test_dontneed_to_the_tail_is_the_3_in_32_case() -> None:
    m = boot8()
    _, p = active_page(m)
    m.pagestate.dnweight = 132  # dnw 133 = 0b1000_0101: & 0x1F0 = 0x80 != 0, & 0x070 = 0 -> tail
    e = one(m, "vm_page_dontneed", "dontneed", m=p)
    assert (e["dnw"], e["phase"], e["dnw_mod_128"]) == (133, 133, 5)
    assert e["branch"] == "deactivated to the inactive tail"
    assert "dnw mod 128 = 5 < 16" in e["why"] and "3 in 32" in e["why"]


def test_dontneed_of_a_dirty_page_goes_to_the_tail_whatever_the_dice() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("vm_page_dirty", {"m": p})  # dirty = VM_PAGE_BITS_ALL (0xff)
    m.pagestate.dnweight = 99  # dnw 100 would send a clean page to the head
    e = one(m, "vm_page_dontneed", "dontneed", m=p)
    assert e["branch"] == "deactivated to the inactive tail" and e["dirty"] == 0xFF
    assert "the page is dirty (dirty 0xff)" in e["why"]
    assert "always goes to the tail" in e["why"]


def test_dontneed_of_an_inactive_page_is_left_alone_whatever_the_dice() -> None:
    m = boot8()
    _, p = active_page(m)
    m.call("vm_page_deactivate", {"m": p})
    m.pagestate.dnweight = 99  # dnw 100: the dice alone would deactivate it
    e = one(m, "vm_page_dontneed", "dontneed", m=p)
    assert e["branch"] == "left alone" and e["queue"] == "PQ_INACTIVE"
    assert "already on PQ_INACTIVE: always left alone" in e["why"]


# ------------------------------------------------------------------ madvise
def test_madvise_says_why_each_page_was_skipped() -> None:
    m = boot8()
    obj = int(m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 4096}).result)
    pages = [m.call("vm_page_alloc", {"object": obj, "pindex": k}).result for k in range(4)]
    # pindex 0: left hard-busied (vm_page_alloc busies); 1: wired; 2: valid 0;
    # 3: fully valid, on PQ_ACTIVE: the only page the advice reaches
    m.call("vm_page_wire", {"m": pages[1]})
    m.call("vm_page_set_valid", {"m": pages[3], "base": 0, "size": 4096})
    m.call("vm_page_activate", {"m": pages[3]})
    for p in pages[1:]:
        m.call("vm_page_wakeup", {"m": p})
    r = m.call("madvise", {"object": obj, "pindex": 0, "count": 4, "advice": "MADV_DONTNEED"})
    assert r.result == 1
    (mad,) = [e for e in r.record["events"] if e["event"] == "madvise"]
    assert (mad["advice"], mad["applied"], mad["resident"]) == ("MADV_DONTNEED", 1, 4)
    why = {s["pindex"]: s["why"] for s in mad["skipped"]}
    assert sorted(why) == [0, 1, 2]
    assert why[0].startswith("busy: hard-busied (PBUSY_LOCKED)") and "madvpo" in why[0]
    assert why[1].startswith("wired (wire_count 1)")
    assert why[2].startswith("not fully valid (valid 0x00, not 0xff)")
    assert "applied to 1 of the 4 resident page(s)" in mad["why"]
    # the one page advised got its dice (dnw 1: left alone) in a dontneed event
    (dn,) = [e for e in r.record["events"] if e["event"] == "dontneed"]
    assert (dn["pfn"], dn["dnw"], dn["branch"]) == (pages[3], 1, "left alone")


def test_madvise_free_on_a_vnode_object_says_it_applies_to_anonymous_memory_only() -> None:
    m = boot8()
    obj = int(m.call("vm_object_allocate", {"type": "OBJT_VNODE", "size": 16}).result)
    e = one(m, "madvise", "madvise", object=obj, pindex=0, count=16, advice="MADV_FREE")
    assert e["applied"] == 0
    assert "OBJT_VNODE" in e["why"] and "only to OBJT_DEFAULT and OBJT_SWAP" in e["why"]


# ------------------------------------------------------------------ the DMA reserve
def test_alloc_contig_null_names_the_power_of_two_block_and_the_largest_aligned_one() -> None:
    m = boot32()
    # 512 pages: alist looks for a free block of 512 at a multiple of 512.  Free are blocks
    # 1..511: the largest run is [1, 511]; its largest naturally aligned block is 256
    # pages at 256 (128 at 128, 64 at 64, ... are smaller; 512 at 0 includes block 0).
    e = one(
        m,
        "vm_page_alloc_contig",
        "alloc_contig",
        low=0,
        high=0,
        alignment=4096,
        boundary=0,
        size=512 * 4096,
        memattr="VM_MEMATTR_DEFAULT",
    )
    assert e["result"] is None
    assert (e["npg"], e["block"], e["bl_free"]) == (512, 512, 511)
    assert e["largest_free_run"] == [1, 511]
    assert e["largest_aligned_block"] == [256, 256]
    assert "starting at a multiple of 512" in e["why_null"]
    assert "largest naturally aligned free block is 256 pages at pfn 0x100" in e["why_null"]


def test_alloc_contig_null_when_the_block_ends_above_high() -> None:
    m = boot32()
    # 3 pages round up to a block of 4: the lowest free one starts at 4 (blocks 1..3 are
    # free but 0 is not); it ends at byte (4 + 3) << 12 = 0x7000 > high 0x2000: freed back.
    e = one(
        m,
        "vm_page_alloc_contig",
        "alloc_contig",
        low=0,
        high=0x2000,
        alignment=0,
        boundary=0,
        size=3 * 4096,
        memattr="VM_MEMATTR_DEFAULT",
    )
    assert e["result"] is None and e["block"] == 4
    assert "pfn 0x4 ends at byte 0x7000, above high 0x2000" in e["why_null"]
    assert m.contig.alist.bl_free == 511  # given back


def pg_alloc_event(m: Machine, npg: int, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "size": npg * 4096,
        "low": 0,
        "high": 1 << 40,
        "alignment": 4096,
        "boundary": 0,
    }
    args.update(kw)
    args.setdefault("mflags", "M_NOWAIT")
    e = one(m, "vm_contig_pg_alloc", "contig_pg_alloc", **args)
    assert e["result"] is None and len(e["passes"]) == 3
    return e


def test_contig_pg_alloc_too_big_for_any_run_gives_the_longest() -> None:
    m = boot_nores()
    # 4000 pages: the 3967 pages pfn 1024..4990 are one run (all free), too short
    e = pg_alloc_event(m, 4000)
    scan = e["passes"][2]["scan"]
    assert scan["cut_by"] == "state" and scan["longest_run"] == [1024, 3967]
    assert "no 4000 takeable pages in a row" in scan["why"]
    assert "3967 pages at pfn 0x400" in e["why_null"]


def test_contig_pg_alloc_cut_by_alignment() -> None:
    m = boot_nores()
    # 2 pages aligned to 1 GiB: run starts pfn 1024..4989 (3966 of them), all inside
    # [0, 2^40); no physical address 0x400000 .. 0x137E000 is a multiple of 1 GiB
    scan = pg_alloc_event(m, 2, alignment=1 << 30)["passes"][0]["scan"]
    assert (scan["runs"], scan["in_low_high"], scan["aligned"]) == (3966, 3966, 0)
    assert scan["cut_by"] == "alignment" and "alignment 0x40000000" in scan["why"]


def test_contig_pg_alloc_cut_by_low_high() -> None:
    m = boot_nores()
    # high 0x400000 is the first page's address: no run lies below it
    scan = pg_alloc_event(m, 2, high=0x400000)["passes"][0]["scan"]
    assert (scan["runs"], scan["in_low_high"]) == (3966, 0) and scan["cut_by"] == "low/high"


def test_contig_pg_alloc_cut_by_boundary() -> None:
    m = boot_nores()
    # 8 pages = 32 KiB can never sit inside one 16 KiB boundary window; 3967 - 8 + 1 =
    # 3960 page-aligned run starts
    scan = pg_alloc_event(m, 8, boundary=0x4000)["passes"][0]["scan"]
    assert (scan["runs"], scan["aligned"], scan["within_boundary"]) == (3960, 3960, 0)
    assert scan["cut_by"] == "boundary" and "0x4000-byte boundary" in scan["why"]


def test_contig_fallback_cleaning_budget_lags_until_a_rollup() -> None:
    """§7.7: each clean's budget is the *global* v_inactive_count, which lags the per-CPU
    adjustments: two freshly deactivated pages are not cleaned until a rollup."""
    m = boot_nores()
    obj = int(m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 16}).result)
    for k in range(2):
        p = m.call("vm_page_alloc", {"object": obj, "pindex": k}).result
        m.call("vm_page_set_valid", {"m": p, "base": 0, "size": 4096})
        m.call("vm_page_deactivate", {"m": p})
        m.call("vm_page_wakeup", {"m": p})
    # global inactive 0 (boot), CPU 0's adjustment +2: the budget read is 0, folded 2
    clean = pg_alloc_event(m, 4000)["passes"][0]["cleaned"]
    assert clean["budget_per_colour"] == 0 and clean["visited"] == 0
    lag = clean["budget_lag"]
    assert (lag["read"], lag["folded"], lag["stale"]) == (0, 2, True)
    assert "vmstats_rollup" in lag["why"] and "read 0" in lag["why"]
    m.call("vmstats_rollup")
    clean = pg_alloc_event(m, 4000)["passes"][0]["cleaned"]
    assert clean["budget_per_colour"] == 2 and clean["budget_lag"]["stale"] is False
    # both clean pages of a default object go to the cache (one per colour queue walk)
    assert (clean["visited"], clean["cached"], clean["written"]) == (2, 2, 0)


def test_alloc_null_says_the_cpu_snapshot_lags_a_free_on_another_cpu() -> None:
    """§5, §7.1: the gate reads the calling CPU's snapshot (gd_vmstats).  boot8 with two
    CPUs: 1983 free, v_free_reserved = 73 * 4 // 8 + 7 = 43.  CPU 0 allocates 1941 pages:
    its snapshot says 1983 - 1941 = 42 < 43.  CPU 1 frees one: its adjustment +1, which
    CPU 0's snapshot does not see until a rollup: folded, free is 1983 - 1941 + 1 = 43."""
    m = Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),), cpus=2))
    assert (m.vmstats.v_free_count, m.gd.v_free_reserved) == (1983, 43)
    held = [m.call("vm_page_alloc", {}, record=False).result for _ in range(1941)]
    assert None not in held
    m.call("vm_page_free", {"m": held[0]}, cpu=1, record=False)
    e = one(m, "vm_page_alloc", "alloc", page_req="VM_ALLOC_QUICK")
    assert e["result"] is None
    assert "free count 42 is below v_free_reserved (43)" in e["why_null"]
    lag = e["count_lag"]
    assert (lag["read_from"], lag["read"], lag["folded"], lag["stale"]) == (
        "cpu0.gd_vmstats",
        42,
        43,
        True,
    )
    m.call("vmstats_rollup")  # folds CPU 1's +1 into the global count and CPU 0's snapshot
    assert m.call("vm_page_alloc", {"page_req": "VM_ALLOC_QUICK"}).result is not None


def test_count_lag_reads_only() -> None:
    m = boot8()
    _, p = active_page(m)  # PQ_ACTIVE +1 through CPU 0's adjustment
    before = state_digest(m)
    k = 2  # v_active_count
    note = count_lag(m, k, m.vmstats.cnt[k], "vmstats")
    assert note["count"] == "v_active_count" and note["folded"] == note["read"] + 1
    assert state_digest(m) == before
    assert count_lag(m, CNT_INACTIVE, 0, "vmstats")["stale"] is False


# ------------------------------------------------------------------ determinism
def test_explanations_change_nothing() -> None:
    """The same calls with and without records end in the same state, RNG included."""
    script: list[tuple[str, dict[str, Any]]] = [
        ("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 64}),
        ("vm_page_alloc", {"object": 1, "pindex": 0}),
        ("vm_page_set_valid", {"m": "page0", "base": 0, "size": 4096}),
        ("vm_page_activate", {"m": "page0"}),
        ("vm_page_wakeup", {"m": "page0"}),
        ("madvise", {"object": 1, "pindex": 0, "count": 8, "advice": "MADV_DONTNEED"}),
        ("madvise", {"object": 1, "pindex": 0, "count": 8, "advice": "MADV_FREE"}),
        ("vm_contig_pg_alloc", {"size": 4000 * 4096, "low": 0, "high": 1 << 40,
                                "alignment": 4096, "boundary": 0, "mflags": "M_WAITOK"}),
        ("vm_page_alloc_contig", {"low": 0, "high": 0, "alignment": 0, "boundary": 0,
                                  "size": 4096, "memattr": "VM_MEMATTR_DEFAULT"}),
    ]  # fmt: skip
    machines = [boot_nores(), boot_nores()]
    for fn, args in script:
        digests = []
        for record, m in zip((True, False), machines, strict=True):
            page0 = (
                m.vmobj.objects[1].pages.get(0, -1) + m.first_page if 1 in m.vmobj.objects else 0
            )
            real = {k: page0 if v == "page0" else v for k, v in args.items()}
            m.call(fn, real, record=record)
            digests.append(state_digest(m))
        assert digests[0] == digests[1], fn
    assert machines[0].rng.getstate() == machines[1].rng.getstate()
