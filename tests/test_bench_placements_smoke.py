"""Smoke test of the placements benchmark: ``python -m bench placements --json --quick``
drives 8 instances on each placement (in-process, one and two worker processes, Ray).
No timing is asserted: only that every figure exists and is sane, and that every
placement ended with the same digests (the same calls make the same machines)."""

from __future__ import annotations

import importlib.util

from tests.bench_run import positive, run_bench
from tests.conftest import missing

PLACEMENTS = ("inprocess", "workers_1", "workers_2", "ray_2")


def test_placements_quick_json_has_every_figure() -> None:
    if importlib.util.find_spec("ray") is None:
        missing("Ray is not installed: pip install -e '.[dev,ray]' (make test does)")
    result = run_bench("placements", timeout=300)
    assert result["instances"] == 8 and result["quick"] is True
    assert result["same_digests"] is True
    for name in PLACEMENTS:
        r = result[name]
        assert r["calls"] == result["instances"] * result["batches"] * result["batch"], name
        assert positive(r["calls_per_s"]) and positive(r["wall_s"]), name
        lat = r["call_us"]
        assert 0 < lat["p50"] <= lat["p99"] and lat["n"] == 300, (name, lat)
        assert positive(r["cpu_us_per_call"]["lab"]), name
        if name == "inprocess":
            assert r["cpu_us_per_call"]["hosts"] == 0  # its machines are in the lab's process
        else:  # the kernel work happened in the host processes
            assert positive(r["cpu_us_per_call"]["hosts"]), name
    assert positive(result["speedup_2_vs_1"]) and positive(result["speedup_2_vs_1_from_cpu"])
