r"""The network in the task's modes: change of basis, mode equations, energy, mode-space flow.

With $\Sigma_{yx} = U S V^\top$ completed to orthogonal $U$ `(m, m)` and $V$ `(d, d)`, the change
of basis $\bar W_1 = W_1 V$, $\bar W_N = U^\top W_N$ (middle layers unchanged; $\bar W = U^\top W V$
for one layer) turns the flow $\tau\,\dot W_l = -\partial L/\partial W_l$ into the same flow for
the task $(\bar S, \bar\Sigma_{xx})$ with $\bar S = U^\top \Sigma_{yx} V$ rectangular-diagonal and
$\bar\Sigma_{xx} = V^\top \Sigma_{xx} V$ ($\bar\Sigma_{xx} = I$ when whitened; Saxe, McClelland &
Ganguli 2014, "Exact solutions to the nonlinear dynamics of learning in deep linear neural
networks").

`task.modes()` has only $k = \min(m, d)$ modes. The bases are completed by orthonormal
complements: when $d > m$ the extra columns $a^i$, $i > m$, of $\bar W_1$ see inputs that no
output depends on ($s_i = 0$ and no partner $b^i$); when $m > d$ the extra rows $b^i$,
$i > d$, of $\bar W_N$ feed outputs that no input explains. With whitened inputs both only
shrink under the flow ($\tau\,\dot a^i = -\sum_j (a^i\cdot b^j)\, b^j$).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from ._checks import check_positive, check_task_weights, check_weights
from ._flow import check_flow_options, integrate
from ._loss import layer_gradients, lift, product
from ._task import Task
from ._trajectory import Trajectory


def _complete(basis: Array) -> Array:
    """Orthogonal `(n, n)` matrix whose first `k` columns are the orthonormal `basis` `(n, k)`."""
    n, k = basis.shape
    q, _ = jnp.linalg.qr(jnp.concatenate([basis, jnp.eye(n, dtype=basis.dtype)], axis=1))
    return jnp.concatenate([basis, q[:, k:n]], axis=1)


@eqx.filter_jit  # one compiled call instead of a dozen small ones
def mode_bases(task: Task):
    r"""The task's modes completed to orthogonal bases: $\Sigma_{yx} = U \bar S V^\top$.

    **Arguments:** `task`, a `linflow.Task` with $\Sigma_{yx}$ of shape `(m, d)`.

    **Returns:** `(U, s, V)`: `U` of shape `(m, m)` and `V` of shape `(d, d)` orthogonal, whose
    first $k = \min(m, d)$ columns are those of `task.modes()`, and the singular values `s`,
    shape `(k,)`, descending.

    **Example:**

    ```python
    U, s, V = linflow.mode_bases(task)   # U.T @ task.sigma_yx @ V is diagonal
    ```
    """
    U, s, V = task.modes()
    return _complete(U), s, _complete(V)


def mode_task(task: Task) -> Task:
    r"""The task in its own modes: $\Sigma_{yx} \to \bar S$, $\Sigma_{xx} \to V^\top \Sigma_{xx} V$.

    $\bar S$ is the `(m, d)` rectangular-diagonal matrix of the singular values;
    $\bar\Sigma_{yy} = U^\top \Sigma_{yy} U$, so that the loss of mode weights
    (`to_modes`) in this task equals the loss of the weights in `task`.

    **Arguments:** `task`, a `linflow.Task`.

    **Returns:** a `linflow.Task` (whitened if `task` is).

    **Example:**

    ```python
    linflow.loss(linflow.mode_task(task), linflow.to_modes(task, weights))
    ```
    """
    s_bar, sigma_xx, sigma_yy = _mode_statistics(task)
    return Task(s_bar, sigma_xx, sigma_yy=sigma_yy)


@eqx.filter_jit
def _mode_statistics(task: Task):
    r"""$\bar S$, $V^\top \Sigma_{xx} V$, $U^\top \Sigma_{yy} U$ (or `None`)."""
    U, s, V = mode_bases(task)
    m, d = task.output_dim, task.input_dim
    k = s.shape[0]
    s_bar = jnp.zeros((m, d), s.dtype).at[jnp.arange(k), jnp.arange(k)].set(s)
    sxx = None if task.whitened else V.T @ task.sigma_xx @ V
    syy = None if task.sigma_yy is None else U.T @ task.sigma_yy @ U
    return s_bar, _symmetric(sxx), _symmetric(syy)


def _symmetric(x):
    return None if x is None else 0.5 * (x + x.T)


def _rotate(weights, left: Array, right: Array):
    r"""$W_1 \to W_1\,\text{right}$, $W_N \to \text{left}\,W_N$ (both for a single layer)."""
    first = weights[0] @ lift(right, weights[0].ndim)
    if len(weights) == 1:
        return (lift(left, first.ndim) @ first,)
    return (first, *weights[1:-1], lift(left, weights[-1].ndim) @ weights[-1])


def to_modes(task: Task, weights):
    r"""Weights in the task's modes: $\bar W_1 = W_1 V$, $\bar W_N = U^\top W_N$ (Saxe et al. 2014).

    Middle layers are unchanged; a single layer becomes $\bar W = U^\top W V$. $U$ and $V$ are the
    orthogonal bases of `mode_bases`, so the end-to-end map becomes $U^\top W V$, whose diagonal
    holds the mode strengths $u^{\alpha\top} W v^\alpha$.

    **Arguments:** `task`; `weights` a tuple $(W_1, \dots, W_N)$, each `(*batch, h_l, h_{l-1})`.

    **Returns:** the tuple $(\bar W_1, \dots, \bar W_N)$, shaped like `weights`.

    **Raises:** `ValueError` for weights that do not fit the task.

    **Example:**

    ```python
    W1_bar, W2_bar = linflow.to_modes(task, (W1, W2))
    ```
    """
    task, weights = check_task_weights("to_modes", task, weights)
    U, _, V = mode_bases(task)
    return _rotate(weights, U.T, V)


def from_modes(task: Task, mode_weights):
    r"""Back from the task's modes: $W_1 = \bar W_1 V^\top$, $W_N = U \bar W_N$ (undoes `to_modes`).

    **Arguments:** `task`; `mode_weights` a tuple $(\bar W_1, \dots, \bar W_N)$, each
    `(*batch, h_l, h_{l-1})`.

    **Returns:** the weights $(W_1, \dots, W_N)$, shaped like `mode_weights`.

    **Raises:** `ValueError` for weights that do not fit the task.

    **Example:**

    ```python
    weights = linflow.from_modes(task, linflow.to_modes(task, weights))
    ```
    """
    task, mode_weights = check_task_weights("from_modes", task, mode_weights)
    U, _, V = mode_bases(task)
    return _rotate(mode_weights, U, V.T)


def mode_vectors(mode_weights):
    r"""Per-mode vectors: $a^i$, the columns of $\bar W_1$, and $b^i$, the rows of $\bar W_N$.

    $a^i$ holds the weights from input mode $v^i$ into the first hidden layer; $b^i$ those from
    the last hidden layer to output mode $u^i$ (Saxe, McClelland & Ganguli 2014, "Exact
    solutions to the nonlinear dynamics of learning in deep linear neural networks").

    **Arguments:** `mode_weights` a tuple $(\bar W_1, \dots, \bar W_N)$ with $N \ge 2$ (from
    `to_modes`).

    **Returns:** `(a, b)`: `a` of shape `(*batch, d, h_1)` with `a[..., i, :]` $= a^i$, and `b` of
    shape `(*batch, m, h_{N-1})` with `b[..., i, :]` $= b^i$.

    **Raises:** `ValueError` for a single layer (it has no hidden layer).

    **Example:**

    ```python
    a, b = linflow.mode_vectors(linflow.to_modes(task, (W1, W2)))
    overlaps = b @ a.T     # a^j . b^i; its diagonal holds the mode strengths
    ```
    """
    mode_weights = check_weights("mode_vectors", mode_weights)
    if len(mode_weights) < 2:
        raise ValueError("mode_vectors(mode_weights=...) needs at least two layers.")
    return jnp.swapaxes(mode_weights[0], -1, -2), mode_weights[-1]


def mode_equations(task: Task, mode_weights, *, tau=1.0):
    r"""Time derivatives of the mode weights (Saxe et al. 2014, for any $\Sigma_{xx}$).

    The mode-vector equations of Saxe, McClelland & Ganguli (2014), "Exact solutions to the
    nonlinear dynamics of learning in deep linear neural networks", extended to any
    $\Sigma_{xx}$.

    For two layers, with $\bar\Sigma = V^\top \Sigma_{xx} V$ and the coupling
    $C = \bar S - \bar W_2 \bar W_1 \bar\Sigma$, the mode vectors obey

    $$\tau\,\dot a^i = \sum_j C_{ji}\, b^j, \qquad \tau\,\dot b^j = \sum_i C_{ji}\, a^i,$$

    which for $\bar\Sigma = I$ is eqs. 6-7:
    $\tau\,\dot a^i = (s_i - a^i\cdot b^i)\,b^i - \sum_{j\ne i} (a^i\cdot b^j)\,b^j$ and
    $\tau\,\dot b^i = (s_i - a^i\cdot b^i)\,a^i - \sum_{j\ne i} (a^j\cdot b^i)\,a^j$. Deeper
    networks follow $\tau\,\dot{\bar W_l} = -\partial L/\partial \bar W_l$ for the task
    $(\bar S, \bar\Sigma)$. These are $-\nabla F$ of the energy (`energy`).

    **Arguments:** `task`; `mode_weights` $(\bar W_1, \dots, \bar W_N)$ from `to_modes`, each
    `(*batch, h_l, h_{l-1})`; `tau` the time constant.

    **Returns:** a tuple $(\dot{\bar W}_1, \dots, \dot{\bar W}_N)$ shaped like `mode_weights`.

    **Raises:** `ValueError` for weights that do not fit the task or a bad `tau`.

    **Example:**

    ```python
    dW1_bar, dW2_bar = linflow.mode_equations(task, linflow.to_modes(task, weights))
    ```
    """
    fn = "mode_equations"
    task, mode_weights = check_task_weights(fn, task, mode_weights)
    check_positive(fn, "tau", tau)
    bar = mode_task(task)
    return tuple(-g / tau for g in layer_gradients(mode_weights, bar.sigma_yx, bar._sigma_xx))


def energy(task: Task, mode_weights, *, tau=1.0) -> Array:
    r"""The energy $F$ whose gradient descent is the mode dynamics (Saxe et al. 2014).

    From Saxe, McClelland & Ganguli (2014), "Exact solutions to the nonlinear dynamics of
    learning in deep linear neural networks".

    $$F = \frac{1}{2\tau}\sum_i (s_i - a^i\cdot b^i)^2
    + \frac{1}{2\tau}\sum_{j\ne i}(a^i\cdot b^j)^2 = \frac{1}{2\tau}\|\bar S - \bar W\|_F^2$$

    for whitened inputs, with $\bar W = \bar W_N \cdots \bar W_1$; in general
    $F = \frac1\tau\bigl[\tfrac12\operatorname{tr}(\bar W\bar\Sigma_{xx}\bar W^\top)
    - \operatorname{tr}(\bar W \bar S^\top) + \tfrac12\sum_i s_i^2\bigr]$. Then
    $\dot{\bar W}_l = -\partial F/\partial \bar W_l$ and $\tau F = L - L_{\min} + $ const
    ($\tau F = L - L_{\min}$ exactly for whitened inputs and realisable targets).

    **Arguments:** `task`; `mode_weights` $(\bar W_1, \dots, \bar W_N)$, each
    `(*batch, h_l, h_{l-1})`; `tau` the time constant.

    **Returns:** $F$, shape `batch`.

    **Raises:** `ValueError` for weights that do not fit the task or a bad `tau`.

    **Example:**

    ```python
    dF = jax.grad(lambda w: linflow.energy(task, w))(linflow.to_modes(task, weights))
    ```
    """
    fn = "energy"
    task, mode_weights = check_task_weights(fn, task, mode_weights)
    check_positive(fn, "tau", tau)
    bar = mode_task(task)
    w = product(mode_weights)
    w_sxx = w if bar.whitened else w @ lift(bar.sigma_xx, w.ndim)
    s = bar.sigma_yx
    value = (
        0.5 * jnp.sum(w_sxx * w, axis=(-2, -1))
        - jnp.sum(w * lift(s, w.ndim), axis=(-2, -1))
        + 0.5 * jnp.sum(s * s)
    )
    return value / tau


def mode_flow(task: Task, weights0, ts, **kwargs) -> Trajectory:
    r"""Gradient flow integrated in the task's modes, returned in weight space.

    Integrates $\tau\,\dot{\bar W}_l = -\partial F/\partial \bar W_l$ (`mode_equations`) with
    diffrax from $\bar W(0) = $ `to_modes(task, weights0)` and maps the saved states back with
    `from_modes`. The change of basis is orthogonal, so the two engines solve the same
    equations and agree to the solver's tolerance (their step sizes differ slightly, as the
    error control weighs each entry by its own magnitude).

    **Arguments:** `task`, `weights0` (tuple, each `(*batch, h_l, h_{l-1})`), `ts` (increasing
    times $\ge 0$, shape `(T,)`) and every keyword of `gradient_flow` (`tau`, `solver`, `rtol`,
    `atol`, `stepsize_controller`, `dt0`, `max_steps`, `progress`, `throw`).

    **Returns:** a `Trajectory` in weight space; `stats` as for `gradient_flow`.

    **Raises:** as `gradient_flow`.

    **Example:**

    ```python
    traj = linflow.mode_flow(task, weights0, jnp.linspace(0.0, 20.0, 201), rtol=1e-10)
    ```
    """
    fn = "mode_flow"
    check_flow_options(fn, kwargs)
    task, weights0 = check_task_weights(fn, task, weights0)
    U, _, V = mode_bases(task)
    traj = integrate(fn, mode_task(task), _rotate(weights0, U.T, V), ts, **kwargs)
    return eqx.tree_at(lambda t: t.weights, traj, _rotate(traj.weights, U, V.T))
