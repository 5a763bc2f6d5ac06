"""Arguments of a call, as users give them, converted to what the kernel functions take:
one converter per argument kind (``callspec.ArgKind``), pfn to page index for pages, object id
to object, flag names to bits.  Everything is checked before the function runs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from app.core.calls import object_by_id, page_index
from app.core.callspec import REQUIRED, ArgKind
from app.core.constants import (
    PQ_L2_MASK,
    VM_ALLOC_FLAG_NAMES,
)
from app.core.ddb import DDB_COMMANDS, ddb_unknown
from app.core.errors import InvalidArgument, did_you_mean
from app.core.objects import ObjType
from app.core.registry import REGISTRY, KernelFunction, Param, parse_queue_type
from app.core.state import MachineState

_U64_MAX = (1 << 64) - 1

_KNOWN = {name: frozenset(p.name for p in spec.params) for name, spec in REGISTRY.items()}

#: older argument spellings, per function: alias -> the argument's name (``colour``)
_ALIASES = {
    name: {a: p.name for p in spec.params for a in p.aliases}
    for name, spec in REGISTRY.items()
    if any(p.aliases for p in spec.params)
}

_FLAG_BY_NAME = {name: bit for bit, name in VM_ALLOC_FLAG_NAMES.items()}
_FLAG_BY_NAME.update(
    {name.removeprefix("VM_ALLOC_"): bit for bit, name in VM_ALLOC_FLAG_NAMES.items()}
)


def parse_alloc_flags(value: Any) -> int:
    """VM_ALLOC_* flags from an int, ``"VM_ALLOC_NORMAL|VM_ALLOC_ZERO"``, ``"NORMAL|ZERO"``
    or a list of names; ``VM_ALLOC_CPU(n)`` is accepted too."""
    if isinstance(value, bool):
        raise InvalidArgument("allocation flags must be an integer or flag names, not a boolean")
    if isinstance(value, int):
        if not 0 <= value < 1 << 32:
            raise InvalidArgument(f"allocation flags {value} are out of range (0 .. 2^32-1)")
        return value
    names = value.split("|") if isinstance(value, str) else value
    if not isinstance(names, list | tuple):
        raise InvalidArgument("allocation flags must be an integer, a string or a list of names")
    flags = 0
    for raw in names:
        if not isinstance(raw, str):
            raise InvalidArgument("each allocation flag must be a name like 'VM_ALLOC_NORMAL'")
        name = raw.strip().upper()
        if name.startswith(("VM_ALLOC_CPU(", "CPU(")) and name.endswith(")"):
            inner = name[name.index("(") + 1 : -1]
            if not inner.isdigit():
                raise InvalidArgument(f"cannot read the CPU number in {raw!r}")
            flags |= (int(inner) << 16) | _FLAG_BY_NAME["VM_ALLOC_CPU_SPEC"]
            continue
        if name not in _FLAG_BY_NAME:
            known = ", ".join(VM_ALLOC_FLAG_NAMES.values())
            raise InvalidArgument(f"unknown allocation flag {raw!r}; known flags: {known}")
        flags |= _FLAG_BY_NAME[name]
    return flags


_CHANNEL_RE = re.compile(
    r"^(page:\d{1,15}|vm_pages_needed|v_free_count|vm_pageout_pages_needed|vm_pagedaemon_uptime)$"
)


def parse_named_flags(value: Any, names: dict[str, int], what: str) -> int:
    """Flags from an int, ``"A|B"`` or a list of names (from ``names``)."""
    if type(value) is int:
        if not 0 <= value < 1 << 32:
            raise InvalidArgument(f"{what} must be from 0 to 2^32-1")
        return value
    parts = value.split("|") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple) or not parts:
        raise InvalidArgument(f"{what} must be an integer or flag names joined by '|'")
    out = 0
    for raw in parts:
        key = raw.strip().upper() if isinstance(raw, str) else None
        if key not in names:
            raise InvalidArgument(f"unknown flag {raw!r} for {what}; known: {', '.join(names)}")
        out |= names[key]
    return out


#: Per function, its parameters as (name, kind, default or REQUIRED, the Param) in order:
#: the loop below reads these instead of the Param objects' attributes.
_PLANS: dict[str, tuple[tuple[str, ArgKind, Any, Param], ...]] = {
    name: tuple((p.name, p.kind, p.default, p) for p in spec.params)
    for name, spec in REGISTRY.items()
}
_PAGE = ArgKind.PAGE
_PINDEX = ArgKind.PINDEX
_ALLOC_FLAGS = ArgKind.ALLOC_FLAGS


def _convert_args(vm: MachineState, spec: KernelFunction, args: dict[str, Any]) -> list[Any]:
    """The arguments ``args`` (name: value, as a user gives them) converted for
    ``spec.impl``, in its parameters' order; every check runs before the function does."""
    if type(args) is not dict and not isinstance(args, dict):
        raise InvalidArgument("arguments must be an object of name: value pairs")
    name = spec.name
    aliases = _ALIASES.get(name)
    if aliases is not None and not aliases.keys().isdisjoint(args):
        args = _unalias(spec, args, aliases)
    known = _KNOWN[name]
    if not args.keys() <= known:
        unknown = sorted(map(str, set(args) - known))
        want = ", ".join(sorted(known)) or "none"
        parts = []
        for u in unknown:
            hint = did_you_mean(u, known, n=1)  # "; did you mean 'x'?"
            parts.append(f"{u} ({hint.removeprefix('; ')})" if hint else u)
        named = ", ".join(parts)
        raise InvalidArgument(f"{name} has no argument {named}; its arguments: {want}")
    out: list[Any] = []
    append = out.append
    managed = vm.managed
    for pname, kind, default, p in _PLANS[name]:
        value = args.get(pname, default)
        if value is REQUIRED:
            raise InvalidArgument(f"{name} needs the argument {pname!r} ({p.help})")
        if type(value) is int:
            # the common cases, checked inline: a managed page of a one-run machine, a
            # pindex, numeric allocation flags
            if kind is _PAGE:
                i = value - vm.first_page
                if len(managed) == 1 and managed[0][0] <= i < managed[0][1]:
                    append(i)
                    continue
            elif (kind is _PINDEX and 0 <= value <= _U64_MAX) or (
                kind is _ALLOC_FLAGS and 0 <= value < 1 << 32
            ):
                append(value)
                continue
        append(CONVERTERS[kind](vm, p, value))
    return out


