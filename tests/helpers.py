"""Shared test helpers: tolerant tree comparison and small tasks built once per session."""

import jax
import jax.numpy as jnp
import numpy as np

import linflow

# name -> (dtype of the inputs, whether x64 is on): the three ways users meet linflow.
PRECISIONS = {
    "float32": ("float32", False),
    "float32-x64": ("float32", True),
    "float64": ("float64", True),
}


def eps(dtype) -> float:
    """Machine epsilon of `dtype` (tolerances are multiples of it, or of its square root)."""
    return float(np.finfo(np.dtype(dtype)).eps)


def tree_allclose(x, y, *, rtol=1e-8, atol=1e-10) -> bool:
    """Whether two pytrees of arrays have the same structure and close leaves."""
    lx, tx = jax.tree.flatten(x)
    ly, ty = jax.tree.flatten(y)
    return tx == ty and all(
        np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=rtol, atol=atol)
        for a, b in zip(lx, ly)
    )


def max_abs_diff(x, y) -> float:
    return max(
        float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y))
    )


def random_orthogonal(key, n):
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n)))
    return q * jnp.sign(jnp.diagonal(r))[None, :]


def whitened_task(key, m=3, d=4, s=(3.0, 2.0, 1.0)):
    """$\\Sigma_{yx} = U S V^\\top$, chosen singular values, random modes; $\\Sigma_{xx} = I$."""
    ku, kv = jax.random.split(key)
    k = min(m, d)
    S = jnp.zeros((m, d)).at[jnp.arange(k), jnp.arange(k)].set(jnp.asarray(s))
    return linflow.Task(random_orthogonal(ku, m) @ S @ random_orthogonal(kv, d).T)


def data_task(key, n=12, d=4, m=3, normalize="mean"):
    """A task from correlated random data (non-whitened, $m \\ne d$)."""
    kx, kw, ke, km = jax.random.split(key, 4)
    mix = jnp.eye(d) + 0.5 * jax.random.normal(km, (d, d))
    X = jax.random.normal(kx, (n, d)) @ mix
    Y = X @ jax.random.normal(kw, (d, m)) + 0.1 * jax.random.normal(ke, (n, m))
    return linflow.Task.from_data(X, Y, normalize=normalize)


# Keyword arguments that make each scheme valid on a (m=3, d=4) task with hidden width 3.
SCHEME_KWARGS = {
    "gaussian": {},
    "aligned": {},
    "balanced": {},
    "lambda_balanced": {"lam": 0.5},
}
