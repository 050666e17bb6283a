import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import data_task

import linflow


def make_trajectory(task, hidden=(5, 2), T=3, batch=(2,)):
    weights = linflow.init_weights(jax.random.key(0), task, hidden, scale=0.6, batch=(T, *batch))
    return linflow.Trajectory(ts=jnp.arange(T, dtype=float), weights=weights)


def test_diagnostics_against_numpy():
    task = data_task(jax.random.key(1))
    traj = make_trajectory(task)
    w1, w2, w3 = (np.asarray(w) for w in traj.weights)
    W = w3 @ w2 @ w1
    assert traj.depth == 3 and traj.batch_shape == (2,)
    assert np.allclose(traj.product(), W)
    X, Y = np.asarray(task.X), np.asarray(task.Y)
    residual = Y[None, None] - np.einsum("tbmd,nd->tbnm", W, X)
    assert np.allclose(traj.loss(task), 0.5 * np.mean(np.sum(residual**2, -1), -1))
    U, s, V = (np.asarray(x) for x in task.modes())
    assert np.allclose(traj.mode_strengths(task), np.einsum("mk,tbmd,dk->tbk", U, W, V))
    sv = np.linalg.svd(W @ np.asarray(task.sigma_xx), compute_uv=False)
    assert np.allclose(traj.singular_values(task), sv)
    b1, b2 = traj.balance()
    assert np.allclose(b1, np.swapaxes(w2, -1, -2) @ w2 - w1 @ np.swapaxes(w1, -1, -2))
    assert np.allclose(b2, np.swapaxes(w3, -1, -2) @ w3 - w2 @ np.swapaxes(w2, -1, -2))


def test_mode_strengths_of_the_optimum_are_the_singular_values():
    task = linflow.Task(jnp.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]))
    traj = linflow.Trajectory(ts=jnp.zeros(1), weights=(task.sigma_yx[None],))
    assert np.allclose(traj.mode_strengths(task), [[2.0, 1.0]])
    assert np.allclose(traj.singular_values(task), [[2.0, 1.0]])
    assert np.allclose(traj.loss(task), 0.0)


def test_time_axis_unit_and_indexing():
    task = data_task(jax.random.key(1))
    w0 = linflow.init_weights(jax.random.key(0), task, 3, scale=0.3, batch=(2,))
    descent = linflow.gradient_descent(task, w0, steps=40, lr=0.05, save_every=10)
    assert descent.unit == "steps" and np.isclose(descent.lr, 0.05) and descent.tau is None
    np.testing.assert_array_equal(descent.ts, [0, 10, 20, 30, 40])
    flow = linflow.gradient_flow(task, w0, jnp.array([0.0, 1.0, 2.0]), tau=20.0)
    assert flow.unit == "time" and np.isclose(flow.tau, 20.0) and flow.lr is None
    last = descent[-1]
    assert last.ts.shape == () and float(last.ts) == 40.0 and last.batch_shape == (2,)
    np.testing.assert_array_equal(last.product(), descent.product()[-1])
    np.testing.assert_allclose(last.loss(task), descent.loss(task)[-1], rtol=1e-14)
    every_other = descent[::2]
    np.testing.assert_array_equal(every_other.ts, [0, 20, 40])
    np.testing.assert_array_equal(every_other.weights[1], descent.weights[1][::2])
    assert len(every_other) == 3
    np.testing.assert_array_equal(every_other.stats["diverged"], descent.stats["diverged"])
    late = descent[descent.ts > 15]
    np.testing.assert_array_equal(late.ts, [20, 30, 40])
    # Learning times of a gradient-descent trajectory are in steps.
    times = descent.learning_times(task)
    assert np.all((times >= 0) & (times <= 40) | np.isinf(times))


def test_trajectory_rejects_bad_units_and_indexing_a_single_save():
    with pytest.raises(ValueError, match="unit='epochs'"):
        linflow.Trajectory(ts=jnp.zeros(1), weights=(jnp.zeros((1, 2, 2)),), unit="epochs")
    single = linflow.Trajectory(ts=jnp.zeros(3), weights=(jnp.zeros((3, 2, 2)),))[-1]
    with pytest.raises(ValueError, match="one save"):
        single[0]
    with pytest.raises(ValueError, match="needs a time axis"):
        single.learning_times(linflow.Task(jnp.eye(2)))
