"""Closed-form solutions of the gradient flow, and `exact_flow`, which picks one that applies."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._checks import check_positive, check_times, check_weights
from .._trajectory import Trajectory
from .aligned import AlignedTwoLayer
from .base import ClosedForm
from .deep import AlignedDeep, deep_mode
from .lambda_balanced import LambdaBalancedTwoLayer
from .linear import OneLayer
from .scalar import saxe_deep, scalar_mode, shallow, time_to_learn
from .zero_balanced import ZeroBalancedTwoLayer

CLOSED_FORMS: tuple[ClosedForm, ...] = (
    OneLayer(),
    AlignedTwoLayer(),
    ZeroBalancedTwoLayer(),
    LambdaBalancedTwoLayer(),
    AlignedDeep(),
)
"""The closed forms `exact_flow` tries, in this order: one layer; aligned two-layer; zero-balanced
two-layer; lambda-balanced two-layer; aligned balanced deep. Each has a `name`, a `check`
giving the condition that fails (or `None`) and a `solve`."""


def exact_flow(task, weights0, ts, *, tau=1.0, rtol=None) -> Trajectory:
    r"""The gradient flow $\tau\,dW_l/dt = -\partial L/\partial W_l$ from a closed form.

    Each closed form in `linflow.CLOSED_FORMS` is asked in turn whether it applies to
    `task` and `weights0`; the first that does is evaluated at `ts`:

    - depth 1, any $\Sigma_{xx}$ and start:
      $W(t) = W_* + (W_0 - W_*)\,Q e^{-\Lambda t/\tau} Q^\top$;
    - depth 2, $\Sigma_{xx} = I$, aligned start: every mode follows `scalar_mode`;
    - depth 2, $\Sigma_{xx} = I$, zero-balanced start $W_2^\top W_2 = W_1 W_1^\top$ (Braun et al.
      2022) or $\lambda$-balanced start $W_2^\top W_2 - W_1 W_1^\top = \lambda I$ (Dominé et al.
      2025), not necessarily aligned: the matrix Riccati solution for $QQ^\top$,
      $Q = [W_1^\top; W_2]$. The weights are exact up to a rotation of the hidden layer
      (the product, $W_1^\top W_1$, $W_2 W_2^\top$, the loss, `ntk` and
      `representational_similarity` are exact);
    - depth $D \ge 2$, $\Sigma_{xx} = I$, balanced aligned start: every mode follows
      `deep_mode`.

    The imbalance $\lambda$, the alignment with the task's modes and the whitening are measured
    on the start to relative tolerance `rtol`; a random unbalanced start is refused.

    **Arguments:**

    - `task`, `weights0` (tuple $(W_1, \dots, W_N)$, each `(*batch, h_l, h_{l-1})`), `tau` as
      for `gradient_flow`.
    - `ts`: increasing times $\ge 0$, shape `(T,)`; `jnp.inf` gives the converged weights.
    - `rtol`: relative tolerance of the conditions (default `1000 * eps` of the dtype).

    **Returns:** a `Trajectory`; `stats["closed_form"]` names the form used.

    **Raises:** `ValueError` naming, for each closed form, the condition that fails, when
    none applies (or for bad arguments).

    **Example:**

    ```python
    weights0 = linflow.init_weights(key, task, 8, scheme="aligned", scale=1e-3)
    traj = linflow.exact_flow(task, weights0, jnp.array([0.0, 1.0, jnp.inf]))
    ```
    """
    fn = "exact_flow"
    weights0 = check_weights(fn, weights0, task.input_dim, task.output_dim)
    dtype = weights0[0].dtype
    ts = check_times(fn, ts, allow_inf=True).astype(dtype)
    check_positive(fn, "tau", tau)
    rtol = 1000 * float(jnp.finfo(dtype).eps) if rtol is None else rtol
    check_positive(fn, "rtol", rtol)
    host = tuple(np.asarray(w, np.float64) for w in weights0)
    reasons = []
    for form in CLOSED_FORMS:
        reason = form.check(task, host, rtol)
        if reason is None:
            weights = form.solve(task, weights0, ts, jnp.asarray(tau, dtype), rtol)
            return Trajectory(ts=ts, weights=tuple(weights), stats={"closed_form": form.name})
        reasons.append(f"{form.name}: {reason}")
    raise ValueError(
        f"{fn}: no closed form applies to this task and initialisation:\n  - "
        + "\n  - ".join(reasons)
    )


__all__ = [
    "CLOSED_FORMS",
    "ClosedForm",
    "deep_mode",
    "exact_flow",
    "saxe_deep",
    "scalar_mode",
    "shallow",
    "time_to_learn",
]
