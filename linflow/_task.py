"""Linear-regression tasks, described by their second-order statistics."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._checks import check_finite, is_concrete

_NORMALIZE = ("mean", "sum")


class Task(eqx.Module):
    r"""A linear-regression task $y \approx W x$, held as its correlation matrices.

    The loss of a linear network with end-to-end map $W = W_N \cdots W_1$ is

    $$L(W) = \tfrac12 \operatorname{tr}(W \Sigma_{xx} W^\top)
    - \operatorname{tr}(W \Sigma_{yx}^\top)
    + \tfrac12 \operatorname{tr}\Sigma_{yy},$$

    which for data equals $\frac{1}{2n}\sum_i \|y_i - W x_i\|^2$ (or the sum, without $1/n$).

    **Arguments:**

    - `sigma_yx`: input-output correlation $\Sigma_{yx}$, shape `(m, d)`.
    - `sigma_xx`: input correlation $\Sigma_{xx}$, shape `(d, d)`, symmetric positive
      semi-definite (checked, to rounding). `None` (the default) or exactly the identity means
      whitened inputs, $\Sigma_{xx} = I$, and lets the engines skip that product.
    - `sigma_yy`: output correlation $\Sigma_{yy}$, shape `(m, m)`, only used for the constant
      in the loss. When `None` the targets are taken as realisable ($Y = W_* X$), so that the
      loss is zero at the optimum.

    **Raises:** `ValueError` for wrong shapes, NaN or inf, or a `sigma_xx` that is not symmetric
    positive semi-definite.

    **Example:**

    ```python
    task = linflow.Task(jnp.diag(jnp.array([3.0, 2.0, 1.0])))
    U, s, V = task.modes()   # s == [3, 2, 1]
    ```
    """

    sigma_yx: Array
    _sigma_xx: Array | None
    sigma_yy: Array | None
    X: Array | None
    Y: Array | None
    optimum: Array
    loss_min: Array
    normalize: str = eqx.field(static=True)

    def __init__(self, sigma_yx, sigma_xx=None, *, sigma_yy=None, X=None, Y=None, normalize="mean"):
        fn = "Task"
        sigma_yx = jnp.asarray(sigma_yx)
        if not jnp.issubdtype(sigma_yx.dtype, jnp.floating):
            sigma_yx = sigma_yx.astype(jnp.result_type(float))
        if sigma_yx.ndim != 2:
            raise ValueError(f"{fn}(sigma_yx=...) must be 2-D (m, d), got shape {sigma_yx.shape}.")
        m, d = sigma_yx.shape
        check_finite(fn, "sigma_yx", sigma_yx)
        if sigma_xx is not None:
            sigma_xx = jnp.asarray(sigma_xx, dtype=sigma_yx.dtype)
            if sigma_xx.shape != (d, d):
                raise ValueError(
                    f"{fn}(sigma_xx=...) must have shape (d, d) = {(d, d)} to match sigma_yx, "
                    f"got {sigma_xx.shape}."
                )
            check_finite(fn, "sigma_xx", sigma_xx)
            if is_concrete(sigma_xx):
                sxx = np.asarray(sigma_xx)
                if np.array_equal(sxx, np.eye(d)):
                    sigma_xx = None  # exactly whitened (e.g. one-hot items): skip the product
            if sigma_xx is not None and is_concrete(sigma_xx):
                size = max(np.abs(sxx).max(), 1e-30)
                if not np.allclose(sxx, sxx.T, rtol=1e-5, atol=1e-6 * size):
                    raise ValueError(f"{fn}(sigma_xx=...) must be symmetric.")
                lowest = np.linalg.eigvalsh(0.5 * (sxx + sxx.T)).min()
                if lowest < -10 * d * np.finfo(sxx.dtype).eps * size:
                    raise ValueError(
                        f"{fn}(sigma_xx=...) must be positive semi-definite (a covariance); its "
                        f"smallest eigenvalue is {lowest:.3g}."
                    )
        if sigma_yy is not None:
            sigma_yy = jnp.asarray(sigma_yy, dtype=sigma_yx.dtype)
            if sigma_yy.shape != (m, m):
                raise ValueError(f"{fn}(sigma_yy=...) must have shape (m, m) = {(m, m)}.")
            check_finite(fn, "sigma_yy", sigma_yy)
        if normalize not in _NORMALIZE:
            raise ValueError(f"{fn}(normalize={normalize!r}) must be one of {_NORMALIZE}.")
        self.sigma_yx = sigma_yx
        self._sigma_xx = sigma_xx
        self.sigma_yy = sigma_yy
        self.X = X
        self.Y = Y
        self.normalize = normalize
        # W_* = Σyx Σxx⁺ is the product a full-rank network converges to; keeping it lets the
        # loss be evaluated as ½ tr((W − W_*) Σxx (W − W_*)ᵀ) + L_min, without cancellation.
        if sigma_xx is None:
            self.optimum = sigma_yx
        else:
            self.optimum = sigma_yx @ jnp.linalg.pinv(sigma_xx, hermitian=True)
            if is_concrete(sigma_xx) and is_concrete(sigma_yx):  # on the host: jit-safe
                syx, sxx = np.asarray(sigma_yx), np.asarray(sigma_xx)
                residual = np.abs(syx @ np.linalg.pinv(sxx, hermitian=True) @ sxx - syx).max()
                tol = np.sqrt(np.finfo(syx.dtype).eps) * max(np.abs(syx).max(), 1e-30)
                if residual > tol:
                    raise ValueError(
                        f"{fn}(sigma_yx=..., sigma_xx=...): sigma_yx has a component outside the "
                        "row space of sigma_xx, so the loss is unbounded below."
                    )
        explained = 0.5 * jnp.sum(self.optimum * sigma_yx)
        self.loss_min = (
            jnp.zeros((), sigma_yx.dtype)
            if sigma_yy is None
            else 0.5 * jnp.trace(sigma_yy) - explained
        )

    @classmethod
    def from_data(cls, X, Y, normalize: str = "mean") -> Task:
        r"""Build a task from samples; rows are samples.

        $\Sigma_{xx} = c X^\top X$, $\Sigma_{yx} = c Y^\top X$, $\Sigma_{yy} = c Y^\top Y$ with
        $c = 1/n$ for `normalize="mean"` and $c = 1$ for `normalize="sum"` (the convention of
        Shimizu & Aoyagi, where $\Sigma_{yx} = \sum_i y_i x_i^\top$). `X` and `Y` are kept for
        stochastic gradient descent.

        **Arguments:** `X` of shape `(n, d)`, `Y` of shape `(n, m)`, `normalize`.

        **Raises:** `ValueError` if the sample counts differ, the data are not 2-D, hold NaN or
        inf, or `normalize` is unknown.

        **Example:**

        ```python
        task = linflow.Task.from_data(jnp.eye(4), Y, normalize="sum")
        ```
        """
        fn = "Task.from_data"
        X = jnp.asarray(X)
        Y = jnp.asarray(Y)
        dtype = jnp.result_type(X.dtype, Y.dtype, float)
        X, Y = X.astype(dtype), Y.astype(dtype)
        for name, a in (("X", X), ("Y", Y)):
            if a.ndim != 2:
                raise ValueError(
                    f"{fn}({name}=...) must be 2-D (samples, features), got {a.shape}."
                )
            check_finite(fn, name, a)
        if X.shape[0] != Y.shape[0]:
            raise ValueError(
                f"{fn}(X=..., Y=...): X has {X.shape[0]} samples (rows) but Y has {Y.shape[0]}."
            )
        if normalize not in _NORMALIZE:
            raise ValueError(f"{fn}(normalize={normalize!r}) must be one of {_NORMALIZE}.")
        c = 1.0 / X.shape[0] if normalize == "mean" else 1.0
        return cls(c * Y.T @ X, c * X.T @ X, sigma_yy=c * Y.T @ Y, X=X, Y=Y, normalize=normalize)

    def astype(self, dtype) -> Task:
        """The same task with every array in `dtype` (itself if nothing changes)."""
        dtype = jnp.dtype(dtype)
        if self.sigma_yx.dtype == dtype:
            return self
        return jax.tree.map(lambda x: x.astype(dtype), self)

    @property
    def sigma_xx(self) -> Array:
        r"""$\Sigma_{xx}$, shape `(d, d)`; the identity for whitened tasks."""
        if self._sigma_xx is None:
            return jnp.eye(self.input_dim, dtype=self.sigma_yx.dtype)
        return self._sigma_xx

    @property
    def whitened(self) -> bool:
        r"""Whether $\Sigma_{xx} = I$ exactly (given as `None`)."""
        return self._sigma_xx is None

    @property
    def input_dim(self) -> int:
        return self.sigma_yx.shape[1]

    @property
    def output_dim(self) -> int:
        return self.sigma_yx.shape[0]

    @property
    def has_data(self) -> bool:
        return self.X is not None

    def modes(self):
        r"""Singular value decomposition $\Sigma_{yx} = U S V^\top$ (the task's modes).

        **Returns:** `(U, s, V)` with `U` of shape `(m, k)`, `s` of shape `(k,)` in descending
        order and `V` of shape `(d, k)`, `k = min(m, d)`. Signs are fixed so that the entry of
        largest magnitude in each output mode $u^\alpha$ is positive (ties go to the first
        entry), which makes results reproducible across runs.
        """
        U, s, Vt = jnp.linalg.svd(self.sigma_yx, full_matrices=False)
        pivot = jnp.take_along_axis(U, jnp.argmax(jnp.abs(U), axis=0)[None, :], axis=0)
        sign = jnp.where(pivot < 0, -1.0, 1.0).astype(U.dtype)  # (1, k)
        return U * sign, s, Vt.T * sign
