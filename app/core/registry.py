"""The call registry: every kernel function a user may call, by its kernel name, with its
arguments.  The HTTP API, the journal, the CLI and the tests all go through it.

A page handle is its physical page number (pfn); an object is its small integer id (or
``None`` for NULL).  ``Machine.call`` validates and converts every argument *before* the
function runs, runs it, and returns the kernel's result plus a compact record of what it
changed (queue moves, counter deltas, events such as wakeups).
"""

from __future__ import annotations

import difflib

from app.core.calls import _call_alloc, _call_alloczwq, _call_grab, _call_lookup, _call_unwire
from app.core.vm_meter import vmstats_rollup
from app.core.vm_page.alloc import vm_page_freezwq, vm_test_nominal, vm_wait
from app.core.vm_page.busy import vm_page_busy_try, vm_page_wakeup
from app.core.vm_page.free import vm_page_free_toq
from app.core.vm_page.object import vm_object_allocate, vm_page_insert, vm_page_remove
from app.core.vm_page.queues import (
    pagedaemon_wakeup,
    vm_page_activate,
    vm_page_deactivate,
    vm_page_soft_activate,
    vm_page_unqueue,
    vm_page_unqueue_nowakeup,
    vm_page_wire,
)
from app.core.vm_page.search import vm_get_pg_color

from .callspec import ARG_KINDS, REQUIRED, KernelFunction, Param, param
from .constants import PG_FLAG_NAMES, PQ_BASES, PQ_L2_SIZE, PQ_NAMES, VM_ALLOC_FLAG_NAMES
from .errors import InvalidArgument

_p = param
__all__ = ["ARG_KINDS", "FUNCTIONS", "REGISTRY", "REQUIRED", "KernelFunction", "Param"]


_PAGE = _p("m", "page", help="the page (pfn)")

