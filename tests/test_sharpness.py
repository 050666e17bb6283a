"""`linflow.sharpness`: the top Hessian eigenvalue against dense Hessians and closed forms."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import data_task, eps, random_orthogonal, whitened_task

import linflow


def dense_sharpness(loss_fn, params):
    """Top eigenvalue of the dense `jax.hessian` of `loss_fn` (one initialisation), per start."""

    def top(single):
        flat, unravel = jax.flatten_util.ravel_pytree(single)
        return jnp.linalg.eigvalsh(jax.hessian(lambda f: loss_fn(unravel(f)))(flat))[-1]

    return jax.jit(jax.vmap(top))(params)


def balanced_minimum(task, depth, hidden=5):
    r"""$W_l = R_l S^{1/N} R_{l-1}^\top$ with $W_N \cdots W_1 = \Sigma_{yx}$ (whitened task)."""
    U, s, V = task.modes()
    k = s.shape[0]
    frames = [V]
    frames += [random_orthogonal(jax.random.key(10 + l), hidden)[:, :k] for l in range(1, depth)]
    frames += [U]
    root = s ** (1.0 / depth)
    return tuple((frames[l + 1] * root[None, :]) @ frames[l].T for l in range(depth))


@pytest.fixture(scope="module")
def nets():
    """Two starts of depths 1-3 on a non-whitened task (m = 3 != d = 4), with the dense
    Hessian's top eigenvalue in float64."""
    task = data_task(jax.random.key(0), n=10, d=4, m=3)
    found = {}
    for hidden in [(), (5,), (5, 3)]:
        weights = linflow.init_weights(jax.random.key(1), task, hidden, scale=0.7, batch=(2,))
        found[len(hidden) + 1] = weights, dense_sharpness(lambda w: linflow.loss(task, w), weights)
    return task, found


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_matches_dense_hessian(nets, precision, depth):
    dtype, _ = precision
    task, found = nets  # float64: the task is cast to the weights' dtype
    weights, expected = found[depth]
    top = linflow.sharpness(task, tuple(w.astype(dtype) for w in weights))
    assert top.shape == (2,) and top.dtype == dtype
    np.testing.assert_allclose(top, expected, rtol=300 * eps(dtype))


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_balanced_minimum_closed_form(depth):
    """At a balanced global minimum of a whitened task, lambda_max = N s_1^(2 - 2/N)."""
    task = whitened_task(jax.random.key(2), m=3, d=4, s=(3.0, 2.0, 1.0))
    weights = balanced_minimum(task, depth)
    np.testing.assert_allclose(linflow.product(weights), task.sigma_yx, atol=1e-12)
    expected = depth * 3.0 ** (2 - 2 / depth)
    np.testing.assert_allclose(linflow.sharpness(task, weights), expected, rtol=1e-12)
    if depth == 2:  # the derivation, checked once against the dense Hessian
        batched = tuple(w[None] for w in weights)
        dense = dense_sharpness(lambda w: linflow.loss(task, w), batched)
        np.testing.assert_allclose(dense, expected, rtol=1e-12)


def test_saddle_at_zero():
    """At W = 0 a two-layer Hessian has eigenvalues +-s_i: the largest, s_1, not the largest |.|."""
    task = whitened_task(jax.random.key(3), m=3, d=4, s=(3.0, 2.0, 1.0))
    weights = (jnp.zeros((5, 4)), jnp.zeros((3, 5)))
    np.testing.assert_allclose(linflow.sharpness(task, weights), 3.0, rtol=1e-12)


@pytest.fixture(scope="module")
def two_layer():
    task = data_task(jax.random.key(4), n=10, d=4, m=3)
    return task, linflow.init_weights(jax.random.key(5), task, 5, scale=0.6, batch=(2,))


