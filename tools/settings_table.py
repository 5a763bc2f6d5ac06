"""``python -m tools.settings_table``: print ``docs/settings.md``, the table of every
setting of the server, made from ``app.lab.settings.Settings`` (its fields' environment
variables, defaults and descriptions).  ``tests/test_settings.py`` checks that the
committed file is what this prints, so a new setting cannot go undocumented:

    .venv/bin/python -m tools.settings_table > docs/settings.md
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic_core import PydanticUndefined

from app.lab.settings import Settings, accepted, env_names

HEAD = """\
# Settings

Every setting of the PageLab server is an environment variable, read once at start by one
class (`app.lab.settings.Settings`, pydantic-settings).  A bad value stops the server
before it listens, with a message naming the variable, the value and what is accepted.
This file is generated: `python -m tools.settings_table > docs/settings.md` (a test
checks it is up to date).

| Variable | Default | Meaning |
|---|---|---|
"""

TAIL = """
`PAGELAB_CORE` and `PAGELAB_CORE_BUILD` are read by `app.core` itself when it is imported
(`docs/compiled-core.md`); the server checks them with the rest at start.

The command-line client (`pagelab`, `app/cli.py`) is not the server and reads two
variables of its own: `PAGELAB_URL` (the server, default `http://127.0.0.1:8000`) and
`PAGELAB_TOKEN` (its bearer token; unset: none).  `pagelab admin bootstrap` reads the
server's `PAGELAB_DATABASE_URL`, `PAGELAB_ADMIN_NAME` and `PAGELAB_ADMIN_TOKEN`.
"""


def default_of(name: str) -> str:
    """The field's default as it would be written in the environment."""
    info = Settings.model_fields[name]
    value: Any = info.default
    if value is PydanticUndefined and info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    if isinstance(value, list):
        return "`[]`" if not value else f"`{value!r}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table() -> str:
    rows = []
    for name, info in Settings.model_fields.items():
        first, *others = env_names(name)
        variable = f"`{first}`" + "".join(f" (or `{o}`)" for o in others)
        meaning = (info.description or "").rstrip(".")
        rows.append(
            f"| {variable} | {cell(default_of(name))} | "
            f"{cell(meaning[:1].upper() + meaning[1:])}. Accepted: {cell(accepted(name))}. |"
        )
    return HEAD + "\n".join(rows) + "\n" + TAIL


def main() -> int:
    sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
