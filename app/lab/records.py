"""Call records past a bound, summarised.

A call's record lists every page it moved between queues and every decision the kernel
took on the way.  Most calls move a page or two; a bulk call (``vm_contig_pg_alloc`` of
500 000 pages, a pageout scan, ``tick`` with the daemon) moves hundreds of thousands,
and its full record (25 MB of JSON for 500 000 moves) would swamp the answer it comes
in.  Past ``PAGELAB_RECORD_MAX_MOVES`` moves or events, an answer carries a summary
instead: the counts per queue pair, the first and last moves and events, and where to
get the full record (``GET /api/v1/instances/{id}/journal/{seq}/record``, which replays
the journal up to the call: the same calls give the same record, bit for bit).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from app.core.registry import queue_ref

#: Moves (and events) kept from each end of a summarised record.
SUMMARY_ENDS = 50

#: Kernel event fields that hold absolute queue indices: one (``found_queue``) or a list
#: (``probes``).  Records leave the lab with each as ``{"queue": "PQ_FREE", "color": 5}``.
QUEUE_FIELDS: tuple[str, ...] = ("found_queue", "probes")


def name_queues(events: list[Any]) -> list[Any]:
    """``events`` with their queue fields (``QUEUE_FIELDS``) named in place: the core
    counts queues as the kernel does (``1 + 1024 * type + colour``); a reader wants
    ``PQ_FREE`` colour 5.  Idempotent (a field already named is left alone), so a record
    shown twice (the stream's ring and the call's answer) is named once."""
    for ev in events:
        if type(ev) is not dict:
            continue
        for key in QUEUE_FIELDS:
            value = ev.get(key)
            if type(value) is int:
                ev[key] = queue_ref(value)
            elif type(value) is list and value and type(value[0]) is int:
                ev[key] = [queue_ref(q) for q in value]
    return events


def queue_pair(move: dict[str, Any]) -> str:
    """A move's queue types, ``"PQ_FREE->PQ_NONE"`` (the colour left out), as the stream's
    summaries count them."""
    src = move["from"].partition(":")[0]
    dst = move["to"].partition(":")[0]
    return f"{src}->{dst}"


def summarise(record: dict[str, Any], bound: int, full: str) -> dict[str, Any]:
    """``record`` itself (its events' queues named) if it has at most ``bound`` moves and
    at most ``bound`` events; else a summary: the same ``cpu``, ``counters`` (and ``resumed``), ``summarised:
    true``, ``moves_total`` and ``move_counts`` (moves per queue pair, most first),
    ``events_total`` and ``event_counts`` (events per kind), the first
    ``SUMMARY_ENDS`` moves and events (``moves``, ``events``) and the last ones
    (``moves_tail``, ``events_tail``), and ``full_record``: the path of the full one."""
    moves: list[dict[str, Any]] = record.get("moves", [])
    events: list[Any] = record.get("events", [])
    if len(moves) <= bound and len(events) <= bound:
        name_queues(events)
        return record
    out = {k: v for k, v in record.items() if k not in ("moves", "events")}
    n = SUMMARY_ENDS
    out["summarised"] = True
    out["moves_total"] = len(moves)
    out["move_counts"] = dict(Counter(map(queue_pair, moves)).most_common())
    out["moves"] = moves[:n]
    out["moves_tail"] = moves[max(n, len(moves) - n) :]
    out["events_total"] = len(events)
    kinds = Counter(e.get("event", "?") if isinstance(e, dict) else "?" for e in events)
    out["event_counts"] = dict(kinds.most_common())
    out["events"] = name_queues(events[:n])
    out["events_tail"] = name_queues(events[max(n, len(events) - n) :])
    out["full_record"] = full
    return out


def full_record_path(instance_id: int, seq: int) -> str:
    """Where the full record of call ``seq`` of an instance is served."""
    return f"/api/v1/instances/{instance_id}/journal/{seq}/record"
