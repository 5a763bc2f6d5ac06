"""Smoke test of the durability benchmark: ``python -m bench durability --json --quick``
runs and prints every figure, and its restart with snapshots replays fewer calls than the
one without, to the same digests.  No timing is asserted."""

from __future__ import annotations

from tests.bench_run import run_bench


def test_durability_quick_json_has_every_figure() -> None:
    result = run_bench("durability", timeout=300)  # (its logs go to stderr)
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
