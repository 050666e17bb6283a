"""The common output of every engine, and the diagnostics read off it."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from ._loss import _loss, lift, product
from ._sharpness import trajectory_sharpness
from ._task import Task


class Trajectory(eqx.Module):
    r"""Weights of a linear network saved at times `ts`.

    Every engine returns one: `gradient_descent` (where $t$ counts steps),
    `gradient_flow` and `exact_flow` (where $t$ is the time of $\tau\,dW/dt = -\nabla L$).

    **Fields:**

    - `ts`: save times, shape `(T,)`.
    - `weights`: tuple $(W_1, \dots, W_N)$, each of shape `(T, *batch, h_l, h_{l-1})`.
      For a general `linflow.Objective`, the parameter pytree, each leaf `(T, *batch, ...)`;
      the linear-network methods below then do not apply.
    - `stats`: engine-specific information (solver steps, result codes), a dict.

    **Example:**

    ```python
    traj = linflow.gradient_flow(task, weights0, jnp.linspace(0, 10, 101))
    traj.mode_strengths(task)   # (101, *batch, k)
    ```
    """

    ts: Array
    weights: tuple[Array, ...]
    stats: dict = eqx.field(default_factory=dict)

    @property
    def depth(self) -> int:
        """Number of weight matrices $N$."""
        return len(self.weights)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Shape of the batch of initialisations (the axes between time and the matrix)."""
        return self.weights[0].shape[1:-2]

    def product(self) -> Array:
        r"""End-to-end map $W(t) = W_N(t) \cdots W_1(t)$, shape `(T, *batch, m, d)`."""
        return product(self.weights)

    def loss(self, task: Task) -> Array:
        r"""Task loss $L(W(t))$ (see `linflow.loss`), shape `(T, *batch)`."""
        return _loss(task, self.product())

    def mode_strengths(self, task: Task) -> Array:
        r"""Mode strengths $u_\alpha(t) = u^{\alpha\top} W(t)\, v^\alpha$ in the task's modes.

        **Returns:** shape `(T, *batch, k)`, `k = min(m, d)`, in the order of `task.modes()`.
        """
        U, _, V = task.modes()
        return jnp.einsum("mk,...md,dk->...k", U, self.product(), V)

    def singular_values(self, task: Task) -> Array:
        r"""Effective singular values: those of $W(t)\,\Sigma_{xx}$ (Saxe et al. 2019).

        **Returns:** shape `(T, *batch, k)` in descending order, `k = min(m, d)`.
        """
        w = self.product()
        return jnp.linalg.svd(w if task.whitened else w @ task.sigma_xx, compute_uv=False)

    def balance(self) -> tuple[Array, ...]:
        r"""$W_{l+1}^\top W_{l+1} - W_l W_l^\top$ for $l = 1, \dots, N-1$ (conserved by the flow).

        **Returns:** a tuple of `N - 1` arrays of shape `(T, *batch, h_l, h_l)`.
        """
        return tuple(
            jnp.swapaxes(upper, -1, -2) @ upper - lower @ jnp.swapaxes(lower, -1, -2)
            for lower, upper in zip(self.weights[:-1], self.weights[1:])
        )

    def sharpness(self, task, *, iterations: int | None = None, key=None) -> Array:
        r"""Sharpness $\lambda_{\max}(\nabla^2 L)$ at every save (see `linflow.sharpness`).

        **Arguments:** `task` (a `Task`, or the `Objective` the trajectory was trained on),
        `iterations`, `key` as for `linflow.sharpness`.

        **Returns:** shape `(T, *batch)`. Memory grows with `T`: subsample long trajectories.

        **Example:**

        ```python
        traj = linflow.gradient_descent(task, weights0, steps=2000, lr=0.1, save_every=20)
        traj.sharpness(task)   # compare with 2 / lr
        ```
        """
        return trajectory_sharpness(task, self.weights, iterations=iterations, key=key)

    def learning_times(self, task: Task, fractions=(0.5,)) -> Array:
        r"""First time each mode strength reaches $f\, s_\alpha$, read off the saved samples.

        The first save time at which $u_\alpha \ge f s_\alpha$, refined by linear interpolation
        with the sample before it: accurate to the square of the save spacing (for times exact
        to the solver's tolerance, see `linflow.learning_times`).

        **Arguments:** `task`; `fractions` the fractions $f$, shape `(F,)`.

        **Returns:** times, shape `(*batch, k, F)`: `ts[0]` for a mode already past $f s_\alpha$,
        `inf` for one that never gets there within `ts` (and for $s_\alpha = 0$).

        **Example:**

        ```python
        traj.learning_times(task, (0.1, 0.5, 0.9))
        ```
        """
        fractions = jnp.asarray(fractions, self.ts.dtype)
        if fractions.ndim != 1 or not bool(jnp.all((fractions > 0) & (fractions < 1))):
            raise ValueError(
                "Trajectory.learning_times(..., fractions=...) must be 1-D with values in (0, 1)."
            )
        _, s, _ = task.modes()
        u = self.mode_strengths(task)[..., None]  # (T, *batch, k, 1)
        target = lift(s.reshape(-1, 1) * fractions.reshape(1, -1), u.ndim)
        target = jnp.where(lift(s.reshape(-1, 1), u.ndim) > 0, target, jnp.inf)
        above = u >= target
        first = jnp.argmax(above, axis=0)[None]  # (1, *batch, k, F)
        before = jnp.maximum(first - 1, 0)
        u1 = jnp.take_along_axis(jnp.broadcast_to(u, above.shape), first, axis=0)[0]
        u0 = jnp.take_along_axis(jnp.broadcast_to(u, above.shape), before, axis=0)[0]
        t1, t0 = self.ts[first[0]], self.ts[before[0]]
        du = jnp.where(first[0] > 0, u1 - u0, 1.0)
        t = t0 + (t1 - t0) * jnp.clip((target[0] - u0) / du, 0.0, 1.0)
        return jnp.where(jnp.any(above, axis=0), t, jnp.inf)
