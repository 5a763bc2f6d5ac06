"""``pagelab``: the command-line client of a PageLab server (over HTTP, via ``app.client``).

    pagelab serve [--host 127.0.0.1] [--port 8000]
    pagelab instances
    pagelab create NAME (--preset P | --memory 4GiB) [--cpus N | --topology 2x4[x2]]
                   [--numa BASE:SIZE:SOCKET ...] [--dma-reserved BYTES] [--seed S]
                   [--policy SEAM=CHOICE ...]
    pagelab delete ID
    pagelab reset ID
    pagelab call FN [key=value ...] [--cpu C] [--thread T] [--nice N] [--wait] [--timeout S]
    pagelab sysctl [-a] [-w] [-n] [-d] [-i] [vm.name[=value] ...]
    pagelab vmstat [-p] [-w SECONDS] [-c COUNT]
    pagelab systat [-vm] [-w SECONDS] [-c COUNT]
    pagelab ddb show page|pageq
    pagelab page PFN | queue [TYPE [COLOUR]] | threads | objects [ID] | pageout | dma
    pagelab run FILE [--chunk N] [--stop-on-error] [-q]
    pagelab functions
    pagelab seams
    pagelab users create NAME --role ROLE [--course C] [--expires 7d]
    pagelab tokens issue NAME [--expires 12h] | pagelab tokens revoke ID
    pagelab roster import FILE.csv -o TOKENS.csv [--expires 120d]
    pagelab broadcast [REF [--course C] [--stop]]
    pagelab scenarios list [--course C]
    pagelab scenarios create NAME [--course C] (--trace FILE | --from REF [--at N]
                                  | --preset P [--seed S] [--calls FILE]) [--description D]
    pagelab scenarios start ID [--name NAME]
    pagelab scenarios handout ID [--name NAME] [--user U ...]
    pagelab scenarios delete ID
    pagelab quotas show [--role R | --user U] [--json]
    pagelab quotas set (--role R | --user U) key=value ...   (value "default": remove)
    pagelab quotas clear --user U

Global options (before the command): ``--url`` (default ``$PAGELAB_URL``, else
``http://127.0.0.1:8000``), ``--token`` (default ``$PAGELAB_TOKEN``; a server in token
mode needs one) and ``--instance REF`` (default 1, the instance the server boots at
start-up).  Wherever an instance is named (``--instance``, ``delete``, ``reset``,
``scenarios create --from``) a reference works: an id (``42``), the name of one of your
instances (``box``) or ``owner:name`` (``ann:box``).  Exit status: 0 on success, 1 when the server refused a request or could not
be reached (the problem's title and detail go to stderr), 2 for a usage error, 130 when
interrupted.

Output formats
--------------
``call``
    ``fn(key=value ...) = result`` (a pfn, ``NULL`` where the kernel returns NULL,
    ``true``/``false``, a number; ``fn(...)`` alone for a function returning nothing),
    then the call's record one fact a line: ``move pfn P FROM -> TO``, ``counter
    SCOPE.FIELD +/-N``, ``event NAME key=value ...``.  A call that sleeps prints
    ``fn(...) blocked: thread T sleeps on CHANNEL (wmesg "W", timo N)`` (with ``--wait``:
    ``fn(...) = result   (after sleeping)`` once another call woke it, or a second line
    ``(still asleep when the wait ended)``).  ``--json``
    prints the server's response as is.  Argument values are read as an integer (decimal,
    or hexadecimal with ``0x``), ``true``/``false``, ``null``/``NULL``, else a string
    (so ``page_req=VM_ALLOC_NORMAL|VM_ALLOC_ZERO`` stays a string for the server to
    parse); ``key:=JSON`` passes any JSON value.
``sysctl``
    BSD ``sysctl(8)``: a read prints ``vm.v_free_min: 83``, ``-n`` just ``83``, ``-d``
    ``vm.v_free_min: Minimum number of free pages desired``; a node (``vm``, ``vm.stats``)
    prints every leaf below it; ``-a`` (no names) every sysctl.  ``name=value`` (``-w``
    optional, as in modern BSD) writes and prints ``vm.x: old -> new``.  Values are read
    like ``strtol(s, NULL, 0)``: decimal, ``0x`` hexadecimal, leading-``0`` octal.
    Errors use BSD's wording on stderr and make the exit status 1 (every name is still
    processed, as FreeBSD's sysctl does; DragonFly's stops at the first):
    ``sysctl: unknown oid 'vm.nope'`` (``-i`` ignores unknown names), ``sysctl: oid
    'vm.dma_reserved' is read only``, ``sysctl: oid 'vm.stats' isn't a leaf node``,
    ``sysctl: invalid integer 'abc'``; a value the kernel refuses gives ``sysctl:
    vm.x=VALUE: <reason>``.
``vmstat``
    In the spirit of BSD ``vmstat(8)``, the page layer's columns only: a group line, a
    column line, then one line per sample.  ``free cache inact act wire`` are the global
    vmstats counts in KiB (BSD's unit; ``-p`` prints pages); ``re fr df sr pd pw`` are
    the per-CPU ``gd_cnt`` event counters summed over the CPUs (``v_reactivated``,
    ``v_tfree``, ``v_dfree``, ``v_pdpages`` - pages the daemon scanned, BSD's ``sr`` -,
    ``v_pdwakeups``, ``v_ppwakeups``).  The first line gives totals since boot; with
    ``-w SECONDS`` each further line gives the events of the interval (counts, not rates
    per second: the simulated machine only moves when it is called).  ``-c COUNT`` stops
    after COUNT lines (with ``-c`` alone the interval is 1 s; with ``-w`` alone it runs
    until interrupted).  The column header is repeated every 20 lines.
``systat``
    A ``systat -vm``-like screen of the page layer: queue counts (pages and KiB), every
    threshold, which paging predicates hold (on CPU 0's ``gd_vmstats``), the pageout
    daemon's state, each CPU's pending ``gd_vmstats_adj`` and the event counters.
    Printed once, or every ``-w SECONDS`` (``-c COUNT`` screens; without ``-c`` until
    interrupted); on a terminal each screen replaces the last, otherwise screens are
    separated by a blank line.  Plain text, no curses.
``ddb``
    The text the kernel debugger prints, as is.  Any other command (``show page 3075``:
    DragonFly's ``show page`` takes no page) prints the server's answer on stderr: the
    commands DDB has and the page view to use instead (``pagelab page 3075``); status 1.
``page``, ``queue``, ``threads``, ``objects``, ``pageout``, ``dma``
    The server's views, one ``key: value`` a line (nested fields as ``a.b``) or a table
    (``threads``, ``objects``); ``page`` ends with where the page is and what keeps it
    from being freed; ``queue TYPE COLOUR`` prints the queue's header and its pfns head
    to tail, ``queue [TYPE]`` the pages per colour.  A queue type is spelled as in a
    call, and the server reads it: ``PQ_FREE``, ``free`` or its index ``1``.  ``--json``
    prints the server's JSON.
``run``
    Replays a scenario file (``{"calls": [...]}`` as ``POST …/calls`` takes it, the
    compact form, or a JSON list of calls) in requests of ``--chunk`` calls, with a
    progress bar on stderr (rich), then prints ``N of M calls run, K refused`` and
    ``digest D`` (the instance's state digest).  The first ten refusals go to stderr;
    status 1 if any call was refused.
``scenarios``
    ``list``: ``ID NAME CALLS DIGEST DESCRIPTION`` (the digest's first 16 hex digits) of
    a course's scenarios (default: your course).  ``create`` prints ``scenario ID NAME
    of COURSE: N calls, digest D``; ``--calls FILE`` is a JSON list of calls (``{"fn":
    ..., "args": {...}}``) or a batch body ``{"calls": [...]}``; ``--trace FILE`` a trace
    (``GET …/trace``).  ``start`` prints the new instance like ``create``.  ``handout``
    prints one line per student: ``USER: instance ID NAME`` or ``USER: refused: why``
    (exit status 1 if any was refused).
``quotas``
    ``show`` prints one quota a line, ``name value``: your own with what you use of each
    (``used``), a role's (``--role``), or a user's (``--user``; ``*`` marks their own
    overrides).  ``set`` changes some and prints the result the same way; values are
    numbers, ``default`` removes a change.  ``--json`` prints the server's JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from app.client import DEFAULT_URL, PageLabClient, PageLabError

__all__ = ["main", "parse_call_value", "parse_c_integer"]

#: Waits between samples of ``vmstat -w`` / ``systat -w`` (replaceable in tests).
_sleep: Callable[[float], None] = time.sleep

#: vmstat reprints its column header after this many lines.
HEADER_EVERY = 20
_U_INT = (1 << 32) - 1

#: vmstat's memory columns: (column, vmstats field).
MEMORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("free", "v_free_count"),
    ("cache", "v_cache_count"),
    ("inact", "v_inactive_count"),
    ("act", "v_active_count"),
    ("wire", "v_wire_count"),
)
#: vmstat's event columns: (column, gd_cnt field).
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("re", "v_reactivated"),
    ("fr", "v_tfree"),
    ("df", "v_dfree"),
    ("sr", "v_pdpages"),
    ("pd", "v_pdwakeups"),
    ("pw", "v_ppwakeups"),
)
MEM_WIDTH = 8
EVENT_WIDTH = 6

#: systat's threshold rows, in the order of the spec's threshold table.
THRESHOLDS = (
    "v_free_severe",
    "v_free_reserved",
    "v_free_min",
    "v_free_target",
    "v_inactive_target",
    "v_paging_wait",
    "v_paging_start",
    "v_paging_target1",
    "v_paging_target2",
    "v_pageout_free_min",
    "v_interrupt_free_min",
)


class UsageError(Exception):
    """A command line that cannot be run (exit status 2)."""


# ------------------------------------------------------------------ value parsing
_DEC = re.compile(r"[+-]?[0-9]+")
_HEX = re.compile(r"[+-]?0[xX][0-9a-fA-F]+")
_C_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def parse_call_value(text: str) -> Any:
    """A ``key=value`` argument of ``pagelab call``: an integer (decimal or ``0x``
    hexadecimal), ``true``/``false``, ``null``/``NULL``, else the string as typed."""
    if _DEC.fullmatch(text):
        return int(text, 10)
    if _HEX.fullmatch(text):
        return int(text, 16)
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "NULL"):
        return None
    return text


def parse_c_integer(text: str) -> int | None:
    """An integer as ``strtol(text, NULL, 0)`` reads a whole sysctl value: decimal,
    ``0x`` hexadecimal or leading-``0`` octal, with an optional sign; None if invalid."""
    match = _C_INT.fullmatch(text.strip())
    if match is None:
        return None
    sign, digits = match.groups()
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits, 10)
    return -value if sign == "-" else value


def parse_call_args(items: Sequence[str]) -> dict[str, Any]:
    """``["m=3075", "page_req=VM_ALLOC_NORMAL", "bits:=[1,2]"]`` -> the args object."""
    args: dict[str, Any] = {}
    for item in items:
        raw_json = False
        if ":=" in item and item.index(":=") + 1 == item.index("="):
            key, _, text = item.partition(":=")
            raw_json = True
        else:
            key, eq, text = item.partition("=")
            if not eq:
                raise UsageError(f"arguments are key=value, got {item!r}")
        if not key:
            raise UsageError(f"an argument has no name: {item!r}")
        if key in args:
            raise UsageError(f"argument {key!r} given twice")
        if raw_json:
            try:
                args[key] = json.loads(text)
            except ValueError as e:
                raise UsageError(f"{key}:= needs a JSON value: {e}") from None
        else:
            args[key] = parse_call_value(text)
    return args


# ------------------------------------------------------------------ formatting helpers
def _compact(value: Any) -> str:
    """A value on one line: plain words as is, everything else as compact JSON."""
    if isinstance(value, str) and value and not any(c.isspace() for c in value):
        return value
    return json.dumps(value, separators=(",", ":"))


def _kv(d: dict[str, Any]) -> str:
    return " ".join(f"{k}={_compact(v)}" for k, v in d.items())


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: set[int]) -> str:
    """A plain text table: columns two spaces apart, ``right`` columns right-aligned."""
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if k in right else c.ljust(w)
            for k, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def format_instances(instances: Sequence[dict[str, Any]]) -> str:
    """``ID NAME PRESET PAGES FREE CPUS``: PAGES is ``v_page_count`` (managed pages),
    FREE ``v_free_count`` (both global vmstats), a machine without preset shows ``-``.
    A FREE that lags its CPUs' pending adjustments is flagged ``*`` and a note under
    the table gives the folded value (what ``vmstats_rollup`` or a tick would make it)."""
    rows = []
    notes = []
    for inst in instances:
        s = inst["summary"]
        free = str(s["v_free_count"])
        lag = (s.get("counts_lag") or {}).get("v_free_count")
        if lag:
            free += "*"
            notes.append(
                f"* instance {inst['id']}: FREE is the global v_free_count; its CPUs hold "
                f"{lag['pending']:+d} not yet rolled up, so folded it is {lag['folded']} "
                "(vmstats_rollup or the next tick folds it)"
            )
        rows.append(
            (
                inst["id"],
                inst["name"],
                inst.get("preset") or "-",
                s["v_page_count"],
                free,
                inst["config"]["cpus"],
            )
        )
    out = table(("ID", "NAME", "PRESET", "PAGES", "FREE", "CPUS"), rows, {0, 3, 4, 5})
    return out + "".join(line + "\n" for line in notes)


def _near_oids(name: str, names: list[str]) -> list[str]:
    """Sysctl names a mistyped ``name`` may mean: the same leaf under another node
    (``vm.v_free_count`` -> ``vm.stats.vm.v_free_count``), else close spellings."""
    leaf = name.rpartition(".")[2]
    same_leaf = [n for n in names if n.rpartition(".")[2] == leaf and n != name]
    return same_leaf[:3] or difflib.get_close_matches(name, names, n=3, cutoff=0.8)


#: Probes of an ``alloc`` event shown one by one; a longer search is shortened.
PROBES_SHOWN = 8


def _probes_text(probes: list[Any]) -> str:
    """A long allocator search in a line: its length, the first queues and the last
    (``PQ_CACHE:0``), the whole list being in ``--json``."""

    def name(q: Any) -> str:
        if isinstance(q, dict):
            return f"{q.get('queue')}:{q.get('color')}"
        return _compact(q)

    head = ", ".join(name(q) for q in probes[:4])
    tail = ", ".join(name(q) for q in probes[-2:])
    return f"{len(probes)} queues: {head}, ..., {tail} (--json lists all)"


def format_record(record: dict[str, Any]) -> list[str]:
    """A call's record, one fact a line (indented two spaces)."""
    lines: list[str] = []
    for key, value in record.items():
        if key == "moves" and isinstance(value, list):
            for mv in value:
                rest = {k: v for k, v in mv.items() if k not in ("pfn", "from", "to")}
                extra = f" {_kv(rest)}" if rest else ""
                lines.append(
                    f"  move pfn {mv.get('pfn')} {mv.get('from')} -> {mv.get('to')}{extra}"
                )
        elif key == "counters" and isinstance(value, dict):
            for scope, fields in value.items():
                if isinstance(fields, dict):
                    for name, delta in fields.items():
                        d = f"{delta:+d}" if isinstance(delta, int) else _compact(delta)
                        lines.append(f"  counter {scope}.{name} {d}")
                else:
                    lines.append(f"  counter {scope} {_compact(fields)}")
        elif key == "events" and isinstance(value, list):
            for ev in value:
                if isinstance(ev, dict):
                    rest = {k: v for k, v in ev.items() if k != "event"}
                    probes = rest.get("probes")
                    if isinstance(probes, list) and len(probes) > PROBES_SHOWN:
                        rest["probes"] = _probes_text(probes)
                    lines.append(f"  event {ev.get('event', '?')} {_kv(rest)}".rstrip())
                else:
                    lines.append(f"  event {_compact(ev)}")
        elif isinstance(value, list):
            label = key[:-1] if key.endswith("s") else key
            for item in value:
                text = _kv(item) if isinstance(item, dict) else _compact(item)
                lines.append(f"  {label} {text}")
        elif isinstance(value, dict):
            lines.append(f"  {key} {_kv(value)}".rstrip())
        else:
            lines.append(f"  {key} {_compact(value)}")
    return lines


