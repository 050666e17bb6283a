r"""Matrix completion and sensing: a low-rank matrix seen through a few linear measurements.

Deep matrix factorisation $W = W_N \cdots W_1$ trained from a small initialisation on the
observed entries only is biased towards low rank, more strongly with depth (Arora, Cohen, Hu
& Luo 2019, "Implicit regularization in deep matrix factorization"); the baseline is the
minimum nuclear-norm matrix that fits the observations.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._checks import check_finite, check_positive
from ._loss import product
from ._objective import Objective, vmap_n


def low_rank_matrix(key, rows: int, cols: int, rank: int, *, dtype=None) -> Array:
    r"""A random rank-$r$ matrix $M = A B^\top / \sqrt r$, entries of unit variance.

    **Arguments:** `key`; `rows`, `cols`, `rank` positive ints; `dtype` (default float).

    **Returns:** $M$, shape `(rows, cols)`.

    **Raises:** `ValueError` if a size is not a positive int or `rank > min(rows, cols)`.

    **Example:**

    ```python
    M = linflow.low_rank_matrix(jax.random.key(0), 30, 30, 3)
    ```
    """
    for name, n in (("rows", rows), ("cols", cols), ("rank", rank)):
        if not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"low_rank_matrix(..., {name}={n!r}) must be a positive int.")
    if rank > min(rows, cols):
        raise ValueError(f"low_rank_matrix(..., rank={rank}) must be <= min(rows, cols).")
    dtype = jnp.result_type(float) if dtype is None else dtype
    ka, kb = jax.random.split(key)
    a = jax.random.normal(ka, (rows, rank), dtype)
    b = jax.random.normal(kb, (cols, rank), dtype)
    return a @ b.T / math.sqrt(rank)  # a Python float keeps the dtype


def observation_mask(key, shape, n_obs: int, *, dtype=None) -> Array:
    r"""A 0/1 mask with exactly `n_obs` ones at uniformly random positions.

    **Arguments:** `key`; `shape` `(rows, cols)`; `n_obs` in `[1, rows * cols]`.

    **Returns:** shape `(rows, cols)`, floating.

    **Raises:** `ValueError` if `n_obs` is out of range.

    **Example:**

    ```python
    mask = linflow.observation_mask(jax.random.key(1), (30, 30), 200)
    ```
    """
    rows, cols = shape
    if not isinstance(n_obs, int | np.integer) or not 1 <= n_obs <= rows * cols:
        raise ValueError(f"observation_mask(..., n_obs={n_obs!r}) must be in [1, {rows * cols}].")
    dtype = jnp.result_type(float) if dtype is None else dtype
    chosen = jax.random.permutation(key, rows * cols)[:n_obs]
    return jnp.zeros(rows * cols, dtype).at[chosen].set(1.0).reshape(rows, cols)


def observed_loss(w: Array, data) -> Array:
    r"""Squared error on the observed entries $\Omega$ of the target $M$.

    $\ell(W) = \tfrac12 \sum_{(i,j)\in\Omega} (W_{ij} - M_{ij})^2$ (Arora et al. 2019).

    **Arguments:** `w` $W$, `(m, d)`; `data = (M, mask)`, both `(m, d)`, `mask` 0/1 marking
    $\Omega$.

    **Returns:** a scalar (one initialisation; vmap or use `completion_objective` for batches).

    **Example:**

    ```python
    jax.grad(linflow.observed_loss)(W, (M, mask))   # mask * (W - M)
    ```
    """
    target, mask = data
    return 0.5 * jnp.sum(mask * (w - target) ** 2)


def sensing_loss(w: Array, data) -> Array:
    r"""$\ell(W) = \tfrac12 \sum_i (\langle A_i, W\rangle - y_i)^2$ for `data = (A, y)`.

    **Arguments:** `w` $W$, `(m, d)`; `data = (A, y)` with the measurement matrices `A`,
    `(k, m, d)`, and the measurements `y`, `(k,)`. A mask is the special case
    $A_i = e_a e_b^\top$.

    **Returns:** a scalar (one initialisation).

    **Example:**

    ```python
    y = jnp.einsum("kmd,md->k", A, M)
    objective = linflow.Objective(linflow.sensing_loss, (A, y))
    ```
    """
    a, y = data
    return 0.5 * jnp.sum((jnp.einsum("kmd,md->k", a, w) - y) ** 2)


class _ProductLoss(eqx.Module):
    """A loss of $W$ applied to the product of a weights tuple."""

    loss_fn: object

    def __call__(self, weights, data):
        return self.loss_fn(product(weights), data)


def completion_objective(target, mask, *, factors: bool = True) -> Objective:
    r"""The matrix-completion loss on the observed entries, as a `linflow.Objective`.

    $\ell = \tfrac12 \sum_{(i,j)\in\Omega} ((W_N \cdots W_1)_{ij} - M_{ij})^2$ with
    $\Omega$ the support of `mask` (Arora et al. 2019). Every leading axis of `mask` is a batch
    axis (one mask per run), so one call trains many observation sets at once.

    **Arguments:**

    - `target`: the matrix $M$, `(m, d)` or `(*batch, m, d)`.
    - `mask`: 0/1 observation mask, `(*batch, m, d)`.
    - `factors`: `True` for a loss of the weights tuple $(W_1, \dots, W_N)$ (for
      `gradient_descent` / `gradient_flow`); `False` for a loss of $W$ itself (for
      `end_to_end_flow`).

    **Returns:** a `linflow.Objective` with `batch_ndim = mask.ndim - 2`.

    **Raises:** `ValueError` if the shapes do not match or contain NaN or inf.

    **Example:**

    ```python
    objective = linflow.completion_objective(M, masks)          # masks: (runs, m, d)
    traj = linflow.gradient_descent(objective, weights0, steps=2000, lr=0.05)
    ```
    """
    target, mask = _completion_data("completion_objective", target, mask)
    loss_fn = _ProductLoss(observed_loss) if factors else observed_loss
    return Objective(loss_fn, (target, mask), batch_ndim=mask.ndim - 2)


def _completion_data(fn: str, target, mask) -> tuple[Array, Array]:
    """`target` broadcast to the shape of `mask` and both in one float dtype, after checking
    the shapes and that both are finite (errors name `fn`)."""
    target, mask = jnp.asarray(target), jnp.asarray(mask)
    if mask.ndim < 2 or target.shape[-2:] != mask.shape[-2:] or target.ndim > mask.ndim:
        raise ValueError(
            f"{fn}(target, mask): need target (m, d) or (*batch, m, d) and mask (*batch, m, d), "
            f"got {target.shape} and {mask.shape}."
        )
    check_finite(fn, "target", target)
    check_finite(fn, "mask", mask)
    target = jnp.broadcast_to(target, mask.shape).astype(jnp.result_type(target, mask))
    return target, mask.astype(target.dtype)


def effective_rank(w: Array) -> Array:
    r"""Entropy effective rank $\exp(-\sum_r p_r \ln p_r)$, $p_r = \sigma_r / \sum_k \sigma_k$.

    (Roy & Vetterli 2007), used by Arora et al. (2019) to measure the low-rank bias; it is
    $r$ for $r$ equal non-zero singular values and 1 for rank one.

    **Arguments:** `w`, `(*batch, m, d)`.

    **Returns:** shape `batch`.

    **Example:**

    ```python
    linflow.effective_rank(jnp.eye(3))   # 3.0
    ```
    """
    s = jnp.linalg.svd(jnp.asarray(w), compute_uv=False)
    p = s / jnp.sum(s, axis=-1, keepdims=True)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), -1))


def unobserved_error(w: Array, target, mask) -> Array:
    r"""Relative error on the unobserved entries, $\|P_{\Omega^c}(W - M)\|_F / \|P_{\Omega^c}M\|_F$.

    **Arguments:** `w` `(*batch, m, d)`, `target` $M$ and `mask` broadcastable to it.

    **Returns:** shape `batch`.

    **Example:**

    ```python
    linflow.unobserved_error(traj.product()[-1], M, masks)
    ```
    """
    w = jnp.asarray(w)
    target = jnp.broadcast_to(jnp.asarray(target), w.shape)
    hidden = 1.0 - jnp.broadcast_to(jnp.asarray(mask), w.shape)
    num = jnp.sum((hidden * (w - target)) ** 2, axis=(-2, -1))
    return jnp.sqrt(num / jnp.sum((hidden * target) ** 2, axis=(-2, -1)))


def nuclear_norm_completion(
    target, mask, *, steps: int = 3000, lam_final: float = 1e-6, lam_start: float | None = None
) -> Array:
    r"""Approximate minimum nuclear-norm completion by proximal gradient with continuation.

    Solves $\min_X \tfrac12 \|P_\Omega(X - M)\|_F^2 + \lambda \|X\|_*$ by
    $X \leftarrow \mathcal{S}_\lambda(P_\Omega(M) + P_{\Omega^c}(X))$ (proximal gradient with unit
    step, the singular-value soft threshold $\mathcal{S}_\lambda$; Mazumder, Hastie & Tibshirani
    2010), lowering $\lambda$ geometrically from `lam_start` (default $\|P_\Omega M\|_2$) to
    `lam_final` times it, so that $X$ tends to $\arg\min \{\|X\|_* : P_\Omega X = P_\Omega M\}$.
    One jitted `lax.scan`, vmapped over the batch axes of `mask`.

    **Arguments:**

    - `target`: $M$, `(m, d)` or `(*batch, m, d)`; `mask`: 0/1, `(*batch, m, d)`.
    - `steps`: proximal steps; `lam_final`: final $\lambda$ relative to the first.
    - `lam_start`: first $\lambda$ (absolute).

    **Returns:** $X$, shape `(*batch, m, d)`.

    **Raises:** `ValueError` for bad shapes or non-positive parameters.

    **Example:**

    ```python
    X = linflow.nuclear_norm_completion(M, mask)
    ```
    """
    fn = "nuclear_norm_completion"
    target, mask = _completion_data(fn, target, mask)
    if not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"{fn}(..., steps={steps!r}) must be a positive int.")
    check_positive(fn, "lam_final", lam_final)
    if lam_start is not None:
        check_positive(fn, "lam_start", lam_start)

    def solve(m, omega):
        observed = omega * m
        lam0 = jnp.linalg.norm(observed, 2) if lam_start is None else lam_start
        lams = lam0 * jnp.asarray(lam_final, m.dtype) ** (jnp.arange(steps, dtype=m.dtype) / steps)

        def step(x, lam):
            u, s, vt = jnp.linalg.svd(observed + (1.0 - omega) * x, full_matrices=False)
            return (u * jnp.maximum(s - lam, 0.0)[None, :]) @ vt, None

        x, _ = jax.lax.scan(step, observed, lams)
        return x

    return jax.jit(vmap_n(solve, mask.ndim - 2))(target, mask)
