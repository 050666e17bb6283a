r"""Loss and gradients of a linear network of any depth, from $\Sigma_{xx}$ and $\Sigma_{yx}$.

For $W = W_N \cdots W_1$ and $G = \partial L / \partial W = W \Sigma_{xx} - \Sigma_{yx}$,

$$\frac{\partial L}{\partial W_l} = (W_N \cdots W_{l+1})^\top \, G \, (W_{l-1} \cdots W_1)^\top,$$

which for two layers is $\partial L/\partial W_1 = -W_2^\top(\Sigma_{yx} - W_2 W_1 \Sigma_{xx})$ and
$\partial L/\partial W_2 = -(\Sigma_{yx} - W_2 W_1 \Sigma_{xx}) W_1^\top$ (Saxe, McClelland &
Ganguli 2014, "Exact solutions to the nonlinear dynamics of learning in deep linear neural
networks").
All functions broadcast over leading batch axes of the weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

from ._checks import check_task_weights
from ._task import Task


def lift(x: Array, ndim: int) -> Array:
    """`x` with leading unit axes added up to `ndim` axes (explicit broadcasting over batches)."""
    return x.reshape((1,) * (ndim - x.ndim) + x.shape)


def product(weights) -> Array:
    r"""End-to-end map $W = W_N \cdots W_1$, shape `(*batch, m, d)`."""
    w = weights[0]
    for layer in weights[1:]:
        w = layer @ w
    return w


def _loss(task: Task, w: Array) -> Array:
    r"""$L = \tfrac12 \operatorname{tr}((W - W_*) \Sigma_{xx} (W - W_*)^\top) + L_{\min}$."""
    e = w - lift(task.optimum, w.ndim)
    e_sxx = e if task.whitened else e @ task.sigma_xx
    return 0.5 * jnp.sum(e_sxx * e, axis=(-2, -1)) + task.loss_min


def loss(task: Task, weights) -> Array:
    r"""Mean squared error $L = \frac{1}{2n}\sum_i \|y_i - W x_i\|^2$ of the network.

    Evaluated from the task's statistics as
    $L = \tfrac12 \operatorname{tr}((W - W_*) \Sigma_{xx} (W - W_*)^\top) + L_{\min}$ with
    $W_* = \Sigma_{yx}\Sigma_{xx}^+$, which equals the per-sample loss when the task holds data
    (with `normalize="sum"`, the sum instead of the mean) and is zero at the optimum otherwise.

    **Arguments:** `task`, `weights` a tuple $(W_1, \dots, W_N)$ with leading batch axes.

    **Returns:** the loss, shape `batch`.

    **Example:**

    ```python
    linflow.loss(task, (W1, W2))
    ```
    """
    task, weights = check_task_weights("loss", task, weights)
    return _loss(task, product(weights))


# Largest contraction that `batched_matmul` unrolls. On XLA:CPU the batched dot of tiny
# matrices is 2-50x slower than a fused sum of outer products; with its operands
# materialised (`_error`, `_materialize`), the unrolled form wins up to d = 32 in float32
# and float64 (GD step, B = 10^4; see benchmarks/ and the README).
UNROLL_MAX = 32


def _unrolls(a: Array, b: Array, k: int) -> bool:
    """Whether `batched_matmul` unrolls: both operands batched, contraction small, on CPU."""
    return a.ndim >= 3 and b.ndim >= 3 and k <= UNROLL_MAX and jax.default_backend() == "cpu"


def batched_matmul(
    a: Array, b: Array, *, transpose_a: bool = False, transpose_b: bool = False
) -> Array:
    r"""$AB$ (or $A^\top B$, $AB^\top$) over matching leading batch axes.

    For a contraction of at most `UNROLL_MAX` on the CPU, the product is written as a sum of
    outer products $\sum_k A_{:k} B_{k:}$, read straight from the rows or columns of the
    operands (no transpose is formed), which XLA fuses into one elementwise loop over the
    batch; otherwise (or without batch axes, where one GEMM is best) it is the plain matmul.
    """
    k = a.shape[-2] if transpose_a else a.shape[-1]
    if not _unrolls(a, b, k):
        a = jnp.swapaxes(a, -1, -2) if transpose_a else a
        return a @ (jnp.swapaxes(b, -1, -2) if transpose_b else b)

    def column(j):
        return (a[..., j, :] if transpose_a else a[..., :, j])[..., :, None]

    def row(j):
        return (b[..., :, j] if transpose_b else b[..., j, :])[..., None, :]

    # Past 8 terms, four interleaved partial sums: one chain of k dependent adds is
    # latency-bound (d = 32: 1.2-1.4x faster in float32 and float64; no gain at d <= 8).
    n_sums = 4 if k > 8 else 1
    sums = [column(j) * row(j) for j in range(n_sums)]
    for j in range(n_sums, k):
        sums[j % n_sums] = sums[j % n_sums] + column(j) * row(j)
    while len(sums) > 1:
        sums = [sums[i] + sums[i + 1] for i in range(0, len(sums), 2)]
    return sums[0]


def _materialize(x: Array) -> Array:
    """`x`, computed once into its own buffer, for a product that unrolled products read.

    XLA:CPU otherwise fuses an unrolled product into every unrolled product that reads it,
    recomputing it once per use (a depth-3 GD step ran 7x slower). `optimization_barrier` is
    dropped on the CPU, so the value passes through a `lax.cond` whose branches both return
    it (the predicate only has to be traced). Elsewhere (GPU, no batch) it is `x`.
    """
    if x.ndim < 3 or x.size == 0 or jax.default_backend() != "cpu":
        return x
    return jax.lax.cond(jnp.isnan(x[(0,) * x.ndim]), lambda: x, lambda: x + 0)


def _error(w: Array, sigma_yx: Array, sigma_xx: Array | None) -> Array:
    r"""$G = W\Sigma_{xx} - \Sigma_{yx}$ for a batch of end-to-end maps `w`.

    When the gradients' products are unrolled, $G$ is formed as one GEMM over the whole
    batch, $[W, I_m] \begin{bmatrix}\Sigma_{xx} \\ -\Sigma_{yx}\end{bmatrix}$, so that XLA
    materialises it: an unrolled product whose operand is itself an elementwise expression
    ($W\Sigma_{xx} - \Sigma_{yx}$, or an unrolled $W_2 W_1$) runs 3-8x slower on XLA:CPU.
    """
    m, d = w.shape[-2:]
    if not _unrolls(w, w, max(m, d)):
        g = w if sigma_xx is None else w @ sigma_xx
        return g - lift(sigma_yx, g.ndim)
    sigma_xx = jnp.eye(d, dtype=w.dtype) if sigma_xx is None else sigma_xx
    eye = jnp.broadcast_to(jnp.eye(m, dtype=w.dtype), w.shape[:-1] + (m,))
    return jnp.concatenate([w, eye], axis=-1) @ jnp.concatenate([sigma_xx, -sigma_yx])


def layer_gradients(weights, sigma_yx: Array, sigma_xx: Array | None) -> tuple[Array, ...]:
    r"""$\partial L/\partial W_l$ for every layer from $\Sigma_{yx}$, $\Sigma_{xx}$ (`None`: $I$).

    No validation: this is the inner step of every engine. Costs one product chain forwards,
    one backwards.
    """
    # prefix[l] = W_l ⋯ W_1 (prefix[0] = identity, left implicit); a product read by other
    # products is materialised (prefix[l] for l >= 2 and back for l >= 2, at depth >= 3).
    prefix = [None]
    for w in weights[:-1]:
        prefix.append(w if prefix[-1] is None else _materialize(batched_matmul(w, prefix[-1])))
    w_full = weights[-1] if prefix[-1] is None else batched_matmul(weights[-1], prefix[-1])
    back = _error(w_full, sigma_yx, sigma_xx)  # (W_N ⋯ W_{l+1})ᵀ G, from the top layer down
    grads = [None] * len(weights)
    for l in range(len(weights) - 1, -1, -1):
        if prefix[l] is not None:
            grads[l] = batched_matmul(back, prefix[l], transpose_b=True)
        else:
            grads[l] = back
        if l > 0:
            back = batched_matmul(weights[l], back, transpose_a=True)
            back = _materialize(back) if l > 1 else back
    return tuple(grads)


def gradients(task: Task, weights) -> tuple[Array, ...]:
    r"""Gradients $\partial L/\partial W_l$ of the task loss for every layer.

    $\partial L/\partial W_l = (W_N \cdots W_{l+1})^\top (W \Sigma_{xx} - \Sigma_{yx})
    (W_{l-1} \cdots W_1)^\top$, computed from the statistics (no pass over the data).

    **Arguments:** `task`, `weights` a tuple $(W_1, \dots, W_N)$, each `(*batch, h_l, h_{l-1})`.

    **Returns:** a tuple of arrays shaped like `weights`.

    **Example:**

    ```python
    g1, g2 = linflow.gradients(task, (W1, W2))
    ```
    """
    task, weights = check_task_weights("gradients", task, weights)
    return layer_gradients(weights, task.sigma_yx, task._sigma_xx)