def format_result(value: Any, returns: str | None) -> str | None:
    """The text after ``=`` for a call's result; None for a function returning nothing."""
    if value is None:
        return None if returns == "none" else "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def format_call(
    fn: str,
    shown_args: Sequence[str],
    response: dict[str, Any],
    returns: str | None,
    waited: bool = False,
) -> str:
    """The human-readable output of ``pagelab call`` (see the module docstring);
    ``waited`` says the call was made with ``--wait``."""
    head = f"{response.get('fn', fn)}({' '.join(shown_args)})"
    lines: list[str] = []
    blocked = response.get("blocked")
    completed = response.get("completed")
    if completed is not None:
        # It slept and another call woke it while we waited.
        if "error" in completed:
            lines.append(f"{head} failed after sleeping: {_compact(completed['error'])}")
        else:
            text = format_result(completed.get("result"), returns)
            how = "its sleep timed out" if completed.get("timed_out") else "after sleeping"
            lines.append(f"{head}{'' if text is None else ' = ' + text}   ({how})")
    elif blocked is not None:
        lines.append(
            f"{head} blocked: thread {blocked.get('thread')} sleeps on "
            f"{blocked.get('channel')} (wmesg {json.dumps(blocked.get('wmesg'))}, "
            f"timo {blocked.get('timo')})"
        )
        if waited:
            lines.append("  (timed out: still asleep when the wait ended)")
        if blocked.get("why"):
            lines.append(f"  why: {blocked['why']}")
    else:
        text = format_result(response.get("result"), returns)
        if text is None:
            lines.append(head)
        elif "\n" in text:
            lines.append(f"{head} =")
            lines.append(text.rstrip("\n"))
        else:
            lines.append(f"{head} = {text}")
    record = response.get("record")
    if record:
        lines.extend(format_record(record))
    return "\n".join(lines) + "\n"


