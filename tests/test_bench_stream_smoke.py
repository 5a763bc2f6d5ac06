"""Smoke test of the stream benchmark: ``python -m bench stream --json --quick`` starts a
real uvicorn on 127.0.0.1, runs ``churn`` with 20 viewers (in another process) and a slow
one, and prints every figure.  No timing is asserted: only that each figure exists, is a
number where it must be, and that the counts add up."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from tests.bench_run import positive, run_bench

ROOT = Path(__file__).resolve().parent.parent

POSITIVE = (
    "calls_per_s_no_viewers",
    "calls_per_s_with_viewers",
    "calls_ratio",
    "frames_per_viewer_per_s",
    "bytes_per_viewer_per_s",
    "bytes_per_frame",
)
WINDOWS = ("idle_before", "viewers", "fixed_idle", "fixed_viewers")


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_stream_quick_json_has_every_figure() -> None:
    result = run_bench("stream", timeout=90)
    assert result["viewers"] == 20
    assert result["params"]["window_s"] == 3.0
    for key in POSITIVE:
        assert positive(result[key]), (key, result[key])
    assert math.isclose(
        result["calls_ratio"], result["calls_per_s_with_viewers"] / result["calls_per_s_no_viewers"]
    )
    delay = result["delay_ms"]
    assert delay["n"] > 0
    assert 0 <= delay["p50"] <= delay["p99"] <= delay["max"]
    # CPU figures may be negative on a noisy machine, but they are numbers
    assert _finite(result["cpu_per_viewer_ms_per_s"])
    assert _finite(result["cpu_per_viewer_ms_per_s_at_max"])
    assert all(_finite(v) for v in result["server_cpu_s_per_s"].values())
    windows = result["params"]["windows"]
    for name in WINDOWS:
        assert positive(windows[name]["calls_per_s"]), (name, windows[name])
        assert positive(windows[name]["wall_s"]), (name, windows[name])
    assert windows["idle_after"] is None  # --quick skips the second idle window
    # the fixed-rate phase ran at its rate with at most 50 viewers
    fixed = result["fixed_rate"]
    assert fixed["rate"] == 5000 and fixed["viewers"] == 20
    assert fixed["delay_ms"]["n"] > 0
    # the healthy viewers were never dropped, gapped or closed
    ok = result["others_unaffected"]
    assert ok["healthy_gaps"] == 0 and ok["healthy_closed"] == 0
    assert sum(s["frames"] for s in ok["per_second"]) == delay["n"]
    # the slow viewer got its hello and read at one message a second; whatever the server
    # did to it is reported
    slow = result["slow_viewer"]
    assert slow["enabled"] and slow["read_every_s"] == 1.0
    assert slow["messages"].get("hello") == 1
    assert slow["window_messages"] >= 1
    assert slow["events_lost_in_gaps"] == sum(b - a + 1 for a, b in slow["gaps"])
    assert slow["close_code"] in (None, 1013)
    # the pagemap endpoint over HTTP (--quick: a 1 GiB instance)
    pm = result["pagemap"]
    assert pm["preset"] == "teaching-1g" and pm["buckets"] == 1024
    assert pm["pages"] == 262143
    assert positive(pm["ms"]["median"]) and len(pm["ms"]["each"]) == pm["runs"] == 3
    assert result["targets"] == {"p99_delay_ms": 100.0, "calls_ratio": 0.8}


def test_stream_refuses_unknown_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "stream", "--nosuch"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "unknown option --nosuch" in out.stderr
