"""Tests for app.core.ddb: DDB ``show page`` and ``show pageq`` (spec §16.4).

Every expected number is worked out by hand from the spec; the arithmetic is in the comment
next to it.  The reference machine is ``MachineConfig.from_size("32MiB")`` (worked in full in
tests/core/test_boot.py and tests/core/test_sysctl.py):
  v_page_count 7934 (pfn 1..7934); DMA reserve pfn 1..2047 at boot, pfn 1..511 after
  vm_page_startup_finish returned 512..2047; free 7423, wired 511;
  v_free_min 103, reserved 58, target 206, inactive_target 7423/16 = 463,
  paging_wait 206, start 309, target1 412, target2 515.
"""

from __future__ import annotations

import pytest

from app.core.config import MachineConfig
from app.core.constants import PQ_ACTIVE, PQ_CACHE, PQ_FREE, PQ_HOLD, PQ_INACTIVE, PQ_L2_SIZE
from app.core.ddb import ddb_command, ddb_show_page, ddb_show_pageq
from app.core.errors import InvalidArgument
from app.core.invariants import check_invariants
from app.core.machine import Machine
from app.core.vm_page.queues import _add_queue

SHOW_PAGE_32M = (
    "vmstats.v_free_count: 7423\n"  # 5887 normal pages + 1536 returned reserve pages
    "vmstats.v_cache_count: 0\n"
    "vmstats.v_inactive_count: 0\n"
    "vmstats.v_active_count: 0\n"
    "vmstats.v_wire_count: 511\n"  # the reserve pages left: 2047 - 1536
    "vmstats.v_free_reserved: 58\n"  # 103 * 4 / 8 + 7
    "vmstats.v_free_min: 103\n"  # 64 + 7934 / 200
    "vmstats.v_free_target: 206\n"  # 2 * 103
    "vmstats.v_inactive_target: 463\n"  # 7423 / 16
    "vmstats.v_paging_wait: 206\n"  # 2 * 103
    "vmstats.v_paging_start: 309\n"  # 3 * 103
    "vmstats.v_paging_target1: 412\n"  # 4 * 103
    "vmstats.v_paging_target2: 515\n"  # 5 * 103
)


def color_of(pfn: int) -> int:
    """The boot colour twist of spec §2.3: (pfn ^ pfn/1024 ^ pfn/1048576) & 1023."""
    return (pfn ^ (pfn >> 10) ^ (pfn >> 20)) & (PQ_L2_SIZE - 1)


def free_colors_32m() -> list[int]:
    """Free pages per colour on the finished 32 MiB machine: pfn 512..7934 are free.
    Block k = pfn 1024k..1024k+1023 gives colour low ^ k (pfn >> 20 = 0):
      block 0 (pfn 512..1023): colours 512..1023 once each;
      blocks 1..6 (full): every colour once each -> 6;
      block 7 (pfn 7168..7934, low 0..766): low ^ 7 permutes each aligned group of 8, so
        low 0..759 cover colours 0..759 and low 760..766 cover 767..761: every colour in
        0..767 except 760.
    -> 0..511: 6 + 1 = 7; 512..759 and 761..767: 1 + 6 + 1 = 8; 760: 1 + 6 = 7;
       768..1023: 1 + 6 = 7.  Total 512*7 + 255*8 + 7 + 256*7 = 7423."""
    counts = [7] * PQ_L2_SIZE
    for c in range(512, 768):
        counts[c] = 8
    counts[760] = 7
    return counts