def _unalias(spec: KernelFunction, args: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """``args`` with older spellings (``colour``) under the argument's name (``color``);
    both at once is refused."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        name = aliases.get(key, key)
        if name in out:
            raise InvalidArgument(
                f"{spec.name}: give {name!r} once ({key!r} is its older spelling)"
            )
        out[name] = value
    return out


def _int_arg(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _to_page(vm: MachineState, p: Param, value: Any) -> Any:
    return page_index(vm, value, p.name)


def _to_object(vm: MachineState, p: Param, value: Any) -> Any:
    return object_by_id(vm, value, p.name)


def _to_object_or_null(vm: MachineState, p: Param, value: Any) -> Any:
    return None if value is None else object_by_id(vm, value, p.name)


def _to_u64(vm: MachineState, p: Param, value: Any) -> Any:
    if not _int_arg(value) or not 0 <= value <= _U64_MAX:
        raise InvalidArgument(f"{p.name} must be an integer from 0 to 2^64-1, got {value!r}")
    return value


def _to_alloc_flags(vm: MachineState, p: Param, value: Any) -> Any:
    return parse_alloc_flags(value)


def _to_bool(vm: MachineState, p: Param, value: Any) -> Any:
    if not isinstance(value, bool) and value not in (0, 1):
        raise InvalidArgument(f"{p.name} must be true or false, got {value!r}")
    return bool(value)


def _to_ticks(vm: MachineState, p: Param, value: Any) -> Any:
    if not _int_arg(value) or not 0 <= value < 1 << 31:
        raise InvalidArgument(f"{p.name} must be a tick count from 0 to 2^31-1")
    return value


def _to_cpu(vm: MachineState, p: Param, value: Any) -> Any:
    if not _int_arg(value) or not 0 <= value < vm.ncpus:
        raise InvalidArgument(f"{p.name} must be a CPU id from 0 to {vm.ncpus - 1}")
    return value


def _to_objtype(vm: MachineState, p: Param, value: Any) -> Any:
    if isinstance(value, str) and value.upper() in ObjType.__members__:
        return ObjType[value.upper()]
    names = ", ".join(ObjType.__members__)
    raise InvalidArgument(f"{p.name} must be one of {names}, got {value!r}")


def _to_color(vm: MachineState, p: Param, value: Any) -> Any:
    if value is None:
        return None
    if not _int_arg(value) or not 0 <= value <= PQ_L2_MASK:
        raise InvalidArgument(f"{p.name} must be a colour from 0 to 1023 or null")
    return value


def _to_int(vm: MachineState, p: Param, value: Any) -> Any:
    if not _int_arg(value):
        raise InvalidArgument(f"{p.name} must be an integer")
    if (p.lo is not None and value < p.lo) or (p.hi is not None and value > p.hi):
        raise InvalidArgument(f"{p.name} must be from {p.lo} to {p.hi}, got {value}")
    return value


def _to_choice(vm: MachineState, p: Param, value: Any) -> Any:
    choice_map = dict(p.choices)
    if isinstance(value, str) and value.upper() in choice_map:
        return choice_map[value.upper()]
    if type(value) is int and value in choice_map.values():
        return value
    hint = did_you_mean(value.upper(), choice_map) if isinstance(value, str) else ""
    raise InvalidArgument(f"{p.name} must be one of {', '.join(choice_map)}, got {value!r}{hint}")


def _to_flags(vm: MachineState, p: Param, value: Any) -> Any:
    return parse_named_flags(value, dict(p.choices), p.name)


def _to_sysctl_name(vm: MachineState, p: Param, value: Any) -> Any:
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise InvalidArgument(f"{p.name} must be a sysctl name such as 'vm.v_free_min'")
    return value


def _to_int_or_null(vm: MachineState, p: Param, value: Any) -> Any:
    if value is None:
        return None
    if type(value) is not int:
        raise InvalidArgument(f"{p.name} must be an integer or null")
    return value


def _to_choice_str(vm: MachineState, p: Param, value: Any) -> Any:
    options = [n for n, _ in p.choices]
    if not isinstance(value, str) or value.strip().lower() not in options:
        hint = did_you_mean(value.strip().lower(), options) if isinstance(value, str) else ""
        raise InvalidArgument(f"{p.name} must be one of {', '.join(options)}; got {value!r}{hint}")
    return value.strip().lower()


def _to_channel(vm: MachineState, p: Param, value: Any) -> Any:
    if not isinstance(value, str) or not _CHANNEL_RE.match(value):
        raise InvalidArgument(
            f"{p.name} must be a wait channel such as 'page:<pfn>', 'vm_pages_needed', "
            f"'v_free_count', 'vm_pageout_pages_needed' or 'vm_pagedaemon_uptime'; got {value!r}"
        )
    return value


def _to_wmesg(vm: MachineState, p: Param, value: Any) -> Any:
    if not isinstance(value, str) or not 0 < len(value) <= 16 or not value.isprintable():
        raise InvalidArgument(f"{p.name} must be a short printable string (1-16 characters)")
    return value


def _to_ddb_command(vm: MachineState, p: Param, value: Any) -> Any:
    """A DDB command, as ``choice_str`` reads one (trimmed, any case); anything else is
    answered as the DDB route answers it: what DDB has, and for ``show page 3075`` the
    per-page view to use instead (``ddb.ddb_unknown``)."""
    if isinstance(value, str) and value.strip().lower() in DDB_COMMANDS:
        return value.strip().lower()
    raise InvalidArgument(f"{p.name}: {ddb_unknown(value)}")


def _to_queue(vm: MachineState, p: Param, value: Any) -> Any:
    return parse_queue_type(value)


#: One converter per argument kind: what ``Machine.call`` does with a value a user gave.
#: A page's pfn becomes its page-array index here (and a result of kind page goes back to
#: a pfn in ``calls``).
CONVERTERS: dict[ArgKind, Callable[[MachineState, Param, Any], Any]] = {
    ArgKind.PAGE: _to_page,
    ArgKind.OBJECT: _to_object,
    ArgKind.OBJECT_OR_NULL: _to_object_or_null,
    ArgKind.PINDEX: _to_u64,
    ArgKind.SIZE_PAGES: _to_u64,
    ArgKind.ALLOC_FLAGS: _to_alloc_flags,
    ArgKind.BOOL: _to_bool,
    ArgKind.TICKS: _to_ticks,
    ArgKind.CPU: _to_cpu,
    ArgKind.OBJTYPE: _to_objtype,
    ArgKind.COLOR: _to_color,
    ArgKind.INT: _to_int,
    ArgKind.CHOICE: _to_choice,
    ArgKind.FLAGS: _to_flags,
    ArgKind.SYSCTL_NAME: _to_sysctl_name,
    ArgKind.INT_OR_NULL: _to_int_or_null,
    ArgKind.CHOICE_STR: _to_choice_str,
    ArgKind.CHANNEL: _to_channel,
    ArgKind.WMESG: _to_wmesg,
    ArgKind.QUEUE: _to_queue,
    ArgKind.DDB_COMMAND: _to_ddb_command,
}
assert set(CONVERTERS) == set(ArgKind), "every argument kind needs a converter"


def _convert(vm: MachineState, p: Param, value: Any) -> Any:
    return CONVERTERS[p.kind](vm, p, value)


# ---------------------------------------------------------------- the quick path
#: A converter of one value for the common case: ``(vm, value) -> converted``.  The value
#: types users send most (an int pfn of a one-run machine, an existing object id, an int
#: pindex or flag word) are checked inline; anything else goes to the kind's converter,
#: which checks it fully and explains a refusal.
Quick = Callable[[MachineState, Any], Any]

#: The arguments of one function converted from a dict that names every parameter exactly
#: once (no alias, no default used): ``(vm, args) -> the converted values in order``.  A
#: missing name raises ``KeyError``; ``Machine.call`` then takes ``_convert_args``, which
#: finds and explains what is missing or misspelt.
QuickPlan = Callable[[MachineState, dict[str, Any]], tuple[Any, ...]]


def _quick(p: Param) -> Quick:
    slow = CONVERTERS[p.kind]
    kind = p.kind
    if kind is ArgKind.PAGE:

        def page(vm: MachineState, value: Any) -> Any:
            if type(value) is int:
                managed = vm.managed
                if len(managed) == 1:
                    i = value - vm.first_page
                    if managed[0][0] <= i < managed[0][1]:
                        return i
            return slow(vm, p, value)

        return page
    if kind is ArgKind.OBJECT or kind is ArgKind.OBJECT_OR_NULL:

        def obj(vm: MachineState, value: Any) -> Any:
            if type(value) is int:
                found = vm.vmobj.objects.get(value)
                if found is not None:
                    return found
            return slow(vm, p, value)

        return obj
    if kind is ArgKind.PINDEX or kind is ArgKind.SIZE_PAGES:

        def u64(vm: MachineState, value: Any) -> Any:
            if type(value) is int and 0 <= value <= _U64_MAX:
                return value
            return slow(vm, p, value)

        return u64
    if kind is ArgKind.ALLOC_FLAGS:

        def flags(vm: MachineState, value: Any) -> Any:
            if type(value) is int and 0 <= value < 1 << 32:
                return value
            return slow(vm, p, value)

        return flags

    def other(vm: MachineState, value: Any) -> Any:
        return slow(vm, p, value)

    return other


def _quick_plan(spec: KernelFunction) -> QuickPlan:
    """``spec``'s arguments converted by one closure per arity (no loop, no list)."""
    names = tuple(p.name for p in spec.params)
    convs = tuple(_quick(p) for p in spec.params)
    if len(names) == 0:

        def none(vm: MachineState, args: dict[str, Any]) -> tuple[Any, ...]:
            return ()

        return none
    if len(names) == 1:
        (n0,), (c0,) = names, convs

        def one(vm: MachineState, args: dict[str, Any]) -> tuple[Any, ...]:
            return (c0(vm, args[n0]),)

        return one
    if len(names) == 2:
        (n0, n1), (c0, c1) = names, convs

        def two(vm: MachineState, args: dict[str, Any]) -> tuple[Any, ...]:
            return (c0(vm, args[n0]), c1(vm, args[n1]))

        return two
    if len(names) == 3:
        (n0, n1, n2), (c0, c1, c2) = names, convs

        def three(vm: MachineState, args: dict[str, Any]) -> tuple[Any, ...]:
            return (c0(vm, args[n0]), c1(vm, args[n1]), c2(vm, args[n2]))

        return three
    pairs = tuple(zip(names, convs, strict=True))

    def many(vm: MachineState, args: dict[str, Any]) -> tuple[Any, ...]:
        return tuple([c(vm, args[n]) for n, c in pairs])

    return many


#: Per registry name (aliases included): the function, its quick plan, how many
#: arguments the plan wants and whether the call may take ``Machine.call``'s quick path
#: at all (it runs on a thread and cannot sleep).
CALL_PLANS: dict[str, tuple[KernelFunction, QuickPlan, int, bool]] = {
    name: (spec, _quick_plan(spec), len(spec.params), spec.on_thread and not spec.sleeps)
    for name, spec in REGISTRY.items()
}
