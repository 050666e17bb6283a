"""The benchmark suite runs end to end at its smallest sizes and writes a complete results JSON.

Only completion and the structure of the output are checked: never a timing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.table import markdown

ROOT = Path(__file__).resolve().parents[1]
TIMED = ("gd_small", "flow", "wide", "modes")


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
        timeout=600,
    )
    return out, json.loads(out.read_text())


def test_report_header(report):
    path, r = report
    assert r["size_setting"] == "test" and r["note"] == "ci"
    for key in ("slug", "cpu_model", "cpu_count", "jax_devices", "jax_backend"):
        assert r["machine"][key]
    for package in ("jax", "jaxlib", "numpy", "scipy", "torch", "diffrax"):
        assert isinstance(r["versions"][package], str)
    assert set(r["workloads"]) == {*TIMED, "agreement"}
    assert path.with_suffix(".png").stat().st_size > 0


@pytest.mark.parametrize("name", TIMED)
def test_timed_workloads(report, name):
    workload = report[1]["workloads"][name]
    assert workload["cases"]
    for case in workload["cases"]:
        linflow_timing = case["peers"]["linflow"]
        for key in ("time_s", "compile_s", "throughput", "ratio_vs_linflow"):
            assert linflow_timing[key] >= 0
        assert linflow_timing["ratio_vs_linflow"] == 1.0
        assert len(case["peers"]) >= 3
        for timing in case["peers"].values():
            assert "time_s" in timing or timing == {"status": "not installed"}


def test_peers_compute_the_same_thing(report):
    """Each peer ends where linflow ends (a wrong peer would make the ratios meaningless)."""
    workloads = report[1]["workloads"]
    for name in ("gd_small", "wide", "flow"):
        for case in workloads[name]["cases"]:
            for timing in case["peers"].values():
                assert timing.get("max_abs_diff_vs_linflow", 0.0) < 1e-3
    for timing in workloads["modes"]["cases"][0]["peers"].values():
        assert timing.get("max_abs_diff_vs_closed_form", 0.0) < 1e-3
    assert workloads["flow"]["cases"][0]["peers"]["scipy_solve_ivp"]["extrapolated"] is True


def test_agreement_and_table(report):
    r = report[1]
    for dtype in ("float32", "float64"):
        errors = r["workloads"]["agreement"]["by_dtype"][dtype]
        assert errors["flow_vs_exact_flow"] < 1e-4
        assert errors["flow_vs_saxe_deep"] < 1e-4
        assert 0.8 < errors["gd_vs_exact_flow"]["loglog_slope"] < 1.2
    text = markdown(r)
    assert text.count("| sizes |") == len(TIMED) and "(e) agreement" in text
