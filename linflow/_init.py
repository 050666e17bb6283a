r"""Initialisation schemes for linear networks of any depth.

The structured schemes build every layer as $W_l = O_l\, S_l\, O_{l-1}^\top$, with $O_l$
orthogonal and $S_l$ rectangular-diagonal with singular values $\sigma_l$. Sharing $O_l$
between neighbouring layers gives
$W_{l+1}^\top W_{l+1} - W_l W_l^\top = O_l\,(\sigma_{l+1}^2 - \sigma_l^2)\,O_l^\top$,
so choosing $\sigma_{l+1}^2 = \sigma_l^2 + \lambda$ makes the network $\lambda$-balanced.
Taking $O_0 = V$ and $O_N = U$ from the task's modes makes it aligned
(Saxe, McClelland & Ganguli 2014, "Exact solutions to the nonlinear dynamics of learning in
deep linear neural networks": $W_1 = R D_1 V^\top$, $W_2 = U D_2 R^\top$).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_finite, check_key, check_task, is_concrete, known
from ._task import Task

SCHEMES = ("gaussian", "aligned", "balanced", "lambda_balanced")
"""The initialisation schemes of `init_weights` (its `scheme` argument)."""


def _widths(fn: str, task: Task, hidden) -> tuple[int, ...]:
    """Layer widths $(d, h_1, \\dots, h_{N-1}, m)$."""
    hidden = (hidden,) if not isinstance(hidden, tuple | list) else tuple(hidden)
    if any(isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1 for h in hidden):
        raise ValueError(
            f"{fn}(..., hidden={hidden!r}) must be a positive int or a tuple of positive ints."
        )
    return (task.input_dim, *(int(h) for h in hidden), task.output_dim)


def _batch_shape(fn: str, batch) -> tuple[int, ...]:
    batch = (batch,) if not isinstance(batch, tuple | list) else tuple(batch)
    if any(isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 0 for b in batch):
        raise ValueError(
            f"{fn}(..., batch={batch!r}) must be a tuple of non-negative ints (a batch shape)."
        )
    return tuple(int(b) for b in batch)


def _haar(key, batch, n: int, dtype):
    """Haar-random orthogonal matrices, shape `(*batch, n, n)` (QR with the sign fix)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (*batch, n, n), dtype))
    return q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


def _rect_diag(sigma, rows: int, cols: int):
    """Rectangular diagonal matrix `(*batch, rows, cols)` with `sigma[..., :min(rows, cols)]`."""
    k = min(rows, cols)
    eye = jnp.eye(rows, cols, dtype=sigma.dtype).reshape((1,) * (sigma.ndim - 1) + (rows, cols))
    padded = jnp.zeros((*sigma.shape[:-1], cols), sigma.dtype).at[..., :k].set(sigma[..., :k])
    return eye * padded[..., None, :]


def _chain(frames, sigmas, widths):
    """$W_l = O_l S_l O_{l-1}^\\top$ for frames $O_0, \\dots, O_N$, singular values $\\sigma_l$."""
    return tuple(
        frames[l + 1]
        @ _rect_diag(sigmas[l], widths[l + 1], widths[l])
        @ jnp.swapaxes(frames[l], -1, -2)
        for l in range(len(widths) - 1)
    )


def _gaussian_singular_values(key, batch, rows, cols, scale, k, dtype):
    """Singular values of an i.i.d. $N(0, \\text{scale}^2)$ matrix, zeroed beyond `k`."""
    g = scale * jax.random.normal(key, (*batch, rows, cols), dtype)
    s = jnp.linalg.svd(g, compute_uv=False)
    n = max(rows, cols)
    s = jnp.zeros((*batch, n), dtype).at[..., : min(rows, cols)].set(s)
    return jnp.where(jnp.arange(n).reshape((1,) * len(batch) + (n,)) < k, s, 0.0)