def parse_pageq(text: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for line in text.split("\n")[:-1]:
        label, _, rest = line.partition(":")
        assert rest.startswith(" ")
        out[label] = [int(x) for x in rest[1:].split(" ")]
    return out


# ---------------------------------------------------------------------------------------
# show page
# ---------------------------------------------------------------------------------------


def test_show_page_exact_text() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB"))
    text = ddb_show_page(m)
    assert text == SHOW_PAGE_32M
    assert text.count("\n") == 13
    assert ddb_command(m, "show page") == SHOW_PAGE_32M
    assert ddb_command(m, "  show   page ") == SHOW_PAGE_32M


def test_show_page_before_the_pageout_daemon_starts() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB", boot_stage="early"))
    # only vm_page_startup ran: 7934 - 2047 = 5887 free, the 2047 reserve pages wired,
    # every threshold still 0 (§4.2)
    assert ddb_show_page(m) == (
        "vmstats.v_free_count: 5887\n"
        "vmstats.v_cache_count: 0\n"
        "vmstats.v_inactive_count: 0\n"
        "vmstats.v_active_count: 0\n"
        "vmstats.v_wire_count: 2047\n"
        "vmstats.v_free_reserved: 0\n"
        "vmstats.v_free_min: 0\n"
        "vmstats.v_free_target: 0\n"
        "vmstats.v_inactive_target: 0\n"
        "vmstats.v_paging_wait: 0\n"
        "vmstats.v_paging_start: 0\n"
        "vmstats.v_paging_target1: 0\n"
        "vmstats.v_paging_target2: 0\n"
    )


def test_show_page_reads_the_global_vmstats_without_a_rollup() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB", cpus=2))
    r = m.call("vm_page_alloc", {"page_req": "VM_ALLOC_NORMAL"}, cpu=1)
    m.call("vm_page_activate", {"m": r.result}, cpu=1)
    # cpu1's snapshot saw free -1 and active +1; the global vmstats did not move
    assert m.cpus[1].vmstats.v_free_count == 7422
    assert m.cpus[1].vmstats.v_active_count == 1
    assert ddb_show_page(m) == SHOW_PAGE_32M
    # a threshold written into the global vmstats shows at once (snapshots lag)
    m.vmstats.v_paging_start = 4000
    assert "vmstats.v_paging_start: 4000\n" in ddb_show_page(m)
    m.vmstats.v_paging_start = 309
    m.call("vmstats_rollup", cpu=0)
    lines = ddb_show_page(m).splitlines()
    assert lines[0] == "vmstats.v_free_count: 7422"  # 7423 - 1
    assert lines[3] == "vmstats.v_active_count: 1"
    assert (
        lines[1:3] + lines[4:] == SHOW_PAGE_32M.splitlines()[1:3] + SHOW_PAGE_32M.splitlines()[4:]
    )
    check_invariants(m)


# ---------------------------------------------------------------------------------------
# show pageq
# ---------------------------------------------------------------------------------------


def test_show_pageq_layout_and_free_counts() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB"))
    text = ddb_show_pageq(m)
    lines = text.split("\n")
    assert len(lines) == 5 and lines[4] == ""  # four newline-terminated lines
    assert [ln.split(":")[0] for ln in lines[:4]] == [
        "PQ_FREE",
        "PQ_CACHE",
        "PQ_ACTIVE",
        "PQ_INACTIVE",
    ]
    assert "PQ_HOLD" not in text
    # "PQ_CACHE:" then " 0" 1024 times
    assert lines[1] == "PQ_CACHE:" + " 0" * 1024
    q = parse_pageq(text)
    assert q["PQ_FREE"] == free_colors_32m()
    assert q["PQ_FREE"][:3] == [7, 7, 7]
    assert q["PQ_FREE"][512] == 8 and q["PQ_FREE"][760] == 7 and q["PQ_FREE"][767] == 8
    assert sum(q["PQ_FREE"]) == 7423
    for label in ("PQ_CACHE", "PQ_ACTIVE", "PQ_INACTIVE"):
        assert q[label] == [0] * 1024


def test_show_pageq_follows_page_moves_and_omits_pq_hold() -> None:
    m = Machine.boot(MachineConfig.from_size("32MiB"))
    pfns = [m.call("vm_page_alloc", {"pindex": k}).result for k in range(4)]
    assert None not in pfns
    act, ina, cac, hld = pfns
    m.call("vm_page_activate", {"m": act})
    m.call("vm_page_deactivate", {"m": ina})
    ci = cac - m.first_page
    _add_queue(m, ci, PQ_CACHE + m.pg.pc[ci], False)  # no cache verb yet: the queue primitive
    m.call("vm_page_wakeup", {"m": cac})
    hi = hld - m.first_page
    m.pg.hold[hi] = 1  # freed while held: to the PQ_HOLD tail (§8.2)
    m.call("vm_page_free", {"m": hld})
    assert m.pg.queue[hi] == PQ_HOLD + color_of(hld)
    check_invariants(m)

    q = parse_pageq(ddb_show_pageq(m))
    free = free_colors_32m()
    for pfn in pfns:
        free[color_of(pfn)] -= 1  # each left its free colour queue
    assert q["PQ_FREE"] == free
    assert sum(q["PQ_FREE"]) == 7419  # 7423 - 4
    assert q["PQ_ACTIVE"] == [int(c == color_of(act)) for c in range(1024)]
    assert q["PQ_INACTIVE"] == [int(c == color_of(ina)) for c in range(1024)]
    assert q["PQ_CACHE"] == [int(c == color_of(cac)) for c in range(1024)]
    # every printed number is the queue header's lcnt
    bases = {
        "PQ_FREE": PQ_FREE,
        "PQ_CACHE": PQ_CACHE,
        "PQ_ACTIVE": PQ_ACTIVE,
        "PQ_INACTIVE": PQ_INACTIVE,
    }
    for label, base in bases.items():
        assert q[label] == m.pq.lcnt[base : base + 1024]
    # the held page is counted as active by vmstats (PQ_HOLD feeds v_active_count) but
    # appears on no printed line: the four lines hold 7419 + 3 pages, not 7423
    assert sum(sum(v) for v in q.values()) == 7422
    m.call("vmstats_rollup")
    page = dict(line.split(": ") for line in ddb_show_page(m).splitlines())
    assert page["vmstats.v_active_count"] == "2"  # the active page + the held one
    assert page["vmstats.v_free_count"] == "7419"
    assert page["vmstats.v_cache_count"] == "1"
    assert page["vmstats.v_inactive_count"] == "1"


def test_unknown_ddb_command() -> None:
    m = Machine.boot(MachineConfig.from_size("4MiB"))
    with pytest.raises(InvalidArgument, match="show pageq"):
        ddb_command(m, "show pages")
