import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SCHEME_KWARGS, whitened_task

import linflow


@pytest.fixture(scope="module")
def task():
    return whitened_task(jax.random.key(0))  # m = 3, d = 4, s = (3, 2, 1)


def balance(weights):
    return [
        jnp.swapaxes(up, -1, -2) @ up - low @ jnp.swapaxes(low, -1, -2)
        for low, up in zip(weights[:-1], weights[1:])
    ]


@pytest.mark.parametrize("scheme", linflow.SCHEMES)
@pytest.mark.parametrize("hidden, batch", [(3, ()), ((3, 3), (5,)), (3, (2, 3))])
def test_shapes_and_dtype(task, scheme, hidden, batch):
    weights = linflow.init_weights(
        jax.random.key(1),
        task,
        hidden,
        scheme=scheme,
        scale=0.5,
        batch=batch,
        **SCHEME_KWARGS[scheme],
    )
    widths = (4, *np.atleast_1d(hidden), 3)
    assert [w.shape for w in weights] == [
        (*batch, widths[l + 1], widths[l]) for l in range(len(widths) - 1)
    ]
    assert all(w.dtype == task.sigma_yx.dtype for w in weights)
    # Different batch entries are different draws.
    if batch:
        assert not np.allclose(
            weights[0].reshape(-1, *weights[0].shape[-2:])[0],
            weights[0].reshape(-1, *weights[0].shape[-2:])[1],
        )


def test_gaussian_statistics(task):
    (w1, w2) = linflow.init_weights(jax.random.key(2), task, 50, scale=0.1, batch=(200,))
    assert abs(float(jnp.std(w1)) - 0.1) < 0.002 and abs(float(jnp.mean(w2))) < 0.002


@pytest.mark.parametrize("hidden", [3, 6, (5, 4), (2, 7, 3)])
def test_balanced_conserved_quantity_vanishes(task, hidden):
    weights = linflow.init_weights(
        jax.random.key(3), task, hidden, scheme="balanced", scale=0.8, batch=(4,)
    )
    for b in balance(weights):
        assert np.abs(b).max() < 1e-12
    assert np.abs(weights[0]).max() > 0.1  # not trivially zero


@pytest.mark.parametrize("lam, hidden", [(0.5, 3), (0.5, (3, 3)), (-0.3, 3), (-0.3, 4), (0.7, 2)])
def test_lambda_balanced(task, lam, hidden):
    weights = linflow.init_weights(
        jax.random.key(4), task, hidden, scheme="lambda_balanced", lam=lam, scale=0.6, batch=(3,)
    )
    h = np.atleast_1d(hidden)[0]
    for b in balance(weights):
        assert np.allclose(b, lam * np.eye(h), atol=1e-12)


def test_lambda_balanced_size_conditions(task):
    with pytest.raises(ValueError, match="lambda > 0 needs hidden width h <= output dimension"):
        linflow.init_weights(jax.random.key(0), task, 4, scheme="lambda_balanced", lam=0.5)
    with pytest.raises(ValueError, match="lambda < 0 needs hidden width h <= input dimension"):
        linflow.init_weights(jax.random.key(0), task, 5, scheme="lambda_balanced", lam=-0.5)
    with pytest.raises(ValueError, match="equal hidden widths"):
        linflow.init_weights(jax.random.key(0), task, (2, 3), scheme="lambda_balanced", lam=0.5)


@pytest.mark.parametrize("hidden", [3, 8, (5, 6)])
def test_aligned_structure(task, hidden):
    """$W_1 = R D V^\\top$, $W_2 = U D R^\\top$: the product is $U D^N V^\\top$."""
    U, s, V = task.modes()
    scale = jnp.array([0.3, 0.2, 0.1])
    weights = linflow.init_weights(
        jax.random.key(5), task, hidden, scheme="aligned", scale=scale, batch=(2,)
    )
    depth = len(weights)
    w = linflow.product(weights)
    assert np.allclose(U.T @ w @ V, np.diag(np.asarray(scale) ** depth)[None], atol=1e-14)
    a = weights[0] @ V  # columns a^i = a_i r^i with orthonormal r^i
    assert np.allclose(
        jnp.swapaxes(a, -1, -2) @ a, np.diag(np.asarray(scale) ** 2)[None], atol=1e-14
    )
    for b in balance(weights):
        assert np.abs(b).max() < 1e-14


def test_aligned_with_lambda(task):
    w1, w2 = linflow.init_weights(jax.random.key(6), task, 3, scheme="aligned", scale=0.2, lam=0.3)
    U, _, V = task.modes()
    assert np.allclose(jnp.diag(U.T @ w2 @ w2.T @ U), 0.2**2 + 0.3)
    assert np.allclose(jnp.diag(V.T @ w1.T @ w1 @ V), 0.2**2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scheme": "orthogonal"}, "scheme='orthogonal'"),
        ({"scale": -1.0}, "non-negative"),
        ({"scale": jnp.ones(3), "scheme": "gaussian"}, "must be a scalar"),
        ({"scale": jnp.ones(2), "scheme": "aligned"}, "shape \\(r,\\)"),
        ({"lam": 0.5, "scheme": "balanced"}, "lam=...\\) only applies"),
        ({"scale": jnp.nan}, "NaN"),
        ({"scheme": "aligned", "scale": 0.1, "lam": -0.5}, "too small for this negative lambda"),
    ],
)
def test_rejects_bad_arguments(task, kwargs, match):
    with pytest.raises(ValueError, match=match):
        linflow.init_weights(jax.random.key(0), task, 3, **kwargs)


def test_rejects_bad_hidden(task):
    with pytest.raises(ValueError, match="hidden"):
        linflow.init_weights(jax.random.key(0), task, 0)
    with pytest.raises(ValueError, match="hidden"):
        linflow.init_weights(jax.random.key(0), task, (3, 2.5))