def _events(vmstats: dict[str, Any]) -> dict[str, int]:
    """The gd_cnt counters summed over every CPU into a u_int (as the sysctl does)."""
    total: dict[str, int] = {field: 0 for _, field in EVENT_COLUMNS}
    for cpu in vmstats["cpus"]:
        for _, field in EVENT_COLUMNS:
            total[field] = (total[field] + int(cpu["gd_cnt"].get(field, 0))) & _U_INT
    return total


def vmstat_header(pages: bool) -> str:
    unit = "pages" if pages else "KiB"
    mem_block = len(MEMORY_COLUMNS) * (MEM_WIDTH + 1)
    group = f"{' memory (' + unit + ')':<{mem_block}} page"
    cols = "".join(f" {c:>{MEM_WIDTH}}" for c, _ in MEMORY_COLUMNS) + "".join(
        f" {c:>{EVENT_WIDTH}}" for c, _ in EVENT_COLUMNS
    )
    return f"{group}\n{cols}\n"


def vmstat_line(
    vmstats: dict[str, Any], pages: bool, previous: dict[str, int] | None = None
) -> str:
    """One sample: memory counts (KiB, or pages with ``pages``) from the global vmstats,
    then the event counters (since boot, or since ``previous`` when given)."""
    g = vmstats["global"]
    page_kib = int(g["v_page_size"]) // 1024
    mem = [int(g[field]) * (1 if pages else page_kib) for _, field in MEMORY_COLUMNS]
    now = _events(vmstats)
    ev = [
        (now[field] - previous[field]) & _U_INT if previous is not None else now[field]
        for _, field in EVENT_COLUMNS
    ]
    return (
        "".join(f" {v:>{MEM_WIDTH}}" for v in mem)
        + "".join(f" {v:>{EVENT_WIDTH}}" for v in ev)
        + "\n"
    )


def systat_screen(
    instance: dict[str, Any], vmstats: dict[str, Any], pageout: dict[str, Any]
) -> str:
    """The ``systat -vm``-like screen (see the module docstring)."""
    g = vmstats["global"]
    psize = int(g["v_page_size"])
    summary = instance["summary"]

    def kib(n: int) -> int:
        return n * psize // 1024

    ncpus = instance["config"]["cpus"]
    preset = f" ({instance['preset']})" if instance.get("preset") else ""
    out = [
        f"PageLab systat -vm   instance {instance['id']} {instance['name']}{preset}   "
        f"{ncpus} CPU{'s' if ncpus != 1 else ''}   ticks {summary.get('ticks', 0)}",
        f"{g['v_page_count']} managed pages of {psize} bytes ({kib(int(g['v_page_count']))} KiB)",
        "",
    ]
    queues = [
        ("free", int(g["v_free_count"])),
        ("cache", int(g["v_cache_count"])),
        ("inact", int(g["v_inactive_count"])),
        ("act", int(g["v_active_count"])),
        ("wire", int(g["v_wire_count"])),
        ("", None),
        ("dma free", int(summary.get("dma_free_pages", 0))),
    ]
    left = [f"{'Queue':<12}{'pages':>9}{'KiB':>11}"] + [
        f"{name:<12}{n:>9}{kib(n):>11}" if n is not None else "" for name, n in queues
    ]
    right = [f"{'Threshold':<22}{'pages':>8}{'KiB':>11}"] + [
        f"{name:<22}{int(g[name]):>8}{kib(int(g[name])):>11}" for name in THRESHOLDS if name in g
    ]
    for k in range(max(len(left), len(right))):
        lt = left[k] if k < len(left) else ""
        rt = right[k] if k < len(right) else ""
        out.append(f"{lt:<36}{rt}".rstrip())
    out.append("")
    out.append("Paging predicates (cpu0 gd_vmstats)")
    preds = list(vmstats.get("predicates", {}).items())
    for k in range(0, len(preds), 3):
        row = preds[k : k + 3]
        out.append("  " + "".join(f"{n:<19}{'YES' if v else 'no':<6}" for n, v in row).rstrip())
    out.append("")
    if not pageout.get("enabled", False):
        out.append("Pagedaemon: disabled")
    else:
        th = pageout.get("thread") or {}
        where = ""
        if th.get("state") == "sleeping":
            where = f", sleeping on {th.get('channel')} ({th.get('wmesg')})"
        elif th.get("state"):
            where = f", thread {th.get('state')}"
        out.append(
            f"Pagedaemon: {pageout.get('state')}{where}   pass {pageout.get('pass')}"
            f"  passes {pageout.get('passes')}"
        )
        out.append(
            f"  vm_pages_needed {pageout.get('vm_pages_needed')}"
            f"  vm_pageout_deficit {pageout.get('vm_pageout_deficit')}"
            f"  vm_pages_waiting {pageout.get('vm_pages_waiting')}"
        )
    out.append("")
    adj_cols = (
        "v_free_count",
        "v_inactive_count",
        "v_active_count",
        "v_cache_count",
        "v_wire_count",
    )
    out.append("CPU  gd_vmstats_adj:   free  inact    act  cache   wire")
    for cpu in vmstats["cpus"]:
        adj = cpu["gd_vmstats_adj"]
        out.append(f"{cpu['cpu']:>3}  {'':15}" + "".join(f"{int(adj[c]):>7}" for c in adj_cols))
    events = _events(vmstats)
    out.append("")
    out.append(
        "Events (gd_cnt, all CPUs): "
        + "  ".join(f"{field.removeprefix('v_')} {events[field]}" for _, field in EVENT_COLUMNS)
    )
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ commands
Command = Callable[[PageLabClient, argparse.Namespace], int]


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _json_out(value: Any) -> None:
    _out(json.dumps(value, indent=2) + "\n")


def cmd_instances(client: PageLabClient, ns: argparse.Namespace) -> int:
    instances = client.instances()
    if ns.json:
        _json_out(instances)
    else:
        _out(format_instances(instances))
    return 0


_TOPOLOGY = re.compile(r"([1-9][0-9]*)[xX]([1-9][0-9]*)(?:[xX]([1-9][0-9]*))?")
_BYTES = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)([KMGTkmgt](?:i?[Bb])?)?")
_BINARY = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_topology(text: str) -> dict[str, int]:
    """``--topology``: ``SOCKETSxCORES[xTHREADS]`` (``2x4``, ``2x4x2``)."""
    match = _TOPOLOGY.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"--topology: cannot read {text!r}; write SOCKETSxCORES or SOCKETSxCORESxTHREADS "
            "(e.g. 2x4 or 2x4x2)"
        )
    sockets, cores, threads = match.groups()
    return {"sockets": int(sockets), "cores": int(cores), "threads": int(threads or 1)}


def parse_bytes(text: str, option: str) -> int:
    """A byte count of an option: decimal or ``0x`` hexadecimal, with an optional binary
    unit (``K``/``KiB`` ... ``T``/``TiB``).  ``MB`` and friends are refused here as the
    server refuses them: which reading was meant cannot be guessed."""
    match = _BYTES.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{option}: cannot read {text!r} as bytes (e.g. 16MiB or 0x1000000)")
    digits, unit = match.groups()
    unit = (unit or "").upper()
    if unit.endswith("B") and not unit.endswith("IB"):
        raise UsageError(
            f"{option}: {text!r} is ambiguous (SI or binary?); write {digits}{unit[0]}iB "
            f"for binary units or the byte count"
        )
    return int(digits, 0) * _BINARY[unit[:1]]


