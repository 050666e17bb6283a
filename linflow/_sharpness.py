r"""Sharpness: the largest eigenvalue of the loss Hessian, by Lanczos on Hessian-vector products."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._checks import check_int, check_key, check_task_weights
from ._loss import layer_gradients
from ._objective import Objective, as_objective
from ._task import Task

# Lanczos steps by default: the top Ritz value converges like T_k(1 + 2 gap)^-2 (Kaniel-Paige),
# so double precision needs about twice the steps of single precision for its last digits.
_ITERATIONS = {np.dtype("float32"): 60, np.dtype("float64"): 100}


def _flat(tree, batch):
    """The leaves of `tree`, each `(*batch, ...)`, as one vector per initialisation."""
    return jnp.concatenate([x.reshape(batch + (-1,)) for x in jax.tree.leaves(tree)], axis=-1)


def _unflat(vector, like, batch):
    """The inverse of `_flat`: `vector` `(*batch, P)` back into a tree shaped like `like`."""
    leaves, treedef = jax.tree.flatten(like)
    sizes = np.cumsum([int(np.prod(x.shape[len(batch) :])) for x in leaves])[:-1]
    parts = jnp.split(vector, sizes, axis=-1)
    return treedef.unflatten([p.reshape(x.shape) for p, x in zip(parts, leaves)])


def _lanczos_top(hvp, batch, size: int, dtype, iterations: int, key) -> Array:
    r"""Unit top eigenvector (Ritz vector) of the symmetric maps `hvp`, one per initialisation.

    Lanczos with full reorthogonalisation (classical Gram-Schmidt, twice) on vectors of shape
    `(*batch, size)`, every initialisation at once. When the Krylov space is exhausted (the
    new vector vanishes), the recursion restarts from a random vector orthogonal to all
    previous ones with a zero off-diagonal entry, so the tridiagonal matrix stays exact.
    """
    k = min(iterations, size)
    eps = jnp.finfo(dtype).eps

    def orthogonalise(w, Q):
        for _ in range(2):
            w = w - jnp.einsum("k...p,k...->...p", Q, jnp.einsum("k...p,...p->k...", Q, w))
        return w

    def normalise(w):
        norm = jnp.linalg.norm(w, axis=-1, keepdims=True)
        return w / jnp.where(norm > 0, norm, 1.0)  # 0 only past the last step, unused

    # Random directions shared by the batch: the start, then one per possible restart.
    R = normalise(jax.random.normal(key, (k + 1, size), dtype))
    R = R.reshape((k + 1,) + (1,) * len(batch) + (size,))
    Q = (
        jnp.zeros((k + 1,) + batch + (size,), dtype)
        .at[0]
        .set(jnp.broadcast_to(R[0], batch + (size,)))
    )
    zeros = jnp.zeros((k,) + batch, dtype)

    def step(j, state):
        Q, alpha, beta, scale = state
        w = hvp(Q[j])
        a = jnp.sum(Q[j] * w, axis=-1)
        w = orthogonalise(w, Q)
        b = jnp.linalg.norm(w, axis=-1)
        scale = jnp.maximum(scale, jnp.maximum(jnp.abs(a), b))
        # A vanishing residual (rounding noise only) means an invariant subspace was found.
        restart = b <= 10 * np.sqrt(size) * eps * scale
        fresh = normalise(orthogonalise(jnp.broadcast_to(R[j + 1], w.shape), Q))
        safe_b = jnp.where(restart, 1.0, b)[..., None]
        q = jnp.where(restart[..., None], fresh, w / safe_b)
        return (
            Q.at[j + 1].set(q),
            alpha.at[j].set(a),
            beta.at[j].set(jnp.where(restart, 0.0, b)),
            scale,
        )

    state = (Q, zeros, zeros, jnp.zeros(batch, dtype))
    Q, alpha, beta, _ = jax.lax.fori_loop(0, k, step, state)
    idx = jnp.arange(k)
    T = jnp.zeros(batch + (k, k), dtype).at[..., idx, idx].set(jnp.moveaxis(alpha, 0, -1))
    beta = jnp.moveaxis(beta[:-1], 0, -1)
    T = T.at[..., idx[:-1], idx[1:]].set(beta).at[..., idx[1:], idx[:-1]].set(beta)
    _, Y = jnp.linalg.eigh(T)  # ascending: the last Ritz pair is the top one
    return normalise(jnp.einsum("k...p,...k->...p", Q[:k], Y[..., -1]))


def _gradient_function(problem):
    """The batched gradient of a Task's loss or of an Objective."""
    if isinstance(problem, Objective):
        return problem.gradients
    return lambda weights: layer_gradients(weights, problem.sigma_yx, problem._sigma_xx)


@eqx.filter_jit
def _sharpness(problem, weights, key, iterations: int):
    batch = jax.tree.leaves(weights)[0].shape[: _batch_ndim(problem, weights)]
    vector = _flat(weights, batch)
    gradients = _gradient_function(problem)

    def hvp(at):
        def product(v):
            tangent = _unflat(v, at, batch)
            return _flat(jax.jvp(gradients, (at,), (tangent,))[1], batch)

        return product

    fixed = jax.lax.stop_gradient(weights)
    v = _lanczos_top(hvp(fixed), batch, vector.shape[-1], vector.dtype, iterations, key)
    v = jax.lax.stop_gradient(v)
    return jnp.sum(v * hvp(weights)(v), axis=-1)


