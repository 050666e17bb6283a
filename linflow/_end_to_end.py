r"""End-to-end dynamics of a balanced depth-$N$ linear network (Arora, Cohen & Hazan 2018).

For a balanced start ($W_{j+1}^\top W_{j+1} = W_j W_j^\top$), the layer-wise gradient flow of
$\ell(W_N \cdots W_1)$ moves the product $W$ by

$$\tau \frac{dW}{dt} = -\sum_{j=1}^{N} (W W^\top)^{\frac{j-1}{N}}\, \nabla\ell(W)\,
(W^\top W)^{\frac{N-j}{N}},$$

and its singular values by $\tau\, d\sigma_r/dt = -N \sigma_r^{2-2/N}\langle\nabla\ell(W),
u_r v_r^\top\rangle$ (Arora, Cohen, Hu & Luo 2019, Thm 3).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._checks import check_dtype, check_int, check_positive
from ._flow import check_flow_options, integrate
from ._loss import _loss
from ._objective import Objective, as_objective
from ._task import Task
from ._trajectory import Trajectory


def _check_w_grad(fn: str, w, grad, depth):
    """`w` and `grad` as arrays of one shape `(*batch, m, d)`, and a positive int `depth`."""
    w, grad = jnp.asarray(w), jnp.asarray(grad)
    if w.ndim < 2 or w.shape != grad.shape:
        raise ValueError(f"{fn}(w, grad, ...) need the same (*batch, m, d) shape.")
    if not isinstance(depth, int | np.integer) or depth < 1:
        raise ValueError(f"{fn}(..., depth={depth!r}) must be a positive int.")
    return w, grad


def preconditioned_gradient(w: Array, grad: Array, depth: int) -> Array:
    r"""$\sum_{j=1}^{N} (WW^\top)^{(j-1)/N} G (W^\top W)^{(N-j)/N}$ (Arora et al. 2018, Thm 1).

    Computed in the singular bases of $W = U S V^\top$ (full $U$, $V$): the sum is
    $U (F \odot U^\top G V) V^\top$ with
    $F_{ik} = \sum_j s_i^{2(j-1)/N} s_k^{2(N-j)/N}$ and $0^0 = 1$, so the powers $0$ are exact
    identities. Singular values below $\max(m, d)\,\epsilon\, s_1$ (rounding level) count as
    zero, so an exactly rank-deficient $W$ gets the velocity of its rank (raised to the powers
    $2j/N$, rounding errors would add about $\epsilon^{2/N}$).

    **Arguments:** `w` the end-to-end matrix $W$ and `grad` $G = \nabla\ell(W)$, both
    `(*batch, m, d)`; `depth` $N \ge 1$.

    **Returns:** shape `(*batch, m, d)`; for $N = 1$ it is $G$ itself.

    **Raises:** `ValueError` if the shapes differ or `depth` is not a positive int.

    **Example:**

    ```python
    v = linflow.preconditioned_gradient(W, W - W_target, depth=3)
    ```
    """
    fn = "preconditioned_gradient"
    w, grad = _check_w_grad(fn, w, grad, depth)
    if depth == 1:  # one term, (WWᵀ)^0 G (WᵀW)^0: no SVD needed
        return grad
    m, d = w.shape[-2:]
    u, s, vt = jnp.linalg.svd(w, full_matrices=True)
    # Singular values at rounding level are zeros of an exactly rank-deficient W: raised to the
    # powers 2j/N they would add ~eps^(2/N) to the velocity.
    rounding = max(m, d) * jnp.finfo(s.dtype).eps * s[..., :1]
    s = jnp.where(s > rounding, s, 0.0)
    k = s.shape[-1]
    s_left = jnp.concatenate([s, jnp.zeros((*s.shape[:-1], m - k), s.dtype)], axis=-1)
    s_right = jnp.concatenate([s, jnp.zeros((*s.shape[:-1], d - k), s.dtype)], axis=-1)
    factor = sum(
        (s_left ** (2 * (j - 1) / depth))[..., :, None]
        * (s_right ** (2 * (depth - j) / depth))[..., None, :]
        for j in range(1, depth + 1)
    )
    rotated = jnp.swapaxes(u, -1, -2) @ grad @ jnp.swapaxes(vt, -1, -2)
    return u @ (factor * rotated) @ vt


class _TaskLoss(eqx.Module):
    """The task loss as a function of the end-to-end matrix $W$."""

    task: Task

    def __call__(self, w):
        return _loss(self.task, w)


class _OnMatrix(eqx.Module):
    """A loss of $W$ applied to the one-matrix parameter tuple `(W,)`."""

    loss_fn: object

    def __call__(self, params, *data):
        return self.loss_fn(params[0], *data)


class _EndToEnd(Objective):
    """The loss of $W$, whose 'gradient' is the end-to-end preconditioned one."""

    depth: int = eqx.field(static=True, default=1)

    def __init__(self, loss_fn, data, batch_ndim: int, depth: int):
        super().__init__(_OnMatrix(loss_fn), data, batch_ndim=batch_ndim)
        self.depth = depth

    def gradients(self, params):
        (w,) = params
        (grad,) = super().gradients(params)
        return (preconditioned_gradient(w, grad, self.depth),)


def end_to_end_flow(
    loss,
    w0,
    ts,
    *,
    depth: int,
    tau=1.0,
    rtol: float | None = None,
    atol: float | None = None,
    **kwargs,
) -> Trajectory:
    r"""Integrate the end-to-end flow of a balanced depth-$N$ linear network on its product $W$.

    $$\tau \frac{dW}{dt} = -\sum_{j=1}^{N} (W W^\top)^{\frac{j-1}{N}}\, \nabla\ell(W)\,
    (W^\top W)^{\frac{N-j}{N}}$$

    (Arora, Cohen & Hazan 2018, Thm 1). For a balanced start this is exactly the product of
    the layer-wise gradient flow (`linflow.gradient_flow`), with $N$ matrices of any widths
    traded for one; $N = 1$ is plain gradient flow on $W$. Solved by `linflow.gradient_flow`.

    The right-hand side is not Lipschitz where $W$ is rank-deficient: $(WW^\top)^{1/N}$ has the
    eigenvalues $\sigma^{2/N}$, of infinite slope at $\sigma = 0$ for $N \ge 3$. A solver's error
    of relative size `rtol` in a vanishing singular value therefore changes the velocity by
    about $\mathrm{rtol}^{2/N}$, so a product that starts (or stays) at low rank is resolved
    only to that accuracy. The closed forms (`linflow.exact_flow`, `linflow.deep_mode`) have no such
    limit.

    **Arguments:**

    - `loss`: a `linflow.Task` (loss $L(W)$), or a loss of the matrix $W$ for one
      initialisation: a callable `loss_fn(W) -> scalar` or a `linflow.Objective` on $W$
      (with per-initialisation `data`, `loss_fn(W, data)`).
    - `w0`: the end-to-end matrix at $t = 0$, `(*batch, m, d)`; all leading axes are batch axes.
    - `ts`: increasing save times, shape `(T,)`.
    - `depth`: $N \ge 1$.
    - `tau`, `rtol`, `atol`, `**kwargs`: as for `linflow.gradient_flow`.

    **Returns:** a `Trajectory` with `weights = (W,)`, `W` of shape `(T, *batch, m, d)`, so that
    `product()`, `loss(task)` and `singular_values(task)` apply.

    **Raises:** `ValueError` for bad arguments (and those of `gradient_flow`).

    **Example:**

    ```python
    W0 = linflow.product(linflow.init_weights(key, task, (4, 4), scheme="balanced", scale=0.1))
    traj = linflow.end_to_end_flow(task, W0, jnp.linspace(0, 10, 11), depth=3)
    ```
    """
    fn = "end_to_end_flow"
    check_flow_options(fn, kwargs)
    w0 = jnp.asarray(w0)
    if w0.ndim < 2:
        raise ValueError(f"{fn}(..., w0=...) must be a (*batch, m, d) array, got {w0.shape}.")
    check_dtype(fn, "w0", w0.dtype)
    depth = check_int(fn, "depth", depth, minimum=1)
    batch_ndim = w0.ndim - 2
    if isinstance(loss, Task):
        if w0.shape[-2:] != loss.sigma_yx.shape:
            raise ValueError(
                f"{fn}(..., w0=...) must end in the task's shape {loss.sigma_yx.shape}, "
                f"got {w0.shape}."
            )
        loss_fn, data = _TaskLoss(loss.astype(w0.dtype)), None
    else:
        objective = as_objective(fn, loss)
        loss_fn, data = objective.loss_fn, objective.data
    problem = _EndToEnd(loss_fn, data, batch_ndim, depth)
    return integrate(fn, problem, (w0,), ts, tau=tau, rtol=rtol, atol=atol, **kwargs)


def singular_value_velocity(w: Array, grad: Array, depth: int, *, tau=1.0) -> Array:
    r"""$d\sigma_r/dt$ of the end-to-end matrix of a balanced depth-$N$ network.

    $$\tau\frac{d\sigma_r}{dt} = -N\,(\sigma_r^2)^{1 - 1/N}\,
    \langle \nabla\ell(W),\, u_r v_r^\top \rangle$$

    (Arora, Cohen, Hu & Luo 2019, "Implicit regularization in deep matrix factorization",
    Theorem 3; some secondary accounts print the factor as $\sigma_r^{1-1/N}$, a typo), with
    $W = \sum_r \sigma_r u_r v_r^\top$ the SVD. Valid for distinct non-zero singular values.

    **Arguments:** `w` $W$ and `grad` $\nabla\ell(W)$, both `(*batch, m, d)`; `depth` $N \ge 1$;
    `tau` the time constant.

    **Returns:** $d\sigma_r/dt$, shape `(*batch, k)`, $k = \min(m, d)$, for the singular values in
    descending order.

    **Raises:** `ValueError` if the shapes differ or `depth` is not a positive int.

    **Example:**

    ```python
    rates = linflow.singular_value_velocity(W, W - W_target, depth=3)
    ```
    """
    fn = "singular_value_velocity"
    w, grad = _check_w_grad(fn, w, grad, depth)
    check_positive(fn, "tau", tau)
    u, s, vt = jnp.linalg.svd(w, full_matrices=False)
    projection = jnp.einsum("...mk,...md,...kd->...k", u, grad, vt)
    return -depth * (s**2) ** (1.0 - 1.0 / depth) * projection / tau
