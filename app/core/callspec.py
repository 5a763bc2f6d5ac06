"""Types of the call registry: a callable kernel function (``KernelFunction``) and its
arguments (``Param``).  Each area of the core lists its callables in a ``calls_*.py``
module as a tuple ``FUNCTIONS``; ``registry.py`` joins them.

Argument kinds (``Param.kind``) and what ``Machine.call`` accepts for each are listed in
``ARG_KINDS``.  ``int`` honours ``lo``/``hi``; ``choice`` takes one name of ``choices``
(or its integer value); ``flags`` takes names of ``choices`` joined by ``|``, a list of
names, or an integer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

REQUIRED: Any = object()


class ArgKind(StrEnum):
    """The kinds of argument a callable takes; ``convert.CONVERTERS`` has one converter
    for each, ``ARG_KINDS`` one sentence for users."""

    PAGE = "page"
    OBJECT = "object"
    OBJECT_OR_NULL = "object_or_null"
    PINDEX = "pindex"
    ALLOC_FLAGS = "alloc_flags"
    BOOL = "bool"
    INT = "int"
    TICKS = "ticks"
    CPU = "cpu"
    OBJTYPE = "objtype"
    SIZE_PAGES = "size_pages"
    COLOR = "color"
    CHOICE = "choice"
    FLAGS = "flags"
    CHANNEL = "channel"
    WMESG = "wmesg"
    SYSCTL_NAME = "sysctl_name"
    INT_OR_NULL = "int_or_null"
    CHOICE_STR = "choice_str"
    QUEUE = "queue"
    DDB_COMMAND = "ddb_command"


ARG_KINDS: dict[str, str] = {
    "page": "a physical page number (pfn) of a page the VM manages",
    "object": "an object id returned by vm_object_allocate",
    "object_or_null": "an object id, or null for NULL",
    "pindex": "a page index inside an object (0 .. 2^64-1)",
    "alloc_flags": "VM_ALLOC_* flags: an integer, or names joined by '|' (e.g. 'VM_ALLOC_NORMAL|VM_ALLOC_ZERO')",
    "bool": "true or false",
    "int": "an integer (within the argument's range)",
    "ticks": "a number of clock ticks (0 .. 2^31-1)",
    "cpu": "a CPU id of this machine",
    "objtype": "an object type name (OBJT_DEFAULT, OBJT_SWAP, OBJT_VNODE, ...)",
    "size_pages": "a size in pages (0 .. 2^64-1)",
    "color": "a page colour (0 .. 1023) or null to let vm_quickcolor choose",
    "choice": "one of the argument's named values",
    "flags": "the argument's flag names joined by '|', a list of names, or an integer",
    "channel": "a wait channel: 'page:<pfn>', 'vm_pages_needed', 'v_free_count', 'vm_pageout_pages_needed' or 'vm_pagedaemon_uptime'",
    "wmesg": "a short wait message (1-16 printable characters)",
    "sysctl_name": "a sysctl name such as 'vm.v_free_min'",
    "int_or_null": "an integer, or null",
    "choice_str": "one of the argument's named values (a string)",
    "ddb_command": "a DDB command DragonFly has here: 'show page' or 'show pageq'",
    "queue": "a queue type: PQ_FREE, PQ_INACTIVE, PQ_ACTIVE, PQ_CACHE or PQ_HOLD, also without PQ_ and in any case (free), or its index (1, 1025, 2049, 3073, 4097)",
}


@dataclass(frozen=True)
class Param:
    name: str
    kind: ArgKind
    default: Any = REQUIRED
    help: str = ""
    lo: int | None = None
    hi: int | None = None
    choices: tuple[tuple[str, int], ...] = ()
    #: older spellings still accepted (``colour`` for ``color``: for one release)
    aliases: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def param(
    name: str,
    kind: str,
    default: Any = REQUIRED,
    help: str = "",
    *,
    lo: int | None = None,
    hi: int | None = None,
    choices: tuple[tuple[str, int], ...] = (),
    aliases: tuple[str, ...] = (),
) -> Param:
    return Param(name, ArgKind(kind), default, help, lo, hi, choices, aliases)


@dataclass(frozen=True)
class KernelFunction:
    """One callable: ``name`` (what users call), ``models`` (the kernel function),
    ``params``, ``returns`` and the implementing function (``impl``).  ``sleeps``: the method
    returns a generator that may ``yield`` a ``sched.Sleep`` (the call can park its
    thread).  ``on_thread`` False marks simulator verbs (``tick``, ``wakeup``, ``sysctl``,
    ``ddb``) that run even while the CPU's default thread is asleep."""

    name: str
    models: str
    params: tuple[Param, ...]
    returns: str
    help: str
    #: the function that runs it: a kernel function of an area module, or an adaptor of
    #: ``calls.py``; it takes the machine state first, then the arguments in ``params`` order
    impl: Callable[..., Any]
    mutates: bool = True
    aliases: tuple[str, ...] = field(default=())
    sleeps: bool = False
    on_thread: bool = True  # False: a simulator verb that runs outside any thread (tick)


PAGE = param("m", "page", help="the page (pfn)")
