"""Smoke test of the durability benchmark: ``python -m bench durability --json --quick``
runs and prints every figure, and its restart with snapshots replays fewer calls than the
one without, to the same digests.  No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_durability_quick_json_has_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "durability", "--json", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, "--json prints exactly one JSON object (logs go to stderr)"
    result = json.loads(lines[0])
    for key in (
        "single_calls_per_s_memory",
        "single_calls_per_s_sqlite",
        "batch_calls_per_s_sqlite",
    ):
        assert result[key] > 0, key
    restart = result["restart"]
    assert restart["instances"] == 5 and restart["calls_each"] == 2000
    assert restart["same_digests"] is True
    assert restart["snapshots_saved"] >= 5  # at least one per instance
    assert restart["replayed_calls_without_snapshots"] == 5 * 2000
    assert restart["replayed_calls"] < restart["replayed_calls_without_snapshots"]
    assert restart["seconds"] > 0 and restart["seconds_without_snapshots"] > 0
