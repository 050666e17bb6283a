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
def _one_layer(task, weights, ts, tau, gamma=None):
    r"""$W(t)$ relaxing to $W_* = \Sigma_{yx}\Sigma_{xx}^+$ at the rates of $\Sigma_{xx}$; with
    weight decay `gamma`, to the ridge solution at the rates of $\Sigma_{xx} + \gamma I$."""
    (w0,) = weights
    ndim = w0.ndim  # the trajectory has one more axis, time, in front
    if task.whitened:
        rate = jnp.ones((1,), w0.dtype) + (0.0 if gamma is None else gamma)
        optimum = task.optimum / rate[0]
        optimum = optimum.reshape((1,) * (ndim - 1) + optimum.shape)
        decay = _decay(ts, rate, tau)
        return (optimum + (w0 - optimum[0])[None] * decay.reshape(ts.shape + (1,) * ndim),)
    eye = jnp.eye(task.input_dim, dtype=w0.dtype)
    lam, Q = jnp.linalg.eigh(task.sigma_xx if gamma is None else task.sigma_xx + gamma * eye)
    # Directions with (numerically) zero rate (input variance, no decay) feel no gradient: they
    # stay put.
    lam = jnp.where(lam > lam[-1] * lam.shape[0] * jnp.finfo(lam.dtype).eps, lam, 0.0)
    if gamma is None:
        optimum = task.optimum
    else:
        inverse = jnp.where(lam > 0, 1 / jnp.where(lam > 0, lam, 1.0), 0.0)
        optimum = ((task.sigma_yx @ Q) * inverse[None, :]) @ Q.T
    optimum = optimum.reshape((1,) * (ndim - 1) + optimum.shape)
    e0 = (w0 - optimum[0])[None]
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

    With weight decay $\gamma$, $\tau\dot W = \Sigma_{yx} - W(\Sigma_{xx} + \gamma I)$: the
    same form with $\Sigma_{xx} + \gamma I$ in place of $\Sigma_{xx}$, relaxing to the
    ridge-regression solution $W_\gamma = \Sigma_{yx}(\Sigma_{xx} + \gamma I)^{-1}$.
    """

    name: ClassVar[str] = "one layer"
    min_depth: ClassVar[int] = 1
    max_depth: ClassVar[int] = 1

    def decay_reason(self):
        return None

    def conditions(self, task, weights, rtol, weight_decay=None):
        return []

    def solve(self, task, weights, ts, tau, rtol, weight_decay=None):
        return _one_layer(task, weights, ts, tau, weight_decay)
