import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import max_abs_diff, tree_allclose
from scipy.integrate import solve_ivp

import linflow

TS = jnp.array([0.0, 0.5, 2.0, 5.0])


@pytest.fixture(scope="module")
def flow(task, weights0):
    return linflow.gradient_flow(task, weights0, TS, tau=2.0, rtol=1e-10, atol=1e-12)


def scipy_flow(task, w1, w2, tau):
    """Independent integration of Saxe et al. (2014)'s two-layer flow with SciPy's DOP853."""
    sxx, syx = np.asarray(task.sigma_xx), np.asarray(task.sigma_yx)
    h1 = w1.size

    def rhs(t, y):
        a, b = y[:h1].reshape(w1.shape), y[h1:].reshape(w2.shape)
        e = syx - b @ a @ sxx
        return np.concatenate([(b.T @ e).ravel(), (e @ a.T).ravel()]) / tau

    y0 = np.concatenate([np.ravel(w1), np.ravel(w2)])
    sol = solve_ivp(
        rhs, (0, float(TS[-1])), y0, t_eval=np.asarray(TS), method="DOP853", rtol=1e-12, atol=1e-14
    )
    return sol.y[:h1].T.reshape(-1, *w1.shape), sol.y[h1:].T.reshape(-1, *w2.shape)


def test_matches_scipy_on_non_whitened_task(task, weights0, flow):
    for i in range(2):
        w1, w2 = scipy_flow(task, np.asarray(weights0[0][i]), np.asarray(weights0[1][i]), 2.0)
        assert np.abs(flow.weights[0][:, i] - w1).max() < 1e-6
        assert np.abs(flow.weights[1][:, i] - w2).max() < 1e-6
    assert tree_allclose(tuple(w[0] for w in flow.weights), weights0, rtol=0, atol=0)
    assert np.array_equal(flow.ts, TS)


def test_balance_is_conserved(flow):
    (b,) = flow.balance()
    assert np.abs(b - b[:1]).max() < 1e-8
    assert np.abs(b[0]).max() > 0.1  # an unbalanced start: the test is not trivial


def test_deep_flow_conserves_every_layer_balance(task):
    weights0 = linflow.init_weights(jax.random.key(2), task, (3, 2), scale=0.7)
    traj = linflow.gradient_flow(task, weights0, TS, rtol=1e-10, atol=1e-12)
    for b in traj.balance():
        assert np.abs(b - b[:1]).max() < 1e-8


def test_loss_decreases(task, flow):
    loss = flow.loss(task)
    assert loss.shape == (4, 2)
    assert np.all(np.diff(loss, axis=0) < 0)


def test_constant_step_solver(task, weights0, flow):
    fixed = linflow.gradient_flow(
        task,
        weights0,
        TS,
        tau=2.0,
        solver=diffrax.Heun(),
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=0.01,
    )
    assert max_abs_diff(fixed.weights, flow.weights) < 1e-3


def test_solver_failure_raises_unless_told_not_to(task, weights0):
    with pytest.raises(RuntimeError, match="maximum number of solver steps"):
        linflow.gradient_flow(task, weights0, TS, max_steps=3)
    traj = linflow.gradient_flow(task, weights0, TS, max_steps=3, throw=False)
    assert traj.stats["result"] != diffrax.RESULTS.successful


def test_progress_bar(task, weights0, capsys):
    linflow.gradient_flow(task, weights0, TS, progress=True)
    assert "%" in capsys.readouterr().err


@pytest.mark.parametrize(
    "ts, kwargs, match",
    [
        (jnp.array([0.0, 2.0, 1.0]), {}, "strictly increasing"),
        (jnp.array([0.0, 1.0, 1.0]), {}, "strictly increasing"),
        (jnp.array([-1.0, 1.0]), {}, "must be >= 0"),
        (jnp.array([0.0, jnp.nan]), {}, "NaN"),
        (jnp.array([0.0, jnp.inf]), {}, "NaN or inf"),
        (jnp.ones((2, 2)), {}, "1-D"),
        (TS, {"tau": 0.0}, "tau=0.0\\) must be a finite positive"),
        (TS, {"tau": -1.0}, "tau=-1.0\\) must be a finite positive"),
        (TS, {"stepsize_controller": diffrax.ConstantStepSize()}, "needs dt0"),
    ],
)
def test_rejects_bad_arguments(task, weights0, ts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        linflow.gradient_flow(task, weights0, ts, **kwargs)


def test_implicit_solver_solves_each_initialisation(task, weights0, flow):
    """With an implicit solver each initialisation is its own solve (own steps, own result)."""
    traj = linflow.gradient_flow(
        task, weights0, TS, tau=2.0, solver=diffrax.Kvaerno5(), rtol=1e-9, atol=1e-11
    )
    assert traj.stats["num_steps"].shape == weights0[0].shape[:1]
    assert traj.stats["result"]._value.shape == weights0[0].shape[:1]
    assert max_abs_diff(traj.weights, flow.weights) < 1e-7
    objective = linflow.Objective(
        lambda w, c: c * linflow.loss(task, w), jnp.array([1.0, 2.0]), batch=(2,)
    )
    start = tuple(w[:2] for w in weights0)
    ts = jnp.array([0.0, 1.0])
    implicit = linflow.gradient_flow(
        objective, start, ts, solver=diffrax.Kvaerno5(), rtol=1e-9, atol=1e-11
    )
    explicit = linflow.gradient_flow(objective, start, ts, rtol=1e-9, atol=1e-11)
    assert max_abs_diff(implicit.weights, explicit.weights) < 1e-7


def test_constant_steps_that_blow_up_raise_naming_the_step(task, weights0):
    ts = jnp.array([0.0, 20.0])
    options = {"stepsize_controller": diffrax.ConstantStepSize(), "dt0": 2.0}
    with pytest.raises(RuntimeError, match="inf or NaN .* dt0 is too large"):
        linflow.gradient_flow(task, weights0, ts, **options)
    traj = linflow.gradient_flow(task, weights0, ts, throw=False, **options)
    assert traj.stats["diverged"].shape == (weights0[0].shape[0],)
    assert np.all(traj.stats["diverged"])
