"""Smoke test of the class benchmark: ``python -m bench students --json --quick`` enrols 40
students in a SQLite database, starts real servers (token mode, the open lab with and
without a database) and drives them from client processes.  No timing is asserted: only
that every figure exists, is sane, and that no request of the mix failed."""

from __future__ import annotations

import math

from tests.bench_run import positive, run_bench

PHASES = ("flat_out", "paced", "flat_out_open", "flat_out_open_nodb")


def test_students_quick_json_has_every_figure() -> None:
    result = run_bench("students", timeout=240)
    assert result["students"] == 40
    assert result["memory"] == "64MiB"
    assert result["sqlite_synchronous"] == "NORMAL"
    assert "flat_out_token_full" not in result  # FULL runs only without --quick
    for name in PHASES:
        phase = result[name]
        # every request of the mix was valid and answered 2xx, every batch item too
        assert phase["errors"] == 0, (name, phase["first_error"])
        assert phase["first_error"] == ""
        for key in (
            "calls_per_s",
            "requests_per_s",
            "calls",
            "requests",
            "wall_s",
            "server_cpu_ms_per_request",
        ):
            assert positive(phase[key]), (name, key, phase[key])
        # a batch counts its calls: at least one call per single-call request
        assert phase["calls"] >= phase["latency_ms"]["single"]["n"]
        lat = phase["latency_ms"]
        assert set(lat) == {"all", "single", "batch", "view"}
        assert lat["all"]["n"] == phase["requests"]
        assert lat["all"]["n"] == sum(lat[k]["n"] for k in ("single", "batch", "view"))
        assert lat["single"]["n"] > 0
        for kind, s in lat.items():
            if s["n"]:
                assert 0 < s["p50"] <= s["p99"] <= s["max"], (name, kind, s)
        per_student = phase["student_calls_per_s"]
        assert 0 <= per_student["min"] <= per_student["max"] <= phase["calls_per_s"]
    assert result["paced"]["think_ms"] == 100.0 and result["flat_out"]["think_ms"] == 0.0
    assert math.isclose(
        result["durability_cost_ratio"],
        result["flat_out_open_nodb"]["calls_per_s"] / result["flat_out_open"]["calls_per_s"],
        abs_tol=0.01,
    )
    assert math.isclose(
        result["durability_cpu_ratio"],
        result["flat_out_open"]["server_cpu_ms_per_request"]
        / result["flat_out_open_nodb"]["server_cpu_ms_per_request"],
        abs_tol=0.01,
    )