def _batch_ndim(problem, weights) -> int:
    return problem.batch_ndim if isinstance(problem, Objective) else weights[0].ndim - 2


def _check(fn: str, task, weights):
    """`(problem, weights)`: a Task or an Objective with its validated weights."""
    if isinstance(task, Task):
        return check_task_weights(fn, task, weights)  # the task in the weights' dtype
    if not isinstance(task, Objective) and not callable(task):
        raise ValueError(
            f"{fn}(task=...) must be a linflow.Task, a linflow.Objective or a callable loss, "
            f"got {type(task).__name__}."
        )
    objective = as_objective(fn, task)
    params = objective.check_params(fn, weights)
    try:  # forward-over-reverse needs a jvp rule for every operation in the gradient
        jax.eval_shape(lambda p: jax.jvp(objective.gradients, (p,), (p,)), params)
    except (TypeError, ValueError, NotImplementedError) as error:
        raise ValueError(
            f"{fn}(task=...): the Objective's loss_fn has no Hessian-vector product "
            f"(jax.jvp of its jax.grad failed: {error})"
        ) from error
    return objective, params


def sharpness(task, weights, *, iterations: int | None = None, key=None) -> Array:
    r"""Sharpness: the largest eigenvalue $\lambda_{\max}(\nabla^2 L)$ of the loss Hessian.

    The Hessian is taken with respect to all layers $(W_1, \dots, W_N)$ jointly (a
    $P \times P$ matrix, $P = \sum_l h_l h_{l-1}$), for each initialisation of the batch. It is
    never formed: Lanczos iteration with full reorthogonalisation runs on Hessian-vector
    products $\nabla^2 L\, v$, the `jax.jvp` of the gradient, for every initialisation at once,
    and the top Ritz vector $v$ gives $\lambda_{\max} = v^\top \nabla^2 L\, v$. The derivative
    of the result is that of $v^\top \nabla^2 L(W)\, v$ at fixed $v$ (Hellmann-Feynman), so
    `jax.grad` never differentiates the iteration; it is jit- and vmap-safe.

    Cohen, Kaur, Li, Kolter & Talwalkar (2021), "Gradient Descent on Neural Networks
    Typically Occurs at the Edge of Stability": gradient descent with learning rate $\eta$
    is stable near a minimum only while the sharpness is below $2/\eta$; in training it rises
    (progressive sharpening) up to $2/\eta$ and hovers there.

    At a balanced global minimum of a whitened task ($\Sigma_{xx} = I$,
    $W_l = R_l S^{1/N} R_{l-1}^\top$, $W = \Sigma_{yx} = U S V^\top$), the Hessian is
    $J^\top J$ for the Jacobian $J$ of $W$, and $J J^\top$ maps
    $E \mapsto \sum_l (W_N \cdots W_{l+1})(W_N \cdots W_{l+1})^\top E
    (W_{l-1} \cdots W_1)^\top (W_{l-1} \cdots W_1)$, with eigenvalues
    $\sum_{l=1}^N s_i^{2(N-l)/N} s_j^{2(l-1)/N}$ on $u_i v_j^\top$; the largest is
    $\lambda_{\max} = N s_1^{2 - 2/N}$ ($2 s_1$ for two layers, $\lambda_{\max}(\Sigma_{xx}) = 1$
    for one). Unbalanced minima are sharper: the flattest global minima of deep linear
    networks are (nearly) balanced (Mulayoff & Michaeli 2020, "Unique Properties of Flat Minima
    in Deep Networks").

    **Arguments:**

    - `task`: a `linflow.Task`, or a `linflow.Objective` (or a callable loss): its Hessian-vector
      products come from `jax.jvp` of `jax.grad` of its `loss_fn`.
    - `weights`: tuple $(W_1, \dots, W_N)$, each `(*batch, h_l, h_{l-1})`; for an objective,
      its parameter pytree with the objective's batch axes.
    - `iterations`: Lanczos steps (at most $P$; with $P$ steps the result is exact up to
      rounding). Default 60 in float32 and 100 in float64.
    - `key`: `jax.random` key of the random start vector (default `jax.random.key(0)`).

    **Returns:** $\lambda_{\max}$ for every initialisation, shape `batch`, in the weights' dtype.

    **Raises:** `ValueError` for bad weights, a non-positive `iterations`, a `task` that is not a
    Task or Objective, or an Objective whose `loss_fn` has no Hessian-vector product (its
    gradient uses an operation without a forward-mode rule, e.g. a `jax.custom_vjp` whose
    backward pass calls `jax.pure_callback`).

    **Example:**

    ```python
    weights = linflow.init_weights(key, task, 8, scale=0.1, batch=(100,))
    linflow.sharpness(task, weights)   # (100,)
    ```
    """
    fn = "sharpness"
    if iterations is not None:
        iterations = check_int(fn, "iterations", iterations, minimum=1)
    problem, weights = _check(fn, task, weights)
    dtype = jax.tree.leaves(weights)[0].dtype
    if iterations is None:
        iterations = _ITERATIONS.get(np.dtype(dtype), 100)
    if key is None:
        key = jax.random.key(0)
    check_key(fn, "key", key)
    return _sharpness(problem, weights, key, iterations)


def trajectory_sharpness(task, weights, **kwargs) -> Array:
    """`sharpness` at every save of a trajectory's weights (leading time axis), `(T, *batch)`."""
    if isinstance(task, Task):
        return sharpness(task, weights, **kwargs)  # time is one more batch axis
    return jax.vmap(lambda w: sharpness(task, w, **kwargs))(weights)