def parse_numa(text: str) -> dict[str, int]:
    """``--numa BASE:SIZE:SOCKET`` (bytes as ``parse_bytes`` reads them)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise UsageError(f"--numa: write BASE:SIZE:SOCKET (e.g. 0:8GiB:0), not {text!r}")
    base, size = (parse_bytes(p, "--numa") for p in parts[:2])
    if not parts[2].strip().isdigit():
        raise UsageError(f"--numa: the socket of {text!r} is not a number")
    return {"base": base, "size": size, "socket": int(parts[2])}


def parse_policy(items: Sequence[str]) -> dict[str, str]:
    """``--policy SEAM=CHOICE`` (repeatable), e.g. ``--policy page_color=object``; the
    server checks the names (``pagelab seams`` lists them)."""
    out: dict[str, str] = {}
    for text in items:
        seam, eq, choice = text.partition("=")
        if not eq or not seam.strip() or not choice.strip():
            raise UsageError(f"--policy: write SEAM=CHOICE (e.g. page_color=object), not {text!r}")
        out[seam.strip()] = choice.strip()
    return out


def cmd_create(client: PageLabClient, ns: argparse.Namespace) -> int:
    if ns.preset is not None and (ns.cpus is not None or ns.seed is not None):
        raise UsageError("--cpus and --seed go with --memory (a preset brings its own)")
    inst = client.create_instance(
        ns.name,
        preset=ns.preset,
        memory=ns.memory,
        cpus=ns.cpus,
        topology=parse_topology(ns.topology) if ns.topology else None,
        seed=ns.seed,
        boot_stage=ns.boot_stage,
        pagedaemon=not ns.no_pagedaemon,
        numa=[parse_numa(n) for n in ns.numa or ()] or None,
        dma_reserved=parse_bytes(ns.dma_reserved, "--dma-reserved") if ns.dma_reserved else 0,
        policy=parse_policy(ns.policy or ()),
    )
    if ns.json:
        _json_out(inst)
    else:
        _out(format_instances([inst]))
    return 0


def _my_course(client: PageLabClient, ns: argparse.Namespace) -> str:
    if ns.course:
        return str(ns.course)
    course = client.me().get("course")
    if not course:
        raise UsageError("you belong to no course: name one with --course")
    return str(course)


def _calls_file(path: str) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"--calls {path}: {e}") from None
    if isinstance(value, dict):
        value = value.get("calls")
    if not isinstance(value, list):
        raise UsageError(f'--calls {path}: expected a JSON list of calls or {{"calls": [...]}}')
    return value


def cmd_broadcast(client: PageLabClient, ns: argparse.Namespace) -> int:
    """``broadcast``: list what is broadcast to you, or show/stop showing an instance of
    yours to a course (read-only for its members)."""
    if ns.ref is None:
        found = client.broadcasts()
        if ns.json:
            _json_out(found)
        else:
            rows = [(b["instance"], b["ref"], b["course"]) for b in found]
            _out(table(("ID", "REF", "COURSE"), rows, right={0}))
        return 0
    if ns.stop:
        client.stop_broadcast(ns.ref, ns.course)
        where = f"course {ns.course}" if ns.course else "every course"
        _out(f"instance {ns.ref} no longer broadcast to {where}\n")
        return 0
    course = ns.course or _my_course(client, ns)
    shown = client.broadcast(ns.ref, course)
    if ns.json:
        _json_out(shown)
    else:
        _out(f"instance {ns.ref} broadcast read-only to course {course}\n")
    return 0


def cmd_scenarios(client: PageLabClient, ns: argparse.Namespace) -> int:
    action = ns.scenarios_command
    if action == "list":
        found = client.scenarios(_my_course(client, ns))
        if ns.json:
            _json_out(found)
        else:
            rows = [
                (s["id"], s["name"], s["calls"], s["state_digest"][:16], s["description"])
                for s in found
            ]
            _out(table(("ID", "NAME", "CALLS", "DIGEST", "DESCRIPTION"), rows, {0, 2}))
        return 0
    if action == "create":
        sources = [x for x in (ns.trace, ns.from_instance, ns.preset) if x is not None]
        if len(sources) != 1:
            raise UsageError("give exactly one of --trace, --from or --preset")
        trace = None
        if ns.trace is not None:
            try:
                with open(ns.trace, encoding="utf-8") as f:
                    trace = f.read()
            except OSError as e:
                raise UsageError(f"--trace {ns.trace}: {e}") from None
        made = client.create_scenario(
            _my_course(client, ns),
            ns.name,
            description=ns.description,
            trace=trace,
            from_instance=ns.from_instance,
            at=ns.at,
            preset=ns.preset,
            seed=ns.seed,
            calls=None if ns.calls is None else _calls_file(ns.calls),
        )
        if ns.json:
            _json_out(made)
        else:
            _out(
                f"scenario {made['id']} {made['name']} of {made['course']}: "
                f"{made['calls']} calls, digest {made['state_digest']}\n"
            )
        return 0
    if action == "start":
        inst = client.start_scenario(ns.id, ns.name)
        if ns.json:
            _json_out(inst)
        else:
            _out(format_instances([inst]))
        return 0
    if action == "handout":
        out = client.hand_out_scenario(ns.id, ns.name, ns.user or None)
        if ns.json:
            _json_out(out)
        else:
            lines = [f"{x['user']}: instance {x['id']} {x['name']}" for x in out["created"]]
            lines += [f"{x['user']}: refused: {x['detail']}" for x in out["refused"]]
            _out("".join(line + "\n" for line in lines))
        return 0 if not out["refused"] else 1
    if action == "delete":
        client.delete_scenario(ns.id)
        _out(f"scenario {ns.id} deleted\n")
        return 0
    raise UsageError("say what to do: list, create, start, handout or delete")


def cmd_delete(client: PageLabClient, ns: argparse.Namespace) -> int:
    client.delete_instance(ns.id)
    _out(f"instance {ns.id} deleted\n")
    return 0


def cmd_reset(client: PageLabClient, ns: argparse.Namespace) -> int:
    inst = client.reset_instance(ns.id)
    if ns.json:
        _json_out(inst)
    else:
        _out(format_instances([inst]))
    return 0


def _returns_of(client: PageLabClient, fn: str) -> str | None:
    for f in client.functions():
        if f.get("name") == fn or fn in f.get("aliases", ()):
            returns = f.get("returns")
            return returns if isinstance(returns, str) else None
    return None


def cmd_call(client: PageLabClient, ns: argparse.Namespace) -> int:
    args = parse_call_args(ns.args)
    response = client.call(
        ns.instance,
        ns.fn,
        args,
        cpu=ns.cpu,
        thread=ns.thread,
        nice=ns.nice,
        lowmemkill=ns.lowmemkill,
        systhread=ns.systhread,
        wait=ns.wait,
        timeout_s=ns.timeout,
        record=not ns.no_record,
    )
    if ns.json:
        _json_out(response)
        return 0
    completed = response["completed"]
    if completed is not None:
        shown, result = "error" not in completed, completed.get("result")
    else:
        shown, result = response["blocked"] is None, response["result"]
    # A None result is NULL or nothing: only the function's declaration can tell.
    returns = _returns_of(client, ns.fn) if shown and result is None else None
    _out(format_call(ns.fn, ns.args, dict(response), returns, waited=ns.wait))
    return 0


def cmd_sysctl(client: PageLabClient, ns: argparse.Namespace) -> int:
    if not ns.names and not ns.all:
        raise UsageError("give -a or at least one name")
    table_ = client.sysctls(ns.instance)
    by_name = {s["name"]: s for s in table_}

    def show(s: dict[str, Any], value: Any) -> None:
        if ns.describe:
            _out(f"{s['name']}: {s.get('description', '')}\n")
        elif ns.value_only:
            _out(f"{value}\n")
        else:
            _out(f"{s['name']}: {value}\n")

    if not ns.names:
        for s in table_:
            show(s, s["value"])
        return 0
    status = 0
    for arg in ns.names:
        name, eq, text = arg.partition("=")
        leaf = by_name.get(name)
        children = [s for s in table_ if s["name"].startswith(name + ".")]
        if leaf is None and not children:
            if not ns.ignore_unknown:
                _err(f"sysctl: unknown oid '{name}'")
                near = _near_oids(name, list(by_name))
                if near:
                    _err(f"sysctl: did you mean {' or '.join(near)}?")
                status = 1
            continue
        if not eq:
            if leaf is not None:
                show(leaf, client.sysctl_get(ns.instance, name))
            else:
                for s in children:
                    show(s, s["value"])
            continue
        if leaf is None:
            _err(f"sysctl: oid '{name}' isn't a leaf node")
            status = 1
            continue
        if not leaf.get("writable", False):
            _err(f"sysctl: oid '{name}' is read only")
            status = 1
            continue
        value = parse_c_integer(text)
        if value is None:
            _err(f"sysctl: invalid integer '{text}'")
            status = 1
            continue
        try:
            change = client.sysctl_set(ns.instance, name, value)
        except PageLabError as e:
            if e.status >= 500 or e.kind == "unknown-instance":
                raise
            _err(f"sysctl: {arg}: {e.detail}")
            status = 1
            continue
        if ns.value_only:
            _out(f"{change['old']} -> {change['new']}\n")
        else:
            _out(f"{name}: {change['old']} -> {change['new']}\n")
    return status


def _repeat(ns: argparse.Namespace) -> tuple[float | None, int | None]:
    """(interval, count) of ``-w``/``-c``: count None means until interrupted."""
    interval: float | None = ns.wait
    count: int | None = ns.count
    if interval is not None and interval <= 0:
        raise UsageError("-w takes a positive number of seconds")
    if count is not None and count < 1:
        raise UsageError("-c takes a positive count")
    if interval is None:
        interval = 1.0 if count is not None and count > 1 else None
        if count is None:
            count = 1
    return interval, count


def cmd_vmstat(client: PageLabClient, ns: argparse.Namespace) -> int:
    interval, count = _repeat(ns)
    previous: dict[str, int] | None = None
    n = 0
    while True:
        vmstats = client.vmstats(ns.instance)
        text = vmstat_header(ns.pages) if n % HEADER_EVERY == 0 else ""
        _out(text + vmstat_line(vmstats, ns.pages, previous))
        previous = _events(vmstats)
        n += 1
        if (count is not None and n >= count) or interval is None:
            return 0
        _sleep(interval)


def cmd_systat(client: PageLabClient, ns: argparse.Namespace) -> int:
    interval, count = _repeat(ns)
    tty = sys.stdout.isatty()
    n = 0
    while True:
        screen = systat_screen(
            client.instance(ns.instance), client.vmstats(ns.instance), client.pageout(ns.instance)
        )
        if n > 0:
            screen = ("\033[H\033[J" if tty else "\n") + screen
        _out(screen)
        n += 1
        if (count is not None and n >= count) or interval is None:
            return 0
        _sleep(interval)


def cmd_ddb(client: PageLabClient, ns: argparse.Namespace) -> int:
    """DDB as the kernel has it; the server answers any other command with what DDB has
    and where to look instead (``show page 3075``: the page view)."""
    command = " ".join(" ".join(ns.words).split())
    try:
        _out(client.ddb(ns.instance, command))
    except PageLabError as e:
        if e.kind != "not-found" or "commands" not in e.body:
            raise
        _err(f"pagelab ddb: {e.detail}")
        return 1
    return 0


# ------------------------------------------------------------------ state views
def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A view as ``(dotted.key, value)`` pairs: nested objects flattened, lists kept."""
    if isinstance(value, dict) and (value or not prefix):
        out: list[tuple[str, Any]] = []
        for key, item in value.items():
            out.extend(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return [(prefix, value)]


def format_fields(view: dict[str, Any], skip: Sequence[str] = ()) -> str:
    """``key: value`` lines, keys aligned, nested objects as ``a.b`` (``skip``: left out)."""
    pairs = [(k, v) for k, v in flatten(view) if k.split(".")[0] not in skip]
    width = max((len(k) for k, _ in pairs), default=0)
    return "".join(f"{k + ':':<{width + 1}} {_compact(v)}\n" for k, v in pairs)


def format_page(page: dict[str, Any]) -> str:
    """``pagelab page``: every field, then why it can or cannot be freed now and what
    the next ``vm_page_dontneed`` would do to it."""
    text = format_fields(page, skip=("explain",))
    explain = page.get("explain") or {}
    if explain:
        text += f"\nwhere: {explain.get('where')}\n"
        if explain.get("can_free_now"):
            text += "can be freed now: yes\n"
        else:
            text += "can be freed now: no\n"
            text += "".join(f"  - {b}\n" for b in explain.get("blockers", []))
        nxt = explain.get("dontneed_next")
        if isinstance(nxt, dict):
            text += (
                f"vm_page_dontneed next: dnw {nxt.get('dnw')} ({nxt.get('phase')} of 512): "
                f"{nxt.get('branch')}, as {nxt.get('why')}\n"
            )
    return text


def format_threads(threads: Sequence[dict[str, Any]]) -> str:
    """``TID NAME CPU STATE CALL CHANNEL WMESG DEADLINE`` (``-``: not sleeping)."""
    rows = [
        (
            t.get("tid"),
            t.get("name") or "-",
            t.get("cpu"),
            t.get("state"),
            t.get("call") or "-",
            t.get("channel") or "-",
            t.get("wmesg") or "-",
            "-" if t.get("deadline") is None else t.get("deadline"),
        )
        for t in threads
    ]
    heads = ("TID", "NAME", "CPU", "STATE", "CALL", "CHANNEL", "WMESG", "DEADLINE")
    return table(heads, rows, {0, 2, 7})


def format_objects(objects: Sequence[dict[str, Any]]) -> str:
    rows = [
        (o["id"], o["type"], o["size"], o["resident_page_count"], o["ref_count"], o["pg_color"])
        for o in objects
    ]
    return table(("ID", "TYPE", "SIZE", "RESIDENT", "REFS", "PG_COLOR"), rows, {0, 2, 3, 4, 5})


def format_object(obj: dict[str, Any]) -> str:
    text = format_fields(obj, skip=("pages",))
    pages = obj.get("pages", [])
    rows = [(p["pindex"], p["pfn"]) for p in pages]
    return text + ("\n" + table(("PINDEX", "PFN"), rows, {0, 1}) if rows else "pages: none\n")


def format_queue(view: dict[str, Any]) -> str:
    """``pagelab queue TYPE COLOUR``: the header, then its pfns head -> tail."""
    pages = view.get("pages", [])
    head = f"{view['queue']}  lcnt {view['lcnt']}  adds {view['adds']}  lastq {view['lastq']}\n"
    body = " ".join(str(p) for p in pages) if pages else "(empty)"
    return head + f"pages (head -> tail): {body}\n"


def format_queue_counts(counts: dict[str, Any], only: str | None) -> str:
    """Every queue type's total and its non-empty colours (``COLOUR:COUNT``)."""
    lines = []
    for name, per_colour in counts.items():
        if only is not None and name != only or not isinstance(per_colour, list):
            continue
        busy = [f"{c}:{n}" for c, n in enumerate(per_colour) if n]
        shown = " ".join(busy[:32]) + (f" ... ({len(busy)} colours)" if len(busy) > 32 else "")
        lines.append(f"{name}: {sum(per_colour)} pages" + (f"  {shown}" if busy else ""))
    return "\n".join(lines) + "\n"


def format_dma(dma: dict[str, Any]) -> str:
    text = format_fields(dma, skip=("free_runs",))
    runs = dma.get("free_runs", [])
    return (
        text
        + "free runs (first pfn, pages): "
        + (" ".join(f"{a}+{n}" for a, n in runs) if runs else "none")
        + "\n"
    )


def _show(ns: argparse.Namespace, value: Any, text: Callable[[], str]) -> int:
    if ns.json:
        _json_out(value)
    else:
        _out(text())
    return 0


def cmd_page(client: PageLabClient, ns: argparse.Namespace) -> int:
    page = client.page(ns.instance, ns.pfn)
    return _show(ns, page, lambda: format_page(page))


def cmd_queue(client: PageLabClient, ns: argparse.Namespace) -> int:
    """``queue TYPE COLOUR``: one queue; ``queue [TYPE]``: the counts per colour."""
    if ns.color is None:
        counts = client.queues(ns.instance)
        if ns.type is None:
            return _show(ns, counts, lambda: format_queue_counts(counts, None))
        # the server names the type (whatever the spelling): ask colour 0 for its name
        name = client.queue(ns.instance, ns.type, 0, limit=1)["queue"].partition(":")[0]
        return _show(ns, counts.get(name), lambda: format_queue_counts(counts, name))
    if ns.type is None:
        raise UsageError("give the queue type before the colour (e.g. pagelab queue free 0)")
    view = client.queue(ns.instance, ns.type, ns.color, ns.offset, ns.limit)
    return _show(ns, view, lambda: format_queue(view))


def cmd_threads(client: PageLabClient, ns: argparse.Namespace) -> int:
    threads = client.threads(ns.instance)
    listed = threads if isinstance(threads, list) else threads.get("threads", [])
    return _show(ns, threads, lambda: format_threads(listed))


def cmd_objects(client: PageLabClient, ns: argparse.Namespace) -> int:
    if ns.id is not None:
        obj = client.object(ns.instance, ns.id)
        return _show(ns, obj, lambda: format_object(obj))
    objects = client.objects(ns.instance)
    return _show(ns, objects, lambda: format_objects(objects))


#: What the pageout view's terse kernel names mean (``pagelab pageout`` prints them under
#: the view; docs/model.md §3.9).
PAGEOUT_HELP = {
    "state": "IDLE: no shortage; TARGET1: free+cache fell below v_paging_start, the daemon "
    "works towards v_paging_target1; TARGET2: then on to v_paging_target2 (sysctl vm.v_paging_*)",
    "pass": "the scan pass of the current shortage (0: the first, gentle one: a dirty page "
    "only gets its second chance; later passes launder)",
    "passes": "scans since boot",
    "vm_pages_needed": "set when an allocation or vm_wait woke the daemon",
    "vm_pageout_deficit": "allocations that failed since the last scan (added to its target)",
    "vm_pages_waiting": "set while threads sleep in vm_wait (on v_free_count)",
    "q1": "the colour the next inactive-queue scan starts at",
    "q2": "the colour the next active-queue scan starts at",
    "q3": "the colour the next hold/stats scan starts at",
    "cache_rover": "the colour the next cache scan (PQ_CACHE -> PQ_FREE) starts at",
}


def format_pageout(view: dict[str, Any]) -> str:
    """``pagelab pageout``: the view's fields, then what the terse ones mean."""
    width = max(len(k) for k in PAGEOUT_HELP)
    notes = "".join(
        f"  {k.ljust(width)}  {text}\n" for k, text in PAGEOUT_HELP.items() if k in view
    )
    return format_fields(view) + "\nwhat the fields mean:\n" + notes


def cmd_pageout(client: PageLabClient, ns: argparse.Namespace) -> int:
    view = client.pageout(ns.instance)
    return _show(ns, view, lambda: format_pageout(view))


def cmd_dma(client: PageLabClient, ns: argparse.Namespace) -> int:
    view = client.dma(ns.instance)
    return _show(ns, view, lambda: format_dma(view))


# ------------------------------------------------------------------ scenario files
def read_scenario(path: str) -> tuple[list[dict[str, Any]], bool]:
    """The calls of a scenario file and its ``stop_on_error``: a batch body as the API
    takes it (``{"calls": [...], "stop_on_error": ...}``, docs/batch-format.md), its
    compact form (``{"forms", "fn", "args"}``), or a bare JSON list of calls."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"{path} is not JSON: {e}") from None
    stop = False
    if isinstance(value, dict):
        stop = bool(value.get("stop_on_error", False))
        if "forms" in value and "fn" in value:
            value = _expand_compact(path, value)
        elif "calls" in value:
            value = value["calls"]
    if not isinstance(value, list):
        raise UsageError(
            f'{path}: expected a batch ({{"calls": [...]}}), a compact batch or a list of calls'
        )
    calls = []
    for k, item in enumerate(value):
        if isinstance(item, str):
            item = {"fn": item}
        if not isinstance(item, dict) or not isinstance(item.get("fn"), str):
            raise UsageError(f'{path}: call {k} is not {{"fn": NAME, "args": {{...}}}}')
        calls.append(item)
    return calls, stop


def _expand_compact(path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The readable calls of a compact batch (docs/batch-format.md)."""
    forms, fns = body.get("forms"), body.get("fn")
    values = body.get("args")
    if not isinstance(forms, list) or not isinstance(fns, list):
        raise UsageError(f"{path}: a compact batch needs the lists 'forms' and 'fn'")
    calls = []
    for k, index in enumerate(fns):
        if not isinstance(index, int) or not 0 <= index < len(forms):
            raise UsageError(f"{path}: fn[{k}] is not the index of a form")
        form = forms[index]
        names = form.get("args", [])
        given = values[k] if isinstance(values, list) and k < len(values) else []
        if len(given) != len(names):
            raise UsageError(f"{path}: args[{k}] has {len(given)} values for {len(names)} names")
        call: dict[str, Any] = {"fn": form["fn"], "args": dict(zip(names, given, strict=True))}
        if form.get("ctx"):
            call["ctx"] = form["ctx"]
        calls.append(call)
    return calls


def cmd_run(client: PageLabClient, ns: argparse.Namespace) -> int:
    """``run FILE``: replay a scenario file's calls in batches of ``--chunk``, with a
    progress bar (on stderr), then print what ran, what was refused and the digest."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    calls, stop = read_scenario(ns.file)
    stop = stop or ns.stop_on_error
    if ns.chunk < 1:
        raise UsageError("--chunk takes a positive number of calls")
    done = errors = 0
    refused: list[str] = []
    digest = client.instance(ns.instance)["state_digest"]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=_stderr_console(), disable=ns.quiet, transient=False) as bar:
        task = bar.add_task(f"replaying {os.path.basename(ns.file)}", total=len(calls))
        for start in range(0, len(calls), ns.chunk):
            part = calls[start : start + ns.chunk]
            answer = client.batch(ns.instance, part, stop_on_error=stop)
            for item in answer["results"]:
                if "error" in item:
                    errors += 1
                    if len(refused) < 10:
                        error = item["error"]
                        detail = error.get("detail") if isinstance(error, dict) else error
                        refused.append(f"call {start + item['index']} {item['fn']}: {detail}")
            done += len(answer["results"])
            digest = answer["state_digest"]
            bar.update(task, completed=done)
            if stop and answer["errors"]:
                break
    for line in refused:
        _err(f"refused: {line}")
    if errors > len(refused):
        _err(f"refused: ... and {errors - len(refused)} more")
    _out(f"{done} of {len(calls)} calls run, {errors} refused\ndigest {digest}\n")
    return 0 if errors == 0 else 1


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def cmd_functions(client: PageLabClient, ns: argparse.Namespace) -> int:
    functions = client.functions()
    if ns.json:
        _json_out(functions)
        return 0
    lines = []
    for f in functions:
        params = ", ".join(
            p["name"] if p.get("required") else f"{p['name']}={_compact(p.get('default'))}"
            for p in f.get("params", [])
        )
        lines.append(f"{f['name']}({params}) -> {f.get('returns')}: {f.get('help', '')}")
    _out("\n".join(lines) + "\n")
    return 0


def cmd_seams(client: PageLabClient, ns: argparse.Namespace) -> int:
    seams = client.seams()
    if ns.json:
        _json_out(seams)
        return 0
    lines = []
    for s in seams:
        lines.append(f"{s['name']} (in {s['function']}): {s['decides']}")
        for c in s["choices"]:
            mark = "*" if c["name"] == s["default"] else " "
            lines.append(f"  {mark} {c['name']:<8} {c['means']}")
    lines.append("(* the kernel's, the default; choose others with create --policy SEAM=CHOICE)")
    _out("\n".join(lines) + "\n")
    return 0


# ------------------------------------------------------------------ quotas (issue 8 §2)
def parse_quota_changes(items: Sequence[str]) -> dict[str, float | None]:
    """``key=value`` quota changes: a number, or ``default`` (also ``null``) for None."""
    if not items:
        raise UsageError("give at least one key=value (e.g. calls_per_s=1000 streams=8)")
    out: dict[str, float | None] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise UsageError(f"expected key=value, got {item!r}")
        if raw.lower() in ("default", "null", "none"):
            out[key] = None
            continue
        try:
            out[key] = int(raw) if _DEC.fullmatch(raw) else float(raw)
        except ValueError:
            raise UsageError(f"{key}: {raw!r} is not a number (or 'default')") from None
    return out


def format_quotas(
    quotas: dict[str, Any],
    used: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> str:
    headers = ["quota", "value"] + (["used"] if used is not None else [])
    rows = []
    for key, value in quotas.items():
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        shown = _compact(value) + ("*" if overrides and key in overrides else "")
        row = [key, shown]
        if used is not None:
            row.append(_compact(used[key]) if key in used else "")
        rows.append(row)
    return table(headers, rows, right={1, 2})


def cmd_quotas(client: PageLabClient, ns: argparse.Namespace) -> int:
    if ns.quotas_command == "show":
        if ns.role:
            answer = client.role_quotas(ns.role)
            text = f"role {answer['role']}\n" + format_quotas(answer["quotas"])
        elif ns.user:
            answer = client.user_quota(ns.user)
            text = f"user {answer['user']} ({answer['role']}; * = their own)\n" + format_quotas(
                answer["quotas"], overrides=answer["overrides"]
            )
        else:
            answer = client.me()
            if answer.get("quotas") is None:
                text = "this server has no quotas (open mode)\n"
            else:
                text = f"{answer['name']} ({answer['role']})\n" + format_quotas(
                    answer["quotas"], used=answer.get("usage", {})
                )
    elif ns.quotas_command == "set":
        if bool(ns.role) == bool(ns.user):
            raise UsageError("give --role R or --user U")
        changes = parse_quota_changes(ns.changes)
        if ns.role:
            answer = client.set_role_quotas(ns.role, **changes)
            text = f"role {answer['role']}\n" + format_quotas(answer["quotas"])
        else:
            answer = client.set_user_quota(ns.user, **changes)
            text = f"user {answer['user']} ({answer['role']}; * = their own)\n" + format_quotas(
                answer["quotas"], overrides=answer["overrides"]
            )
    else:  # clear
        client.clear_user_quota(ns.user)
        answer = client.user_quota(ns.user)
        text = f"user {answer['user']}: no overrides; their role's quotas apply\n"
    if getattr(ns, "json", False):
        _json_out(answer)
    else:
        _out(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_serve(ns: argparse.Namespace) -> int:
    from app.serve import main as serve  # only the server needs the server's code

    return serve(["--host", ns.host, "--port", str(ns.port), "--log-level", ns.log_level])


def cmd_admin(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``pagelab admin bootstrap``: on the server's machine, against its database (the one
    command that does not speak HTTP: there is no admin to ask yet)."""
    if ns.admin_command != "bootstrap":
        parser.parse_args(["admin", "--help"])
        return 2
    if not ns.database_url:
        _err("pagelab admin bootstrap: accounts need a database (--database-url)")
        return 2
    from app.lab.accounts import Accounts  # only the server's machine needs them
    from app.lab.store import Store

    store = Store(ns.database_url)
    try:
        token = Accounts(store).bootstrap_admin(ns.name, os.environ.get("PAGELAB_ADMIN_TOKEN"))
    except ValueError as e:
        _err(f"pagelab admin bootstrap: {e}")
        return 1
    finally:
        store.close()
    if token is None:
        _out(f"admin {ns.name!r} is there (its token was shown when it was made)\n")
    else:
        _out(f"admin {ns.name!r} created; its token, shown only now:\n{token}\n")
    return 0


# ------------------------------------------------------------------ people (token mode)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``12h``, ``7d`` or ``2w`` (``--expires``)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(
            f"--expires: cannot read {text!r} as a duration; use e.g. 3600, 30m, 12h, 7d or 2w"
        )
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _expires(ns: argparse.Namespace) -> float | None:
    return None if ns.expires is None else parse_duration(ns.expires)