def init_weights(
    key, task: Task, hidden, *, scheme: str = "gaussian", scale=1e-2, batch=(), lam=0.0
):
    r"""Initial weights $(W_1, \dots, W_N)$ of a linear network for `task`.

    Schemes (widths $d = h_0$, hidden $h_1, \dots, h_{N-1}$, $m = h_N$):

    - `"gaussian"`: i.i.d. entries $N(0, \text{scale}^2)$.
    - `"aligned"`: the orthogonal initialisation of Saxe, McClelland & Ganguli (2014):
      $W_1 = R_1 D_1 V^\top$, $W_l = R_l D_l R_{l-1}^\top$, $W_N = U D_N R_{N-1}^\top$ with Haar
      orthogonal $R_l$ and the task's modes $U, V$. Each layer carries the first
      $r = \min_l h_l$ modes with singular value `scale` (a scalar or one value per mode,
      shape `(r,)`), so the product's mode strengths start at $\text{scale}^N$. With `lam`,
      later layers get $\sigma_{l+1}^2 = \sigma_l^2 + \lambda$ (an aligned, unbalanced start).
    - `"balanced"`: random singular vectors and $W_{l+1}^\top W_{l+1} = W_l W_l^\top$; every layer
      has the singular values of an i.i.d. $N(0, \text{scale}^2)$ matrix of shape $(h_1, d)$,
      truncated to rank $r$.
    - `"lambda_balanced"`: random singular vectors and $W_{l+1}^\top W_{l+1} - W_l W_l^\top =
      \lambda I$ (Dominé et al. 2025). Needs equal hidden widths $h$; $\lambda > 0$ needs
      $h \le m$, $\lambda < 0$ needs $h \le d$. The first layer ($\lambda \ge 0$) or the last
      ($\lambda < 0$) has Gaussian singular values as above; the others follow from $\lambda$.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `task`: the `linflow.Task` (fixes $d$, $m$ and, for `"aligned"`, the modes).
    - `hidden`: hidden width (int: two layers) or tuple of widths (depth `len + 1`; `()` gives
      a single layer $W$).
    - `scheme`, `scale`: see above. `lam`: $\lambda$ for `"lambda_balanced"` and `"aligned"`.
    - `batch`: shape of the batch of initialisations, e.g. `(10000,)`.

    **Returns:** a tuple of arrays, `W_l` of shape `(*batch, h_l, h_{l-1})`, in the task's dtype.

    **Raises:** `ValueError` for an unknown scheme, bad widths or scale, or a $\lambda$ that the
    sizes cannot carry.

    **Example:**

    ```python
    W1, W2 = linflow.init_weights(jax.random.key(0), task, 16, scheme="balanced", batch=(1000,))
    ```
    """
    fn = "init_weights"
    check_key(fn, "key", key)
    task = check_task(fn, task)
    if scheme not in SCHEMES:
        raise ValueError(f"{fn}(..., scheme={scheme!r}) must be one of {SCHEMES}.")
    widths = _widths(fn, task, hidden)
    batch = _batch_shape(fn, batch)
    dtype = task.sigma_yx.dtype
    depth = len(widths) - 1
    r = min(widths)
    scale = _real_array(fn, "scale", scale, dtype)
    check_finite(fn, "scale", scale)
    if scheme != "aligned" and scale.ndim != 0:
        raise ValueError(f"{fn}(..., scale=...) must be a scalar for scheme={scheme!r}.")
    if scale.ndim not in (0, 1) or (scale.ndim == 1 and scale.shape != (r,)):
        raise ValueError(f"{fn}(..., scale=...) must be a scalar or have shape (r,) = ({r},).")
    scale = _error_unless(fn, scale, jnp.all(scale >= 0), "scale=... must be non-negative")
    lam = _real_array(fn, "lam", lam, dtype)
    if lam.ndim != 0:
        raise ValueError(f"{fn}(..., lam=...) must be a scalar, got shape {lam.shape}.")
    check_finite(fn, "lam", lam)
    # The sign of lambda picks the construction, so it is read on the host when it can be.
    lam_host = float(np.asarray(lam)) if is_concrete(lam) else None
    if scheme not in ("lambda_balanced", "aligned") and lam_host != 0.0:
        raise ValueError(f"{fn}(..., lam=...) only applies to 'lambda_balanced' and 'aligned'.")
    keys = jax.random.split(key, depth + 2)

    if scheme == "gaussian":
        return tuple(
            scale * jax.random.normal(keys[l], (*batch, widths[l + 1], widths[l]), dtype)
            for l in range(depth)
        )

    if scheme == "aligned":
        U, _, V = task.modes()
        sigma = jnp.broadcast_to(scale, (*batch, r))
        sigmas = _lambda_steps(fn, sigma, depth, lam, first=True)
        frames = [
            V[:, :r],
            *(_haar(keys[l], batch, widths[l], dtype) for l in range(1, depth)),
            U[:, :r],
        ]
        frames = [jnp.broadcast_to(f, (*batch, *f.shape[-2:])) for f in frames]
        return tuple(
            (frames[l + 1][..., :r] * sigmas[l][..., None, :])
            @ jnp.swapaxes(frames[l][..., :r], -1, -2)
            for l in range(depth)
        )

    frames = [_haar(keys[l], batch, widths[l], dtype) for l in range(depth + 1)]
    if scheme == "lambda_balanced" and lam_host is None:
        raise ValueError(
            f"{fn}(..., lam=...) must be a concrete number for scheme='lambda_balanced' (its "
            "sign fixes which layers carry it); vary the scale under a transformation instead."
        )
    if scheme == "balanced" or lam_host == 0.0:
        sigma = _gaussian_singular_values(keys[-1], batch, widths[1], widths[0], scale, r, dtype)
        return _chain(frames, [sigma] * depth, widths)

    hidden_widths = set(widths[1:-1])
    if depth == 1:
        raise ValueError(
            f"{fn}(..., hidden=()): 'lambda_balanced' needs at least one hidden layer."
        )
    if len(hidden_widths) != 1:
        raise ValueError(
            f"{fn}(..., hidden={hidden!r}): 'lambda_balanced' needs equal hidden widths."
        )
    h = hidden_widths.pop()
    lam = lam_host
    if lam > 0 and h > task.output_dim:
        raise ValueError(
            f"{fn}(..., lam={lam}): lambda > 0 needs hidden width h <= output dimension m "
            f"(W_N^T W_N = W_(N-1) W_(N-1)^T + lam I has full rank h), "
            f"got h={h}, m={task.output_dim}."
        )
    if lam < 0 and h > task.input_dim:
        raise ValueError(
            f"{fn}(..., lam={lam}): lambda < 0 needs hidden width h <= input dimension d, "
            f"got h={h}, d={task.input_dim}."
        )
    if lam > 0:
        base = _gaussian_singular_values(keys[-1], batch, h, widths[0], scale, h, dtype)[..., :h]
    else:
        base = _gaussian_singular_values(keys[-1], batch, widths[-1], h, scale, h, dtype)[..., :h]
    return _chain(frames, _lambda_steps(fn, base, depth, lam, first=lam > 0), widths)


