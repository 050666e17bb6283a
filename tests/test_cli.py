"""The command-line demo, the plotting functions and the built-in Saxe hierarchy task."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linflow
import linflow.cli
import linflow.plot
import linflow.tasks
from linflow._config import SCHEMA


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert linflow.cli.main(["demo", "--out", str(out)]) == 0
    return out, json.loads((out / "summary.json").read_text())


def _distinct_order(s, times):
    """Pairs (i, j) with s_i clearly above s_j must have t_i < t_j."""
    return all(
        times[i] < times[j]
        for i in range(len(s))
        for j in range(len(s))
        if s[i] > s[j] * (1 + 1e-6)
    )


def test_demo_writes_files(demo):
    out, summary = demo
    for name in ("modes.png", "loss.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    np.testing.assert_allclose(summary["task"]["singular_values"], [7**0.5, 3**0.5, 1.0, 1.0])
    assert set(summary["networks"]) == {"deep_aligned", "deep_random", "shallow"}


def test_demo_engines_agree(demo):
    _, summary = demo
    s_max = max(summary["task"]["singular_values"])
    for name, network in summary["networks"].items():
        disagreement = network["max_disagreement"]
        assert disagreement["gd_vs_flow"]["product"] / s_max < 0.1, name
        assert disagreement["gd_vs_flow"]["mode_strengths"] / s_max < 0.1, name
        if "flow_vs_exact" in disagreement:
            assert disagreement["flow_vs_exact"]["product"] < 1e-6, name
            assert disagreement["flow_vs_exact"]["mode_strengths"] < 1e-6, name
    assert "flow_vs_exact" in summary["networks"]["deep_aligned"]["max_disagreement"]
    assert summary["networks"]["deep_random"]["engines"]["exact"].startswith("no closed form: ")


def test_demo_half_times_match_time_to_learn(demo):
    _, summary = demo
    deep = summary["networks"]["deep_aligned"]
    predicted = deep["predicted_half_times"]["values"]
    for engine in ("flow", "exact"):
        np.testing.assert_allclose(deep["engines"][engine]["half_times"], predicted, rtol=0.02)


def test_demo_stage_like_learning(demo):
    _, summary = demo
    s = summary["task"]["singular_values"]
    for name in ("deep_aligned", "deep_random"):
        for engine in ("gd", "flow"):
            times = summary["networks"][name]["engines"][engine]["half_times"]
            assert _distinct_order(s, times), (name, engine, times)
    # A shallow network learns every mode at the same rate: t = tau ln 2 from b0 ≈ 0.
    times = summary["networks"]["shallow"]["engines"]["exact"]["half_times"]
    np.testing.assert_allclose(times, np.log(2) * summary["settings"]["tau"], rtol=0.01)


def test_cli_needs_a_command():
    with pytest.raises(SystemExit):
        linflow.cli.main([])


def test_saxe_hierarchy():
    task, items, properties = linflow.tasks.saxe_hierarchy()
    assert task.sigma_yx.shape == (len(properties), len(items)) == (7, 4)
    np.testing.assert_allclose(task.sigma_xx, np.eye(4))
    np.testing.assert_allclose(task.modes()[1], [7**0.5, 3**0.5, 1.0, 1.0], rtol=1e-12)
    # Canary grows, moves and flies.
    canary = task.sigma_yx[:, items.index("Canary")]
    assert [p for p, has in zip(properties, canary) if has] == ["Grow", "Move", "Fly"]
    assert linflow.tasks.saxe_hierarchy(jnp.float32)[0].sigma_yx.dtype == jnp.float32


def test_plots_render(tmp_path):
    from matplotlib.figure import Figure

    task = linflow.Task(jnp.diag(jnp.array([3.0, 1.0])))
    weights0 = linflow.init_weights(
        jax.random.key(0), task, 4, scheme="aligned", scale=0.1, batch=(2,)
    )
    ts = jnp.linspace(0.0, 5.0, 21)
    trajectories = {
        "flow": linflow.gradient_flow(task, weights0, ts),
        "exact": linflow.exact_flow(task, weights0, ts),
    }
    u = linflow.saxe_deep(ts[:, None], task.modes()[1][None, :], 0.01)
    figure = Figure()
    left, right = figure.subplots(1, 2)
    ax = linflow.plot.mode_strengths(
        trajectories, task, analytic={"saxe_deep": (ts, u)}, ax=left, title="modes"
    )
    assert ax is left and ax.get_title() == "modes"
    assert linflow.plot.loss(trajectories, task, ax=right) is right
    figure.savefig(tmp_path / "plots.png")
    assert (tmp_path / "plots.png").stat().st_size > 0


def test_plot_new_figure(tmp_path):
    import matplotlib.pyplot as plt

    task = linflow.Task(jnp.diag(jnp.array([2.0, 1.0])))
    weights0 = linflow.init_weights(jax.random.key(1), task, (), scheme="gaussian", scale=0.1)
    traj = linflow.exact_flow(task, weights0, jnp.linspace(0.0, 3.0, 11))
    ax = linflow.plot.loss({"exact": traj}, task, logy=False)
    ax.figure.savefig(tmp_path / "loss.png")
    plt.close(ax.figure)
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_import_does_not_load_matplotlib():
    code = "import linflow, sys; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------
# Errors, help and version of the command line


def _cases(tmp_path: Path) -> dict:
    """name -> (argv, what the one-line error says)."""
    good = tmp_path / "sweep.toml"
    good.write_text(
        '[task]\nname = "saxe_hierarchy"\n[network]\nhidden = 2\n'
        '[init]\nschemes = ["balanced"]\nscales = [0.1]\nbatch = 2\n'
        '[engine]\nname = "gradient_flow"\n[times]\nt1 = 1.0\n'
    )
    bad = tmp_path / "bad.toml"
    bad.write_text('[task]\nname = "saxe_hierarchy"\n')
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    plain = tmp_path / "sweep.cfg"
    plain.write_text("")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)))
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    not_results = tmp_path / "photos"
    not_results.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "sweep.json").write_text('{"config": ')
    return {
        "missing config": (["run", str(tmp_path / "nope.toml")], "nope.toml: No such file"),
        "folder as config": (["run", str(folder), "--out", "x"], "folder.toml: is a folder"),
        "config without .toml": (["run", str(plain)], "sweep.cfg: the results folder is named"),
        "binary config": (["run", str(binary)], "binary.toml: not a text file"),
        "bad config": (["run", str(bad)], "bad.toml: missing key [network] hidden"),
        "out at a file": (["run", str(good), "--out", str(a_file)], "file.txt is a file"),
        "out under a file": (
            ["run", str(good), "--out", str(a_file / "results")],
            "file.txt/results: a part of this path is a file",
        ),
        "bad part": (["run", str(good), "--part", "0/2"], "--part 0/2: must be K/N"),
        "bad memory": (["run", str(good), "--memory", "lots"], "--memory lots: must be a size"),
        "plot a non-results folder": (["plot", str(not_results)], "no sweep.json there"),
        "plot a missing folder": (["plot", str(tmp_path / "gone")], "gone'): no such folder"),
        "plot a corrupt sweep.json": (["plot", str(corrupt)], "sweep.json: not a valid sweep"),
        "demo out at a file": (["demo", "--out", str(a_file)], "file.txt is a file, not a folder"),
    }


CASES = [
    "missing config",
    "folder as config",
    "config without .toml",
    "binary config",
    "bad config",
    "out at a file",
    "out under a file",
    "bad part",
    "bad memory",
    "plot a non-results folder",
    "plot a missing folder",
    "plot a corrupt sweep.json",
    "demo out at a file",
]


@pytest.mark.parametrize("case", CASES)
def test_cli_errors_are_one_line_naming_the_file(tmp_path, capsys, case):
    argv, message = _cases(tmp_path)[case]
    command = argv[0]
    assert linflow.cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"linflow {command}: ") and captured.err.count("\n") == 1
    assert message in captured.err, captured.err


def test_cli_error_in_a_fresh_process_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "linflow", "run", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    usage = subprocess.run([sys.executable, "-m", "linflow", "run"], capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1
    assert "the following arguments are required: config" in usage.stderr


def test_cli_unwritable_folder(tmp_path, capsys, monkeypatch):
    """No permission to create or to write in the folder (simulated: tests may run as root)."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert linflow.cli.main(["demo", "--out", str(tmp_path / "ro")]) == 2
    assert "ro: no permission to write in this folder" in capsys.readouterr().err

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    from linflow._folder import make_folder

    with pytest.raises(ValueError, match="new: no permission to create this folder"):
        make_folder(tmp_path / "new")


def test_help_and_version_do_not_import_jax():
    code = """
        import sys
        from linflow.cli import main
        for argv in (["--help"], ["run", "--help"], ["--version"]):
            try:
                main(argv)
            except SystemExit as exit:
                assert exit.code == 0
        assert "jax" not in sys.modules, "jax was imported"
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"linflow {linflow.__version__}" in result.stdout
    for section, keys in SCHEMA.items():
        assert f"[{section}]" in result.stdout
        for key in keys:
            assert key in result.stdout
    assert '[["loss", "mode_strengths", "learning_times"]]' in result.stdout  # a default
    assert "SLURM_ARRAY_TASK_ID" in result.stdout


def test_import_is_lazy_and_complete():
    code = "import linflow, sys; assert 'jax' not in sys.modules; print(len(linflow.__all__))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in linflow.__all__:
        assert getattr(linflow, name) is not None
        assert name in dir(linflow)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        linflow.nope  # noqa: B018
