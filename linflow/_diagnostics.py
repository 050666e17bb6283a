r"""Representation diagnostics read off a `Trajectory`: what the network has learned, and how.

Every function takes a `Trajectory` (weights of shape `(T, *batch, rows, cols)`) and returns
arrays with the same leading `(T, *batch)` axes. The inputs of a task are its data `X`
(rows are items) when it holds data, else the identity (one one-hot item per input unit).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from ._loss import lift, product
from ._task import Task
from ._trajectory import Trajectory


def _inputs(task: Task) -> Array:
    """The items, shape `(n, d)`: the task's data, or one-hot items for a task without data."""
    return task.X if task.has_data else jnp.eye(task.input_dim, dtype=task.sigma_yx.dtype)


def _transpose(x: Array) -> Array:
    return jnp.swapaxes(x, -1, -2)


def representational_similarity(
    traj: Trajectory, task: Task, *, layer: int = 1, normalize: bool = False
) -> Array:
    r"""Representational similarity matrix of the items at a layer, over time.

    The representation of item $x_i$ after layer $l$ is $h_i = W_l \cdots W_1 x_i$, and the
    matrix holds $h_i^\top h_j$ (or the cosine $h_i^\top h_j / \|h_i\|\|h_j\|$ with
    `normalize=True`), as in Saxe, McClelland & Ganguli (PNAS 2019, Fig. 5). For a balanced
    two-layer network that has learned a whitened task, $W_1^\top W_1 = V S V^\top$, so the
    hidden similarity of one-hot items converges to $V S V^\top$: items are as similar as
    the modes they share, weighted by their strength.

    **Arguments:**

    - `traj`: a `linflow.Trajectory`.
    - `task`: the task whose items are compared (its data `X`, or one-hot items).
    - `layer`: $l$ in $1, \dots, N$ ($N$ gives the similarity of the outputs).
    - `normalize`: cosine similarity instead of inner products (a zero representation has
      similarity 0 with everything).

    **Returns:** shape `(T, *batch, n, n)`, `n` the number of items.

    **Raises:** `ValueError` for a layer outside $1, \dots, N$.

    **Example:**

    ```python
    rsm = linflow.representational_similarity(traj, task)   # (T, *batch, n, n)
    ```
    """
    if not isinstance(layer, int) or not 1 <= layer <= traj.depth:
        raise ValueError(
            f"representational_similarity(..., layer={layer!r}) must be an int in 1..{traj.depth}."
        )
    w = product(traj.weights[:layer])  # (T, *batch, h_l, d)
    x = _inputs(task)
    h = lift(x, w.ndim) @ _transpose(w)  # (T, *batch, n, h_l)
    rsm = h @ _transpose(h)
    if not normalize:
        return rsm
    norm = jnp.sqrt(jnp.diagonal(rsm, axis1=-2, axis2=-1))  # (T, *batch, n)
    outer = norm[..., :, None] * norm[..., None, :]
    return jnp.where(outer > 0, rsm / jnp.where(outer > 0, outer, 1.0), 0.0)


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


