r"""Two-layer networks with aligned (orthogonal) initialisation and whitened inputs."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .base import (
    WHITENED,
    DepthForm,
    max_abs,
    off_diagonal,
    per_init_size,
    safe_norm,
    safe_sqrt,
    time_axis,
    whitened_condition,
)
from .decay import saxe_deep_decay
from .scalar import scalar_mode


def _mode_vectors(U, V, w1, w2):
    r"""Mode vectors $a^i$ (columns of $W_1 V$), $b^i$ (rows of $U^\top W_2$), `(*batch, h, k)`."""
    return w1 @ V, jnp.swapaxes(U.T @ w2, -1, -2)


def _directions(a, b):
    r"""Unit vector $r^i$ of each mode: along the longer of $a^i, b^i$ (zero if both vanish)."""
    na = safe_norm(a, axis=-2, keepdims=True)
    nb = safe_norm(b, axis=-2, keepdims=True)
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
    return _layers(U, V, r, a_t, b_t)


def _layers(U, V, r, a_t, b_t):
    r"""$W_1 = \sum_i a_i r^i v^{i\top}$, $W_2 = \sum_i b_i u^i r^{i\top}$ at every time."""
    r = r[None]
    w1 = (r * a_t[..., None, :]) @ V.T
    w2 = U @ jnp.swapaxes(r * b_t[..., None, :], -1, -2)
    return w1, w2


@eqx.filter_jit
def _aligned_two_layer_decay(task, weights, ts, tau, gamma):
    U, s, V = task.modes()
    a, b = _mode_vectors(U, V, *weights)
    r = _directions(a, b)
    u0 = jnp.sum(a * r, axis=-2) * jnp.sum(b * r, axis=-2)  # a_i b_i, (*batch, k)
    t = time_axis(ts, u0.ndim)
    u = saxe_deep_decay(t, jnp.broadcast_to(s, u0.shape)[None], u0[None], tau, gamma)
    a_t = safe_sqrt(u)  # balanced: a_i = b_i = sqrt(u_i)
    return _layers(U, V, r, a_t, a_t)


class AlignedTwoLayer(DepthForm):
    r"""Two layers, $\Sigma_{xx} = I$, aligned start (Saxe, McClelland & Ganguli 2014).

    From Saxe, McClelland & Ganguli (2014), "Exact solutions to the nonlinear dynamics of
    learning in deep linear neural networks".

    In the modes of $\Sigma_{yx} = U S V^\top$, the vectors $a^i = W_1 v^i$ and
    $b^i = W_2^\top u^i$ of an aligned start are parallel within a mode and orthogonal
    between modes, $a^i = a_i r^i$, $b^i = b_i r^i$. The flow then keeps $r^i$ fixed and each
    pair follows $\tau\dot a_i = (s_i - a_i b_i) b_i$, $\tau\dot b_i = (s_i - a_i b_i) a_i$,
    solved by `scalar_mode` for any imbalance $b_i^2 - a_i^2$ (one per mode); so
    $W_1(t) = \sum_i a_i(t)\, r^i v^{i\top}$ and $W_2(t) = \sum_i b_i(t)\, u^i r^{i\top}$.

    Conditions (to relative tolerance `rtol`, per initialisation): depth 2; $\Sigma_{xx} = I$;
    $W_1$ vanishes outside the span of $V$ and $W_2$ outside the span of $U$; the Gram matrices
    $\bar W_1^\top \bar W_1$, $\bar W_2 \bar W_2^\top$, $\bar W_2 \bar W_1$ are diagonal; and
    $a^i \parallel b^i$ for each mode.

    With weight decay $\gamma$ the imbalance $b_i^2 - a_i^2$ decays as $e^{-2\gamma t/\tau}$
    and has no closed form unless it is zero: balanced modes ($a^i = b^i$, one more condition)
    keep $a_i = b_i = \sqrt{u_i}$ with $\tau\dot u_i = 2u_i(s_i - \gamma - u_i)$, the Saxe
    sigmoid towards $s_i - \gamma$ (`saxe_deep` with `weight_decay`; modes with
    $s_i \le \gamma$ decay to zero).
    """

    name: ClassVar[str] = "aligned two-layer"
    min_depth: ClassVar[int] = 2
    max_depth: ClassVar[int] = 2

    def decay_reason(self):
        return None

    def conditions(self, task, weights, rtol, weight_decay=None):
        U, _, V = task.modes()
        w1, w2 = weights
        size = per_init_size(w1, w2)
        a, b = _mode_vectors(U, V, w1, w2)
        inside = jnp.maximum(max_abs(w1 - a @ V.T), max_abs(w2 - U @ jnp.swapaxes(b, -1, -2)))
        at, bt = jnp.swapaxes(a, -1, -2), jnp.swapaxes(b, -1, -2)
        r = _directions(a, b)
        parallel = jnp.maximum(
            *(max_abs(x - jnp.sum(x * r, axis=-2, keepdims=True) * r) for x in (a, b))
        )
        out = [
            (WHITENED, whitened_condition(task, rtol)),
            (
                "not aligned: W1 (W2) has weight outside the span of the task's input (output) "
                "modes",
                inside <= rtol * size,
            ),
        ]
        for name, gram in (("W1 V", at @ a), ("U^T W2", bt @ b), ("U^T W2 W1 V", bt @ a)):
            message = f"not aligned: {name} is not diagonal in the task's modes"
            out.append((message, off_diagonal(gram) <= rtol * size**2))
        out.append(
            (
                "not aligned: the input and output vectors of a mode are not parallel",
                parallel <= rtol * size,
            )
        )
        if weight_decay is not None:
            out.append(
                (
                    "not balanced: with weight_decay > 0 the modes need a^i = b^i (W1 v_i = "
                    "W2^T u_i); an imbalance decays in time and has no closed form",
                    max_abs(a - b) <= rtol * size,
                )
            )
        return out

    def solve(self, task, weights, ts, tau, rtol, weight_decay=None):
        if weight_decay is None:
            return _aligned_two_layer(task, weights, ts, tau)
        return _aligned_two_layer_decay(task, weights, ts, tau, weight_decay)
