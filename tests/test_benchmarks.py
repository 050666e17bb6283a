"""The benchmark suite runs end to end at its smallest sizes and writes a complete results JSON.

Only completion and the structure of the output are checked: never a timing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._common import by_peer, measure_peers
from benchmarks.table import main as table_main
from benchmarks.table import markdown

ROOT = Path(__file__).resolve().parents[1]
TIMED = ("gd_small", "flow", "wide", "modes", "implicit")
BOTH_DTYPES = ("gd_small", "flow")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JAX_NUMPY_RANK_PROMOTION": "raise",  # the engines under the suite obey the package rule
    }
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "--size", "test", "--out", str(out), "--note", "ci"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=900,
    )
    return out, json.loads(out.read_text())


def _blocks(case):
    """`(dtype, peers)` of a case: one per dtype for (a) and (b), else the case's own."""
    if "dtypes" in case:
        return [(dtype, block["peers"]) for dtype, block in case["dtypes"].items()]
    return [(None, case["peers"])]


def test_report_header(report):
    path, r = report
    assert r["size_setting"] == "test" and r["note"] == "ci"
    for key in ("slug", "cpu_model", "cpu_count", "jax_devices", "jax_backend"):
        assert r["machine"][key]
    for package in ("jax", "jaxlib", "numpy", "scipy", "torch", "diffrax"):
        assert isinstance(r["versions"][package], str)
    assert set(r["workloads"]) == {*TIMED, "agreement"}
    for workload in r["workloads"].values():
        assert len(workload["load_average_1m"]) == 2 and workload["started_local"]
    assert path.with_suffix(".png").stat().st_size > 0


@pytest.mark.parametrize("name", TIMED)
def test_timed_workloads(report, name):
    workload = report[1]["workloads"][name]
    assert workload["cases"]
    for case in workload["cases"]:
        blocks = _blocks(case)
        assert [dtype for dtype, _ in blocks] == (
            ["float32", "float64"] if name in BOTH_DTYPES else [None]
        )
        for _, peers in blocks:
            linflow_timing = peers["linflow"]
            for key in ("time_s", "median_s", "compile_s", "throughput", "ratio_vs_linflow"):
                assert linflow_timing[key] >= 0
            assert linflow_timing["ratio_vs_linflow"] == 1.0
            assert len(peers) >= 3
            for timing in peers.values():
                assert "time_s" in timing or "status" in timing


def test_peers_compute_the_same_thing(report):
    """Each peer ends where linflow ends in the same dtype (a wrong peer would make the ratios
    meaningless); GD peers agree to rounding, the flows to their tolerances."""
    workloads = report[1]["workloads"]
    for name in ("gd_small", "wide", "flow"):
        for case in workloads[name]["cases"]:
            for dtype, peers in _blocks(case):
                bound = 1e-12 if (name, dtype) == ("gd_small", "float64") else 1e-4
                for timing in peers.values():
                    assert timing.get("max_abs_diff_vs_linflow", 0.0) < bound
    for timing in workloads["modes"]["cases"][0]["peers"].values():
        assert timing.get("max_abs_diff_vs_closed_form", 0.0) < 1e-3
    scipy = workloads["flow"]["cases"][0]["dtypes"]["float64"]["peers"]["scipy_solve_ivp"]
    assert scipy["extrapolated"] is True


@pytest.mark.parametrize("name", BOTH_DTYPES)
def test_float32_and_float64_side_by_side(report, name):
    """Both dtypes really ran in their precision: same start, results apart by float32
    rounding (zero if both had run in one precision), and a time ratio per peer."""
    for case in report[1]["workloads"][name]["cases"]:
        assert 1e-12 < case["linflow_float32_vs_float64_max_abs_diff"] < 1e-3
        ratios = case["float64_over_float32"]
        assert "linflow" in ratios and len(ratios) >= 3 and all(r > 0 for r in ratios.values())


def test_implicit_workload(report):
    """Kvaerno5 per initialisation agrees with Tsit5; the old whole-batch solve is measured at
    the small batches and extrapolated (marked) to the workload's batches."""
    workload = report[1]["workloads"]["implicit"]
    points = workload["whole_batch"]["points"]
    assert [p["B"] for p in points] == [1, 2]
    width = workload["cases"][0]["sizes"]["d"]
    for point in points:
        assert point["max_abs_diff_vs_tsit5"] < 1e-5
        assert point["jacobian_bytes"] == (point["B"] * 2 * width**2) ** 2 * 8
    assert workload["whole_batch"]["growth_exponent"] is not None
    for case in workload["cases"]:
        assert case["max_abs_diff_kvaerno5_vs_tsit5"] < 1e-5
        old = case["peers"]["whole_batch_kvaerno5"]
        assert old["extrapolated"] is True and old["time_s"] > 0
        assert case["peers"]["linflow"]["num_steps_max"] > 0


def test_agreement_and_table(report, tmp_path):
    path, r = report
    for dtype in ("float32", "float64"):
        errors = r["workloads"]["agreement"]["by_dtype"][dtype]
        assert errors["flow_vs_exact_flow"] < 1e-4
        assert errors["flow_vs_saxe_deep"] < 1e-4
        assert 0.8 < errors["gd_vs_exact_flow"]["loglog_slope"] < 1.2
    text = markdown(r)
    assert text.count("| sizes |") == 4 and "(e) agreement" in text
    assert text.count("|  | float64 |") == sum(len(r["workloads"][n]["cases"]) for n in BOTH_DTYPES)
    assert "(f) implicit" in text and "extrapolated" in text
    out = tmp_path / "TABLES.md"
    assert table_main([str(path), "--markdown-out", str(out)]) == 0
    assert out.read_text() == text + "\n"


def test_measure_peers_one_after_the_other():
    """Each peer's warm-up and repeats run back to back; by_peer orders dtypes within a peer."""
    order = []
    calls = {name: (lambda name=name: order.append(name), lambda out: out) for name in "ab"}
    timed = measure_peers(calls, repeats=3, budget_s=1e9)
    assert order == ["a"] * 4 + ["b"] * 4
    assert [timed[name][0]["repeats"] for name in "ab"] == [3, 3]
    keys = [("float32", "a"), ("float32", "b"), ("float64", "a"), ("float64", "b")]
    assert list(by_peer(dict.fromkeys(keys))) == [keys[0], keys[2], keys[1], keys[3]]
