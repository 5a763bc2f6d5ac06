"""Smoke test of the engine benchmark: ``python -m bench engine --json --quick`` runs and
prints every figure.  No timing is asserted: only that each figure exists and is a
positive number."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench_run import positive, run_bench

ROOT = Path(__file__).resolve().parent.parent

SIZED = ("bytes_per_page", "rss_peak_bytes", "bytes_per_page_touched", "boot_s")
SCALARS = ("mixed_calls_per_s", "mixed_calls_per_s_direct", "mixed_calls_per_s_recorded")
TARGETS = (
    "bytes_per_page_4M",
    "boot_s_16M",
    "rss_16M_bytes",
    "mixed_calls_per_s",
    "batch_10k_ms",
    "compiled_speedup",
    "compiled_batch_10k_ms",
    "ratio_call",
    "ratio_recorded",
)


def test_engine_quick_json_has_every_figure() -> None:
    result = run_bench("engine", timeout=120)
    sizes = [str(n) for n in result["params"]["sizes"]]
    # --quick boots 64K and 256K pages (2^16 and 2^18)
    assert sizes == ["65536", "262144"]
    assert result["params"]["clock"] == "wall"  # --cpu-time not given
    for key in SIZED:
        assert list(result[key]) == sizes, key
        assert all(positive(v) for v in result[key].values()), (key, result[key])
    for key in SCALARS:
        assert positive(result[key]), (key, result[key])
    # one run per path (quick): each ratio is that run's rate over the direct run's
    ratios = result["ratio_to_direct"]
    assert ratios["call"] == result["mixed_calls_per_s"] / result["mixed_calls_per_s_direct"]
    assert set(ratios) == {"call", "recorded"}
    assert set(result["batch_10k_ms"]) == {"fresh", "scarce"}
    assert all(positive(v) for v in result["batch_10k_ms"].values())
    assert set(result["targets"]) == set(TARGETS)
    assert all(positive(v) for v in result["targets"].values())
    # the stream is ~25/30/25/20 %: every kind of call was made (20 000 calls in all)
    mix = result["params"]["mixed_mix"]
    assert sum(mix.values()) == 20_000
    assert all(n > 0 for n in mix.values())
    # scarce: 20 pages per colour after the batch -> 20*1024 + 10000 = 30480 before it
    assert result["params"]["scarce_free_before_batch"] == 30480
    # the compiled core's figures, side by side, or why there are none (no build)
    compiled = result["compiled"]
    if "unavailable" in compiled:
        assert (
            "make core-compiled" in compiled["unavailable"] or "rebuild" in compiled["unavailable"]
        )
    else:
        for key in SCALARS:
            assert positive(compiled[key]), (key, compiled[key])
            assert compiled["speedup"][key] == compiled[key] / result[key]
        assert set(compiled["batch_10k_ms"]) == {"fresh", "scarce"}
        assert set(compiled["ratio_to_direct"]) == {"call", "recorded"}
        assert all(positive(v) for v in compiled["speedup"].values())


def test_bench_unknown_name_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "nosuch"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "no benchmark named" in out.stderr


def test_lifecycle_quick_json_has_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "lifecycle", "--json", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("mixed2_calls_per_s_direct", "mixed2_calls_per_s", "core1_calls_per_s_direct"):
        assert positive(result[key]), (key, result[key])
    rec = result["pageout_recovery"]
    # --quick recovers a 256K-page machine; the daemon must have reached target2
    assert rec["pages"] == 262144
    assert rec["after"]["free"] + rec["after"]["cache"] >= rec["target2"]
    assert rec["passes"] > 0


def test_engine_refuses_unknown_options_naming_cpu_time(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import engine

    assert engine.main(["--fast"]) == 2
    assert "--cpu-time" in capsys.readouterr().err
