"""Quick-mode smoke tests of benchmarks/matrix_completion.py and benchmarks/irmae.py."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matrix_completion_quick(tmp_path):
    payload = load("matrix_completion").main(["--quick", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "matrix_completion_quick.json").read_text()) == payload
    assert (tmp_path / "matrix_completion_quick.png").stat().st_size > 0
    results = payload["results"]
    assert set(results) == {"nuclear norm", "depth 1", "depth 3"}
    n = len(payload["config"]["n_obs"])
    for res in results.values():
        assert len(res["error"]) == len(res["effective_rank"]) == n
        assert np.all(np.isfinite(res["error"])) and np.all(np.asarray(res["effective_rank"]) >= 1)
    # depth 1 only fits the observed entries: the unobserved ones stay at the tiny initial values
    np.testing.assert_allclose(results["depth 1"]["error"], 1.0, atol=1e-2)


def test_irmae_quick(tmp_path):
    pytest.importorskip("sklearn")
    payload = load("irmae").main(["--quick", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "irmae_quick.json").read_text()) == payload
    for suffix in ("spectra", "interpolation"):
        assert (tmp_path / f"irmae_quick_{suffix}.png").stat().st_size > 0
    for res in payload["results"].values():
        spectrum = np.asarray(res["spectrum"])
        assert spectrum.shape == (payload["config"]["latent"],)
        assert spectrum[0] == pytest.approx(1.0) and np.all(np.diff(spectrum) <= 1e-6)
        assert np.isfinite(res["test_mse"]) and res["test_mse"] < 0.25
