"""The command-line demo, the plotting functions and the built-in Saxe hierarchy task."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linflow
import linflow.cli
import linflow.plot
import linflow.tasks


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
