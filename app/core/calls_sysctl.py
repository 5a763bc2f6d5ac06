"""Callable verbs for the administrator's interfaces: ``sysctl`` and DDB (spec §16)."""

from __future__ import annotations

from app.core.calls import _call_sysctl
from app.core.ddb import ddb_command

from .callspec import KernelFunction, param
from .ddb import DDB_COMMANDS

FUNCTIONS: tuple[KernelFunction, ...] = (
    KernelFunction(
        "sysctl",
        "sysctl(3)",
        (
            param("name", "sysctl_name", help="a vm.* sysctl name, e.g. vm.v_free_min"),
            param("value", "int_or_null", None, "the new value (null = just read)"),
        ),
        "int",
        "Read a sysctl, or write it (returns the old value) when value is given.",
        _call_sysctl,
        on_thread=False,
    ),
    KernelFunction(
        "ddb",
        "db_command",
        (
            param(
                "command",
                "ddb_command",
                help="'show page' or 'show pageq'",
                choices=tuple((name, k) for k, name in enumerate(DDB_COMMANDS)),
            ),
        ),
        "text",
        "Run a DDB command and return its output text.",
        ddb_command,
        on_thread=False,
        mutates=False,
    ),
)