def cmd_users_create(client: PageLabClient, ns: argparse.Namespace) -> int:
    made = client.create_user(
        ns.name, ns.role, ns.course, label=ns.label, expires_in_s=_expires(ns)
    )
    if ns.json:
        _json_out(made)
        return 0
    course = f", course {made['course']}" if made.get("course") else ""
    _out(f"user {made['name']} ({made['role']}{course}) created; token, shown only now:\n")
    _out(f"{made['token']}\n")
    return 0


def cmd_tokens_issue(client: PageLabClient, ns: argparse.Namespace) -> int:
    made = client.issue_token(ns.name, label=ns.label, expires_in_s=_expires(ns))
    if ns.json:
        _json_out(made)
        return 0
    _out(f"token {made['id']} of {made['user']}, shown only now:\n{made['token']}\n")
    return 0


def cmd_tokens_revoke(client: PageLabClient, ns: argparse.Namespace) -> int:
    client.revoke_token(ns.id)
    _out(f"token {ns.id} revoked\n")
    return 0


def cmd_roster_import(client: PageLabClient, ns: argparse.Namespace) -> int:
    """Users from a CSV roster; the tokens file is written only with the owner's read and
    write permission, and an existing file is kept unless ``--force``."""
    if ns.file == "-":
        roster = sys.stdin.read()
    else:
        try:
            with open(ns.file, encoding="utf-8") as f:
                roster = f.read()
        except OSError as e:
            raise UsageError(f"cannot read {ns.file}: {e.strerror}") from None
    if ns.output != "-" and os.path.exists(ns.output) and not ns.force:
        raise UsageError(f"{ns.output} exists; pick another -o or add --force")
    tokens = client.import_roster(roster, label=ns.label, expires_in_s=_expires(ns))
    if ns.output == "-":
        _out(tokens)
        return 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    with os.fdopen(os.open(ns.output, flags, 0o600), "w", encoding="utf-8") as f:
        f.write(tokens)
    count = max(0, len(tokens.strip().splitlines()) - 1)
    _out(
        f"{count} users created; their tokens are in {ns.output} (hand them out, keep it private)\n"
    )
    return 0


