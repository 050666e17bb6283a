r"""Representation diagnostics read off a `Trajectory`: what the network has learned, and how.

Every function takes a `Trajectory` (weights of shape `(T, *batch, rows, cols)`) and returns
arrays with the same leading `(T, *batch)` axes. The inputs of a task are its data `X`
(rows are items) when it holds data, else the identity (one one-hot item per input unit).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array

from ._kernels import ntk
from ._loss import lift
from ._task import Task
from ._trajectory import Trajectory


def _inputs(task: Task) -> Array:
    """The items, shape `(n, d)`: the task's data, or one-hot items for a task without data."""
    return task.X if task.has_data else jnp.eye(task.input_dim, dtype=task.sigma_yx.dtype)


def _transpose(x: Array) -> Array:
    return jnp.swapaxes(x, -1, -2)


def mode_alignment(traj: Trajectory, task: Task) -> tuple[Array, Array]:
    r"""Overlap of the network's singular vectors with the task's, $|U^\top U_{\text{net}}(t)|$.

    And likewise $|V^\top V_{\text{net}}(t)|$ for the input side.

    $U_{\text{net}}(t) S_{\text{net}}(t) V_{\text{net}}(t)^\top$ is the SVD of $W(t)\Sigma_{xx}$
    (whose singular values are `Trajectory.singular_values`), $\Sigma_{yx} = U S V^\top$
    (`task.modes()`). Entry $(\alpha, \beta)$ is $|u^{\alpha\top} u_{\text{net}}^\beta|$: an
    identity matrix means the network's modes are the task's (as for an aligned start, Saxe
    et al. 2014); a small random start becomes aligned mode by mode as it learns. Absolute
    values, because singular vectors are defined up to sign. Within a repeated singular value
    the vectors are defined only up to a rotation, and so is the block of the overlap.

    **Arguments:** `traj`, `task`.

    **Returns:** `(U_overlap, V_overlap)`, each of shape `(T, *batch, k, k)`,
    `k = min(m, d)`; rows are the task's modes in the order of `task.modes()`, columns the
    network's in descending order of its singular values.

    **Example:**

    ```python
    u_overlap, v_overlap = linflow.mode_alignment(traj, task)
    jnp.diagonal(u_overlap, axis1=-2, axis2=-1)   # (T, *batch, k): 1 once a mode is learned
    ```
    """
    U, _, V = task.modes()
    w = traj.product()
    u_net, _, vt_net = jnp.linalg.svd(
        w if task.whitened else w @ lift(task.sigma_xx, w.ndim), full_matrices=False
    )
    k = U.shape[1]
    u_overlap = lift(U.T, w.ndim) @ u_net[..., :k]
    v_overlap = lift(V.T, w.ndim) @ _transpose(vt_net)[..., :k]
    return jnp.abs(u_overlap), jnp.abs(v_overlap)


def illusory_correlations(traj: Trajectory, task: Task) -> Array:
    r"""The network's prediction of every property an item lacks, over time.

    The prediction for item $i$ is $\hat y_i(t) = W(t)\,x_i$. Where the item lacks a property
    ($y_{ij} = 0$), $\hat y_{ij}(t)$ measures an illusory correlation: a deep network learns
    the broad modes first, so for a while it predicts what the item's relatives have (source
    001: "a worm has bones"; Saxe et al. 2019: a salmon that flies), and the prediction rises
    and falls back to 0 when the finer mode that separates the item is learned. With aligned
    weights $\hat y_{ij}(t) = \sum_\alpha u_\alpha(t)\, U_{j\alpha} (V^\top x_i)_\alpha$.

    **Arguments:** `traj`; `task` a task with data (e.g. `linflow.tasks.saxe_hierarchy()`).

    **Returns:** shape `(T, *batch, n, m)` (items, properties): $\hat y_{ij}(t)$ where
    $y_{ij} = 0$, and 0 where the item has the property.

    **Raises:** `ValueError` for a task without data.

    **Example:**

    ```python
    illusory = linflow.illusory_correlations(traj, task)
    salmon_flies = illusory[:, 0, items.index("Salmon"), properties.index("Fly")]
    ```
    """
    if not task.has_data:
        raise ValueError("illusory_correlations(..., task=...) needs a task with data.")
    w = traj.product()
    predictions = lift(task.X, w.ndim) @ _transpose(w)  # (T, *batch, n, m)
    return jnp.where(lift(task.Y == 0, w.ndim), predictions, 0.0)


def weight_movement(traj: Trajectory) -> Array:
    r"""Relative distance of each layer from its start, $\|W_l(t) - W_l(0)\|_F / \|W_l(0)\|_F$.

    Small in the lazy regime (large initial weights or a large imbalance $\lambda$), of order
    one or more in the rich regime (small initial weights), where the network learns
    features rather than linearising around its start (Chizat et al. 2019; Dominé et al.
    2025).

    **Arguments:** `traj`.

    **Returns:** shape `(T, *batch, N)`; inf for a layer that starts at zero and moves.

    **Example:**

    ```python
    linflow.weight_movement(traj)[-1]   # (*batch, N): how far each layer went
    ```
    """
    return jnp.stack([relative_movement(w) for w in traj.weights], axis=-1)


def relative_movement(w: Array) -> Array:
    r"""$\|W(t) - W(0)\|_F / \|W(0)\|_F$ of one weight matrix saved over time.

    **Arguments:** `w` of shape `(T, *batch, rows, cols)` (a layer of `traj.weights`, or the
    first layer `traj.weights.w` of a `linflow.ReLUNetwork`).

    **Returns:** shape `(T, *batch)`; inf for a matrix that starts at zero and moves.
    """
    change = jnp.linalg.norm(w - w[:1], axis=(-2, -1))
    return change / jnp.linalg.norm(w[:1], axis=(-2, -1))


def ntk_movement(traj: Trajectory, task: Task) -> Array:
    r"""Relative change of the tangent kernel, $\|\Theta(t) - \Theta(0)\|_F / \|\Theta(0)\|_F$.

    Near 0 throughout training in the lazy (kernel) regime, where the network behaves like
    its linearisation; of order one in the rich regime (Chizat et al. 2019; Dominé et al. 2025).
    See `linflow.ntk`.

    **Arguments:** `traj`, `task`.

    **Returns:** shape `(T, *batch)`.

    **Example:**

    ```python
    linflow.ntk_movement(traj, task)[-1]   # (*batch,)
    ```
    """
    return relative_movement(ntk(traj.weights, _inputs(task)))
