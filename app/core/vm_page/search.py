"""Page colours and queue searches (spec §6): ``vm_get_pg_color``, ``_vm_page_list_find``,
the widening search ``_vm_page_list_find_wide`` with ``set_assoc_mask`` and ``lastq``, the
combined free/cache search ``_vm_page_list_find2`` and ``vm_page_list_find``.

In the simulator every page try-lock succeeds, so a probe of a non-empty queue returns its
head.  When ``trace.probes`` is a list, every queue probed is appended to it (for
"explain").
"""

from __future__ import annotations

from typing import Final

from app.core.constants import PQ_CACHE, PQ_FREE, PQ_L2_MASK
from app.core.objects import VmObject
from app.core.state import MachineState
from app.core.vm_page.queues import _rem_queue

_U64: Final = (1 << 64) - 1


def _as_int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def vm_quickcolor(vm: MachineState) -> int:
    """``vm_quickcolor()``: ``(curthread >> 10) + gd_quick_color`` (as a C ``int``),
    then ``gd_quick_color += PQ_PRIME2``.  The thread address is simulated (drawn from
    the machine's seeded generator at boot)."""
    cpu = vm.cpu
    color = _as_int32((cpu.thread_addr >> 10) + cpu.quick_color)
    cpu.quick_color = _as_int32(cpu.quick_color + 23)
    return color


def vm_get_pg_color(vm: MachineState, cpuid: int, obj: VmObject | None, pindex: int) -> int:
    """``vm_get_pg_color(cpuid, object, pindex)`` (spec §6.1).  The seam ``page_color``
    (``seams.SEAMS``) sits here: a machine whose policy names another choice takes it
    instead (``_pg_color_by_policy``)."""
    if vm.policy.page_color != "kernel":
        return _pg_color_by_policy(vm, cpuid, obj, pindex)
    oc = obj.pg_color if obj is not None else 0
    key = (pindex + oc) & _U64  # the sum is evaluated as an unsigned 64-bit value
    # the CPU's slice: by socket/core/thread when cpu_topology_ht_ids != 0 (probed)
    base, share = vm.config.color_slices[cpuid]
    return (base + key % share) & PQ_L2_MASK


def _pg_color_by_policy(vm: MachineState, cpuid: int, obj: VmObject | None, pindex: int) -> int:
    """The seam ``page_color``'s alternatives to ``vm_get_pg_color`` (not the kernel's):
    ``object``: ``(pg_color + pindex) mod 1024`` on any CPU (classic BSD colouring);
    ``cpu``: the kernel's slice of the CPU with ``pindex`` alone as the offset;
    ``none``: colour 0."""
    choice = vm.policy.page_color
    if choice == "object":
        oc = obj.pg_color if obj is not None else 0
        return (oc + pindex) & PQ_L2_MASK
    if choice == "cpu":
        base, share = vm.config.color_slices[cpuid]
        return (base + pindex % share) & PQ_L2_MASK
    return 0  # "none"


# --- single queue type -------------------------------------------------------------
def _list_find(vm: MachineState, basequeue: int, index: int) -> int:
    """``_vm_page_list_find(basequeue, index)``: the head of the exact colour queue
    (resetting its ``lastq``), else the widening search.  Returns a page index still
    on its queue, or -1."""
    index &= PQ_L2_MASK
    q = basequeue + index
    trace = vm.trace
    if trace is not None and trace.probes is not None:
        trace.probes.append(q)
    pq = vm.pq
    head = pq.head[q]
    if head >= 0:
        pq.lastq[q] = -1
        return head
    return _list_find_wide(vm, basequeue, index, q)


