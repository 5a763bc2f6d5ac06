"""A compact batch's bookkeeping on every placement: a slice whose calls all ran and that
nobody watches is noted in one step (``EntryRun``), the others call by call; either way
each call gets the seq, journal entry and count it gets from the readable batch, through
slices, refusals in the middle and a restart from the database."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from app.api.compact import seq_runs
from app.lab.hosts.base import Ctx, FormCalls, PackedCalls
from app.lab.service import Instance, Lab
from app.lab.store import Entry, EntryRun, History
from bench.placements import TURN  # one turn of a page's life: every call of it runs

from .conftest import placed

pytestmark = pytest.mark.anyio


async def _with_pages(lab: Lab, name: str, pages: int) -> tuple[Instance, list[int]]:
    inst = await lab.create_preset(name, "tiny-16m", {"seed": 3})
    r, _, _ = await lab.call(
        inst.id, "vm_object_allocate", {"type": "OBJT_DEFAULT", "size": pages}, Ctx()
    )
    items = await lab.batch(
        inst.id,
        [("vm_page_alloc", {"object": r.result, "pindex": i}, Ctx()) for i in range(pages)],
    )
    pfns = [it["result"] for it in items]
    await lab.batch(inst.id, [("vm_page_wakeup", {"m": p}, Ctx()) for p in pfns])
    return inst, pfns


def _turns(
    pfns: list[int], n: int
) -> tuple[list[tuple[str, tuple[str, ...], Ctx]], list[int], list[list[Any]]]:
    forms = [(fn, names, Ctx(nice=5) if fn == "pmap_touch" else Ctx()) for fn, names, _ in TURN]
    fn = [k % len(TURN) for k in range(n)]
    args = [[pfns[(k // len(TURN)) % len(pfns)], *TURN[k % len(TURN)][2]] for k in range(n)]
    return forms, fn, args


def _journal(lab: Lab, inst: Instance) -> list[tuple[Any, ...]]:
    return [(e.seq, e.fn, e.args, e.ctx, e.source, e.result) for e in lab.entries(inst)]


async def test_compact_batches_journal_what_readable_batches_do(
    placement: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    lab = Lab(placed(placement, boot_default=False, database_url=url))
    try:
        compact, pfns = await _with_pages(lab, "compact", 16)
        readable, same = await _with_pages(lab, "readable", 16)
        assert same == pfns
        # several slices of calls that all run (3000 calls: more than one slice's 10 ms
        # in-process, and a worker is first sent 256)
        forms, fn, args = _turns(pfns, 3000)
        cols = await lab.batch_columns(compact.id, forms, fn, args)
        assert not cols.errors and len(cols.results) == 3000
        first = compact.seq - 3000 + 1
        assert cols.seqs == list(range(first, first + 3000))
        assert cols.runs == seq_runs(cols.seqs) == [(0, first, 3000)]  # kept over slices
        calls = [
            (forms[f][0], dict(zip(forms[f][1], a, strict=True)), forms[f][2])
            for f, a in zip(fn, args, strict=True)
        ]
        items = await lab.batch(readable.id, calls)
        assert [it["result"] for it in items] == cols.results
        assert [it["seq"] for it in items] == cols.seqs
        # a kernel panic (a seq, no entry) and an unknown function (no seq) in the middle
        forms2 = [
            ("vm_page_deactivate", ("m",), Ctx()),
            ("vm_page_free_toq", ("m",), Ctx()),
            ("vm_no_such_function", ("m",), Ctx()),
        ]
        fn2 = [0] * 40 + [1, 2] + [0] * 40
        args2 = [[pfns[k % len(pfns)]] for k in range(len(fn2))]
        cols2 = await lab.batch_columns(compact.id, forms2, fn2, args2)
        calls2 = [(forms2[f][0], {"m": a[0]}, Ctx()) for f, a in zip(fn2, args2, strict=True)]
        items2 = await lab.batch(readable.id, calls2)
        assert [k for k, _ in cols2.errors] == [40, 41]
        assert cols2.seqs == [it.get("seq") for it in items2]
        assert cols2.seqs[41] is None and cols2.seqs[42] == cols2.seqs[40] + 1
        assert cols2.runs == seq_runs(cols2.seqs) and len(cols2.runs) == 2
        # and with stop_on_error, the batch ends at the panic
        cols3 = await lab.batch_columns(compact.id, forms2, fn2, args2, stop_on_error=True)
        items3 = await lab.batch(readable.id, calls2, stop_on_error=True)
        assert len(cols3.results) == len(items3) == 41
        assert cols3.seqs == [it.get("seq") for it in items3]
        assert cols3.runs == seq_runs(cols3.seqs)
        assert compact.seq == readable.seq
        assert compact.calls_by_fn == readable.calls_by_fn
        assert compact.refused_by_fn == readable.refused_by_fn
        await lab.sync(compact)
        await lab.sync(readable)
        journal = _journal(lab, compact)
        assert [e[1:] for e in journal] == [e[1:] for e in _journal(lab, readable)]
        assert [e[0] for e in journal] == [e[0] for e in _journal(lab, readable)]
        assert len(journal) == compact.seq - 2  # the two panics have seqs, not entries
        digest = await lab.digest(compact)
        assert digest == await lab.digest(readable)
    finally:
        await lab.shutdown()
    # the journal written in runs is read back and replayed into the same machine
    again = Lab(placed(placement, boot_default=False, database_url=url, snapshot_every=0))
    try:
        await again.restore_all()
        inst = again.get(compact.id)
        assert await again.digest(inst) == digest
        assert [e[1:] for e in _journal(again, inst)] == [e[1:] for e in journal]
    finally:
        await again.shutdown()


async def test_the_in_memory_journal_reads_runs_as_entries(placement: str) -> None:
    lab = Lab(placed(placement, boot_default=False, database_url=""))
    try:
        inst, pfns = await _with_pages(lab, "box", 8)
        before = inst.seq
        forms, fn, args = _turns(pfns, 500)
        await lab.batch_columns(inst.id, forms, fn, args)
        assert inst.history is not None and len(inst.history) == inst.seq
        assert any(isinstance(item, EntryRun) for item in inst.history.items)
        tail = lab.entries(inst, after=before + 100)
        assert [e.seq for e in tail] == list(range(before + 101, inst.seq + 1))
        assert tail[0].fn == TURN[100 % len(TURN)][0]
        assert tail[0].args == dict(zip(TURN[100 % 8][1], args[100], strict=True))
        assert lab.entries(inst, after=before, limit=3)[0].seq == before + 1
    finally:
        await lab.shutdown()


def test_a_run_is_the_entries_it_stands_for() -> None:
    forms = [("vm_page_wire", ("m",), {"cpu": 0}), ("tick", ("n",), {"cpu": 1})]
    run = EntryRun(4, 1, 10, forms, [0, 1, 0], [[7], [2], [8]], [None, 5, None])
    entries = list(run)
    assert entries == [
        Entry(4, 1, 10, "vm_page_wire", {"m": 7}, {"cpu": 0}, "batch", None),
        Entry(4, 1, 11, "tick", {"n": 2}, {"cpu": 1}, "batch", 5),
        Entry(4, 1, 12, "vm_page_wire", {"m": 8}, {"cpu": 0}, "batch", None),
    ]
    assert run.rows() == [e.values() for e in entries]
    history = History([Entry(4, 1, 9, "tick", {}, {"cpu": 0}), run])
    assert len(history) == 4 and [e.seq for e in history] == [9, 10, 11, 12]
    assert [e.seq for e in history.after(10)] == [11, 12]
    assert history.after(12) == []


def test_a_compact_slice_travels_packed_or_as_it_is() -> None:
    forms = [("vm_page_wire", ("m",), Ctx()), ("pmap_enter", ("m", "pmap"), Ctx(cpu=1))]
    calls = FormCalls(forms, [0, 1], [[7], [8, (1, 2)]])
    packed = PackedCalls.of(calls)
    assert isinstance(packed, PackedCalls)
    back = pickle.loads(pickle.dumps(packed)).unpack()
    # the values as JSON gives them: a tuple comes out a list
    assert list(back) == [
        ("vm_page_wire", {"m": 7}, Ctx()),
        ("pmap_enter", {"m": 8, "pmap": [1, 2]}, Ctx(cpu=1)),
    ]
    # a value msgpack has no form for: the calls go as they are (pickled)
    huge = FormCalls(forms, [0], [[1 << 70]])
    assert PackedCalls.of(huge) is huge
