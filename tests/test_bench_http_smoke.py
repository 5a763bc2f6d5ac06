"""Smoke test of the HTTP benchmark: ``python -m bench http --json --quick`` starts a real
uvicorn on 127.0.0.1, drives it from client processes and prints every figure.  No timing
is asserted: only that each figure exists and is a positive number."""

from __future__ import annotations

import math

from tests.bench_run import positive, run_bench

SCALARS = (
    "bare_rps",
    "alloc_free_rps",
    "ratio",
    "batch_calls_per_s",
    "batch_alloc_lookup_calls_per_s",
    "batch_deactivate_free_calls_per_s",
    "batch_core_calls_per_s",
    "batch_core_share",
    "batch_compact_calls_per_s",
    "batch_compact_alloc_lookup_calls_per_s",
    "batch_compact_deactivate_free_calls_per_s",
    "batch_compact_core_share",
    "batch_compact_server_cpu_us",
    "batch_kernel_cpu_us",
    "boot_s",
)


def test_http_quick_json_has_every_figure() -> None:
    result = run_bench("http", timeout=60)
    for key in SCALARS:
        assert positive(result[key]), (key, result[key])
    # the ratio is the two medians divided (one run each with --quick)
    assert math.isclose(result["ratio"], result["alloc_free_rps"] / result["bare_rps"])
    # the server's own CPU per call is its CPU per call less the kernel's (it may come out
    # below zero on a busy machine, so only the arithmetic is checked)
    assert math.isclose(
        result["batch_compact_lab_cpu_us"],
        result["batch_compact_server_cpu_us"] - result["batch_kernel_cpu_us"],
    )
    # --quick sends 5 000-call batches and boots a 1 GiB instance B
    assert result["batch_calls"] == 5000
    assert result["boot_memory"] == "1GiB"
    lat = result["latency_ms"]
    assert set(lat) == {"during_boot", "idle", "interval_ms"}
    assert positive(lat["interval_ms"])
    for kind in ("during_boot", "idle"):
        assert set(lat[kind]) == {"p50", "p99", "max", "n", "p99_corrected"}
        assert all(positive(v) for v in lat[kind].values()), (kind, lat[kind])
        s = lat[kind]
        assert s["p50"] <= s["p99"] <= s["max"]
        # the correction only adds latencies below the sample they come from
        assert s["p99_corrected"] <= s["max"]
    # --quick takes 200 idle samples, every one of them kept
    assert lat["idle"]["n"] == 200
    assert result["targets"] == {
        "ratio": 0.8,
        "batch_compact_calls_per_s": 200000,
        "p99_ms_during_other_users_batch": 50,
    }
    # small calls on another instance were answered while the other user's batch ran
    contended = result["during_other_users_batch"]
    assert contended["batch_calls"] == 20_000 and contended["latency_ms"]["n"] >= 1
    s = contended["latency_ms"]
    assert s["p50"] <= s["p99"] <= s["max"]