def _scan_level(vm: MachineState, basequeue: int, st: list[int], owner: int) -> int:
    """One widening level of ``_vm_page_list_find_wide``.  ``st`` holds
    ``[index, pqmask, count, skip_start, skip_next]`` and is updated in place; on
    success with ``count >= 8`` the owner queue's ``lastq`` is set."""
    index, pqmask, count, skip_start, skip_next = st
    pqmask = (pqmask << 1) | 1
    pq = vm.pq
    heads = pq.head
    trace = vm.trace
    probes = trace.probes if trace is not None else None
    pqi = index
    rng = pqmask + 1
    while rng > 0:
        if skip_start <= pqi < skip_next:  # jump over the block searched already
            rng -= skip_next - pqi
            pqi = (pqi & ~pqmask) | (skip_next & pqmask)
        if rng > 0:
            if probes is not None:
                probes.append(basequeue + pqi)
            head = heads[basequeue + pqi]
            if head >= 0:
                if count >= 8:
                    pq.lastq[owner] = pqi & PQ_L2_MASK
                st[1] = pqmask
                st[2] = count
                return head
        rng -= 1
        count += 1
        pqi = (pqi & ~pqmask) | ((pqi + 1) & pqmask)  # wrap inside the current block
    st[1] = pqmask
    st[2] = count
    st[3] = pqi & ~pqmask
    st[4] = (pqi | pqmask) + 1
    return -1


def _list_find_wide(vm: MachineState, basequeue: int, index: int, owner: int) -> int:
    """``_vm_page_list_find_wide(basequeue, index, &lastq)``: search the aligned block
    of ``set_assoc_mask + 1`` colours around ``index`` (from ``lastq`` if set), then
    double the block until all 1024 colours were probed (spec §6.3)."""
    pq = vm.pq
    last = pq.lastq[owner]
    if last >= 0:
        index = last
    st = [index & PQ_L2_MASK, pq.set_assoc_mask >> 1, 0, -1, -1]
    while True:
        found = _scan_level(vm, basequeue, st, owner)
        if found >= 0:
            return found
        if st[1] == PQ_L2_MASK:
            return -1


# --- free + cache ------------------------------------------------------------------
def _list_find2(vm: MachineState, index: int) -> int:
    """``_vm_page_list_find2(PQ_FREE, PQ_CACHE, index)``: the exact *free* queue, else
    the interleaved wide search (spec §6.4).  The exact cache queue is not probed
    first."""
    index &= PQ_L2_MASK
    q1 = PQ_FREE + index
    trace = vm.trace
    if trace is not None and trace.probes is not None:
        trace.probes.append(q1)
    pq = vm.pq
    head = pq.head[q1]
    if head >= 0:
        lastq = pq.lastq
        lastq[q1] = -1
        lastq[PQ_CACHE + index] = -1
        return head
    return _list_find2_wide(vm, index)


def _list_find2_wide(vm: MachineState, index: int) -> int:
    """``_vm_page_list_find2_wide``: the §6.3 search run on two state sets, the cache
    side one level behind the free side (so it never widens past 512 colours and is
    never searched when ``set_assoc_mask == 1023``)."""
    owner1 = PQ_FREE + index
    owner2 = PQ_CACHE + index
    pq = vm.pq
    last = pq.lastq[owner1]
    start = (last if last >= 0 else index) & PQ_L2_MASK
    mask = pq.set_assoc_mask
    half = mask >> 1
    st1 = [start, half, 0, -1, -1]
    st2 = [start, half, 0, -1, -1]
    cache_from = (mask << 1) | 1
    while True:
        if st1[1] != PQ_L2_MASK:
            found = _scan_level(vm, PQ_FREE, st1, owner1)
            if found >= 0:
                return found
        if st1[1] >= cache_from:
            found = _scan_level(vm, PQ_CACHE, st2, owner2)
            if found >= 0:
                return found
        if not (st1[1] != PQ_L2_MASK and st2[1] != PQ_L2_MASK):
            return -1


def vm_page_list_find(vm: MachineState, basequeue: int, index: int) -> int:
    """``vm_page_list_find``: ``_vm_page_list_find`` plus removal from the queue."""
    i = _list_find(vm, basequeue, index)
    if i >= 0:
        _rem_queue(vm, i)
    return i
