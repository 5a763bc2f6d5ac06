"""Kernel quirks that docs/model.md lists as kept on purpose and that no other test pinned
by itself.  Each test names the spec section the behaviour comes from."""

from __future__ import annotations

from app.core.config import MachineConfig
from app.core.constants import PBUSY_LOCKED, PQ_NONE
from app.core.invariants import check_invariants
from app.core.machine import Machine
from app.core.pmap import zeroed_chunks


def test_vm_page_alloc_ignores_vm_alloc_zero() -> None:
    """Spec §7.1: VM_ALLOC_ZERO and VM_ALLOC_FORCE_ZERO mean something only to
    vm_page_grab and vm_page_alloczwq; vm_page_alloc hands the page out as it found it:
    not declared valid and its contents not zeroed."""
    m = Machine.boot(MachineConfig.from_size("16MiB", seed=1))
    for flags in ("VM_ALLOC_NORMAL|VM_ALLOC_ZERO", "VM_ALLOC_NORMAL|VM_ALLOC_FORCE_ZERO"):
        pfn = m.call("vm_page_alloc", {"page_req": flags}).result
        i = pfn - m.first_page
        assert m.pg.valid[i] == 0
        assert zeroed_chunks(m, i) == 0  # nothing known to be zero: the page was not zeroed
        assert m.pg.busy[i] == PBUSY_LOCKED and m.pg.queue[i] == PQ_NONE
    # the same flag through vm_page_alloczwq does zero the page
    pfn = m.call("vm_page_alloczwq", {"flags": "VM_ALLOC_NORMAL|VM_ALLOC_ZERO"}).result
    i = pfn - m.first_page
    assert m.pg.valid[i] == 0xFF and zeroed_chunks(m, i) == 0xFF
    check_invariants(m)
