r"""General differentiable objectives on a pytree of parameters, for the same engines as a Task."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_dtype, check_finite


def vmap_n(fn, n: int):
    """`fn` vmapped over `n` leading batch axes of every argument."""
    for _ in range(n):
        fn = jax.vmap(fn)
    return fn


class Objective(eqx.Module):
    r"""A scalar loss $\ell(\theta)$ of one initialisation's parameters $\theta$ (any pytree).

    Passed to `linflow.gradient_descent` or `linflow.gradient_flow` in place of a `Task`, it
    trains any differentiable model (masked matrix completion, autoencoders, nonlinear
    networks) with the same engines, batching and `Trajectory`: the engines follow
    $\theta \leftarrow \theta - \eta \nabla\ell(\theta)$ or
    $\tau\,d\theta/dt = -\nabla\ell(\theta)$, with $\nabla\ell$ from `jax.grad`, vmapped over
    `batch_ndim` leading axes of every leaf of $\theta$ (one axis per batch dimension).

    **Arguments:**

    - `loss_fn`: `loss_fn(params) -> scalar` for ONE initialisation, or
      `loss_fn(params, data) -> scalar` when `data` is given. A function (static: captured
      arrays become constants of the compiled program) or an `equinox.Module` / `eqx.Partial`
      (its arrays are traced).
    - `data`: optional pytree with the same leading batch axes as the parameters, giving each
      initialisation its own data (e.g. one observation mask per run); `None` when shared.
    - `batch_ndim`: number of leading batch axes of the parameters (and `data`); `0` for a
      single run. Alternatively pass `batch`, the batch shape, and its length is used.

    **Raises:** `ValueError` if `loss_fn` is not callable or `batch_ndim` is not a
    non-negative int.

    **Example:**

    ```python
    def loss_fn(params):
        return 0.5 * jnp.sum((params["w"] @ x - y) ** 2)

    objective = linflow.Objective(loss_fn, batch=(100,))
    traj = linflow.gradient_descent(objective, {"w": w0}, steps=500, lr=0.1)  # w0: (100, m, d)
    ```
    """

    loss_fn: Callable
    data: object = None
    batch_ndim: int = eqx.field(static=True, default=0)

    def __init__(self, loss_fn, data=None, *, batch_ndim=None, batch=None):
        fn = "Objective"
        if not callable(loss_fn):
            raise ValueError(f"{fn}(loss_fn=...) must be callable, got {type(loss_fn).__name__}.")
        if batch is not None:
            batch = (batch,) if isinstance(batch, int | np.integer) else tuple(batch)
            if batch_ndim is not None and batch_ndim != len(batch):
                raise ValueError(f"{fn}(..., batch_ndim={batch_ndim}, batch={batch}) disagree.")
            batch_ndim = len(batch)
        batch_ndim = 0 if batch_ndim is None else batch_ndim
        if not isinstance(batch_ndim, int | np.integer) or batch_ndim < 0:
            raise ValueError(f"{fn}(..., batch_ndim={batch_ndim!r}) must be a non-negative int.")
        self.loss_fn = loss_fn
        self.data = data
        self.batch_ndim = int(batch_ndim)

    def value(self, params):
        r"""$\ell(\theta)$ for every initialisation, shape `batch`."""
        return vmap_n(self._single, self.batch_ndim)(params, self.data)

    def gradients(self, params):
        r"""$\nabla\ell(\theta)$ for every initialisation, a pytree shaped like `params`."""
        return vmap_n(jax.grad(self._single), self.batch_ndim)(params, self.data)

    def _single(self, params, data):
        return self.loss_fn(params) if data is None else self.loss_fn(params, data)

    def check_params(self, fn: str, params):
        """Validate `params` (float leaves sharing `batch_ndim` leading axes) and the loss shape."""
        leaves = jax.tree.leaves(params)
        if not leaves:
            raise ValueError(f"{fn}(..., params=...) must hold at least one array.")
        params = jax.tree.map(jnp.asarray, params)
        leaves = jax.tree.leaves(params)
        n = self.batch_ndim
        batch = None
        for x in leaves:
            check_dtype(fn, "params", x.dtype)
            if x.ndim < n or (batch is not None and x.shape[:n] != batch):
                raise ValueError(
                    f"{fn}(..., params=...): every leaf needs the same {n} leading batch axes "
                    f"(Objective batch_ndim={n}), got shapes {[y.shape for y in leaves]}."
                )
            batch = x.shape[:n]
            check_finite(fn, "params", x)
        for x in jax.tree.leaves(self.data):
            if np.ndim(x) < n or np.shape(x)[:n] != batch:
                raise ValueError(
                    f"{fn}(...): Objective data leaves need the batch axes {batch} of the params, "
                    f"got shape {np.shape(x)}."
                )
        out = jax.eval_shape(self.value, params)
        if out.shape != batch:
            raise ValueError(
                f"{fn}(...): Objective loss_fn must return a scalar per initialisation; "
                f"got shape {out.shape[n:]}."
            )
        return params


def as_objective(fn: str, problem) -> Objective:
    """A `Objective` from an `Objective` or a plain callable (no batch axes)."""
    if isinstance(problem, Objective):
        return problem
    if callable(problem):
        return Objective(problem)
    raise ValueError(
        f"{fn}(task, ...) must be a linflow.Task, a linflow.Objective or a callable loss, "
        f"got {type(problem).__name__}."
    )