def _add_people_commands(sub: Any) -> None:
    """``users``, ``tokens`` and ``roster``: accounts over the API (``--token``)."""
    p = sub.add_parser("users", help="users (token mode; needs --token)")
    users = p.add_subparsers(dest="users_command", metavar="USERS_COMMAND")
    c = users.add_parser("create", help="create a user and their first token")
    c.add_argument("name")
    c.add_argument("--role", required=True, choices=("admin", "instructor", "student", "observer"))
    c.add_argument("--course", help="the course the user belongs to")
    c.add_argument("--label", default="", help="a note on the token (e.g. laptop)")
    c.add_argument("--expires", metavar="DURATION", help="the token expires after (7d, 12h, …)")
    c.add_argument("--json", action="store_true", help="print the server's JSON")
    c.set_defaults(func=cmd_users_create)

    p = sub.add_parser("tokens", help="issue or revoke tokens (token mode; needs --token)")
    tokens = p.add_subparsers(dest="tokens_command", metavar="TOKENS_COMMAND")
    t = tokens.add_parser("issue", help="a new token for a user (shown once)")
    t.add_argument("name")
    t.add_argument("--label", default="")
    t.add_argument("--expires", metavar="DURATION", help="expires after (3600, 30m, 12h, 7d)")
    t.add_argument("--json", action="store_true", help="print the server's JSON")
    t.set_defaults(func=cmd_tokens_issue)
    t = tokens.add_parser("revoke", help="revoke a token by its id")
    t.add_argument("id", type=int)
    t.set_defaults(func=cmd_tokens_revoke)

    p = sub.add_parser("roster", help="import a CSV roster (token mode; needs --token)")
    roster = p.add_subparsers(dest="roster_command", metavar="ROSTER_COMMAND")
    r = roster.add_parser(
        "import",
        help="create the users of FILE.csv (name,role,course) and write their tokens",
    )
    r.add_argument("file", metavar="FILE.csv", help="the roster ('-': standard input)")
    r.add_argument(
        "-o", "--output", required=True, metavar="TOKENS.csv", help="where the tokens go ('-')"
    )
    r.add_argument("--force", action="store_true", help="overwrite an existing output file")
    r.add_argument("--label", default="roster")
    r.add_argument("--expires", metavar="DURATION", help="the tokens expire after (e.g. 120d)")
    r.set_defaults(func=cmd_roster_import)


