import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import data_task, tree_allclose

import linflow


def per_sample_loss(task, weights):
    """$\\frac{1}{2n}\\sum_i \\|y_i - W x_i\\|^2$ (or the sum), straight from the data."""
    residual = task.Y - task.X @ linflow.product(weights).T
    c = 1.0 / task.X.shape[0] if task.normalize == "mean" else 1.0
    return 0.5 * c * jnp.sum(residual**2)


@pytest.mark.parametrize("normalize", ["mean", "sum"])
@pytest.mark.parametrize("hidden", [(), (5,), (5, 2), (3, 6, 4)])
def test_loss_and_gradients_match_autodiff_of_per_sample_loss(hidden, normalize):
    task = data_task(jax.random.key(0), normalize=normalize)
    weights = linflow.init_weights(jax.random.key(1), task, hidden, scale=0.7)
    assert np.isclose(linflow.loss(task, weights), per_sample_loss(task, weights), rtol=1e-12)
    expected = jax.grad(lambda w: per_sample_loss(task, w))(weights)
    assert tree_allclose(linflow.gradients(task, weights), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("whitened", [False, True])
@pytest.mark.parametrize("hidden", [(), (5,), (4, 2), (3, 6, 4)])
def test_batched_gradients_equal_per_initialisation(hidden, whitened):
    # Batched weights take the unrolled CPU products (and the [W, I] GEMM for the error),
    # a single network the plain matmuls: both must give the same gradients.
    task = data_task(jax.random.key(2))
    if whitened:
        task = linflow.Task(task.sigma_yx)
    weights = linflow.init_weights(jax.random.key(3), task, hidden, scale=0.5, batch=(3, 2))
    grads = linflow.gradients(task, weights)
    assert linflow.loss(task, weights).shape == (3, 2)
    for i, j in [(0, 0), (2, 1)]:
        single = tuple(w[i, j] for w in weights)
        expected = linflow.gradients(task, single)
        assert tree_allclose(tuple(g[i, j] for g in grads), expected, rtol=1e-12, atol=1e-14)
        if not whitened:
            assert np.isclose(linflow.loss(task, weights)[i, j], per_sample_loss(task, single))


def test_realisable_loss_is_zero_at_optimum():
    task = linflow.Task(
        jnp.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), jnp.diag(jnp.array([2.0, 1.0]))
    )
    assert np.isclose(linflow.loss(task, (task.optimum,)), 0.0)
    assert tree_allclose(linflow.gradients(task, (task.optimum,)), (jnp.zeros((3, 2)),), atol=1e-14)


def test_rejects_weights_that_do_not_chain():
    task = data_task(jax.random.key(4))
    with pytest.raises(ValueError, match="shapes don't chain"):
        linflow.loss(task, (jnp.ones((5, 4)), jnp.ones((3, 4))))
    with pytest.raises(ValueError, match="W_1 has 3 columns"):
        linflow.gradients(task, (jnp.ones((5, 3)), jnp.ones((3, 5))))
    with pytest.raises(ValueError, match="W_2 has 2 rows"):
        linflow.loss(task, (jnp.ones((5, 4)), jnp.ones((2, 5))))
    with pytest.raises(ValueError, match="same batch shape"):
        linflow.loss(task, (jnp.ones((2, 5, 4)), jnp.ones((3, 5))))
    with pytest.raises(ValueError, match="single array"):
        linflow.loss(task, jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        linflow.loss(task, (jnp.full((3, 4), jnp.nan),))


def test_plain_batched_products_equal_unrolled(monkeypatch):
    # Off the CPU (or past UNROLL_MAX) the batched products are plain matmuls with the error
    # formed directly: the same gradients as the unrolled CPU forms.
    task = data_task(jax.random.key(4))
    weights = linflow.init_weights(jax.random.key(5), task, (6, 5, 2), scale=0.5, batch=(4,))
    unrolled = linflow.gradients(task, weights)
    monkeypatch.setattr("linflow._loss.UNROLL_MAX", 0)
    assert tree_allclose(linflow.gradients(task, weights), unrolled, rtol=1e-12, atol=1e-14)
