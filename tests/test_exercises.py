"""The five lab exercises of docs/exercises.md, walked as a student walks them: the
``pagelab`` CLI (in-process ``main(argv)``) against a real uvicorn server, each scenario
file of docs/exercises/ replayed with ``pagelab run``, then the calls the text asks for.
Every number and explanation the text promises is asserted here, from the CLI's text
and from its ``--json`` (the same answer as fields).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from app.cli import main
from tests.live import live_server

EXERCISES = Path(__file__).resolve().parent.parent / "docs" / "exercises"
_names = itertools.count(1)


class Pagelab(Protocol):
    def __call__(self, *argv: str, ok: bool = True) -> str: ...


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with live_server() as base:
        yield base


@pytest.fixture
def pagelab(url: str, capsys: pytest.CaptureFixture[str]) -> Pagelab:
    """``pagelab(*argv)``: stdout of one command (stderr appended when ``ok=False``);
    asserts its exit status (0, or 1 with ``ok=False``)."""

    def run(*argv: str, ok: bool = True) -> str:
        capsys.readouterr()
        code = main(["--url", url, *argv])
        out, err = capsys.readouterr()
        assert code == (0 if ok else 1), (out, err)
        return out if ok else out + err

    return run


def create(pagelab: Pagelab, *flags: str) -> str:
    """A new instance (``create NAME FLAGS``); its name."""
    name = f"ex-{next(_names)}"
    pagelab("create", name, *flags)
    return name


def scenario(pagelab: Pagelab, inst: str, file: str, calls: int) -> None:
    out = pagelab("--instance", inst, "run", str(EXERCISES / file), "-q")
    assert out.startswith(f"{calls} of {calls} calls run, 0 refused\n")


def answer(pagelab: Pagelab, inst: str, *argv: str) -> dict[str, Any]:
    """A call's answer as JSON (``call ... --json``)."""
    value: dict[str, Any] = json.loads(pagelab("--instance", inst, "call", *argv, "--json"))
    return value


def event(value: dict[str, Any], kind: str) -> dict[str, Any]:
    (ev,) = [e for e in value["record"]["events"] if e["event"] == kind]
    return ev


# ------------------------------------------------------------------ (a) page colouring
def test_a_page_colouring(pagelab: Pagelab) -> None:
    inst = create(pagelab, "--memory", "64MiB", "--cpus", "4")
    scenario(pagelab, inst, "a-colours.json", 2)
    objects = pagelab("--instance", inst, "objects")
    assert "906691056" in objects and "906691079" in objects  # the two objects' pg_color
    out = pagelab("--instance", inst, "call", "vm_page_alloc", "object=1", "pindex=0")
    assert out.startswith("vm_page_alloc(object=1 pindex=0) = 1265\n")
    assert "move pfn 1265 PQ_FREE:240 -> PQ_NONE" in out
    assert (
        "(pindex 0 + object 1's pg_color 906691056) mod 256 = 240, so 0 + 240" in out
    )  # CPU 0 owns colours 0..255 of 1024 on 4 CPUs
    a = answer(pagelab, inst, "vm_page_alloc", "object=1", "pindex=1", "--cpu", "2")
    alloc = event(a, "alloc")
    assert (a["result"], alloc["color"]) == (1776, 753)
    assert alloc["found_queue"] == {"queue": "PQ_FREE", "color": 753}
    assert alloc["color_from"] == {
        "cpu": 2,
        "object_pg_color": 906691056,
        "pindex": 1,
        "share": 256,
        "base": 512,
        "offset": 241,
    }
    assert (
        "CPU 2 owns 256 of the 1024 colours (1024 / 4 CPU(s)), colours 512..767"
        in (alloc["color_why"])
    )
    b = answer(pagelab, inst, "vm_page_alloc", "object=2", "pindex=0", "--cpu", "2")
    assert event(b, "alloc")["color"] == 519  # 512 + (906691079 mod 256 = 7)
    c = answer(pagelab, inst, "vm_page_alloc", "--cpu", "3")
    assert event(c, "alloc")["color_from"]["object_pg_color"] is None
    assert event(c, "alloc")["color"] == 768  # no object: the first of CPU 3's colours
    # the page says who holds it busy: the allocation, on CPU 2's own thread
    page = pagelab("--instance", inst, "page", "1776")
    assert "busy.holder.thread:     2" in page and "busy.holder.seq:        4" in page
    queue = pagelab("--instance", inst, "queue", "free", "240")
    assert queue.startswith("PQ_FREE:240  lcnt 14")
    # with sockets: CPU 3 is socket 1, core 1 and owns colours 768..1023
    topo = create(pagelab, "--memory", "64MiB", "--topology", "2x2")
    scenario(pagelab, topo, "a-colours.json", 2)
    t = answer(pagelab, topo, "vm_page_alloc", "object=1", "pindex=0", "--cpu", "3")
    assert event(t, "alloc")["color"] == 1008
    assert "CPU 3 (socket 1, core 1, thread 0) owns 256" in event(t, "alloc")["color_why"]


