"""The ``pagelab`` CLI run in-process (``main(argv)``) against a real uvicorn server, and
once as a subprocess.

Every instance is the ``tiny-16m`` preset; its numbers are worked out from the spec in
``tests/test_client.py``'s docstring: v_page_count 3966, v_free_count 3711,
v_wire_count 255, v_free_min 83, first vm_page_alloc on CPU 0 -> pfn 3075.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

import app.cli as cli
from app.cli import main, parse_c_integer, parse_call_value
from app.client import PageLabClient
from tests.test_client import (
    FIRST_PFN,
    V_FREE_COUNT,
    V_FREE_MIN,
    V_PAGE_COUNT,
    V_WIRE_COUNT,
)

ROOT = Path(__file__).resolve().parent.parent
_names = itertools.count(1)

Run = tuple[int, str, str]


class Runner(Protocol):
    def __call__(self, *argv: str, instance: int = 1) -> Run: ...


@pytest.fixture
def run(url: str, capsys: pytest.CaptureFixture[str]) -> Iterator[Runner]:
    """``run(*argv, instance=N)`` -> (exit status, stdout, stderr) of ``pagelab``."""

    def _run(*argv: str, instance: int = 1) -> Run:
        capsys.readouterr()
        code = main(["--url", url, "--instance", str(instance), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    yield _run


# ------------------------------------------------------------------ value parsing
def test_call_values_are_ints_hex_bools_null_or_strings() -> None:
    assert parse_call_value("3075") == 3075
    assert parse_call_value("-5") == -5
    assert parse_call_value("010") == 10  # decimal, not octal, for call arguments
    assert parse_call_value("0x1F") == 31
    assert parse_call_value("true") is True and parse_call_value("false") is False
    assert parse_call_value("null") is None
    assert parse_call_value("VM_ALLOC_NORMAL|VM_ALLOC_ZERO") == "VM_ALLOC_NORMAL|VM_ALLOC_ZERO"
    assert parse_call_value("1_000") == "1_000"  # not a Python-style literal
    assert parse_call_value("True") == "True"


def test_sysctl_values_are_read_like_strtol_base_0() -> None:
    assert parse_c_integer("100") == 100
    assert parse_c_integer("0x20") == 32
    assert parse_c_integer("010") == 8  # leading 0: octal, as strtol(s, NULL, 0)
    assert parse_c_integer("-3") == -3
    assert parse_c_integer("0") == 0
    assert parse_c_integer("08") is None and parse_c_integer("abc") is None
    assert parse_c_integer("") is None


# ------------------------------------------------------------------ instances
def test_instances_table(run: Runner, client: PageLabClient) -> None:
    code, out, err = run("instances")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "PRESET", "PAGES", "FREE", "CPUS"]
    default = [ln.split() for ln in lines[1:] if ln.split()[0] == "1"]
    summary = client.instance(1)["summary"]
    free = f"{summary['v_free_count']}{'*' if 'v_free_count' in summary['counts_lag'] else ''}"
    assert default == [["1", "default", "tiny-16m", str(V_PAGE_COUNT), str(free), "1"]]
    # Columns line up: every row is as wide as the header's column positions.
    assert lines[0].index("PAGES") + len("PAGES") == lines[1].index(str(V_PAGE_COUNT)) + 4


def test_instances_flags_a_free_count_that_lags_the_cpus(
    run: Runner, client: PageLabClient, fresh: int
) -> None:
    """tiny-16m boots with 3711 free pages; one vm_page_alloc takes a page through CPU 0's
    adjustment (gd_vmstats_adj), so the global v_free_count says 3711 until a rollup
    folds the -1 in: FREE shows ``3711*`` and the note gives the folded 3710."""
    client.call(fresh, "vm_page_alloc")
    code, out, _ = run("instances")
    assert code == 0
    lines = out.splitlines()
    row = next(ln.split() for ln in lines[1:] if ln.split()[:1] == [str(fresh)])
    assert row[4] == "3711*"
    assert (
        f"* instance {fresh}: FREE is the global v_free_count; its CPUs hold -1 not yet "
        "rolled up, so folded it is 3710 (vmstats_rollup or the next tick folds it)"
    ) in lines
    client.call(fresh, "vmstats_rollup")
    _, out, _ = run("instances")
    row = next(ln.split() for ln in out.splitlines()[1:] if ln.split()[:1] == [str(fresh)])
    assert row[4] == "3710" and f"* instance {fresh}:" not in out


def test_create_reset_delete(run: Runner, client: PageLabClient) -> None:
    name = f"cli-box-{next(_names)}"
    code, out, _ = run("create", name, "--memory", "8MiB", "--cpus", "2", "--seed", "3")
    assert code == 0
    row = out.splitlines()[1].split()
    iid = int(row[0])
    # 8 MiB: 1982 pages, 1982 - 127 = 1855 free (see test_client's 8 MiB test), 2 CPUs.
    assert row[1:] == [name, "-", "1982", "1855", "2"]
    assert client.instance(iid)["config"]["seed"] == 3
    code, out, _ = run("reset", str(iid))
    assert code == 0 and out.splitlines()[1].split()[0] == str(iid)
    code, out, _ = run("delete", str(iid))
    assert code == 0 and out == f"instance {iid} deleted\n"
    code, out, err = run("delete", str(iid))
    assert code == 1 and out == ""
    assert err == f"pagelab: Unknown instance: there is no instance {iid}\n"
    code, _, err = run("create", "x", "--preset", "tiny-16m", "--cpus", "2")
    assert code == 2 and "--cpus" in err


# ------------------------------------------------------------------ sysctl
def test_sysctl_read_matches_the_api(run: Runner, client: PageLabClient, fresh: int) -> None:
    code, out, err = run("sysctl", "vm.v_free_min", instance=fresh)
    assert client.sysctl_get(fresh, "vm.v_free_min") == V_FREE_MIN
    assert (code, out, err) == (0, f"vm.v_free_min: {V_FREE_MIN}\n", "")
    code, out, _ = run("sysctl", "-n", "vm.v_free_min", instance=fresh)
    assert out == f"{V_FREE_MIN}\n"
    code, out, _ = run("sysctl", "-d", "vm.v_free_min", instance=fresh)
    assert out == "vm.v_free_min: Minimum number of free pages desired\n"


def test_sysctl_write_prints_old_and_new(run: Runner, client: PageLabClient, fresh: int) -> None:
    code, out, err = run("sysctl", "-w", "vm.v_free_min=100", instance=fresh)
    assert (code, out, err) == (0, f"vm.v_free_min: {V_FREE_MIN} -> 100\n", "")
    # -w is optional; 0x20 = 32 (strtol base 0)
    code, out, _ = run("sysctl", "vm.v_free_min=0x20", instance=fresh)
    assert (code, out) == (0, "vm.v_free_min: 100 -> 32\n")
    assert client.sysctl_get(fresh, "vm.v_free_min") == 32


def test_sysctl_errors_use_bsd_wording(run: Runner, fresh: int) -> None:
    code, out, err = run("sysctl", "vm.nope", instance=fresh)
    assert (code, out, err) == (1, "", "sysctl: unknown oid 'vm.nope'\n")
    # The other names are still processed; the status says something failed.
    code, out, err = run("sysctl", "vm.nope", "vm.v_free_min", instance=fresh)
    assert (code, out, err) == (
        1,
        f"vm.v_free_min: {V_FREE_MIN}\n",
        "sysctl: unknown oid 'vm.nope'\n",
    )
    code, out, err = run("sysctl", "-i", "vm.nope", instance=fresh)
    assert (code, out, err) == (0, "", "")
    code, _, err = run("sysctl", "vm.dma_reserved=1", instance=fresh)
    assert (code, err) == (1, "sysctl: oid 'vm.dma_reserved' is read only\n")
    code, _, err = run("sysctl", "vm.stats=1", instance=fresh)
    assert (code, err) == (1, "sysctl: oid 'vm.stats' isn't a leaf node\n")
    code, _, err = run("sysctl", "vm.v_free_min=lots", instance=fresh)
    assert (code, err) == (1, "sysctl: invalid integer 'lots'\n")
    # §16.3: vm.v_free_min is a SYSCTL_ULONG, so a negative value is refused
    code, _, err = run("sysctl", "vm.v_free_min=-5", instance=fresh)
    assert code == 1 and err.startswith("sysctl: vm.v_free_min=-5: ")
    assert "unsigned" in err


def test_sysctl_all_and_nodes(run: Runner, client: PageLabClient, fresh: int) -> None:
    table = client.sysctls(fresh)
    code, out, _ = run("sysctl", "-a", instance=fresh)
    assert code == 0
    assert out.splitlines() == [f"{s['name']}: {s['value']}" for s in table]
    code, out, _ = run("sysctl", "vm.stats", instance=fresh)
    lines = out.splitlines()
    assert lines and all(ln.startswith("vm.stats.vm.") for ln in lines)
    assert f"vm.stats.vm.v_page_count: {V_PAGE_COUNT}" in lines


# ------------------------------------------------------------------ call
def test_call_prints_the_pfn_and_the_record(run: Runner, client: PageLabClient, fresh: int) -> None:
    code, out, err = run("call", "vm_page_alloc", "page_req=VM_ALLOC_NORMAL", instance=fresh)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"vm_page_alloc(page_req=VM_ALLOC_NORMAL) = {FIRST_PFN}"
    assert f"  move pfn {FIRST_PFN} PQ_FREE:0 -> PQ_NONE" in lines
    # §5: a removal is -1 in gd_vmstats_adj and gd_vmstats of CPU 0.
    assert "  counter cpu0.gd_vmstats_adj.v_free_count -1" in lines
    assert client.page(fresh, FIRST_PFN)["queue"] == "PQ_NONE"
    # vm_page_free returns nothing: no "= ..." part.
    code, out, _ = run("call", "vm_page_free", f"m={FIRST_PFN}", "--no-record", instance=fresh)
    assert (code, out) == (0, f"vm_page_free(m={FIRST_PFN})\n")
    code, out, _ = run("call", "vm_page_alloc", "page_req=0x1", "--json", instance=fresh)
    body = json.loads(out)
    # §8.2: vm_page_free puts the page back at the HEAD of PQ_FREE + pc: allocated again.
    assert body["result"] == FIRST_PFN and body["blocked"] is None
    oid = client.call(fresh, "vm_object_allocate")["result"]
    code, out, _ = run(
        "call", "vm_page_lookup", f"object={oid}", "pindex=0", "--no-record", instance=fresh
    )
    assert out == f"vm_page_lookup(object={oid} pindex=0) = NULL\n"


def test_call_blocked_and_errors(run: Runner, client: PageLabClient, fresh: int) -> None:
    pfn = client.call(fresh, "vm_page_alloc")["result"]  # hard-busied
    code, out, _ = run(
        "call", "vm_page_busy_wait", f"m={pfn}", "--thread", "2", "--no-record", instance=fresh
    )
    assert code == 0
    first, why = out.splitlines()
    assert first == (
        f'vm_page_busy_wait(m={pfn}) blocked: thread 2 sleeps on page:{pfn} (wmesg "pgwait", '
        "timo 0)"
    )
    # who holds the page (thread 0's vm_page_alloc, this instance's call #1), and no
    # timeout to offer: busy_wait sleeps with timo 0
    assert why.startswith(
        f"  why: thread 2 is sleeping in vm_page_busy_wait (on page:{pfn}): it waits for "
        f"page {pfn} (hard-busied (PBUSY_LOCKED), PBUSY_WANTED (a thread sleeps on it); "
        "held by thread 0 (call #1, vm_page_alloc)) to be released"
    )
    assert why.endswith("it has no timeout (timo 0), so ticks alone never end it")
    assert "let it time out" not in why
    # With --wait and nobody to wake it: the same line, and the wait's end.
    code, out, _ = run(
        "call", "vm_page_busy_wait", f"m={pfn}", "--thread", "3", "--wait", "--timeout", "0.05",
        "--no-record", instance=fresh,
    )  # fmt: skip
    assert code == 0
    assert out.splitlines()[1] == "  (timed out: still asleep when the wait ended)"
    assert out.splitlines()[2].startswith("  why: thread 3 is sleeping in vm_page_busy_wait")
    assert out.startswith(f"vm_page_busy_wait(m={pfn}) blocked: thread 3 sleeps on page:{pfn}")
    code, out, err = run("call", "vm_nope", instance=fresh)
    assert code == 1 and out == ""
    assert err.startswith("pagelab: Unknown kernel function: ") and "vm_nope" in err
    code, out, err = run("call", "vm_page_alloc", "page_req", instance=fresh)
    assert code == 2 and "key=value" in err


def test_call_wait_returns_after_the_wakeup(
    url: str, client: PageLabClient, fresh: int, capsys: pytest.CaptureFixture[str]
) -> None:
    pfn = client.call(fresh, "vm_page_alloc")["result"]  # hard-busied (§7.1)
    argv = ["--url", url, "--instance", str(fresh), "call", "vm_page_busy_wait", f"m={pfn}"]
    argv += ["--thread", "1", "--wait", "--timeout", "30", "--no-record"]
    codes: list[int] = []
    waiter = threading.Thread(target=lambda: codes.append(main(argv)))
    capsys.readouterr()
    waiter.start()
    for _ in range(5000):  # bounded poll until the waiter's thread sleeps on the page
        sleeping = [t for t in client.threads(fresh)["threads"] if t["tid"] == 1]
        if sleeping and sleeping[0]["state"] == "sleeping":
            break
    else:
        pytest.fail("the waiting call never slept")
    client.call(fresh, "vm_page_wakeup", {"m": pfn})
    waiter.join(30)
    assert codes == [0]
    # vm_page_busy_wait returns nothing (void): no "= ..." part.
    assert capsys.readouterr().out == f"vm_page_busy_wait(m={pfn})   (after sleeping)\n"


# ------------------------------------------------------------------ ddb
def test_ddb_prints_the_text_as_is(run: Runner, client: PageLabClient, fresh: int) -> None:
    code, out, _ = run("ddb", "show", "page", instance=fresh)
    assert code == 0 and out == client.ddb(fresh, "show page")
    lines = out.splitlines()
    assert len(lines) == 13  # §16.4
    assert lines[0] == f"vmstats.v_free_count: {V_FREE_COUNT}"
    code, out, _ = run("ddb", "show pageq", instance=fresh)
    assert [ln.split(":")[0] for ln in out.splitlines()] == [
        "PQ_FREE",
        "PQ_CACHE",
        "PQ_ACTIVE",
        "PQ_INACTIVE",
    ]
    code, _, err = run("ddb", "show", "pages", instance=fresh)
    assert code == 1 and "DDB has no command 'show pages'" in err and "'show pageq'" in err


# ------------------------------------------------------------------ vmstat, systat
def test_vmstat_one_line_in_kib_and_pages(run: Runner, client: PageLabClient, fresh: int) -> None:
    code, out, _ = run("vmstat", instance=fresh)
    assert code == 0
    group, cols, row = out.splitlines()
    assert group.split() == ["memory", "(KiB)", "page"]
    assert cols.split() == [
        "free",
        "cache",
        "inact",
        "act",
        "wire",
        "re",
        "fr",
        "df",
        "sr",
        "pd",
        "pw",
    ]
    vs = client.vmstats(fresh)
    g = vs["global"]
    tfree = sum(c["gd_cnt"]["v_tfree"] for c in vs["cpus"])
    values = [int(v) for v in row.split()]
    # free 3711 pages * 4 KiB = 14844; wire 255 * 4 = 1020 (KiB, BSD's unit)
    assert values[:5] == [3711 * 4, 0, 0, 0, 255 * 4]
    assert values[:5] == [
        g[f] * 4
        for f in (
            "v_free_count",
            "v_cache_count",
            "v_inactive_count",
            "v_active_count",
            "v_wire_count",
        )
    ]
    assert values[6] == tfree
    # Right-aligned under their headers.
    assert cols.index("free") + 4 == row.index(str(3711 * 4)) + len(str(3711 * 4))
    code, out, _ = run("vmstat", "-p", instance=fresh)
    values = [int(v) for v in out.splitlines()[2].split()]
    assert out.splitlines()[0].split()[:2] == ["memory", "(pages)"]
    assert values[:5] == [V_FREE_COUNT, 0, 0, 0, V_WIRE_COUNT]


def test_vmstat_repeats_with_interval_deltas(
    run: Runner, client: PageLabClient, fresh: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    def between_samples(seconds: float) -> None:
        # Instead of waiting: one vm_page_alloc + vm_page_free, i.e. v_tfree + 1.
        waits.append(seconds)
        pfn = client.call(fresh, "vm_page_alloc", record=False)["result"]
        client.call(fresh, "vm_page_free", {"m": pfn}, record=False)

    monkeypatch.setattr(cli, "_sleep", between_samples)
    boot_tfree = sum(c["gd_cnt"]["v_tfree"] for c in client.vmstats(fresh)["cpus"])
    code, out, _ = run("vmstat", "-w", "2", "-c", "3", instance=fresh)
    assert code == 0 and waits == [2.0, 2.0]
    lines = out.splitlines()
    assert len(lines) == 2 + 3  # one header, three samples
    fr = [int(ln.split()[6]) for ln in lines[2:]]
    assert fr == [boot_tfree, 1, 1]  # totals since boot, then the events of each interval
    # §5: the freed page is +1 and the allocation -1 in CPU 0's adjustments: net 0, and
    # the global free count is unchanged (3711 pages -> 14844 KiB).
    assert [int(ln.split()[0]) for ln in lines[2:]] == [3711 * 4] * 3


def test_systat_screen_matches_vmstats(run: Runner, client: PageLabClient, fresh: int) -> None:
    inst = client.instance(fresh)
    code, out, _ = run("systat", "-vm", instance=fresh)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"PageLab systat -vm   instance {fresh} {inst['name']} (tiny-16m)")
    rows = {ln.split()[0]: ln.split() for ln in lines if ln.split()}
    # Queue counts (pages, KiB) on the left, thresholds (pages, KiB) on the right.
    assert rows["free"][:3] == ["free", str(V_FREE_COUNT), str(V_FREE_COUNT * 4)]
    assert rows["wire"][:3] == ["wire", str(V_WIRE_COUNT), str(V_WIRE_COUNT * 4)]
    assert rows["free"][3:] == ["v_free_severe", "41", "164"]  # 83*4/8 = 41; 41*4 = 164
    assert rows["inact"][3:] == ["v_free_min", str(V_FREE_MIN), str(V_FREE_MIN * 4)]
    g = client.vmstats(fresh)["global"]
    right = {
        ln.split()[-3]: ln.split()[-2:]
        for ln in lines
        if len(ln.split()) >= 3 and ln.split()[-3].startswith("v_")
    }
    for name in ("v_free_target", "v_paging_start", "v_paging_target2", "v_interrupt_free_min"):
        assert right[name] == [str(g[name]), str(g[name] * 4)]
    # Nothing is short on a fresh machine: every predicate false (§4.3, F = 3711 > 415).
    assert "Paging predicates (cpu0 gd_vmstats)" in lines
    assert "YES" not in out and out.count(" no") >= 7
    assert any(ln.startswith("Pagedaemon: IDLE") for ln in lines)


def test_systat_refreshes_count_times(
    run: Runner, fresh: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(cli, "_sleep", waits.append)
    code, out, _ = run("systat", "-w", "1", "-c", "2", instance=fresh)
    assert code == 0 and waits == [1.0]
    assert out.count("PageLab systat -vm") == 2


# ------------------------------------------------------------------ process level
def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    code = main(["--url", "http://127.0.0.1:1", "instances"])
    _, err = capsys.readouterr()
    assert code == 1 and err.startswith("pagelab: cannot talk to http://127.0.0.1:1: ")


def test_as_a_subprocess(url: str) -> None:
    env = {**os.environ, "PAGELAB_URL": url}
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "instances"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "PRESET", "PAGES", "FREE", "CPUS"]
    assert lines[1].split()[:4] == ["1", "default", "tiny-16m", str(V_PAGE_COUNT)]
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "--url", url, "sysctl", "vm.nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", "sysctl: unknown oid 'vm.nope'\n")