# ------------------------------------------------------------------ argument parsing
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pagelab",
        description="Talk to a PageLab server: DragonFly BSD's physical page manager, simulated.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("PAGELAB_URL", DEFAULT_URL),
        help=f"server URL (default: $PAGELAB_URL, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("PAGELAB_TOKEN") or None,
        help="bearer token of a server in token mode (default: $PAGELAB_TOKEN)",
    )
    parser.add_argument(
        "--instance",
        default="1",
        metavar="REF",
        help="instance: an id, a name of yours or owner:name (default: 1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the server (python -m app.serve)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info")

    p = sub.add_parser("admin", help="administer the server's own database (run it there)")
    admin = p.add_subparsers(dest="admin_command", metavar="ADMIN_COMMAND")
    b = admin.add_parser(
        "bootstrap",
        help="make sure the admin exists; print its token the first time "
        "(or register $PAGELAB_ADMIN_TOKEN as its token)",
    )
    b.add_argument("--name", default=os.environ.get("PAGELAB_ADMIN_NAME", "admin"))
    b.add_argument(
        "--database-url",
        default=os.environ.get("PAGELAB_DATABASE_URL", "sqlite:///var/pagelab.db"),
        help="the server's database (default: $PAGELAB_DATABASE_URL, else sqlite:///var/pagelab.db)",
    )

    p = sub.add_parser("instances", help="list the instances")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.set_defaults(func=cmd_instances)

    p = sub.add_parser("create", help="boot a new instance")
    p.add_argument("name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help="a named preset (teaching-1g, tiny-16m, ...)")
    src.add_argument("--memory", help="RAM size, e.g. 4GiB")
    p.add_argument("--cpus", type=int, help="CPU count (or --topology)")
    p.add_argument(
        "--topology", metavar="SxC[xT]", help="sockets x cores [x threads], e.g. 2x4 or 2x4x2"
    )
    p.add_argument(
        "--numa",
        action="append",
        metavar="BASE:SIZE:SOCKET",
        help="a memory affinity range (repeat), e.g. 0x1000:8GiB:0",
    )
    p.add_argument(
        "--dma-reserved", metavar="BYTES", help="the vm.dma_reserved tunable, e.g. 16MiB"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--boot-stage", choices=("early", "finished"), default="finished")
    p.add_argument("--no-pagedaemon", action="store_true")
    p.add_argument(
        "--policy",
        action="append",
        metavar="SEAM=CHOICE",
        help="choose a named seam (repeat), e.g. page_color=object; `pagelab seams` lists them",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("delete", help="delete an instance")
    p.add_argument("id", metavar="REF", help="id, name of yours or owner:name")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("reset", help="re-boot an instance with its configuration and seed")
    p.add_argument("id", metavar="REF", help="id, name of yours or owner:name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser(
        "call",
        help="run a kernel function",
        description="Run kernel function FN with key=value arguments (integers, 0x hex, "
        "true/false, null, else strings; key:=JSON for any JSON value).",
    )
    p.add_argument("fn")
    p.add_argument("args", nargs="*", metavar="key=value")
    p.add_argument("--cpu", type=int, default=0)
    p.add_argument("--thread", type=int)
    p.add_argument("--nice", type=int, default=0)
    p.add_argument("--lowmemkill", action="store_true", help="run with P_LOWMEMKILL")
    p.add_argument("--systhread", action="store_true", help="run as a system thread")
    p.add_argument("--wait", action="store_true", help="if the call sleeps, wait for its wakeup")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="longest wait (--wait)")
    p.add_argument("--no-record", action="store_true", help="do not record what changed")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser(
        "sysctl",
        help="read or write sysctls, as BSD sysctl(8)",
        description="Read vm.name, write vm.name=value (-w optional), list with -a.",
    )
    p.add_argument("names", nargs="*", metavar="name[=value]")
    p.add_argument("-a", dest="all", action="store_true", help="list every sysctl")
    p.add_argument("-w", dest="write", action="store_true", help="write (name=value)")
    p.add_argument("-n", dest="value_only", action="store_true", help="print values only")
    p.add_argument("-d", dest="describe", action="store_true", help="print descriptions")
    p.add_argument("-i", dest="ignore_unknown", action="store_true", help="ignore unknown oids")
    p.set_defaults(func=cmd_sysctl)

    p = sub.add_parser("vmstat", help="page-layer counters, as BSD vmstat(8)")
    p.add_argument("-w", dest="wait", type=float, metavar="SECONDS", help="repeat every SECONDS")
    p.add_argument("-c", dest="count", type=int, metavar="COUNT", help="stop after COUNT lines")
    p.add_argument("-p", "--pages", action="store_true", help="memory in pages, not KiB")
    p.set_defaults(func=cmd_vmstat)

    p = sub.add_parser("systat", help="a systat -vm-like screen of the page layer")
    p.add_argument("-vm", dest="vm", action="store_true", help="the page-layer display (default)")
    p.add_argument("-w", dest="wait", type=float, metavar="SECONDS", help="refresh every SECONDS")
    p.add_argument("-c", dest="count", type=int, metavar="COUNT", help="stop after COUNT screens")
    p.set_defaults(func=cmd_systat)

    p = sub.add_parser("page", help="one page: every field, and why it can or cannot be freed")
    p.add_argument("pfn", type=_pfn, metavar="PFN", help="decimal or 0x hexadecimal")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.set_defaults(func=cmd_page)

    p = sub.add_parser(
        "queue",
        help="a page queue (TYPE COLOUR), or the counts per colour",
        description="TYPE is PQ_FREE, free (any case) or its index (1, 1025, 2049, 3073, "
        "4097), read by the server as in a call. Without COLOUR: the counts per colour.",
    )
    p.add_argument("type", nargs="?", metavar="TYPE")
    p.add_argument("color", nargs="?", type=int, metavar="COLOUR")
    p.add_argument("--offset", type=int, default=0, help="skip this many pages from the head")
    p.add_argument("--limit", type=int, default=100, help="at most this many pages")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser("threads", help="the simulated threads and where they sleep")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.set_defaults(func=cmd_threads)

    p = sub.add_parser("objects", help="the VM objects, or one with its pages")
    p.add_argument("id", nargs="?", type=int, metavar="ID")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.set_defaults(func=cmd_objects)

    p = sub.add_parser("pageout", help="the pageout daemon's state")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.set_defaults(func=cmd_pageout)

    p = sub.add_parser("dma", help="the DMA reserve's free runs")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.set_defaults(func=cmd_dma)

    p = sub.add_parser(
        "run",
        help="replay a scenario file (a batch of calls) with a progress bar",
        description="Replay FILE's calls on the instance: a batch body as the API takes it "
        '({"calls": [...]}), its compact form, or a JSON list of calls (docs/batch-format.md). '
        "Prints what ran, the refusals and the state digest.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--chunk", type=int, default=1000, help="calls sent per request")
    p.add_argument("--stop-on-error", action="store_true", help="stop at the first refusal")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("ddb", help="DDB show page | show pageq")
    p.add_argument("words", nargs="+", metavar="show page|pageq")
    p.set_defaults(func=cmd_ddb)

    p = sub.add_parser(
        "broadcast", help="show an instance read-only to a course, or list what is shown to you"
    )
    p.add_argument("ref", nargs="?", help="your instance (none: list the broadcasts to you)")
    p.add_argument("--course", help="default: your course (with --stop: every course)")
    p.add_argument("--stop", action="store_true", help="stop showing it")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.set_defaults(func=cmd_broadcast)

    p = sub.add_parser("scenarios", help="course scenarios: list, create, start, handout")
    p.set_defaults(func=cmd_scenarios)
    sc = p.add_subparsers(dest="scenarios_command", metavar="ACTION")
    q = sc.add_parser("list", help="a course's scenarios")
    q.add_argument("--course", help="default: your course")
    q.add_argument("--json", action="store_true", help="print the server's JSON")
    q = sc.add_parser("create", help="a scenario from a trace, an instance or a preset")
    q.add_argument("name")
    q.add_argument("--course", help="default: your course")
    q.add_argument("--description", default="")
    q.add_argument("--trace", metavar="FILE", help="a trace (JSON Lines, GET …/trace)")
    q.add_argument("--from", dest="from_instance", metavar="REF", help="an instance you may read")
    q.add_argument("--at", type=int, metavar="N", help="with --from: its calls up to N")
    q.add_argument("--preset")
    q.add_argument("--seed", type=int, help="with --preset")
    q.add_argument("--calls", metavar="FILE", help="with --preset: the setup calls (JSON)")
    q.add_argument("--json", action="store_true", help="print the server's JSON")
    q = sc.add_parser("start", help="your own copy of a scenario")
    q.add_argument("id", type=int)
    q.add_argument("--name", help="the copy's name (default: the scenario's)")
    q.add_argument("--json", action="store_true", help="print the server's JSON")
    q = sc.add_parser("handout", help="a copy for every student of the course")
    q.add_argument("id", type=int)
    q.add_argument("--name", help="the copies' name (default: the scenario's)")
    q.add_argument("--user", action="append", help="only these users (repeat)")
    q.add_argument("--json", action="store_true", help="print the server's JSON")
    q = sc.add_parser("delete", help="delete a scenario (its copies stay)")
    q.add_argument("id", type=int)

    p = sub.add_parser("functions", help="list the callable kernel functions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_functions)

    p = sub.add_parser("seams", help="list the named seams a new instance may choose")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_seams)

    _add_people_commands(sub)
    # quotas (issue 8 §2)
    p = sub.add_parser("quotas", help="show or change quotas (yours, a role's, a user's)")
    quotas = p.add_subparsers(dest="quotas_command", metavar="QUOTAS_COMMAND", required=True)
    q = quotas.add_parser("show", help="your quotas and usage, or a role's, or a user's")
    who = q.add_mutually_exclusive_group()
    who.add_argument("--role", help="a role: admin, instructor, student, observer")
    who.add_argument("--user", help="a user's overrides and effective quotas")
    q.add_argument("--json", action="store_true")
    q = quotas.add_parser("set", help="change a role's quotas (admins) or a user's")
    who = q.add_mutually_exclusive_group(required=True)
    who.add_argument("--role")
    who.add_argument("--user")
    q.add_argument("changes", nargs="+", metavar="key=value")
    q.add_argument("--json", action="store_true")
    q = quotas.add_parser("clear", help="remove every override of a user")
    q.add_argument("--user", required=True)
    p.set_defaults(func=cmd_quotas)
    return parser


def _pfn(text: str) -> int:
    value = parse_call_value(text)
    if not isinstance(value, int) or isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"a pfn is a number (3075 or 0xc03), not {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pagelab`` with ``argv`` (default: the process's arguments); the exit status."""
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse already printed
        return e.code if isinstance(e.code, int) else 2
    if ns.command is None:
        parser.print_help(sys.stderr)
        return 2
    if ns.command == "serve":
        return cmd_serve(ns)
    if ns.command == "admin":
        return cmd_admin(ns, parser)
    command: Command | None = getattr(ns, "func", None)
    if command is None:  # a command of commands (users, tokens, roster) without its verb
        with contextlib.suppress(SystemExit):
            parser.parse_args([ns.command, "--help"])
        return 2
    try:
        with PageLabClient(ns.url, token=ns.token) as client:
            return command(client, ns)
    except UsageError as e:
        _err(f"pagelab {ns.command}: {e}")
        return 2
    except PageLabError as e:
        _err(f"pagelab: {e.title}: {e.detail}")
        return 1
    except httpx.TransportError as e:
        _err(f"pagelab: cannot talk to {ns.url}: {e}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``pagelab sysctl -a | head``): stop quietly, and keep
        # the interpreter's final flush from complaining about the closed pipe.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
