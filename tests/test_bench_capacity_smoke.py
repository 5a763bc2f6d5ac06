"""Smoke test of the capacity benchmark: ``python -m bench capacity --json --quick`` boots
a few 1 GiB instances in a child and prints what each holds.  No figure is asserted
beyond being there and the arithmetic between them."""

from __future__ import annotations

from tests.bench_run import positive, run_bench


def test_capacity_quick_json_has_every_figure() -> None:
    result = run_bench("capacity", timeout=120)
    for key in ("mb_per_instance_at_boot", "mb_per_instance_after_session", "host_memory_gb"):
        assert positive(result[key]), (key, result[key])
    # a teaching-1g machine manages 2^18 - 1 pages (its first page is 0x1000: pfn 1)
    assert result["pages_per_instance"] == 262_143
    # a session allocates and touches pages: an instance never shrinks below its boot
    assert result["mb_per_instance_after_session"] >= result["mb_per_instance_at_boot"]
    per_page = result["mb_per_instance_after_session"] * 1e6 / result["pages_per_instance"]
    assert abs(per_page - result["bytes_per_page_after_session"]) < 1e-6 * per_page + 1e-9
    half = result["host_memory_gb"] * 1e9 / 2  # the host's bytes, as a float: +- 1 instance
    assert abs(result["instances_the_page_budget_allows"] - half / (80 * 262_143)) <= 1
