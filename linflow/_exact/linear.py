r"""The one-layer network: a linear ODE, solved for any $\Sigma_{xx}$ and any start."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .base import DepthForm, time_axis


def _decay(ts, rates, tau):
    r"""$e^{-\text{rate}\cdot t/\tau}$, shape `(T, n)`: 0 at $t = \infty$ for a positive rate and
    1 for a zero rate (a direction that feels no gradient), with finite derivatives."""
    t = time_axis(ts, 1)
    finite = jnp.isfinite(t)
    value = jnp.exp(-jnp.where(finite, t, 0.0) * rates[None] / tau)
    return jnp.where(finite, value, jnp.where(rates[None] > 0, 0.0, 1.0))


@eqx.filter_jit
def _one_layer(task, weights, ts, tau):
    (w0,) = weights
    ndim = w0.ndim  # the trajectory has one more axis, time, in front
    optimum = task.optimum.reshape((1,) * (ndim - 1) + task.optimum.shape)
    e0 = (w0 - optimum[0])[None]
    if task.whitened:
        decay = _decay(ts, jnp.ones((1,), w0.dtype), tau)
        return (optimum + e0 * decay.reshape(ts.shape + (1,) * ndim),)
    lam, Q = jnp.linalg.eigh(task.sigma_xx)
    # Directions with (numerically) zero input variance feel no gradient: they stay put.
    lam = jnp.where(lam > lam[-1] * lam.shape[0] * jnp.finfo(lam.dtype).eps, lam, 0.0)
    decay = _decay(ts, lam, tau)  # (T, d)
    decay = decay.reshape(decay.shape[:1] + (1,) * (ndim - 1) + decay.shape[1:])
    return (optimum + ((e0 @ Q) * decay) @ Q.T,)


class OneLayer(DepthForm):
    r"""Depth 1: $\tau\,\dot W = \Sigma_{yx} - W \Sigma_{xx}$.

    With $\Sigma_{xx} = Q \Lambda Q^\top$,

    $$W(t) = W_* + (W_0 - W_*)\, Q\, e^{-\Lambda t/\tau} Q^\top,
    \qquad W_* = \Sigma_{yx}\Sigma_{xx}^+,$$

    each input mode relaxing exponentially (for $\Sigma_{xx} = I$ the shallow network of Saxe,
    McClelland & Ganguli 2019, "A mathematical theory of semantic development in deep neural
    networks"). Applies to any start and any $\Sigma_{xx}$; with a singular $\Sigma_{xx}$ the
    directions it does not see keep their start, so
    $W(\infty) = W_* + W_0\,(I - \Sigma_{xx}^+\Sigma_{xx})$.
    """

    name: ClassVar[str] = "one layer"
    min_depth: ClassVar[int] = 1
    max_depth: ClassVar[int] = 1

    def conditions(self, task, weights, rtol):
        return []

    def solve(self, task, weights, ts, tau, rtol):
        return _one_layer(task, weights, ts, tau)
