"""General objectives in gradient_descent and gradient_flow, checked against the Task fast path."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import max_abs_diff

import linflow

TS = jnp.array([0.0, 0.5, 2.0, 5.0])


def per_sample_loss(weights, data):
    """$\\frac{1}{2n}\\sum_i \\|y_i - W_2 W_1 x_i\\|^2$ straight from the data (no statistics)."""
    X, Y = data
    w1, w2 = weights
    return 0.5 * jnp.mean(jnp.sum((Y - X @ w1.T @ w2.T) ** 2, axis=1))


@pytest.fixture(scope="module")
def objective(task):
    data = jax.tree.map(lambda a: jnp.broadcast_to(a, (2, *a.shape)), (task.X, task.Y))
    return linflow.Objective(per_sample_loss, data, batch=(2,))


def test_descent_objective_equals_task_path(task, weights0, objective):
    kw = {"steps": 40, "lr": 0.05, "save_every": 4}
    fast = linflow.gradient_descent(task, weights0, **kw)
    general = linflow.gradient_descent(objective, weights0, **kw)
    assert isinstance(general.weights, tuple) and general.weights[0].shape == (11, 2, 5, 4)
    np.testing.assert_array_equal(general.ts, fast.ts)
    assert max_abs_diff(general.weights, fast.weights) < 1e-12  # rounding only
    assert max_abs_diff(fast.weights[0][-1], weights0[0]) > 1e-2  # and the weights moved
    np.testing.assert_allclose(objective.value(weights0), linflow.loss(task, weights0), rtol=1e-12)
    assert not bool(general.stats["diverged"].any()) and general.stats["diverged"].shape == (2,)


def test_flow_objective_equals_task_path(task, weights0, objective):
    tol = {"rtol": 1e-10, "atol": 1e-12}
    fast = linflow.gradient_flow(task, weights0, TS, tau=2.0, **tol)
    general = linflow.gradient_flow(objective, weights0, TS, tau=2.0, **tol)
    assert max_abs_diff(general.weights, fast.weights) < 1e-8
    assert max_abs_diff(fast.weights[0][-1], weights0[0]) > 1e-2


def test_pytree_params_per_run_data_and_optax(task):
    """Dict params, one target per run, Adam: each run equals the same run done alone."""
    targets = jnp.stack([task.sigma_yx, -2.0 * task.sigma_yx])  # (2, m, d)

    def loss_fn(params, target):
        return 0.5 * jnp.sum((params["b"] @ params["a"] - target) ** 2)

    params0 = {
        "a": 0.3 * jax.random.normal(jax.random.key(2), (2, 2, 4)),
        "b": 0.3 * jax.random.normal(jax.random.key(3), (2, 3, 2)),
    }
    kw = {"steps": 30, "optimizer": optax.adam(0.05), "save_every": 10}
    both = linflow.gradient_descent(
        linflow.Objective(loss_fn, targets, batch_ndim=1), params0, **kw
    )
    assert set(both.weights) == {"a", "b"} and both.weights["a"].shape == (4, 2, 2, 4)
    for i in range(2):  # an unbatched objective with the run's own data
        alone = linflow.gradient_descent(
            linflow.Objective(loss_fn, targets[i]), jax.tree.map(lambda x, i=i: x[i], params0), **kw
        )
        assert (
            max_abs_diff(jax.tree.map(lambda x, i=i: x[:, i], both.weights), alone.weights) < 1e-12
        )
    final = jax.vmap(loss_fn)(jax.tree.map(lambda x: x[-1], both.weights), targets)
    assert bool(jnp.all(final < jax.vmap(loss_fn)(params0, targets)))


def test_objective_errors(task, weights0, objective):
    with pytest.raises(ValueError, match="callable"):
        linflow.Objective(3.0)
    with pytest.raises(ValueError, match="batch_ndim"):
        linflow.Objective(per_sample_loss, batch_ndim=-1)
    with pytest.raises(ValueError, match="same 1 leading batch axes"):
        linflow.gradient_descent(
            linflow.Objective(lambda p: jnp.sum(p[0]) + jnp.sum(p[1]), batch_ndim=1),
            (jnp.ones((2, 3)), jnp.ones((3, 3))),
            steps=1,
            lr=0.1,
        )
    with pytest.raises(ValueError, match="scalar per initialisation"):
        linflow.gradient_flow(lambda p: p**2, jnp.ones(3), TS)
    with pytest.raises(ValueError, match="batch_size"):
        linflow.gradient_descent(objective, weights0, steps=1, lr=0.1, batch_size=2)
    with pytest.raises(ValueError, match="linflow.Task, a linflow.Objective or a callable"):
        linflow.gradient_descent(3.0, weights0, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="diverged"):
        linflow.gradient_descent(lambda p: -jnp.exp(p @ p), jnp.ones(2), steps=50, lr=1.0)
