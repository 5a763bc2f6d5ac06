"""How many 1 GiB instances one box holds: memory per instance, measured.

    python -m bench capacity           # a table
    python -m bench capacity --json    # one JSON object
    python -m bench capacity --quick   # fewer, smaller instances (what the smoke test uses)

A fresh interpreter boots ``count`` instances of the ``teaching-1g`` preset (1 GiB, two
CPUs, the pageout daemon on) one after the other and reads its resident set
(``/proc/self/statm``) after each boot; then it gives every instance a student's session
(allocate a quarter of its pages in one object, free half of them, deactivate the rest,
tick the clock so the daemon runs) and reads it again.  The figures are the median growth
per instance, at rest and after the session, and what they mean for this box: how many
such instances fit in half of its physical memory (the default page budget's share,
``app.lab.quota``), and the page budget's own answer (half the memory at 80 bytes a page
structure).  Viewers and students per box come from ``bench stream`` and ``bench students``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

CHILD = r"""
import json, os, sys
from app.core.machine import Machine
from app.lab.presets import PRESETS

count, pindex_span = int(sys.argv[1]), int(sys.argv[2])
page = os.sysconf("SC_PAGE_SIZE")

def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page

config = PRESETS["teaching-1g"].config
machines, boots, sessions = [], [], []
before = rss()
for _ in range(count):
    m = Machine.boot(config)
    machines.append(m)
    after = rss()
    boots.append(after - before)
    before = after
for m in machines:
    oid = m.call("vm_object_allocate", {"type": "OBJT_DEFAULT"}, record=False).result
    pfns = []
    for k in range(pindex_span):
        r = m.call("vm_page_alloc", {"object": oid, "pindex": k, "page_req": "VM_ALLOC_NORMAL"},
                   cpu=k & 1, record=False)
        if r.result is None:
            break
        pfns.append(r.result)
    for n, pfn in enumerate(pfns):
        if n % 2:
            m.call("vm_page_free", {"m": pfn}, record=False)
        else:
            m.call("vm_page_wakeup", {"m": pfn}, record=False)
            m.call("vm_page_deactivate", {"m": pfn}, record=False)
    m.call("tick", {"n": 100}, record=False)
    m.check_invariants()
    after = rss()
    sessions.append(after - before)
    before = after
print(json.dumps({"boot": boots, "session": sessions, "pages": machines[0].page_range}))
"""


def run(quick: bool = False) -> dict[str, Any]:
    count, span = (3, 2_000) if quick else (12, 65_536)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(count), str(span)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench capacity: the child failed:\n{out.stderr}")
    child = json.loads(out.stdout.strip().splitlines()[-1])
    # the first boot also pays for importing numpy and the core: leave it out
    boot = statistics.median(child["boot"][1:])
    touched = boot + statistics.median(child["session"])
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    half = total // 2
    pages = int(child["pages"])
    return {
        "instances": count,
        "pages_per_instance": pages,
        "session_pages_allocated": span,
        "mb_per_instance_at_boot": boot / 1e6,
        "mb_per_instance_after_session": touched / 1e6,
        "bytes_per_page_after_session": touched / pages,
        "host_memory_gb": total / 1e9,
        "instances_in_half_the_memory": int(half // touched) if touched > 0 else None,
        "instances_the_page_budget_allows": half // (80 * pages),
    }


def render(r: dict[str, Any]) -> str:
    rows = [
        ("1 GiB instance, resident after boot", f"{r['mb_per_instance_at_boot']:.1f} MB"),
        (
            "... after a student's session",
            f"{r['mb_per_instance_after_session']:.1f} MB "
            f"({r['bytes_per_page_after_session']:.0f} B/page)",
        ),
        ("host memory", f"{r['host_memory_gb']:.1f} GB"),
        ("1 GiB instances in half of it, measured", f"{r['instances_in_half_the_memory']:,}"),
        ("... the page budget allows (80 B/page)", f"{r['instances_the_page_budget_allows']:,}"),
    ]
    width = max(len(a) for a, _ in rows)
    lines = ["capacity".ljust(width) + "  figure", "-" * (width + 20)]
    lines += [f"{a.ljust(width)}  {b}" for a, b in rows]
    lines.append(
        f"({r['instances']} instances of {r['pages_per_instance']:,} pages; a session allocates "
        f"{r['session_pages_allocated']:,} pages, frees half, deactivates the rest, ticks 100)"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in ("--json", "--quick")]
    if unknown:
        print(f"bench capacity: unknown option(s) {' '.join(unknown)}", file=sys.stderr)
        return 2
    result = run(quick="--quick" in argv)
    print(json.dumps(result) if "--json" in argv else render(result))
    return 0
