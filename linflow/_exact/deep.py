r"""Deep networks ($D \ge 2$ weight matrices) with whitened inputs and a balanced, aligned start."""

from __future__ import annotations

from functools import partial
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .base import ClosedForm, max_abs, time_axis, whitened_reason
from .scalar import _floats, decays, saxe_deep, shallow

_BISECTIONS = 64


def _deep_time(w, s, depth: int):
    r"""$\frac{D}{\tau}\,t$ up to a constant, at $u = s\,\mathrm{sigmoid}(w)$, for $D \ge 3$.

    With $\rho = (u/s)^{1/D}$ the layer singular value over its limit, partial fractions over the
    $D$-th roots of unity $\omega_k = e^{i\theta_k}$ give
    $\frac{D}{\tau}t = D\,s^{2/D - 2}\,\Psi(\rho)$ with
    $\Psi(\rho) = \frac{\rho^{2-D}}{2-D} - \frac1D\sum_k \omega_k^{-2}\ln(1 - \omega_k\rho)$,
    the same function as the hypergeometric $\Phi$ of `time_to_learn`, but elementary: real parts
    $\cos 2\theta_k \ln|1 - \omega_k\rho| + \sin 2\theta_k \arg(1 - \omega_k\rho)$, and
    $\ln(1 - \rho)$ from $1 - \rho^D = \mathrm{sigmoid}(-w)$ without cancellation.
    """
    rho_d = jax.nn.sigmoid(w)
    rho = rho_d ** (1.0 / depth)
    psi = rho ** (2 - depth) / (2 - depth)
    log_one_minus = jax.nn.log_sigmoid(-w) - jnp.log(sum(rho**j for j in range(depth)))
    psi = psi - log_one_minus / depth
    for k in range(1, depth):
        theta = 2 * np.pi * k / depth
        modulus = jnp.log1p(rho * (rho - 2 * np.cos(theta))) / 2
        angle = jnp.arctan2(-rho * np.sin(theta), 1 - rho * np.cos(theta))
        psi = psi - (np.cos(2 * theta) * modulus + np.sin(2 * theta) * angle) / depth
    return depth * s ** (2.0 / depth - 2.0) * psi


@partial(jax.jit, static_argnames="depth")
def _deep_mode_root(t, s, u0, tau, depth: int):
    r"""$u(t)$ for $D \ge 3$: bisection on $w = \ln\frac{u}{s - u}$, where $t(w)$ is increasing."""
    dtype = u0.dtype
    c = 2.0 / depth - 1.0
    growing = (u0 > 0) & (u0 < s) & (t > 0)
    safe_s = jnp.where(growing, s, 1.0)
    safe_u0 = jnp.where(growing, u0, 0.5)
    target = jnp.where(growing & jnp.isfinite(t), t, 0.0) * depth / tau
    w0 = jnp.log(safe_u0) - jnp.log(safe_s - safe_u0)
    # t'(w) = tau u^c / (D s) > tau s^(c - 1) / D bounds the root; beyond w_max, u = s in float.
    w_max = jnp.asarray(2.0 - np.log(np.finfo(dtype).eps), dtype)
    w_hi = jnp.minimum(w0 + target * safe_s ** (1.0 - c), jnp.maximum(w_max, w0))
    start = _deep_time(w0, safe_s, depth)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = _deep_time(mid, safe_s, depth) - start < target
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _BISECTIONS, body, (w0, w_hi))
    u = safe_s * jax.nn.sigmoid(0.5 * (lo + hi))
    u = jnp.where(jnp.isinf(t) & (u0 > 0), s, u)
    return jnp.where(growing, u, u0)


