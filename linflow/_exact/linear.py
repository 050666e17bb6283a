r"""The one-layer network: a linear ODE, solved for any $\Sigma_{xx}$ and any start."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .base import ClosedForm, time_axis


@eqx.filter_jit
def _one_layer(task, weights, ts, tau):
    (w0,) = weights
    ndim = w0.ndim  # the trajectory has one more axis, time, in front
    optimum = task.optimum.reshape((1,) * (ndim - 1) + task.optimum.shape)
    e0 = (w0 - optimum[0])[None]
    if task.whitened:
        return (optimum + e0 * jnp.exp(-time_axis(ts, ndim) / tau),)
    lam, Q = jnp.linalg.eigh(task.sigma_xx)
    # Directions with (numerically) zero input variance feel no gradient: they stay put.
    lam = jnp.where(lam > lam[-1] * lam.shape[0] * jnp.finfo(lam.dtype).eps, lam, 0.0)
    decay = jnp.exp(-time_axis(ts, 1) * lam[None] / tau)  # (T, d)
    decay = decay.reshape(decay.shape[:1] + (1,) * (ndim - 1) + decay.shape[1:])
    return (optimum + ((e0 @ Q) * decay) @ Q.T,)


class OneLayer(ClosedForm):
    r"""Depth 1: $\tau\,\dot W = \Sigma_{yx} - W \Sigma_{xx}$.

    With $\Sigma_{xx} = Q \Lambda Q^\top$,

    $$W(t) = W_* + (W_0 - W_*)\, Q\, e^{-\Lambda t/\tau} Q^\top,
    \qquad W_* = \Sigma_{yx}\Sigma_{xx}^+,$$

    each input mode relaxing exponentially (for $\Sigma_{xx} = I$ the shallow network of Saxe,
    McClelland & Ganguli 2019, "A mathematical theory of semantic development in deep neural
    networks").
    Applies to any start and any $\Sigma_{xx}$.
    """

    name: ClassVar[str] = "one layer"

    def check(self, task, weights, rtol):
        if len(weights) != 1:
            return f"needs depth 1, got depth {len(weights)}"
        return None

    def solve(self, task, weights, ts, tau, rtol):
        return _one_layer(task, weights, ts, tau)
