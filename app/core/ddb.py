"""The page layer's DDB (kernel debugger) commands, ``show page`` and ``show pageq``
(``DB_SHOW_COMMAND(page, ...)`` / ``DB_SHOW_COMMAND(pageq, ...)`` in ``vm_page.c``,
spec §16.4), rendered as the exact text the debugger prints.

Both read the machine as it stands: ``show page`` prints the **global** ``vmstats`` without
rolling the per-CPU adjustments up first, so its counters may lag what the CPUs see.
"""

from __future__ import annotations

from collections.abc import Callable

from .constants import PQ_ACTIVE, PQ_CACHE, PQ_FREE, PQ_INACTIVE, PQ_L2_SIZE
from .errors import InvalidArgument
from .state import MachineState

#: The 13 ``struct vmstats`` fields ``show page`` prints, in its order.
SHOW_PAGE_FIELDS: tuple[str, ...] = (
    "v_free_count",
    "v_cache_count",
    "v_inactive_count",
    "v_active_count",
    "v_wire_count",
    "v_free_reserved",
    "v_free_min",
    "v_free_target",
    "v_inactive_target",
    "v_paging_wait",
    "v_paging_start",
    "v_paging_target1",
    "v_paging_target2",
)

#: The queue types ``show pageq`` prints, in its order (PQ_HOLD is not printed).
SHOW_PAGEQ_QUEUES: tuple[tuple[str, int], ...] = (
    ("PQ_FREE", PQ_FREE),
    ("PQ_CACHE", PQ_CACHE),
    ("PQ_ACTIVE", PQ_ACTIVE),
    ("PQ_INACTIVE", PQ_INACTIVE),
)


def ddb_show_page(m: MachineState) -> str:
    """DDB ``show page``: 13 lines ``vmstats.<field>: <decimal>``, each ending in a
    newline, from the global ``vmstats`` (not rolled up first)."""
    vs = m.vmstats
    return "".join(f"vmstats.{name}: {vs.get(name)}\n" for name in SHOW_PAGE_FIELDS)


def ddb_show_pageq(m: MachineState) -> str:
    """DDB ``show pageq``: four lines, ``PQ_FREE:``, ``PQ_CACHE:``, ``PQ_ACTIVE:`` and
    ``PQ_INACTIVE:``, each followed by `` <lcnt>`` for every colour 0..1023 of that queue
    type and a newline."""
    lcnt = m.pq.lcnt
    lines = []
    for label, base in SHOW_PAGEQ_QUEUES:
        counts = "".join(f" {lcnt[base + color]}" for color in range(PQ_L2_SIZE))
        lines.append(f"{label}:{counts}\n")
    return "".join(lines)


#: The DDB commands by the words typed at the ``db>`` prompt.
DDB_COMMANDS: dict[str, Callable[[MachineState], str]] = {
    "show page": ddb_show_page,
    "show pageq": ddb_show_pageq,
}


#: What each DDB command prints, for the answer to a command DDB does not have.
DDB_HELP: dict[str, str] = {
    "show page": "the 13 global vmstats counters and thresholds (it takes no page)",
    "show pageq": "the length of every colour of PQ_FREE, PQ_CACHE, PQ_ACTIVE and PQ_INACTIVE",
}


def ddb_unknown(command: object) -> str:
    """Why DDB does not run ``command``: what it has, and where a page is shown.

    DragonFly's ``show page`` takes no address (``DB_SHOW_COMMAND(page, ...)`` ignores its
    argument and prints the counters); a student typing ``show page 3075`` wants the one
    page, which the lab shows in its page view, not DDB."""
    words = " ".join(command.split()) if isinstance(command, str) else repr(command)
    has = "; ".join(f"'{name}': {text}" for name, text in DDB_HELP.items())
    parts = words.split()
    pfn = next((w for w in parts[2:] if w.isdigit() or w.lower().startswith("0x")), None)
    if parts[:2] == ["show", "page"] and pfn is not None:
        see = (
            f"DragonFly's 'show page' takes no page. To look at page {pfn}, use the page "
            f"view: pagelab page {pfn} (GET /api/v1/instances/ID/pages/{pfn})"
        )
    else:
        see = (
            "To look at one page, use the page view: pagelab page PFN "
            "(GET /api/v1/instances/ID/pages/PFN)"
        )
    return f"DDB has no command {words!r}. It has {has}. {see}."


def ddb_command(m: MachineState, command: str) -> str:
    """Run one of ``DDB_COMMANDS`` as typed at the ``db>`` prompt (spaces normalised)."""
    words = " ".join(command.split()) if isinstance(command, str) else None
    fn = DDB_COMMANDS.get(words) if words is not None else None
    if fn is None:
        raise InvalidArgument(ddb_unknown(command))
    return fn(m)


__all__ = [
    "DDB_COMMANDS",
    "DDB_HELP",
    "SHOW_PAGEQ_QUEUES",
    "SHOW_PAGE_FIELDS",
    "ddb_command",
    "ddb_show_page",
    "ddb_show_pageq",
    "ddb_unknown",
]
