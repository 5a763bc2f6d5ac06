"""Smoke test of the observing benchmark: ``python -m bench ops --json --quick`` drives
the app in process with and without ``app.api.observe`` and prints every figure.  No
timing is asserted: only that each figure exists and the arithmetic between them holds."""

from __future__ import annotations

import math

from tests.bench_run import positive, run_bench


def test_ops_quick_json_has_every_figure() -> None:
    result = run_bench("ops", timeout=120)
    for key in ("bare_us", "observed_us", "logged_us", "middleware_alone_observe_us"):
        assert positive(result[key]), (key, result[key])
    assert math.isclose(result["observe_overhead_us"], result["observed_us"] - result["bare_us"])
    assert math.isclose(result["log_overhead_us"], result["logged_us"] - result["bare_us"])
    assert math.isclose(result["log_overhead_share"], result["log_overhead_us"] / result["bare_us"])
    p = result["params"]
    assert (p["requests"], p["runs"], p["quick"]) == (300, 2, True)
    assert {k: len(v) for k, v in p["each_us"].items()} == {"bare": 2, "observed": 2, "logged": 2}