def deep_mode(t, s, u0, tau=1.0, depth: int = 3, weight_decay=0.0):
    r"""Mode strength of a balanced, aligned network of `depth` $D$ weight matrices.

    Solves $\tau\,\dot u = D\,u^{2 - 2/D}(s - u)$ (Saxe et al. 2014; Arora, Cohen & Hazan 2018):
    $D = 1$ is `shallow`, $D = 2$ is `saxe_deep`; for $D \ge 3$ the implicit solution
    $t = \frac{\tau}{D}[\Phi(u) - \Phi(u_0)]$,
    $\Phi(x) = \frac{x^c}{c\,s}\,{}_2F_1(1, c; c+1; x/s)$, $c = 2/D - 1$ (evaluated with
    elementary functions, by partial fractions over the $D$-th roots of unity), is inverted by
    bisection in $w = \ln\frac{u}{s - u}$ (64 fixed steps in
    `lax.fori_loop`, so jit- and vmap-safe), inside the bracket
    $[w_0, w_0 + D\,t\,s^{1 - c}/\tau]$ that the bound $dt/dw > \tau s^{c-1}/D$ guarantees.
    $u_0 = 0$ stays at 0 and $t = \infty$ gives $s$.

    With weight decay $\gamma$ (the loss $L + \frac\gamma2\sum_l\|W_l\|_F^2$), a balanced
    aligned mode with layer singular value $\sigma$ has $\tau\dot\sigma =
    \sigma^{D-1}(s - \sigma^D) - \gamma\sigma$, so $u = \sigma^D$ obeys

    $$\tau\,\dot u = D\,u^{2-2/D}(s - u) - D\gamma u.$$

    $D = 1$ relaxes to $s/(1 + \gamma)$ and $D = 2$ is `saxe_deep` towards $s - \gamma$. For
    $D \ge 3$, $u = 0$ stays stable: with $\rho = (u/s)^{1/D}$ and $g = \gamma/s^{2-2/D}$, the
    modes with $g \ge \max_\rho \rho^{D-2}(1 - \rho^D)$, or that start below the unstable
    fixed point $s\rho_-^D$, decay to 0, the others go to $s\rho_+^D$
    ($\rho_- < \rho_+$ the roots of $\rho^{D-2}(1 - \rho^D) = g$). The time is exact, by
    partial fractions of $1/(\rho^{D-1}(1 - \rho^D) - g\rho)$ over the roots of that polynomial
    (from the eigenvalues of its companion matrix), and inverted by bisection in $\ln\rho$;
    derivatives (`jax.grad`) are the implicit ones. Any $u_0 \ge 0$ is allowed.

    **Arguments:** `t` time ($\ge 0$, may be `inf`), `s` singular value ($> 0$), `u0` initial
    mode strength ($0 \le u_0 \le s$; any $u_0 \ge 0$ with decay), `tau`, `depth` $D \ge 1$
    (a Python int), `weight_decay` $\gamma \ge 0$. Arrays broadcast.

    **Returns:** $u(t)$, the broadcast shape of `t`, `s`, `u0`, `tau`, `weight_decay`.

    **Raises:** `ValueError` for a depth below 1 or a negative, NaN or non-numeric
    `weight_decay` (an equinox runtime error when traced).

    **Example:**

    ```python
    u = linflow.deep_mode(jnp.linspace(0.0, 50.0, 101), 2.0, 1e-3, depth=4)
    u = linflow.deep_mode(jnp.linspace(0.0, 50.0, 101), 2.0, 1e-2, depth=3, weight_decay=0.1)
    ```
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"deep_mode(..., depth={depth!r}) must be an int >= 1.")
    if decays(weight_decay):
        from .decay import deep_mode_decay  # decay.py builds on this module

        return deep_mode_decay(t, s, u0, tau, depth, weight_decay)
    t, s, u0, tau = _floats(t, s, u0, tau)
    if depth == 1:
        return shallow(t, s, u0, tau)
    if depth == 2:
        return saxe_deep(t, s, u0, tau)
    shape = jnp.broadcast_shapes(t.shape, s.shape, u0.shape, tau.shape)
    t, s, u0, tau = (jnp.broadcast_to(x, shape) for x in (t, s, u0, tau))
    return _deep_mode_root(t, s, u0, tau, depth)


def _chain(U, V, weights, xp):
    r"""Mode strengths $u_i$, layer singular values $\sigma_i = u_i^{1/D}$ and unit frames $R_l$.

    $R_0 = V$ and $R_l = W_l R_{l-1} / \sigma^l$ (columns of vanishing modes set to zero).
    `xp` is `jnp` inside the solve and `np` (float64) in the check.
    """
    depth = len(weights)
    frames = [xp.broadcast_to(V, weights[0].shape[:-2] + V.shape)]
    for w in weights:
        frames.append(w @ frames[-1])
    u = xp.sum(U.reshape((1,) * (frames[-1].ndim - 2) + U.shape) * frames[-1], axis=-2)
    sigma = xp.maximum(u, 0.0) ** (1.0 / depth)
    alive = (sigma > 0)[..., None, :]
    safe = xp.where(alive, sigma[..., None, :], 1.0)
    scaled = [xp.where(alive, f / safe**l, 0.0) for l, f in enumerate(frames[1:], 1)]
    return u, sigma, [frames[0], *scaled]


def _layers(frames, sigma):
    r"""$W_l = R_l\,\mathrm{diag}(\sigma)\,R_{l-1}^\top$ (NumPy or JAX arrays)."""
    return tuple(
        (upper * sigma[..., None, :]) @ lower.swapaxes(-1, -2)
        for lower, upper in zip(frames[:-1], frames[1:])
    )


@eqx.filter_jit
def _aligned_deep(task, weights, ts, tau):
    U, s, V = task.modes()
    u0, _, frames = _chain(U, V, weights, jnp)
    t = time_axis(ts, u0.ndim)
    u = deep_mode(t, jnp.broadcast_to(s, u0.shape)[None], u0[None], tau, depth=len(weights))
    sigma = jnp.maximum(u, 0.0) ** (1.0 / len(weights))
    return _layers([f[None] for f in frames], sigma)


class AlignedDeep(ClosedForm):
    r"""$D \ge 2$ layers, $\Sigma_{xx} = I$, balanced and aligned start (Saxe et al. 2014).

    Every layer is $W_l = R_l\,\mathrm{diag}(\sigma)\,R_{l-1}^\top$ with orthonormal frames
    $R_0 = V$, $R_D = U$ (the task's modes) and the same singular values $\sigma_i$ in every
    layer. The flow keeps the frames and each mode strength $u_i = \sigma_i^D$ follows
    $\tau\,\dot u = D\,u^{2 - 2/D}(s_i - u)$, solved by `deep_mode`.

    Conditions (to relative tolerance `rtol`): whitened inputs; $W_{l+1}^\top W_{l+1} =
    W_l W_l^\top$; $W V = U\,\mathrm{diag}(u)$ and every layer equal to its reconstruction
    from the frames (no weight outside the modes); $0 \le u_i \le s_i$, $u_i = 0$ where
    $s_i = 0$.
    """

    name: ClassVar[str] = "aligned balanced deep"

    def check(self, task, weights, rtol):
        if len(weights) < 2:
            return f"needs depth >= 2, got depth {len(weights)}"
        reason = whitened_reason(task, rtol)
        if reason is not None:
            return reason
        size = max(max(max_abs(w) for w in weights), np.finfo(np.float64).tiny)
        for lower, upper in zip(weights[:-1], weights[1:]):
            gap = np.swapaxes(upper, -1, -2) @ upper - lower @ np.swapaxes(lower, -1, -2)
            if max_abs(gap) > rtol * size**2:
                return "not balanced: W_(l+1)^T W_(l+1) != W_l W_l^T"
        U, s, V = (np.asarray(x, np.float64) for x in task.modes())
        u, sigma, frames = _chain(U, V, weights, np)
        if np.any(u < -rtol * size ** len(weights)):
            return "not aligned: a mode strength u_i = u_i^T W v_i is negative"
        if max_abs(frames[-1] * sigma[..., None, :] ** len(weights) - U * u[..., None, :]) > (
            rtol * size ** len(weights)
        ):
            return "not aligned: W V is not U diag(u) (the product is not diagonal in the modes)"
        if any(max_abs(r - w) > rtol * size for r, w in zip(_layers(frames, sigma), weights)):
            return "not aligned: the layers are not R_l diag(sigma) R_(l-1)^T with R_0 = V, R_D = U"
        if np.any(u > s * (1 + rtol)) or np.any((s <= rtol * s.max()) & (u > rtol * size)):
            return "needs 0 <= u_i <= s_i for every mode (and u_i = 0 where s_i = 0)"
        return None

    def solve(self, task, weights, ts, tau, rtol):
        return _aligned_deep(task, weights, ts, tau)
