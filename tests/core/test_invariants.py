"""Tests for app.core.invariants: ``check_invariants`` accepts every freshly booted machine
and catches each kind of deliberate corruption; ``state_digest`` is a faithful fingerprint.

Machine ``boot8``: phys_avail [0x200000, 0xA00000) (layout in tests/core/test_pageops.py:
first_page 512; colour 600 = [pfn 1625, pfn 600], colour 601 = [pfn 1624, pfn 601]).
Machine ``boot_with_reserve``: [0x100000, 0x900000): vm_low_phys_reserved = 8 MiB / 4 =
0x200000, so pfn 256..511 boot in the DMA reserve; startup_finish keeps 8 MiB / 16 = 128.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from app.core.boot import _unlink_raw
from app.core.config import MachineConfig, NumaRange, Topology
from app.core.constants import (
    CNT_FREE,
    PG_FICTITIOUS,
    PG_UNQUEUED,
    PQ_ACTIVE,
    PQ_FREE,
)
from app.core.errors import InvariantError
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.pages import PAGE_FIELDS
from app.core.vm_page.queues import _add_queue

FIRST_PAGE = 512
MiB = 1 << 20


def boot8(**kw: Any) -> Machine:
    return Machine.boot(MachineConfig(phys_avail=((0x200000, 0xA00000),), **kw))


def boot_with_reserve(**kw: Any) -> Machine:
    return Machine.boot(MachineConfig(phys_avail=((0x100000, 0x900000),), **kw))


def ix(pfn: int) -> int:
    return pfn - FIRST_PAGE


# =========================================================== freshly booted machines


CONFIGS: dict[str, MachineConfig] = {
    "8MiB-early": MachineConfig.from_size("8MiB", boot_stage="early"),
    "8MiB-finished": MachineConfig.from_size("8MiB"),
    "16MiB-4cpu": MachineConfig.from_size("16MiB", cpus=4, seed=7),
    "16MiB-2socket-early": MachineConfig(
        phys_avail=((0x100000, 0x1100000),), cpus=4, topology=Topology(2, 2, 1), boot_stage="early"
    ),
    "16MiB-2socket-finished": MachineConfig(
        phys_avail=((0x100000, 0x1100000),), cpus=4, topology=Topology(2, 2, 1)
    ),
    "2socket-ht-numa": MachineConfig(
        phys_avail=((0x1000, 0x9F000), (0x100000, 0x2000000)),
        cpus=8,
        topology=Topology(2, 2, 2),
        numa=(NumaRange(0, 16 * MiB, 0), NumaRange(16 * MiB, 16 * MiB, 1)),
    ),
    "4socket-early": MachineConfig.from_size("32MiB", sockets=4, cores=2, boot_stage="early"),
    "holey": MachineConfig(phys_avail=((0x200000, 0x300000), (0x400000, 0xA00000))),
    "reserve-early": MachineConfig(phys_avail=((0x100000, 0x900000),), boot_stage="early"),
    "reserve-finished": MachineConfig(phys_avail=((0x100000, 0x900000),)),
    "64MiB-2socket": MachineConfig.from_size("64MiB", sockets=2, cores=4, seed=3),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_invariants_hold_after_boot(name: str) -> None:
    m = Machine.boot(CONFIGS[name])
    check_invariants(m)


@pytest.mark.parametrize("name", ["8MiB-finished", "16MiB-2socket-finished", "reserve-early"])
def test_invariants_hold_after_a_few_calls(name: str) -> None:
    m = Machine.boot(CONFIGS[name])
    oid = m.call("vm_object_allocate").result
    pages = [
        m.call("vm_page_alloc", {"object": oid, "pindex": p}, cpu=p % m.ncpus).result
        for p in range(20)
    ]
    for k, pfn in enumerate(pages):
        fn = ("vm_page_activate", "vm_page_deactivate", "vm_page_wire", "vm_page_free")[k % 4]
        m.call(fn, {"m": pfn})
    m.call("vmstats_rollup")
    check_invariants(m)


# =========================================================== corruption is caught


def corrupt_lcnt(m: Machine) -> None:
    m.pq.lcnt[PQ_FREE + 600] += 1


def corrupt_lcnt_of_an_empty_queue(m: Machine) -> None:
    m.pq.lcnt[PQ_ACTIVE + 3] = 1


def corrupt_prev_link(m: Machine) -> None:
    m.pg.prev[ix(600)] = ix(1624)  # should be 1625, the head of colour 600


def corrupt_prev_link_to_none(m: Machine) -> None:
    m.pg.prev[ix(600)] = -1  # colour 600 now has two pages without a predecessor


def corrupt_next_out_of_range(m: Machine) -> None:
    m.pg.next[ix(600)] = m.page_range + 5


def corrupt_head(m: Machine) -> None:
    m.pq.head[PQ_FREE + 600] = ix(600)


def corrupt_tail(m: Machine) -> None:
    m.pq.tail[PQ_FREE + 600] = ix(1625)


def corrupt_color(m: Machine) -> None:
    m.pg.pc[ix(1625)] = 601  # sits on PQ_FREE + 600


def corrupt_queue_field(m: Machine) -> None:
    m.pg.queue[ix(600)] = PQ_ACTIVE + 600  # linked in the free list, says active


def corrupt_links_of_an_unqueued_page(m: Machine) -> None:
    pfn = m.call("vm_page_alloc", {"pindex": 7}).result
    m.pg.next[pfn - m.first_page] = ix(600)


def corrupt_fictitious_on_queue(m: Machine) -> None:
    m.pg.flags[ix(1625)] |= PG_FICTITIOUS


def corrupt_unqueued_on_queue(m: Machine) -> None:
    m.pg.flags[ix(1625)] |= PG_UNQUEUED


def corrupt_ring(m: Machine) -> None:
    head, tail = ix(1625), ix(600)
    m.pg.next[tail] = head
    m.pg.prev[head] = tail


def corrupt_detached_cycle(m: Machine) -> None:
    """Two pages of colour 601 moved into a 2-cycle that carries queue PQ_FREE + 600 and is
    counted in its lcnt, but hangs off no head: every local check (mutual links, one head,
    one tail, lcnt = pages carrying the queue, counters) still passes."""
    y, z = ix(1624), ix(601)
    _unlink_raw(m, y)
    _unlink_raw(m, z)
    q = PQ_FREE + 600
    for p in (y, z):
        m.pg.pc[p] = 600
        m.pg.queue[p] = q
    m.pg.next[y], m.pg.prev[z] = z, y
    m.pg.next[z], m.pg.prev[y] = y, z
    m.pq.lcnt[q] += 2


def corrupt_self_loop(m: Machine) -> None:
    i = ix(1624)  # colour 601 = [1624, 601]
    _unlink_raw(m, ix(601))
    m.pg.next[i] = i  # lcnt (1) still equals the pages carrying the queue
    m.pg.prev[i] = i


def _global(k: int) -> Callable[[Machine], None]:
    def corrupt(m: Machine) -> None:
        m.vmstats.cnt[k] += 1

    corrupt.__name__ = f"corrupt_global_counter_{k}"
    return corrupt


def corrupt_global_free_minus_one(m: Machine) -> None:
    m.vmstats.cnt[CNT_FREE] -= 1


def corrupt_pending_adjustment(m: Machine) -> None:
    m.cpus[0].adj.cnt[CNT_FREE] += 1


def corrupt_wire_count_of_a_page(m: Machine) -> None:
    m.pg.wire[ix(1625)] = 1  # nobody counted this wiring


def _with_object(m: Machine) -> tuple[int, int]:
    oid = m.call("vm_object_allocate").result
    pfn = m.call("vm_page_alloc", {"object": oid, "pindex": 9}).result
    return oid, pfn - m.first_page


def corrupt_object_tree_points_elsewhere(m: Machine) -> None:
    oid, _ = _with_object(m)
    m.vmobj.objects[oid].pages[9] = ix(1625)


def corrupt_page_pindex(m: Machine) -> None:
    _, i = _with_object(m)
    m.pg.pindex[i] = 10


def corrupt_page_object_id(m: Machine) -> None:
    oid, i = _with_object(m)
    other = m.call("vm_object_allocate").result
    m.pg.obj[i] = other


def corrupt_resident_count(m: Machine) -> None:
    oid, _ = _with_object(m)
    m.vmobj.objects[oid].resident_page_count += 1


def corrupt_orphan_owner(m: Machine) -> None:
    oid, _ = _with_object(m)
    m.pg.obj[ix(1625)] = oid  # claims the object, which does not list it


def corrupt_t_rm(m: Machine) -> None:
    _with_object(m)
    m.cpus[0].t_rm -= 1


def corrupt_unmanaged_page(m: Machine) -> None:
    oid, _ = _with_object(m)
    m.pg.obj[m.page_range - 1] = oid  # the last vm_page_array entry is not managed


def corrupt_unmanaged_page_queued(m: Machine) -> None:
    """A page of the page-array carve-out put on a queue with all books kept straight
    (colour, lcnt, per-CPU counters): only the managed-memory check can object."""
    i = m.page_range - 1
    m.select_cpu(0)
    _add_queue(m, i, PQ_ACTIVE + m.pg.pc[i], False)


CORRUPTIONS: list[Callable[[Machine], None]] = [
    corrupt_lcnt,
    corrupt_lcnt_of_an_empty_queue,
    corrupt_prev_link,
    corrupt_prev_link_to_none,
    corrupt_next_out_of_range,
    corrupt_head,
    corrupt_tail,
    corrupt_color,
    corrupt_queue_field,
    corrupt_links_of_an_unqueued_page,
    corrupt_fictitious_on_queue,
    corrupt_unqueued_on_queue,
    corrupt_ring,
    corrupt_detached_cycle,
    corrupt_self_loop,
    *[_global(k) for k in range(5)],
    corrupt_global_free_minus_one,
    corrupt_pending_adjustment,
    corrupt_wire_count_of_a_page,
    corrupt_object_tree_points_elsewhere,
    corrupt_page_pindex,
    corrupt_page_object_id,
    corrupt_resident_count,
    corrupt_orphan_owner,
    corrupt_t_rm,
    corrupt_unmanaged_page,
    corrupt_unmanaged_page_queued,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_corruption_is_detected(corrupt: Callable[[Machine], None]) -> None:
    m = boot8()
    check_invariants(m)
    corrupt(m)
    with pytest.raises(InvariantError):
        check_invariants(m)


def _reserve_page(m: Machine) -> int:
    """The index of the first page in a free alist run (a DMA reserve page)."""
    blk, _count = next(iter(m.contig.alist.free_runs()))
    return int(blk) - m.first_page


def reserve_not_fictitious(m: Machine) -> None:
    m.pg.flags[_reserve_page(m)] &= ~PG_FICTITIOUS


def reserve_not_unqueued(m: Machine) -> None:
    m.pg.flags[_reserve_page(m)] &= ~PG_UNQUEUED


def reserve_wired_twice(m: Machine) -> None:
    i = _reserve_page(m)
    m.pg.wire[i] = 2  # still counted once in v_wire_count (count of wired pages)


def reserve_page_given_away(m: Machine) -> None:
    """The alist says a block is free, but the page was made a normal free page."""
    i = _reserve_page(m)
    m.pg.flags[i] = 0
    m.pg.wire[i] = 0
    m.vmstats.cnt[4] -= 1  # v_wire_count: keep the wire books straight
    m.select_cpu(0)
    _add_queue(m, i, PQ_FREE + m.pg.pc[i], True)


@pytest.mark.parametrize(
    "corrupt",
    [reserve_not_fictitious, reserve_not_unqueued, reserve_wired_twice, reserve_page_given_away],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("stage", ["early", "finished"])
def test_reserve_corruption_is_detected(corrupt: Callable[[Machine], None], stage: Any) -> None:
    m = boot_with_reserve(boot_stage=stage)
    assert m.contig.alist.bl_free == (256 if stage == "early" else 128)  # see docstring
    check_invariants(m)
    corrupt(m)
    with pytest.raises(InvariantError):
        check_invariants(m)


# =========================================================== state_digest


SCRIPT: list[tuple[str, dict[str, Any], int]] = [
    ("vm_object_allocate", {}, 0),
    ("vm_page_alloc", {"object": 1, "pindex": 0}, 0),
    ("vm_page_alloc", {"object": 1, "pindex": 1}, 1),
    ("vm_page_alloc", {"pindex": 600}, 1),
    ("vm_page_activate", {"m": 1625}, 0),
    ("vm_page_alloczwq", {"flags": "NORMAL|ZERO"}, 0),
    ("vmstats_rollup", {}, 1),
]


def run_script(seed: int, script: list[tuple[str, dict[str, Any], int]] = SCRIPT) -> Machine:
    m = boot8(cpus=2, seed=seed)
    for fn, args, cpu in script:
        m.call(fn, args, cpu=cpu)
    return m


def test_same_config_seed_and_calls_give_the_same_digest() -> None:
    a, b = run_script(5), run_script(5)
    assert a.state_digest() == b.state_digest()
    assert boot8(seed=11).state_digest() == boot8(seed=11).state_digest()


def test_a_different_seed_gives_a_different_digest() -> None:
    a, b = run_script(5), run_script(6)
    # the seed draws the simulated thread addresses, from which object colours come
    assert a.cpus[0].thread_addr != b.cpus[0].thread_addr
    assert a.vmobj.objects[1].pg_color != b.vmobj.objects[1].pg_color
    assert a.state_digest() != b.state_digest()


def test_one_more_call_changes_the_digest() -> None:
    a = run_script(5)
    b = run_script(5, [*SCRIPT, ("vm_page_deactivate", {"m": 1625}, 0)])
    assert a.state_digest() != b.state_digest()


def test_read_only_calls_keep_the_digest() -> None:
    m = run_script(5)
    before = state_digest(m)
    m.call("vm_page_lookup", {"object": 1, "pindex": 0})
    m.call("vm_page_lookup", {"object": 1, "pindex": 99})
    m.call("vm_test_nominal")
    m.call("vm_get_pg_color", {"cpuid": 1, "object": 1, "pindex": 3})
    check_invariants(m)
    assert state_digest(m) == before


@pytest.mark.parametrize("field", list(PAGE_FIELDS))
def test_digest_sees_every_page_field(field: str) -> None:
    m = boot8()
    before = state_digest(m)
    arr = m.pg.arrays[field]
    arr[ix(1625)] = arr[ix(1625)] + np.array(1, dtype=arr.dtype)
    assert state_digest(m) != before


@pytest.mark.parametrize(
    "poke",
    [
        lambda m: m.pq.adds.__setitem__(PQ_FREE + 3, 1),
        lambda m: m.pq.lastq.__setitem__(PQ_FREE + 3, 5),
        lambda m: m.pq.lcnt.__setitem__(PQ_FREE + 3, 9),
        lambda m: setattr(m.vmstats, "v_free_min", m.vmstats.v_free_min + 1),
        lambda m: m.cpus[0].meter.__setitem__("v_tfree", 1),
        lambda m: m.cpus[0].adj.cnt.__setitem__(2, 1),
        lambda m: setattr(m.cpus[0], "quick_color", 23),
        lambda m: setattr(m.pd, "vm_pages_needed", 1),
        lambda m: setattr(m.pd, "vm_pages_waiting", 1),
        lambda m: setattr(m.pd, "vm_pageout_pages_needed", 1),
        lambda m: setattr(m.pd, "vm_pageout_deficit", 1),
        lambda m: setattr(m.sched, "ticks", 1),
        lambda m: setattr(m.pagestate, "dnweight", 1),
        lambda m: m.rng.random(),
        lambda m: m.call("vm_object_allocate"),
    ],
)
def test_digest_sees_global_state(poke: Callable[[Machine], Any]) -> None:
    m = boot8()
    before = state_digest(m)
    poke(m)
    assert state_digest(m) != before


def test_digest_sees_object_fields() -> None:
    m = boot8()
    m.call("vm_object_allocate")
    before = state_digest(m)
    m.vmobj.objects[1].generation += 1
    assert state_digest(m) != before
