r"""Two-layer networks with aligned (orthogonal) initialisation and whitened inputs."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .base import ClosedForm, max_abs, time_axis, whitened_reason
from .scalar import scalar_mode


def _mode_vectors(U, V, w1, w2):
    r"""Mode vectors $a^i$ (columns of $W_1 V$), $b^i$ (rows of $U^\top W_2$), `(*batch, h, k)`."""
    return w1 @ V, jnp.swapaxes(U.T @ w2, -1, -2)


def _directions(a, b):
    r"""Unit vector $r^i$ of each mode: along the longer of $a^i, b^i$ (zero if both vanish)."""
    na = jnp.linalg.norm(a, axis=-2, keepdims=True)
    nb = jnp.linalg.norm(b, axis=-2, keepdims=True)
    longer, norm = jnp.where(na >= nb, a, b), jnp.maximum(na, nb)
    return jnp.where(norm > 0, longer / jnp.where(norm > 0, norm, 1.0), 0.0)


@eqx.filter_jit
def _aligned_two_layer(task, weights, ts, tau):
    U, s, V = task.modes()
    a, b = _mode_vectors(U, V, *weights)
    r = _directions(a, b)
    a0, b0 = jnp.sum(a * r, axis=-2), jnp.sum(b * r, axis=-2)  # (*batch, k)
    t = time_axis(ts, a0.ndim)
    a_t, b_t = scalar_mode(t, jnp.broadcast_to(s, a0.shape)[None], a0[None], b0[None], tau)
    r = r[None]
    w1 = (r * a_t[..., None, :]) @ V.T
    w2 = U @ jnp.swapaxes(r * b_t[..., None, :], -1, -2)
    return w1, w2


class AlignedTwoLayer(ClosedForm):
    r"""Two layers, $\Sigma_{xx} = I$, aligned start (Saxe, McClelland & Ganguli 2014).

    From Saxe, McClelland & Ganguli (2014), "Exact solutions to the nonlinear dynamics of
    learning in deep linear neural networks".

    In the modes of $\Sigma_{yx} = U S V^\top$, the vectors $a^i = W_1 v^i$ and
    $b^i = W_2^\top u^i$ of an aligned start are parallel within a mode and orthogonal
    between modes, $a^i = a_i r^i$, $b^i = b_i r^i$. The flow then keeps $r^i$ fixed and each
    pair follows $\tau\dot a_i = (s_i - a_i b_i) b_i$, $\tau\dot b_i = (s_i - a_i b_i) a_i$,
    solved by `scalar_mode`; so $W_1(t) = \sum_i a_i(t)\, r^i v^{i\top}$ and
    $W_2(t) = \sum_i b_i(t)\, u^i r^{i\top}$.

    Conditions (to relative tolerance `rtol`): depth 2; $\Sigma_{xx} = I$; $W_1$ vanishes
    outside the span of $V$ and $W_2$ outside the span of $U$; the Gram matrices
    $\bar W_1^\top \bar W_1$, $\bar W_2 \bar W_2^\top$, $\bar W_2 \bar W_1$ are diagonal; and
    $a^i \parallel b^i$ for each mode.
    """

    name: ClassVar[str] = "aligned two-layer"

    def check(self, task, weights, rtol):
        if len(weights) != 2:
            return f"needs depth 2, got depth {len(weights)}"
        reason = whitened_reason(task, rtol)
        if reason is not None:
            return reason
        U, _, V = (np.asarray(x, np.float64) for x in task.modes())
        w1, w2 = weights
        size = max(max_abs(w1), max_abs(w2), np.finfo(np.float64).tiny)
        a, b = (np.asarray(x) for x in _mode_vectors(U, V, w1, w2))
        if (
            max_abs(w1 - (a @ V.T)) > rtol * size
            or max_abs(w2 - U @ np.swapaxes(b, -1, -2)) > rtol * size
        ):
            return (
                "not aligned: W1 (W2) has weight outside the span of the task's input (output) "
                "modes"
            )
        at, bt = np.swapaxes(a, -1, -2), np.swapaxes(b, -1, -2)
        for name, gram in (("W1 V", at @ a), ("U^T W2", bt @ b), ("U^T W2 W1 V", bt @ a)):
            if max_abs(gram - gram * np.eye(gram.shape[-1])) > rtol * size**2:
                return f"not aligned: {name} is not diagonal in the task's modes"
        r = np.asarray(_directions(a, b))
        for vectors in (a, b):
            along = np.sum(vectors * r, axis=-2, keepdims=True) * r
            if max_abs(vectors - along) > rtol * size:
                return "not aligned: the input and output vectors of a mode are not parallel"
        return None

    def solve(self, task, weights, ts, tau, rtol):
        return _aligned_two_layer(task, weights, ts, tau)