def _lambda_steps(fn, sigma, depth, lam, *, first):
    r"""Singular values with $\sigma_{l+1}^2 = \sigma_l^2 + \lambda$ (first or last)."""
    if first:
        squares = [sigma**2 + l * lam for l in range(depth)]
    else:
        squares = [sigma**2 - (depth - 1 - l) * lam for l in range(depth)]
    feasible = jnp.all(jnp.stack([jnp.all(s >= 0) for s in squares]))
    message = "lam=...: scale is too small for this negative lambda"
    return [jnp.sqrt(_error_unless(fn, s, feasible, message)) for s in squares]


def _real_array(fn: str, name: str, value, dtype):
    """`value` as an array of `dtype`, raising unless it holds real (non-bool) numbers."""
    if isinstance(value, str | bytes | bool | np.bool_) or value is None:
        raise ValueError(f"{fn}(..., {name}={value!r}) must be a real number.")
    x = jnp.asarray(value)
    if x.dtype == jnp.bool_ or not (
        jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)
    ):
        raise ValueError(f"{fn}(..., {name}=...) must hold real numbers, got dtype {x.dtype}.")
    return x.astype(dtype)


def _error_unless(fn: str, x, ok, what: str):
    """`x`, after checking `ok`: a `ValueError` eagerly, `equinox.error_if` under a trace."""
    message = f"{fn}(..., {what}."
    if known(ok) is False:
        raise ValueError(message)
    return eqx.error_if(x, ~ok, message) if known(ok) is None else x
