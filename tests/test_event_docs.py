"""Every event and record field is documented (issue 11): docs/client.md's tables against
what the code can emit.

* Statically: every event name the core or the lab emits (``vm.event("name", ...)``,
  ``{"event": "name", ...}``) has a row in the events table, and every row names an event
  that exists (a renamed event leaves no stale row).
* Dynamically: the five exercises of docs/exercises.md and a few calls more are run with
  their records on, and every field of every event they produce is named in its row;
  every field of a record, of a call's answer (``CallResponse``) and of ``blocked`` is in
  its table.  A new event or field without a line in the docs fails here.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from app.api.schemas import CallResponse
from app.cli import read_scenario
from app.core.machine import CallResult
from app.lab.hosts.base import Ctx
from app.lab.hosts.shard import Shard
from app.lab.presets import PRESETS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "client.md"
EXERCISES = ROOT / "docs" / "exercises"

#: How the code emits an event: ``vm.event("name"`` (possibly on the next line) or a
#: literal ``"event": "name"``.
EMITTED = re.compile(r'vm\.event\(\s*"(\w+)"|"event":\s*"(\w+)"')


def table_rows(heading: str) -> dict[str, str]:
    """The rows of the first table after ``heading`` in docs/client.md: the first
    cell's name (in backticks) to the rest of the row."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(heading)
    rows: dict[str, str] = {}
    started = False
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            started = True
            cells = line.split("|")
            name = re.fullmatch(r"\s*`(\w+)`\s*", cells[1])
            if name:
                rows[name.group(1)] = "|".join(cells[2:])
        elif started:
            break
    return rows


def named(row: str) -> set[str]:
    """Every word a table row names in backticks (``a``, ``{a, b}``, ``a.b``)."""
    return {w for span in re.findall(r"`([^`]*)`", row) for w in re.findall(r"\w+", span)}


def emitted_names() -> set[str]:
    names = set()
    for path in (ROOT / "app" / "core").rglob("*.py"):
        names.update(a or b for a, b in EMITTED.findall(path.read_text(encoding="utf-8")))
    for path in (ROOT / "app" / "lab").rglob("*.py"):
        names.update(a or b for a, b in EMITTED.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_event_name_has_a_row_and_every_row_an_event() -> None:
    rows = table_rows("### Events")
    emitted = emitted_names()
    assert {"alloc", "dontneed", "madvise", "vm_wait", "pageout_summary"} <= emitted
    assert emitted - set(rows) == set(), "events the code emits with no row in docs/client.md"
    assert set(rows) - emitted == set(), "rows in docs/client.md for events nothing emits"


def run_corpus() -> tuple[dict[str, set[str]], set[str], set[str]]:
    """Run the exercises' scenario files and the calls their text asks for (and a few
    more) on in-process shards with records on: the fields seen per event, the record's
    fields and ``blocked``'s."""
    events: dict[str, set[str]] = defaultdict(set)
    record_keys: set[str] = set()
    blocked_keys: set[str] = set()

    def run(config: Any, files: list[str], extra: list[dict[str, Any]]) -> None:
        shard = Shard()
        key = (1, 0)
        shard.start(key, config)
        calls: list[dict[str, Any]] = []
        for name in files:
            calls += read_scenario(str(EXERCISES / name))[0]
        calls += extra
        for seq, c in enumerate(calls):
            ctx = Ctx.of(c.get("ctx") or {})
            out = shard.call(key, c["fn"], c.get("args") or {}, ctx, True, seq).outcome
            if not isinstance(out, CallResult):
                continue
            if out.blocked is not None:
                blocked_keys.update(out.blocked)
            if out.record:
                record_keys.update(out.record)
                for ev in out.record.get("events", []):
                    events[ev["event"]].update(k for k in ev if k != "event")

    tiny = PRESETS["tiny-16m"].config
    alloc1 = {"fn": "vm_page_alloc", "ctx": {"thread": 1}}
    run(
        tiny,
        ["b-drain.json", "b-more.json"],
        [
            {"fn": "vm_wait", "ctx": {"thread": 5}},
            alloc1,
            alloc1,
            {"fn": "vm_page_busy_wait", "args": {"m": 3075}, "ctx": {"thread": 7}},
            {"fn": "tick", "args": {"n": 100}},  # vm_wait's sleep times out: resumed
        ],
    )
    run(
        tiny,
        ["c-dontneed.json"],
        [
            {"fn": "vm_page_dontneed", "args": {"m": 3199}},
            {
                "fn": "madvise",
                "args": {"object": 1, "pindex": 0, "count": 8, "advice": "MADV_DONTNEED"},
            },
            {"fn": "vm_page_hash_enter", "args": {"m": 3199}},
        ],
    )
    gib = {"size": 2 << 20, "alignment": 1 << 30, "mflags": "M_NOWAIT"}
    run(
        tiny,
        ["d-contig.json"],
        [
            {"fn": "vm_page_alloc_contig", "args": {"size": 1 << 20, "high": 0xFFFFFFFF}},
            {"fn": "vm_contig_pg_alloc", "args": gib},
            {"fn": "vm_page_free_contig", "args": {"m": 128, "size": 1 << 19}},
        ],
    )
    tick = {"fn": "tick", "args": {"n": 1}}
    run(tiny, ["e-pageout.json", "e-more.json", "e-more.json"], [tick, tick])
    return events, record_keys, blocked_keys


@pytest.fixture(scope="module")
def corpus() -> tuple[dict[str, set[str]], set[str], set[str]]:
    return run_corpus()


def test_every_field_an_event_carries_is_documented(
    corpus: tuple[dict[str, set[str]], set[str], set[str]],
) -> None:
    events, _, _ = corpus
    rows = table_rows("### Events")
    seen = set(events)
    # the corpus reaches the events the exercises are about and laundering (a console
    # line needs vm_contig_verbose, which no call sets: its row is checked statically)
    assert {"alloc", "dontneed", "madvise", "alloc_contig", "contig_pg_alloc"} <= seen
    assert {"vm_wait", "pageout_summary", "pageout_flush", "resumed", "sleep"} <= seen
    missing = {kind: sorted(fields - named(rows[kind])) for kind, fields in events.items()}
    assert {kind: fields for kind, fields in missing.items() if fields} == {}


def test_every_record_and_answer_field_is_documented(
    corpus: tuple[dict[str, set[str]], set[str], set[str]],
) -> None:
    _, record_keys, blocked_keys = corpus
    assert {"cpu", "moves", "counters", "events", "resumed"} <= record_keys
    assert set(record_keys) - set(table_rows("## The record")) == set()
    answer = table_rows("## `CallResponse`")
    assert set(CallResponse.model_fields) - set(answer) == set()
    assert {"thread", "channel", "wmesg", "timo", "why", "holder"} <= blocked_keys
    assert blocked_keys - named(answer["blocked"]) == set()
