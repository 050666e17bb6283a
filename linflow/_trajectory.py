"""The common output of every engine, and the diagnostics read off it."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._checks import check_fractions
from ._loss import _loss, lift, product
from ._sharpness import trajectory_sharpness
from ._task import Task

_UNITS = ("time", "steps")


class Trajectory(eqx.Module):
    r"""Weights of a linear network saved at times `ts`.

    Every engine returns one: `gradient_descent` (`unit = "steps"`: $t$ counts updates, with
    learning rate `lr`), `gradient_flow`, `mode_flow` and `exact_flow` (`unit = "time"`: the
    time $t$ of $\tau\,dW/dt = -\nabla L$, with time constant `tau`; $t/\tau$ is comparable
    with a step count of gradient descent at $\eta = 1/\tau$).

    Indexing selects saves: `traj[-1]` is the last save (its `ts` is a scalar and its weights
    have no time axis), `traj[::10]` every tenth, `traj[ts > 5]` a mask.

    **Fields:**

    - `ts`: save times, shape `(T,)`, in `unit`.
    - `weights`: tuple $(W_1, \dots, W_N)$, each of shape `(T, *batch, h_l, h_{l-1})`.
      For a general `linflow.Objective`, the parameter pytree, each leaf `(T, *batch, ...)`;
      the linear-network methods below then do not apply.
    - `stats`: engine-specific information (`diverged` per initialisation; solver steps and
      result codes for the flows), a dict.
    - `unit`: `"steps"` or `"time"`.
    - `tau`, `lr`: the time constant of a flow or the learning rate of gradient descent
      (scalars; `None` where they do not apply, e.g. for an optax optimiser or a schedule).

    **Example:**

    ```python
    traj = linflow.gradient_flow(task, weights0, jnp.linspace(0, 10, 101))
    traj.mode_strengths(task)   # (101, *batch, k)
    traj[-1].product()          # (*batch, m, d), at t = 10
    ```
    """

    ts: Array
    weights: tuple[Array, ...]
    stats: dict = eqx.field(default_factory=dict)
    unit: str = eqx.field(static=True, default="time")
    tau: Array | None = None
    lr: Array | None = None

    def __check_init__(self):
        if self.unit not in _UNITS:
            raise ValueError(f"Trajectory(unit={self.unit!r}) must be one of {_UNITS}.")

    def __getitem__(self, index) -> Trajectory:
        """The saves selected by `index` along the time axis (an int drops the axis)."""
        if jnp.ndim(self.ts) == 0:
            raise ValueError("Trajectory[...]: this trajectory holds one save (no time axis).")
        return eqx.tree_at(
            lambda t: (t.ts, t.weights),
            self,
            (self.ts[index], jax.tree.map(lambda w: w[index], self.weights)),
        )

    def __len__(self) -> int:
        return self.ts.shape[0] if jnp.ndim(self.ts) else 1

    @property
    def depth(self) -> int:
        """Number of weight matrices $N$."""
        return len(self.weights)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Shape of the batch of initialisations (the axes between time and the matrix)."""
        return self.weights[0].shape[jnp.ndim(self.ts) : -2]

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
        if jnp.ndim(self.ts) != 1:
            raise ValueError("Trajectory.learning_times needs a time axis (not a single save).")
        fractions = check_fractions("Trajectory.learning_times", fractions, self.ts.dtype)
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


def trajectory_bytes(n_saves: int, weights) -> int:
    """Bytes of `n_saves` saves of `weights` (any pytree of arrays)."""
    return n_saves * sum(int(np.prod(w.shape)) * w.dtype.itemsize for w in jax.tree.leaves(weights))
