"""Print the pinned requirements of ``pyproject.toml``, one a line: the dependencies, then
those of each extra named on the command line (comma-separated; empty: none).

    python tools/requirements.py            # the server's dependencies
    python tools/requirements.py dev,ray    # and those of the dev and ray extras

The image's build installs them from this list before it copies the source, so that a
change to the source reuses the layer that holds the dependencies (docs/deploy.md).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(extras: str = "", pyproject: Path = PYPROJECT) -> list[str]:
    """The dependencies and those of ``extras``; an unknown extra is an error (ValueError),
    not a silent no-op as it is to pip."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    found = list(project["dependencies"])
    for extra in filter(None, (e.strip() for e in extras.split(","))):
        if extra not in optional:
            known = ", ".join(sorted(optional)) or "none"
            raise ValueError(f"pyproject.toml has no extra {extra!r} (it has: {known})")
        found += optional[extra]
    return found


def main(argv: list[str]) -> int:
    try:
        print("\n".join(requirements(argv[0] if argv else "")))
    except ValueError as e:
        print(f"requirements: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
