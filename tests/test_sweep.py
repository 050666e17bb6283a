"""`linflow run` and `linflow plot`: config errors, resumable chunked output, sharding."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import linflow
import linflow.cli
from linflow._sweep import ConfigError, _read_npz, validate_config

CONFIG = """
[task]
name = "saxe_hierarchy"

[network]
hidden = 4

[init]
schemes = ["gaussian"]
scales = [0.1]
batch = 12
seed = 3

[engine]
name = "gradient_descent"
lr = 0.05
steps = 200
save_every = 25

[output]
chunk = 4
save = ["loss", "mode_strengths", "learning_times", "weights"]
"""
ROOT = Path(linflow.__file__).resolve().parents[1]


def _subprocess(code: str, **env):
    """Run `code` in a fresh Python that imports this checkout of linflow."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=environ, capture_output=True, text=True
    )


def _chunks(out: Path) -> dict:
    return {p.name: _read_npz(p) for p in sorted(out.glob("chunk-*.npz"))}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "sweep.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory):
    """An uninterrupted run on one device, through the command line."""
    out = tmp_path_factory.mktemp("reference")
    assert linflow.cli.main(["run", str(config), "--out", str(out), "--no-progress"]) == 0
    return out


def test_run_writes_every_chunk(reference):
    chunks = _chunks(reference)
    assert sorted(chunks) == [f"chunk-000-0000{j}.npz" for j in range(3)]
    first = chunks["chunk-000-00000.npz"]
    assert first["loss"].shape == (9, 4) and first["mode_strengths"].shape == (9, 4, 4)
    assert first["W1"].shape == (9, 4, 4, 4) and first["learning_times"].shape == (4, 4)
    # Different chunks hold different initialisations, and every network learns the task.
    assert not np.allclose(first["W1"][0], chunks["chunk-000-00001.npz"]["W1"][0])
    (result,) = linflow.load_sweep(reference)
    assert result["complete"] and result["loss"].shape == (9, 12)
    assert np.all(result["loss"][-1] < 0.05 * result["loss"][0])
    np.testing.assert_allclose(result["singular_values"], [7**0.5, 3**0.5, 1, 1])
    assert not list(reference.glob("*.tmp"))


def test_killed_sweep_resumes_to_the_same_result(config, reference, tmp_path):
    out = tmp_path / "killed"
    # The sweep kills itself (SIGKILL: no cleanup at all) right after its first chunk.
    killed = _subprocess(
        f"""
        import os, signal
        from linflow._sweep import run_sweep
        run_sweep({str(config)!r}, {str(out)!r}, progress=False,
                  on_chunk=lambda job, path: os.kill(os.getpid(), signal.SIGKILL))
        """
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sorted(_chunks(out)) == ["chunk-000-00000.npz"]
    first = out / "chunk-000-00000.npz"
    written = first.stat().st_mtime_ns
    (out / "chunk-000-00001.npz.abc.tmp").write_bytes(b"half a file")  # as if killed mid-write
    done = linflow.run_sweep(config, out, progress=False)
    assert done == {
        "computed": ["chunk-000-00001.npz", "chunk-000-00002.npz"],
        "skipped": ["chunk-000-00000.npz"],
    }
    assert first.stat().st_mtime_ns == written  # not recomputed
    assert not list(out.glob("*.tmp"))
    resumed, uninterrupted = _chunks(out), _chunks(reference)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        for key in uninterrupted[name]:
            np.testing.assert_array_equal(resumed[name][key], uninterrupted[name][key])


def test_sharded_over_four_devices_equals_one_device(config, reference, tmp_path):
    out = tmp_path / "sharded"
    sharded = _subprocess(
        f"""
        import jax
        from linflow._sweep import _shard, run_sweep
        assert jax.device_count() == 4, jax.devices()
        weights = _shard((jax.numpy.ones((3, 2, 2)),), 4)
        assert len(weights[0].sharding.device_set) == 4 and weights[0].shape == (4, 2, 2)
        run_sweep({str(config)!r}, {str(out)!r}, progress=False)
        """,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
    )
    assert sharded.returncode == 0, sharded.stderr
    results, single = _chunks(out), _chunks(reference)
    assert results.keys() == single.keys()
    for name in results:
        for key in single[name]:
            np.testing.assert_allclose(
                results[name][key], single[name][key], rtol=1e-12, atol=1e-14
            )


def test_plot_writes_figures(reference, tmp_path):
    assert linflow.cli.main(["plot", str(reference), "--out", str(tmp_path)]) == 0
    for name in ("loss.png", "modes.png", "learning_times.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_other_config_in_same_folder_is_refused(config, reference):
    other = validate_config({**_raw(), "init": {**_raw()["init"], "seed": 4}})
    with pytest.raises(ValueError, match="holds the results of a different config"):
        linflow.run_sweep(other, reference, progress=False)


def _raw() -> dict:
    import tomllib

    return tomllib.loads(CONFIG)


@pytest.mark.parametrize(
    "section, change, message",
    [
        ("init", {"scales": None}, r"missing key \[init\] scales"),
        ("init", {"scale": [0.1]}, r"unknown key \[init\] scale "),
        ("init", {"batch": "12"}, r"\[init\] batch must be int, got '12'"),
        ("init", {"scales": [0.1, -1.0]}, r"\[init\] scales must be a non-empty list of positive"),
        ("init", {"schemes": ["orthogonal"]}, r"\[init\] schemes must be a non-empty list of"),
        ("engine", {"name": "adam"}, r"\[engine\] name must be one of"),
        ("engine", {"lr": None}, r"\[engine\] lr must be > 0"),
        ("engine", {"name": "exact_flow"}, r"\[times\] t1 must be > 0"),
        ("output", {"save": ["loss", "hessian"]}, r"\[output\] save must list some of"),
        ("network", {"hidden": [4, 0]}, r"\[network\] hidden must be a positive int"),
        ("task", {"name": "random"}, r"\[task\] singular_values is needed"),
        ("colour", {}, r"unknown section \[colour\]"),
    ],
)
def test_config_errors_name_the_key(section, change, message):
    raw = _raw()
    table = {k: v for k, v in {**raw.get(section, {}), **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        validate_config({**raw, section: table}, where="sweep.toml")


def test_cli_reports_a_bad_config(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(CONFIG.replace("batch = 12", "batch = 12\nbatchsize = 3"))
    assert linflow.cli.main(["run", str(path)]) == 2
    error = capsys.readouterr().err
    assert "bad.toml: unknown key [init] batchsize" in error
    # A setting the config schema accepts but the network cannot carry: h = 8 > m = 7.
    path.write_text(
        CONFIG.replace('"gaussian"', '"lambda_balanced"')
        .replace("hidden = 4", "hidden = 8")
        .replace("seed = 3", "seed = 3\nlam = 1.0")
    )
    assert linflow.cli.main(["run", str(path), "--out", str(tmp_path / "lam")]) == 2
    assert "init_weights(..., lam=1.0): lambda > 0 needs hidden width" in capsys.readouterr().err
    # No chunk was written, so the corrected config may use the same folder.
    assert not list((tmp_path / "lam").glob("chunk-*"))
    fixed = validate_config(_raw())
    fixed["init"]["batch"] = 4
    assert linflow.run_sweep(fixed, tmp_path / "lam", progress=False)["computed"]
    path.write_text("[task\nname = 1")
    assert linflow.cli.main(["run", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert json.loads(json.dumps(validate_config(_raw())))["output"]["chunk"] == 4