def learning_times(traj: Trajectory, task: Task, *, fraction=0.5) -> Array:
    r"""First time each mode strength $u_\alpha(t)$ reaches `fraction` $\cdot\, s_\alpha$.

    Linearly interpolated between the saved times; compare with `linflow.time_to_learn`,
    which predicts it for a balanced aligned start (Saxe et al. 2014).

    **Arguments:** `traj`, `task`, `fraction` $f \in (0, 1]$.

    **Returns:** shape `(*batch, k)`; `ts[0]` for a mode that starts above $f s_\alpha$, NaN
    for one that never gets there within `traj.ts`.

    **Raises:** `ValueError` for a fraction outside $(0, 1]$.

    **Example:**

    ```python
    times = linflow.learning_times(traj, task)          # (*batch, k)
    linflow.time_to_learn(task.modes()[1], u0)          # the prediction
    ```
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"learning_times(..., fraction={fraction!r}) must lie in (0, 1].")
    return _learning_times(traj, task, fraction)


@eqx.filter_jit
def _learning_times(traj, task, fraction):
    u = traj.mode_strengths(task)  # (T, *batch, k)
    target = lift(fraction * task.modes()[1], u.ndim)
    reached = u >= target
    first = jnp.argmax(reached, axis=0)  # (*batch, k); 0 where never reached
    before = jnp.maximum(first - 1, 0)
    u_after = jnp.take_along_axis(u, first[None], axis=0)[0]
    u_before = jnp.take_along_axis(u, before[None], axis=0)[0]
    t_after, t_before = traj.ts[first], traj.ts[before]
    rise = u_after - u_before
    share = (target[0] - u_before) / jnp.where(rise > 0, rise, 1.0)
    times = jnp.where(first > 0, t_before + share * (t_after - t_before), traj.ts[0])
    return jnp.where(jnp.any(reached, axis=0), times, jnp.nan)


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
    return jnp.stack(
        [
            jnp.linalg.norm(w - w[:1], axis=(-2, -1)) / jnp.linalg.norm(w[:1], axis=(-2, -1))
            for w in traj.weights
        ],
        axis=-1,
    )


def neural_tangent_kernel(traj: Trajectory, task: Task) -> Array:
    r"""Neural tangent kernel of the network on the task's items, over time.

    For $f(x) = W_N \cdots W_1 x$ the kernel between output $a$ on item $x_i$ and output $b$
    on item $x_j$ is $\Theta_{(ia),(jb)} = \sum_l \partial_\theta f_a(x_i) \cdot
    \partial_\theta f_b(x_j)$, summed over every weight of every layer. Computed directly from
    the weights: with $P_{l} = W_l \cdots W_1$ ($P_0 = I$) and $Q_l = W_N \cdots W_{l}$
    ($Q_{N+1} = I$),

    $$\Theta = \sum_{l=1}^N (X P_{l-1}^\top P_{l-1} X^\top) \otimes (Q_{l+1} Q_{l+1}^\top),$$

    the derivative of $f$ with respect to $W_l$ being $x^\top P_{l-1}^\top \otimes Q_{l+1}$
    (Jacot et al. 2018; Arora et al. 2019). A one-layer network has the constant kernel
    $X X^\top \otimes I$.

    **Arguments:** `traj`, `task` (its items, as in `representational_similarity`).

    **Returns:** shape `(T, *batch, n m, n m)`, rows and columns ordered item-major
    (index $i m + a$), so `Theta.reshape(..., n, m, n, m)` separates them.

    **Example:**

    ```python
    theta = linflow.neural_tangent_kernel(traj, task)
    ```
    """
    return _neural_tangent_kernel(traj, task)


@eqx.filter_jit
def _neural_tangent_kernel(traj, task):
    weights = traj.weights
    x = _inputs(task)
    ndim = weights[0].ndim
    n = x.shape[0]
    m = task.output_dim
    theta = 0.0
    for l in range(traj.depth):
        below = x if l == 0 else lift(x, ndim) @ _transpose(product(weights[:l]))  # X P^T
        items = below @ _transpose(below)
        if l == traj.depth - 1:
            outputs = lift(jnp.eye(m, dtype=x.dtype), ndim)
        else:
            q = product(weights[l + 1 :])
            outputs = q @ _transpose(q)
        items = lift(items, ndim)
        theta = theta + jnp.einsum("...ij,...ab->...iajb", items, outputs)
    # A one-layer kernel does not change: give it the time and batch axes explicitly.
    theta = jnp.broadcast_to(theta, (*weights[0].shape[:-2], n, m, n, m))
    return theta.reshape(*theta.shape[:-4], n * m, n * m)


def ntk_movement(traj: Trajectory, task: Task) -> Array:
    r"""Relative change of the tangent kernel, $\|\Theta(t) - \Theta(0)\|_F / \|\Theta(0)\|_F$.

    Near 0 throughout training in the lazy (kernel) regime, where the network behaves like
    its linearisation; of order one in the rich regime (Chizat et al. 2019; Dominé et al. 2025).
    See `neural_tangent_kernel`.

    **Arguments:** `traj`, `task`.

    **Returns:** shape `(T, *batch)`.

    **Example:**

    ```python
    linflow.ntk_movement(traj, task)[-1]   # (*batch,)
    ```
    """
    theta = _neural_tangent_kernel(traj, task)
    return jnp.linalg.norm(theta - theta[:1], axis=(-2, -1)) / jnp.linalg.norm(
        theta[:1], axis=(-2, -1)
    )