FUNCTIONS: tuple[KernelFunction, ...] = (
    KernelFunction(
        "vm_object_allocate",
        "vm_object_allocate",
        (
            _p("type", "objtype", "OBJT_DEFAULT", "object type"),
            _p("size", "size_pages", 0, "object size in pages"),
            _p("pg_color", "color", None, "force the object's pg_color (default: vm_quickcolor())"),
            _p(
                "addr",
                "int_or_null",
                None,
                "the object's 64-bit kernel address, which the page hash CRCs in place of the "
                "pointer (default: the object id)",
            ),
        ),
        "object",
        "Create a VM object (simulator verb: the kernel gets objects from elsewhere).",
        vm_object_allocate,
    ),
    KernelFunction(
        "vm_page_alloc",
        "vm_page_alloc",
        (
            _p("object", "object_or_null", None, "owning object, or null"),
            _p("pindex", "pindex", 0, "page index in the object"),
            _p("page_req", "alloc_flags", "VM_ALLOC_NORMAL", "allocation class and flags"),
        ),
        "page_or_null",
        "Allocate a page: returned hard-busied, on no queue, inserted into the object.",
        _call_alloc,
    ),
    KernelFunction(
        "vm_page_grab",
        "vm_page_grab",
        (
            _p("object", "object", help="the object"),
            _p("pindex", "pindex", 0, "page index"),
            _p("flags", "alloc_flags", "VM_ALLOC_NORMAL", "allocation flags (RETRY, ZERO, ...)"),
        ),
        "page_or_null",
        "Look up and hard-busy a page of an object, allocating it if absent.",
        _call_grab,
        sleeps=True,
    ),
    KernelFunction(
        "vm_page_alloczwq",
        "vm_page_alloczwq",
        (
            _p("pindex", "pindex", 0, "pindex recorded in the page"),
            _p("flags", "alloc_flags", "VM_ALLOC_NORMAL", "allocation flags"),
        ),
        "page_or_null",
        "Allocate an object-less page, wired and not busied.",
        _call_alloczwq,
        sleeps=True,
    ),
    KernelFunction(
        "vm_page_freezwq",
        "vm_page_freezwq",
        (_PAGE,),
        "none",
        "Free a page from vm_page_alloczwq.",
        vm_page_freezwq,
        sleeps=True,
    ),
    KernelFunction(
        "vm_page_free",
        "vm_page_free_toq",
        (_PAGE,),
        "none",
        "Free a hard-busied page (to the free head, or the PQ_HOLD tail if held).",
        vm_page_free_toq,
        aliases=("vm_page_free_toq", "vm_page_free_zero"),
    ),
    KernelFunction(
        "vm_page_unqueue",
        "vm_page_unqueue",
        (_PAGE,),
        "none",
        "Take a page off its queue; wakes the pagedaemon if it was free or cache.",
        vm_page_unqueue,
    ),
    KernelFunction(
        "vm_page_unqueue_nowakeup",
        "vm_page_unqueue_nowakeup",
        (_PAGE,),
        "none",
        "Take a page off its queue.",
        vm_page_unqueue_nowakeup,
    ),
    KernelFunction(
        "vm_page_activate",
        "vm_page_activate",
        (_PAGE,),
        "none",
        "Move a page to the tail of its active queue.",
        vm_page_activate,
    ),
    KernelFunction(
        "vm_page_soft_activate",
        "vm_page_soft_activate",
        (_PAGE,),
        "none",
        "As vm_page_activate.",
        vm_page_soft_activate,
    ),
    KernelFunction(
        "vm_page_deactivate",
        "vm_page_deactivate",
        (_PAGE,),
        "none",
        "Move a page to the tail of its inactive queue.",
        vm_page_deactivate,
    ),
    KernelFunction(
        "vm_page_busy_try",
        "vm_page_busy_try",
        (_PAGE, _p("also_m_busy", "bool", True, "also fail on soft-busy")),
        "bool",
        "Try to hard-busy a page; returns TRUE on failure.",
        vm_page_busy_try,
    ),
    KernelFunction(
        "vm_page_wakeup",
        "vm_page_wakeup",
        (_PAGE,),
        "none",
        "Release a page's hard busy (waking waiters if WANTED).",
        vm_page_wakeup,
    ),
    KernelFunction(
        "vm_page_wire",
        "vm_page_wire",
        (_PAGE,),
        "none",
        "Wire a hard-busied page.",
        vm_page_wire,
    ),
    KernelFunction(
        "vm_page_unwire",
        "vm_page_unwire",
        (_PAGE, _p("activate", "bool", False, "activate (else deactivate) on the last unwire")),
        "none",
        "Unwire a hard-busied page.",
        _call_unwire,
    ),
    KernelFunction(
        "vm_page_insert",
        "vm_page_insert",
        (
            _PAGE,
            _p("object", "object", help="the object"),
            _p("pindex", "pindex", help="page index"),
        ),
        "bool",
        "Insert a page into an object; FALSE if the pindex is taken.",
        vm_page_insert,
    ),
    KernelFunction(
        "vm_page_remove",
        "vm_page_remove",
        (_PAGE,),
        "none",
        "Remove a hard-busied page from its object.",
        vm_page_remove,
    ),
    KernelFunction(
        "vm_page_lookup",
        "vm_page_lookup",
        (_p("object", "object", help="the object"), _p("pindex", "pindex", help="page index")),
        "page_or_null",
        "Find an object's page at pindex (not busied).",
        _call_lookup,
    ),
    KernelFunction(
        "vm_wait",
        "vm_wait",
        (_p("timo", "ticks", 0, "timeout in ticks (0 = hz)"),),
        "none",
        "Wait for free memory (one bounded sleep) when below the nice-shifted minimum.",
        vm_wait,
        sleeps=True,
    ),
    KernelFunction(
        "vm_test_nominal",
        "vm_test_nominal",
        (),
        "bool",
        "1 iff vm_paging_min().",
        vm_test_nominal,
        mutates=False,
    ),
    KernelFunction(
        "pagedaemon_wakeup",
        "pagedaemon_wakeup",
        (),
        "none",
        "Poke the pageout daemon if paging should start.",
        pagedaemon_wakeup,
    ),
    KernelFunction(
        "vmstats_rollup",
        "vmstats_rollup",
        (),
        "none",
        "Fold every CPU's pending vmstats adjustments into the global vmstats.",
        vmstats_rollup,
    ),
    KernelFunction(
        "vm_get_pg_color",
        "vm_get_pg_color",
        (
            _p("cpuid", "cpu", 0, "the CPU"),
            _p("object", "object_or_null", None, "the object or null"),
            _p("pindex", "pindex", 0, "page index"),
        ),
        "int",
        "The page colour an allocation on this CPU for object/pindex starts from.",
        vm_get_pg_color,
        mutates=False,
    ),
)

