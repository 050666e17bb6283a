import jax
import jax.numpy as jnp
import numpy as np
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