def test_jit_vmap_grad(two_layer):
    task, weights = two_layer
    top = linflow.sharpness(task, weights)
    np.testing.assert_allclose(jax.jit(linflow.sharpness)(task, weights), top, rtol=1e-12)
    by_vmap = jax.vmap(lambda w: linflow.sharpness(task, w))(weights)
    np.testing.assert_allclose(by_vmap, top, rtol=1e-10)
    # Hellmann-Feynman: d lambda_max = v^T dH v, against the gradient of the dense eigenvalue.
    grads = jax.grad(lambda w: jnp.sum(linflow.sharpness(task, w)))(weights)
    expected = jax.grad(
        lambda w: jnp.sum(dense_sharpness(lambda single: linflow.loss(task, single), w))
    )(weights)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-7, atol=1e-9)


def test_trajectory_and_objective(two_layer):
    task, weights = two_layer
    traj = linflow.gradient_descent(task, weights, steps=20, lr=0.05, save_every=10)
    tops = traj.sharpness(task)
    assert tops.shape == (3, 2)
    np.testing.assert_allclose(
        tops[-1], linflow.sharpness(task, tuple(w[-1] for w in traj.weights)), rtol=1e-12
    )
    # The same loss as a general objective: Hessian-vector products from jax.jvp of jax.grad.
    objective = linflow.Objective(lambda w: linflow.loss(task, w), batch=(2,))
    np.testing.assert_allclose(linflow.sharpness(objective, weights), tops[0], rtol=1e-10)
    traj = linflow.gradient_descent(objective, weights, steps=20, lr=0.05, save_every=10)
    np.testing.assert_allclose(traj.sharpness(objective), tops, rtol=1e-10)


def test_iterations_and_key(two_layer):
    task, weights = two_layer
    top = linflow.sharpness(task, weights)
    few = linflow.sharpness(task, weights, iterations=3)
    assert np.all(few <= top * (1 + 1e-12))  # Ritz values approach lambda_max from below
    other = linflow.sharpness(task, weights, key=jax.random.key(7))
    np.testing.assert_allclose(other, top, rtol=1e-10)


@jax.custom_vjp
def _reverse_only(x):
    return jnp.sum(x**2)


def _callback_gradient(x, g):
    """A backward pass through NumPy: differentiable once (grad), but not twice (no jvp)."""
    shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
    return (g * jax.pure_callback(lambda y: 2 * np.asarray(y), shape, x),)


_reverse_only.defvjp(lambda x: (_reverse_only(x), x), _callback_gradient)


def test_bad_input(two_layer):
    task, weights = two_layer
    with pytest.raises(ValueError, match=r"sharpness\(\.\.\., iterations=0\)"):
        linflow.sharpness(task, weights, iterations=0)
    with pytest.raises(ValueError, match=r"sharpness\(\.\.\., iterations=True\)"):
        linflow.sharpness(task, weights, iterations=True)
    with pytest.raises(ValueError, match=r"sharpness\(task=\.\.\.\) must be a linflow.Task"):
        linflow.sharpness("task", weights)
    with pytest.raises(ValueError, match=r"sharpness\(\.\.\., weights=\.\.\.\)"):
        linflow.sharpness(task, (weights[0][..., :3], weights[1]))
    objective = linflow.Objective(lambda p: _reverse_only(p["w"]))
    linflow.gradient_descent(objective, {"w": jnp.ones(3)}, steps=1, lr=0.1)  # has a gradient
    with pytest.raises(ValueError, match=r"sharpness\(task=\.\.\.\).*no Hessian-vector product"):
        linflow.sharpness(objective, {"w": jnp.ones(3)})


def test_edge_of_stability_benchmark_quick(tmp_path):
    from benchmarks import edge_of_stability

    payload = edge_of_stability.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "edge_of_stability_quick.png").stat().st_size > 0
    saved = (tmp_path / "edge_of_stability_quick.json").read_text()
    assert saved == json.dumps(payload, indent=1)
    (res,) = payload["results"].values()
    assert res["flattest_minimum"] < res["flow_minimum"]
    (run,) = res["runs"]
    assert not run["diverged"] and run["loss_rises"] > 0
    assert abs(run["plateau_over_edge"] - 1) < 0.1  # the sharpness hovers at 2/eta