from .calls_contig import FUNCTIONS as _CONTIG  # noqa: E402
from .calls_hash import FUNCTIONS as _HASH  # noqa: E402
from .calls_pageout import FUNCTIONS as _PAGEOUT  # noqa: E402
from .calls_pagestate import FUNCTIONS as _PAGESTATE  # noqa: E402
from .calls_sched import FUNCTIONS as _SCHED  # noqa: E402
from .calls_sysctl import FUNCTIONS as _SYSCTL  # noqa: E402

FUNCTIONS = FUNCTIONS + _SCHED + _PAGESTATE + _HASH + _CONTIG + _PAGEOUT + _SYSCTL

REGISTRY: dict[str, KernelFunction] = {}
for _fn in FUNCTIONS:
    if _fn.name in REGISTRY:
        raise RuntimeError(f"kernel function {_fn.name} registered twice")
    REGISTRY[_fn.name] = _fn
    for _alias in _fn.aliases:
        REGISTRY[_alias] = _fn


def queue_name(queue: int) -> str:
    """``PQ_FREE:17`` style name of an absolute queue index."""
    if queue == 0:
        return "PQ_NONE"
    base = (queue - 1) // PQ_L2_SIZE * PQ_L2_SIZE + 1
    return f"{PQ_NAMES[base]}:{queue - base}"


#: Every spelling of a queue type, lower-cased: ``pq_free``, ``free`` -> its base index.
QUEUE_SPELLINGS: dict[str, int] = {
    spelling: base
    for base in PQ_BASES
    for spelling in (PQ_NAMES[base].lower(), PQ_NAMES[base].removeprefix("PQ_").lower())
}


def parse_queue_type(value: object) -> int:
    """The base index of a queue type, as every part of PageLab reads one (a call's
    argument, the queue view's path, the client and the CLI): its kernel name
    (``PQ_FREE``), the name without ``PQ_`` (``free``), in any case, or its kernel index
    (``1``, ``1025``, ``2049``, ``3073``, ``4097``; also as a decimal string, as in a
    path).  Anything else is refused with the spellings it could have been."""
    index: int | None = None
    if type(value) is int:
        index = value
    elif isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 6:
            index = int(text)
        else:
            base = QUEUE_SPELLINGS.get(text.lower())
            if base is not None:
                return base
            close = difflib.get_close_matches(text.lower(), list(QUEUE_SPELLINGS), cutoff=0.6)
            names = dict.fromkeys(PQ_NAMES[QUEUE_SPELLINGS[c]] for c in close)
            hint = f"; did you mean {' or '.join(map(repr, names))}?" if names else "."
            known = ", ".join(PQ_NAMES[b] for b in PQ_BASES)
            raise InvalidArgument(
                f"there is no queue type {value!r}{hint} A queue type is one of {known}, "
                "also without PQ_ and in any case (free), or its index "
                f"({', '.join(str(b) for b in PQ_BASES)})"
            )
    else:
        raise InvalidArgument(
            f"a queue type is a name such as 'PQ_FREE' or 'free', or its index, not {value!r}"
        )
    if index in PQ_BASES:
        return index
    bases = ", ".join(f"{PQ_NAMES[b]} {b}" for b in PQ_BASES)
    if 0 < index < PQ_L2_SIZE * len(PQ_BASES) + 1:
        base = (index - 1) // PQ_L2_SIZE * PQ_L2_SIZE + 1
        raise InvalidArgument(
            f"queue index {index} is {PQ_NAMES[base]} colour {index - base} (index = base + "
            f"colour); give the queue type's base ({base}, or {PQ_NAMES[base]}) and the "
            "colour on its own"
        )
    raise InvalidArgument(f"there is no queue type with index {index}; the types are {bases}")


def queue_ref(queue: int) -> dict[str, str | int | None]:
    """An absolute queue index as events show it: ``{"queue": "PQ_FREE", "color": 5}``
    (``{"queue": "PQ_NONE", "color": None}`` for 0)."""
    if queue <= 0:
        return {"queue": "PQ_NONE", "color": None}
    base = (queue - 1) // PQ_L2_SIZE * PQ_L2_SIZE + 1
    return {"queue": PQ_NAMES.get(base, "?"), "color": queue - base}


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in PG_FLAG_NAMES.items() if flags & bit]


def alloc_flag_names(flags: int) -> list[str]:
    names = [name for bit, name in VM_ALLOC_FLAG_NAMES.items() if flags & bit]
    if flags >> 16:
        names.append(f"VM_ALLOC_CPU({flags >> 16})")
    return names
