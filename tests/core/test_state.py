"""Tests for app.core.state: ``MachineState`` lists every global in one place.  A booted
and busy machine has every field of every area record set and no attribute besides them
(a module that stored state anywhere else would show up here), and the records are
fixed-layout: a misspelt or old flat name cannot be written into one."""

from __future__ import annotations

import dataclasses

import pytest

from app.core.config import MachineConfig
from app.core.machine import Machine
from app.core.state import MachineState, Pageout, PageQueues


def busy() -> Machine:
    """Every area touched: objects, the hash, pmap, contig, fake pages, sysctl, the
    pageout daemon under pressure, a sleeping-and-woken thread, ticks."""
    m = Machine.boot(MachineConfig.from_size("8MiB", cpus=2, seed=3, pagedaemon=True))
    obj = m.call("vm_object_allocate", {"type": "OBJT_VNODE", "size": 4096}).result
    for k in range(m.vmstats.v_free_count - m.vmstats.v_free_min + 40):
        pfn = m.call("vm_page_alloc", {"object": obj, "pindex": k, "page_req": "NORMAL"}).result
        if pfn is None:
            break
        if k % 50 == 0:
            m.call("pmap_enter", {"m": pfn, "pmap": 1, "writeable": True})
            m.call("pmap_enter", {"m": pfn, "pmap": 2, "writeable": False})
            m.call("vm_page_hash_enter", {"m": pfn})
        m.call("vm_page_activate", {"m": pfn})
        m.call("vm_page_wakeup", {"m": pfn})
    m.call("vm_wait", {"timo": 5}, thread=9)
    m.call("tick", {"n": 8})
    m.call("vm_page_initfake", {"slot": 2, "paddr": 0x7F000000, "memattr": 6})
    m.call(
        "vm_page_alloc_contig",
        {"low": 0, "high": 1 << 30, "alignment": 4096, "boundary": 0, "size": 8192, "memattr": 6},
    )
    m.call("sysctl", {"name": "vm.anonmem_decline", "value": 2})
    m.call("vm_page_alloc", {"page_req": "NORMAL"}, cpu=1)
    return m


def test_every_global_is_a_declared_field_and_all_are_set() -> None:
    m = busy()
    assert m.pd.passes > 0 and m.hash.arrays is not None and m.pmap.mapping_count > 0
    assert m.curthread is not None  # declared on the base CallingThread
    for f in dataclasses.fields(MachineState):
        value = getattr(m, f.name)  # AttributeError: a field boot never set
        if dataclasses.is_dataclass(value):
            for g in dataclasses.fields(value):
                getattr(value, g.name)
    # nothing stored outside the declared fields (Machine itself declares none)
    assert getattr(m, "__dict__", {}) == {}


@pytest.mark.parametrize(
    ("record", "name"), [(PageQueues, "q_head"), (Pageout, "pd_pass"), (Pageout, "pass")]
)
def test_records_are_fixed_layout(record: type, name: str) -> None:
    r = record()
    with pytest.raises(AttributeError):
        setattr(r, name, 1)
