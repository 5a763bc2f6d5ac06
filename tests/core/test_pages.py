"""Tests for app.core.pages: the page records are vecs (``librt.vecs``) with canonical
numpy views onto the same memory.  Every value a field can hold in the kernel's type
survives a call, the views, a snapshot and the digest exactly as when the fields were
numpy arrays, and a snapshot written then loads to the same machine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.core import snapshot
from app.core.config import MachineConfig
from app.core.constants import PBUSY_LOCKED
from app.core.invariants import check_invariants, state_digest
from app.core.machine import Machine
from app.core.pages import PAGE_FIELDS, PAGE_STORAGE, PageArray

SNAPSHOTS = Path(__file__).parent / "snapshots"
TOP = (1 << 64) - 1


def machine() -> Machine:
    return Machine.boot(MachineConfig.from_size("8MiB", cpus=2, seed=11))


def fields_of(m: Machine, pfn: int) -> dict[str, int]:
    """One page's fields as the canonical arrays hold them."""
    i = pfn - m.first_page
    return {name: int(m.pg.arrays[name][i]) for name in PAGE_FIELDS}


def test_canonical_views_are_the_kernel_types_and_share_the_vecs_memory() -> None:
    pg = PageArray(8)
    for name, dtype in PAGE_FIELDS.items():
        view = pg.arrays[name]
        assert view.dtype == np.dtype(dtype) and view.shape == (8,)
        assert view.flags.writeable
    assert pg.arrays["next"].tolist() == [-1] * 8 == list(pg.next)
    for name, dtype in PAGE_FIELDS.items():
        info = np.iinfo(dtype)
        # every value of the kernel's type; queues and colours below 2^15 (PQ_COUNT = 5121)
        top = 0x7FFF if name in ("queue", "pc") else int(info.max)
        field = getattr(pg, name)
        for k, value in enumerate((top, int(info.min), 1)):
            field[k] = value  # through the vec (or pindex's memoryview) ...
            assert int(pg.arrays[name][k]) == value  # ... seen by the view
        pg.arrays[name][5] = top  # through the view ...
        assert field[5] == top  # ... seen by the vec, not wrapped
    # a vec refuses what its type cannot hold instead of wrapping it
    with pytest.raises(OverflowError):
        pg.queue[0] = 1 << 15
    with pytest.raises(OverflowError):
        pg.act[0] = 256


def test_a_snapshot_with_a_queue_no_page_can_have_is_refused() -> None:
    m = machine()
    m.pg.arrays["queue"][3] = 40000  # an u2 the i16 vec cannot hold: it reads back wrapped
    assert m.pg.queue[3] == 40000 - (1 << 16)
    with pytest.raises(snapshot.SnapshotError, match="the page field queue holds a value"):
        snapshot.load(snapshot.dump(m))


def test_every_field_is_wide_enough_for_its_kernel_type() -> None:
    for name, canonical in PAGE_FIELDS.items():
        storage, want = np.dtype(PAGE_STORAGE[name]), np.dtype(canonical)
        assert storage.itemsize >= want.itemsize
        if storage.kind == want.kind == "u" or storage.kind == want.kind == "i":
            continue
        # signed storage of an unsigned type: wider (every value fits), or the u2 colour
        # and queue fields whose values stay below 2^15 (PQ_COUNT = 5121)
        assert storage.itemsize > want.itemsize or name in ("queue", "pc"), name


def test_edge_values_round_trip_through_calls_views_snapshots_and_the_digest() -> None:
    m = machine()
    obj = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT", "size": 64}).result
    p = m.call("vm_page_alloc", {"object": obj, "pindex": 1, "page_req": "NORMAL"}).result
    assert m.pg.busy[p - m.first_page] == PBUSY_LOCKED  # bit 31
    m.call("vm_page_flag_set", {"m": p, "bits": 0xFFFFFFFF & ~0x8})  # not FICTITIOUS
    m.call("vm_page_wire", {"m": p})
    q = m.call("vm_page_alloc", {"page_req": "NORMAL"}).result
    m.call("vm_page_insert", {"m": q, "object": obj, "pindex": TOP})
    got = fields_of(m, p)
    assert got["busy"] == PBUSY_LOCKED and got["flags"] == 0xFFFFFFF7 and got["wire"] == 1
    assert m.pg.flags[p - m.first_page] == 0xFFFFFFF7
    assert fields_of(m, q)["pindex"] == TOP == m.pg.pindex[q - m.first_page]
    digest = state_digest(m)
    back = snapshot.load(snapshot.dump(m))
    assert state_digest(back) == digest
    assert fields_of(back, p) == got and fields_of(back, q)["pindex"] == TOP
    assert back.call("vm_page_lookup", {"object": obj, "pindex": TOP}).result == q
    # the digest reads every bit: clearing bit 31 of flags changes it
    back.call("vm_page_flag_clear", {"m": p, "bits": 0x80000000})
    assert state_digest(back) != digest


def test_a_snapshot_from_before_the_vecs_loads_with_its_digest_fields_and_future() -> None:
    """``snapshots/v2-edges.plsnap`` was written when the page fields were numpy arrays
    (``snapshots/make_v2_edges.py`` at 3ea05c6); it loads with the digest it was taken
    with, every edge value where it was, and the calls that followed it then give what
    they gave then."""
    data = (SNAPSHOTS / "v2-edges.plsnap").read_bytes()
    expected = json.loads((SNAPSHOTS / "v2-edges.json").read_text())
    m = snapshot.load(data)  # verifies the recorded digest
    assert m.state_digest() == expected["digest"]
    check_invariants(m)
    for name, pfn in expected["pages"].items():
        assert fields_of(m, pfn) == expected["fields"][name], name
    i = expected["pages"]["locked"] - m.first_page
    assert m.pg.busy[i] == PBUSY_LOCKED and m.pg.flags[i - 1] >> 31 == 1
    obj, top = 1, TOP
    future = [
        m.call("vm_page_lookup", {"object": obj, "pindex": top}).result,
        m.call("vm_page_hash_get", {"object": obj, "pindex": top}).result,
    ]
    future.append(m.call("vm_page_flag_clear", {"m": future[0], "bits": 0x400}).result)
    future.append(
        m.call("vm_page_alloc", {"object": obj, "pindex": top - 1, "page_req": "NORMAL"}).result
    )
    future.append(m.state_digest())
    assert future == expected["future"]
    # written again in today's build, it is the same file's machine
    assert snapshot.load(snapshot.dump(m)).state_digest() == future[-1]
