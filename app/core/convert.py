"""Arguments of a call, as users give them, converted to what the kernel functions take:
one converter per argument kind (``callspec.ArgKind``), pfn to page index for pages, object id
to object, flag names to bits.  Everything is checked before the function runs."""

from __future__ import annotations

import re
from typing import Any

from app.core.calls import object_by_id, page_index
from app.core.constants import (
    PQ_L2_MASK,
    VM_ALLOC_FLAG_NAMES,
)
from app.core.errors import InvalidArgument
from app.core.objects import ObjType
from app.core.registry import REGISTRY, KernelFunction, Param
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


def _convert_args(vm: MachineState, spec: KernelFunction, args: dict[str, Any]) -> dict[str, Any]:
    if type(args) is not dict and not isinstance(args, dict):
        raise InvalidArgument("arguments must be an object of name: value pairs")
    known = _KNOWN[spec.name]
    aliases = _ALIASES.get(spec.name)
    if aliases is not None and not aliases.keys().isdisjoint(args):
        args = _unalias(spec, args, aliases)
    if not args.keys() <= known:
        unknown = set(args) - known
        want = ", ".join(sorted(known)) or "none"
        raise InvalidArgument(
            f"{spec.name} has no argument {', '.join(sorted(unknown))}; its arguments: {want}"
        )
    out: dict[str, Any] = {}
    for p in spec.params:
        name = p.name
        if name in args:
            value = args[name]
        elif p.required:
            raise InvalidArgument(f"{spec.name} needs the argument {name!r} ({p.help})")
        else:
            value = p.default
        kind = p.kind
        if kind == "page" and type(value) is int:
            i = value - vm.first_page
            if len(vm.managed) == 1 and vm.managed[0][0] <= i < vm.managed[0][1]:
                out[name] = i
                continue
        elif (
            kind == "pindex"
            and type(value) is int
            and 0 <= value <= _U64_MAX
            or kind == "alloc_flags"
            and type(value) is int
            and 0 <= value < 1 << 32
        ):
            out[name] = value
            continue
        out[name] = _convert(vm, p, value)
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


def _convert(vm: MachineState, p: Param, value: Any) -> Any:
    kind = p.kind
    if kind == "page":
        return page_index(vm, value, p.name)
    if kind in ("object", "object_or_null"):
        if value is None and kind == "object_or_null":
            return None
        return object_by_id(vm, value, p.name)
    if kind in ("pindex", "size_pages"):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64_MAX:
            raise InvalidArgument(f"{p.name} must be an integer from 0 to 2^64-1, got {value!r}")
        return value
    if kind == "alloc_flags":
        return parse_alloc_flags(value)
    if kind == "bool":
        if not isinstance(value, bool) and value not in (0, 1):
            raise InvalidArgument(f"{p.name} must be true or false, got {value!r}")
        return bool(value)
    if kind == "ticks":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 31:
            raise InvalidArgument(f"{p.name} must be a tick count from 0 to 2^31-1")
        return value
    if kind == "cpu":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < vm.ncpus:
            raise InvalidArgument(f"{p.name} must be a CPU id from 0 to {vm.ncpus - 1}")
        return value
    if kind == "objtype":
        if isinstance(value, str) and value.upper() in ObjType.__members__:
            return ObjType[value.upper()]
        names = ", ".join(ObjType.__members__)
        raise InvalidArgument(f"{p.name} must be one of {names}, got {value!r}")
    if kind == "color":
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= PQ_L2_MASK:
            raise InvalidArgument(f"{p.name} must be a colour from 0 to 1023 or null")
        return value
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument(f"{p.name} must be an integer")
        if (p.lo is not None and value < p.lo) or (p.hi is not None and value > p.hi):
            raise InvalidArgument(f"{p.name} must be from {p.lo} to {p.hi}, got {value}")
        return value
    if kind == "choice":
        choice_map = dict(p.choices)
        if isinstance(value, str) and value.upper() in choice_map:
            return choice_map[value.upper()]
        if type(value) is int and value in choice_map.values():
            return value
        raise InvalidArgument(f"{p.name} must be one of {', '.join(choice_map)}, got {value!r}")
    if kind == "flags":
        return parse_named_flags(value, dict(p.choices), p.name)
    if kind == "sysctl_name":
        if not isinstance(value, str) or not 0 < len(value) <= 128:
            raise InvalidArgument(f"{p.name} must be a sysctl name such as 'vm.v_free_min'")
        return value
    if kind == "int_or_null":
        if value is None:
            return None
        if type(value) is not int:
            raise InvalidArgument(f"{p.name} must be an integer or null")
        return value
    if kind == "choice_str":
        options = [n for n, _ in p.choices]
        if not isinstance(value, str) or value.strip().lower() not in options:
            raise InvalidArgument(f"{p.name} must be one of {', '.join(options)}; got {value!r}")
        return value.strip().lower()
    if kind == "channel":
        if not isinstance(value, str) or not _CHANNEL_RE.match(value):
            raise InvalidArgument(
                f"{p.name} must be a wait channel such as 'page:<pfn>', 'vm_pages_needed', "
                f"'v_free_count', 'vm_pageout_pages_needed' or 'vm_pagedaemon_uptime'; got {value!r}"
            )
        return value
    if kind == "wmesg":
        if not isinstance(value, str) or not 0 < len(value) <= 16 or not value.isprintable():
            raise InvalidArgument(f"{p.name} must be a short printable string (1-16 characters)")
        return value
    raise InvalidArgument(f"argument kind {kind} is not supported")
