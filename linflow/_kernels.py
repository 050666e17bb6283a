r"""Quantities read off the weights: predictions, neural tangent kernel, hidden representations.

All three depend on the weights only through $W_N \cdots W_1$ and the Gram matrices
$W_{>l}W_{>l}^\top$, $W_{<l}^\top W_{<l}$, so they are invariant under rotations of the hidden
layers and exact when evaluated on `exact_flow`'s weights.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._checks import check_weights
from ._loss import lift, product


def _inputs(fn: str, weights, X):
    weights = check_weights(fn, weights)
    X = jnp.asarray(X, weights[0].dtype)
    if X.ndim != 2 or X.shape[1] != weights[0].shape[-1]:
        raise ValueError(
            f"{fn}(..., X=...) must have shape (n, d) = (n, {weights[0].shape[-1]}), got {X.shape}."
        )
    return weights, X


def predict(weights, X):
    r"""Network outputs $\hat y_i = W_N \cdots W_1 x_i$ for inputs $X$ (rows are samples).

    **Arguments:** `weights` a tuple $(W_1, \dots, W_N)$, each `(*batch, h_l, h_{l-1})` (e.g.
    `trajectory.weights`, with time as the first batch axis); `X` of shape `(n, d)`, e.g. a
    test set.

    **Returns:** $X W^\top$, shape `(*batch, n, m)`.

    **Raises:** `ValueError` for bad weights or a wrong input dimension.

    **Example:**

    ```python
    y_test = linflow.predict(linflow.exact_flow(task, w0, ts).weights, X_test)  # (T, n, m)
    ```
    """
    weights, X = _inputs("predict", weights, X)
    w = product(weights)
    return lift(X, w.ndim) @ jnp.swapaxes(w, -1, -2)


def ntk(weights, X):
    r"""Neural tangent kernel of a linear network on inputs $X$ (rows are samples).

    $$\Theta = \sum_{l=1}^N (W_{>l} W_{>l}^\top) \otimes (X W_{<l}^\top W_{<l} X^\top),$$

    with $W_{>l} = W_N \cdots W_{l+1}$ and $W_{<l} = W_{l-1} \cdots W_1$ (identity when empty):
    for two layers $\Theta = W_2 W_2^\top \otimes XX^\top + I_m \otimes X W_1^\top W_1 X^\top$
    (Braun et al. 2022; Dominé et al. 2025). Entry $((a, i), (b, j))$ is
    $\partial \hat y_{ia}/\partial\theta \cdot \partial \hat y_{jb}/\partial\theta$: the flow
    moves the outputs by $\tau\,\dot{\hat y} = -\Theta\,\partial L/\partial \hat y$.

    **Arguments:** `weights` a tuple, each `(*batch, h_l, h_{l-1})`; `X` of shape `(n, d)`.

    **Returns:** shape `(*batch, m n, m n)`, rows and columns ordered output-major
    (index $a n + i$), as the Kronecker products above.

    **Raises:** `ValueError` for bad weights or a wrong input dimension.

    **Example:**

    ```python
    kernel = linflow.ntk(linflow.exact_flow(task, w0, ts).weights, X)  # (T, m n, m n)
    ```
    """
    weights, X = _inputs("ntk", weights, X)
    n, m = X.shape[0], weights[-1].shape[-2]
    total = 0.0
    for l in range(len(weights)):
        above, below = weights[l + 1 :], weights[:l]
        if above:
            a = product(above)
            left = a @ jnp.swapaxes(a, -1, -2)
        else:
            left = lift(jnp.eye(m, dtype=X.dtype), weights[0].ndim)
        features = lift(X, weights[0].ndim)
        if below:
            features = features @ jnp.swapaxes(product(below), -1, -2)
        right = features @ jnp.swapaxes(features, -1, -2)
        total = total + left[..., :, None, :, None] * right[..., None, :, None, :]
    return total.reshape(total.shape[:-4] + (m * n, m * n))


def representational_similarity(weights, X=None, *, layer: int = 1, normalize: bool = False):
    r"""Similarity of the representations $h_i = W_l \cdots W_1 x_i$ after layer `layer`.

    $$\mathrm{RSM} = X (W_l \cdots W_1)^\top (W_l \cdots W_1) X^\top,$$

    or the cosines $h_i^\top h_j / \|h_i\|\|h_j\|$ with `normalize=True` (Saxe, McClelland &
    Ganguli, PNAS 2019, Fig. 5). For $X = I$ (or `X=None`, one-hot items) and `layer=1` it is
    the Gram matrix $W_1^\top W_1$ that the closed forms of Braun et al. (2022) and Dominé et al.
    (2025) give directly; a balanced two-layer network that has learned a whitened task has
    $W_1^\top W_1 = V S V^\top$: items are as similar as the modes they share.

    **Arguments:** `weights` a tuple, each `(*batch, h_l, h_{l-1})` (e.g. `traj.weights`, time
    first); `X` of shape `(n, d)` or `None`; `layer` in $1, \dots, N$ (default the first hidden
    layer; $N$ compares the outputs); `normalize` for cosines (a zero representation has
    similarity 0 with everything).

    **Returns:** shape `(*batch, n, n)` (or `(*batch, d, d)` without `X`).

    **Raises:** `ValueError` for bad weights, inputs or layer.

    **Example:**

    ```python
    rsm = linflow.representational_similarity(traj.weights, X)  # (T, n, n)
    ```
    """
    fn = "representational_similarity"
    if X is None:
        weights = check_weights(fn, weights)
    else:
        weights, X = _inputs(fn, weights, X)
    if not isinstance(layer, int) or not 1 <= layer <= len(weights):
        raise ValueError(f"{fn}(..., layer={layer!r}) must be an int in 1..{len(weights)}.")
    features = product(weights[:layer])
    if X is not None:
        features = features @ lift(X.T, features.ndim)
    rsm = jnp.swapaxes(features, -1, -2) @ features
    if not normalize:
        return rsm
    norm = jnp.sqrt(jnp.diagonal(rsm, axis1=-2, axis2=-1))
    outer = norm[..., :, None] * norm[..., None, :]
    return jnp.where(outer > 0, rsm / jnp.where(outer > 0, outer, 1.0), 0.0)
