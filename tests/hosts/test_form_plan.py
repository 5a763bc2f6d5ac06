"""A compact batch's form plan (``hosts.shard.FormPlan``): what the host looks up once per
form instead of once per call, checked against what ``Shard.one`` looks up per call."""

from __future__ import annotations

import pytest

from app.lab.hosts.base import Ctx
from app.lab.hosts.shard import FormPlan


def test_the_thread_a_form_runs_on() -> None:
    assert FormPlan.of("vm_page_alloc", (), Ctx()).tid == 0  # the CPU's own thread
    assert FormPlan.of("vm_page_alloc", (), Ctx(cpu=1)).tid == 1
    assert FormPlan.of("vm_page_alloc", (), Ctx(cpu=1, thread=7)).tid == 7
    assert FormPlan.of("tick", (), Ctx(thread=7)).tid == -1  # a verb runs on no thread
    assert FormPlan.of("no_such_function", (), Ctx()).tid == -2


def test_the_context_is_passed_only_when_it_is_not_the_default() -> None:
    assert FormPlan.of("vm_page_alloc", (), Ctx()).where is None
    assert FormPlan.of("vm_page_alloc", (), Ctx(nice=5)).where == {
        "cpu": 0,
        "thread": None,
        "nice": 5,
        "systhread": False,
        "lowmemkill": False,
    }


def test_the_page_arguments_and_busied_results_the_holders_follow() -> None:
    free = FormPlan.of("vm_page_free", ("m",), Ctx())
    assert (free.pages, free.busies) == ((0,), False)
    alloc = FormPlan.of("vm_page_alloc", ("pindex", "object"), Ctx())
    assert (alloc.pages, alloc.busies) == ((), True)
    lookup = FormPlan.of("vm_page_lookup", ("object", "pindex"), Ctx())
    assert (lookup.pages, lookup.busies) == ((), False)
    # a page argument the form does not give is not followed (its default is no page)
    assert FormPlan.of("vm_page_free", (), Ctx()).pages == ()


@pytest.mark.parametrize("width", [0, 1, 2, 3, 5])
def test_a_row_becomes_the_dict_of_its_form(width: int) -> None:
    names = tuple(f"a{k}" for k in range(width))
    read = FormPlan.of("vm_page_alloc", names, Ctx()).args
    row = list(range(width))
    assert read(row) == dict(zip(names, row, strict=True))
    with pytest.raises(ValueError):
        read([*row, 99])  # a row of another length is not silently cut
    if width:
        with pytest.raises(ValueError):
            read(row[:-1])