# ------------------------------------------------------------------ (b) thresholds, vm_wait
def test_b_thresholds_and_vm_wait(pagelab: Pagelab) -> None:
    inst = create(pagelab, "--preset", "tiny-16m")
    out = pagelab(
        "--instance", inst, "sysctl", "vm.v_free_reserved", "vm.v_free_min", "vm.v_paging_wait"
    )
    assert out == "vm.v_free_reserved: 48\nvm.v_free_min: 83\nvm.v_paging_wait: 166\n"
    # the free count is not where a student looks first: the CLI says where it is
    err = pagelab("--instance", inst, "sysctl", "vm.v_free_count", ok=False)
    assert "sysctl: did you mean vm.stats.vm.v_free_count?" in err
    scenario(pagelab, inst, "b-drain.json", 3630)  # 3711 - 3630 = 81 free
    # 81 < v_free_min 83, yet a normal allocation succeeds: it needs only v_free_reserved
    out = pagelab("--instance", inst, "call", "vm_page_alloc", "--thread", "1")
    assert out.startswith("vm_page_alloc() = 997\n")
    w = answer(pagelab, inst, "vm_wait", "--thread", "5")
    assert w["blocked"]["channel"] == "v_free_count" and w["blocked"]["timo"] == 100
    wait = event(w, "vm_wait")
    assert (wait["free"], wait["cache"], wait["threshold"], wait["slept"]) == (80, 0, 104, True)
    assert (wait["nice_offset"], wait["timo"], wait["wakes_at"]) == (21, 100, 99)
    assert "timo 0 means hz = 100" in wait["why"]
    assert "v_free_min + vm_page_free_hysteresis = 99 wakes it" in w["blocked"]["why"]
    scenario(pagelab, inst, "b-more.json", 33)  # 80 - 33 = 47 free
    n = answer(pagelab, inst, "vm_page_alloc", "--thread", "1")
    alloc = event(n, "alloc")
    assert n["result"] is None
    assert alloc["why_null"].startswith(
        "free count 47 is below v_free_reserved (48) and no cache page could be recycled"
    )
    text = pagelab("--instance", inst, "call", "vm_page_alloc", "--thread", "1")
    assert 'probes="1025 queues: PQ_CACHE:0, PQ_CACHE:0' in text  # shortened, not 1025 items
    s = pagelab(
        "--instance", inst, "call", "vm_page_alloc", "page_req=VM_ALLOC_SYSTEM", "--thread", "1"
    )
    assert s.startswith("vm_page_alloc(page_req=VM_ALLOC_SYSTEM) = 3058\n")  # 46 free now
    scenario(pagelab, inst, "b-free.json", 52)  # 98 free: one short of 99
    threads = pagelab("--instance", inst, "threads")
    assert "vm_wait" in threads.splitlines()[2]  # thread 5 still sleeps
    f = answer(pagelab, inst, "vm_page_free", "m=2021", "--thread", "1")
    assert {"event": "wakeup", "channel": "v_free_count", "woke": [5]} in f["record"]["events"]
    assert f["record"]["resumed"] == [
        {"tid": 5, "fn": "vm_wait", "result": None, "timed_out": False}
    ]


