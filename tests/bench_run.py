"""What the benchmark smoke tests share: run ``python -m bench NAME --json --quick`` in a
child process and read the one JSON object it prints; and what a figure must be."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_bench(name: str, timeout: float) -> dict[str, Any]:
    """The figures of ``python -m bench NAME --json --quick`` (which must exit 0 and print
    exactly one JSON object on stdout)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench", name, "--json", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints exactly one JSON object"
    result: dict[str, Any] = json.loads(lines[0])
    return result


def positive(value: object) -> bool:
    """A measured figure: a finite number above zero (not a bool)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