# ------------------------------------------------------------------ (c) dontneed, madvise
def test_c_dontneed_and_madvise(pagelab: Pagelab) -> None:
    inst = create(pagelab, "--preset", "tiny-16m")
    scenario(pagelab, inst, "c-dontneed.json", 21)
    page = pagelab("--instance", inst, "page", "3199")
    assert "act_count:              5" in page and "valid:                  255" in page
    assert "vm_page_dontneed next: dnw 1 (1 of 512): left alone, as dnw mod 512 = 1 < 16" in (page)
    d = event(answer(pagelab, inst, "vm_page_dontneed", "m=3199"), "dontneed")
    assert (d["dnw"], d["branch"]) == (1, "left alone")
    assert d["why"].endswith("act_count 5 -> 4 (it was >= ACT_INIT 5)")
    for _ in range(14):  # dnw 2..15: still the first 16 of 512
        pagelab("--instance", inst, "call", "vm_page_dontneed", "m=3199")
    page = pagelab("--instance", inst, "page", "3198")
    assert "dnw 16 (16 of 512): deactivated to the inactive head" in page
    d = event(answer(pagelab, inst, "vm_page_dontneed", "m=3198"), "dontneed")
    assert (d["dnw"], d["phase"], d["dnw_mod_128"]) == (16, 16, 16)
    assert d["branch"] == "deactivated to the inactive head"
    m = answer(pagelab, inst, "madvise", "object=1", "pindex=0", "count=8", "advice=MADV_DONTNEED")
    mad = event(m, "madvise")
    assert (m["result"], mad["applied"], mad["resident"]) == (6, 6, 8)
    assert [s["pfn"] for s in mad["skipped"]] == [3201, 3200]  # pindex 6, 7: still busy
    assert all(s["why"].startswith("busy: hard-busied (PBUSY_LOCKED)") for s in mad["skipped"])
    dice = [(e["pfn"], e["dnw"], e["branch"]) for e in m["record"]["events"] if "dnw" in e]
    assert dice == [
        (3199, 17, "deactivated to the inactive head"),
        (3198, 18, "left alone"),  # already on PQ_INACTIVE
        (3197, 19, "deactivated to the inactive head"),
        (3196, 20, "deactivated to the inactive head"),
        (3203, 21, "deactivated to the inactive head"),
        (3202, 22, "deactivated to the inactive head"),
    ]


# ------------------------------------------------------------------ (d) contig for DMA
def test_d_contiguous_allocation(pagelab: Pagelab) -> None:
    inst = create(pagelab, "--preset", "tiny-16m")
    assert pagelab("--instance", inst, "dma").splitlines()[0] == "bl_free:              255"
    scenario(pagelab, inst, "d-contig.json", 1)  # 128 pages: the aligned block at 128
    assert "free runs (first pfn, pages): 1+127" in pagelab("--instance", inst, "dma")
    big = answer(pagelab, inst, "vm_page_alloc_contig", "size=1048576", "high=0xffffffff")
    reserve = event(big, "alloc_contig")
    assert big["result"] is None
    assert (reserve["block"], reserve["bl_free"]) == (256, 127)
    assert reserve["largest_aligned_block"] == [64, 64]
    assert (
        "its largest naturally aligned free block is 64 pages at pfn 0x40" in (reserve["why_null"])
    )
    args = ("size=65536", "alignment=0x100000", "high=0xffffffff")
    small = answer(pagelab, inst, "vm_page_alloc_contig", *args)
    assert small["result"] == 16  # 64 KiB: not the 1 MiB alignment asked for
    assert event(small, "alloc_contig")["ignored"].startswith("low, alignment and boundary")
    gib = ("size=2097152", "alignment=0x40000000", "mflags=M_NOWAIT")
    cut = event(answer(pagelab, inst, "vm_contig_pg_alloc", *gib), "contig_pg_alloc")
    assert cut["result"] is None and len(cut["passes"]) == 3
    assert cut["passes"][0]["scan"]["cut_by"] == "alignment"
    assert cut["passes"][0]["scan"]["runs"] == 3200
    assert "none at a multiple of the alignment 0x40000000" in cut["why_null"]
    ok = answer(pagelab, inst, "vm_contig_pg_alloc", "size=2097152", "alignment=0x200000")
    assert ok["result"] == 512
    assert event(ok, "contig_pg_alloc")["passes"] == [{"pass": 0, "found": 512}]
    bound = ("size=0x100000", "boundary=0x80000", "mflags=M_NOWAIT")
    crossed = event(answer(pagelab, inst, "vm_contig_pg_alloc", *bound), "contig_pg_alloc")
    scan = crossed["passes"][0]["scan"]
    assert (scan["cut_by"], scan["within_boundary"]) == ("boundary", 0)
    assert "each run crosses a 0x80000-byte boundary" in crossed["why_null"]


# ------------------------------------------------------------------ (e) the pageout daemon
def test_e_pageout_daemon(pagelab: Pagelab) -> None:
    inst = create(pagelab, "--preset", "tiny-16m")
    scenario(pagelab, inst, "e-pageout.json", 7901)
    screen = pagelab("--instance", inst, "systat")
    assert "inact             916" in screen and "act              1000" in screen
    assert "Pagedaemon: TARGET2" in screen
    pageout = pagelab("--instance", inst, "pageout")
    assert "what the fields mean:" in pageout and "TARGET2: then on to v_paging_target2" in pageout
    # the daemon ran during the drain (free fell below v_paging_start): it passed over
    # the dirty page once
    page = pagelab("--instance", inst, "page", "3199")
    assert '["PG_WINATCFLS"]' in page and "the next scan that reaches it launders it" in page
    t = answer(pagelab, inst, "tick", "n=1")
    summary = event(t, "pageout_summary")
    assert (summary["scanned"], summary["freed"], summary["laundered"]) == (360, 105, 0)
    assert summary["moves"] == {
        "PQ_INACTIVE->PQ_FREE": 42,
        "PQ_INACTIVE->PQ_CACHE": 228,
        "PQ_CACHE->PQ_FREE": 63,
    }
    assert "228 clean inactive pages cached (reusable by vm_page_alloc)" in summary["why"]
    vmstat = pagelab("--instance", inst, "vmstat", "-p")
    assert vmstat.splitlines()[2].split()[:2] == ["61", "354"]  # free + cache = target2 415
    # more pressure, twice: the second time the scan reaches the dirty pages again
    scenario(pagelab, inst, "e-more.json", 360)
    second = event(answer(pagelab, inst, "tick", "n=1"), "pageout_summary")
    assert (second["scanned"], second["laundered"]) == (478, 0)
    scenario(pagelab, inst, "e-more.json", 360)
    third = answer(pagelab, inst, "tick", "n=1")
    summary = event(third, "pageout_summary")
    flushed = [e for e in third["record"]["events"] if e["event"] == "pageout_flush"]
    assert summary["laundered"] == sum(len(e["pfns"]) for e in flushed) == 239
    assert "239 dirty page(s) laundered (pageout_flush)" in summary["why"]


def test_a_preset_instance_is_the_preset_machine(pagelab: Pagelab) -> None:
    """``create --preset`` boots the preset's machine, seed included (the client sent a
    seed of 0 that replaced the preset's 1): the same digest as the default instance,
    so the exercises' pfns hold on either."""
    inst = create(pagelab, "--preset", "tiny-16m")
    made = json.loads(pagelab("instances", "--json"))
    digests = {i["name"]: i["state_digest"] for i in made}
    assert digests[inst] == digests["default"]
