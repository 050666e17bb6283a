r"""Deep networks ($D \ge 2$ weight matrices) with whitened inputs and a balanced, aligned start."""

from __future__ import annotations

from functools import partial
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._loss import lift
from .base import (
    WHITENED,
    DepthForm,
    check_values,
    max_abs,
    per_init_size,
    time_axis,
    whitened_condition,
)
from .scalar import _floats, _saxe_deep, decays, shallow

_BISECTIONS = 64


def _psi(rho, log_abs_one_minus, depth: int):
    r"""$\Psi(\rho) = \frac{\rho^{2-D}}{2-D} - \frac1D \sum_k \omega_k^{-2}\ln|1 - \omega_k\rho|$
    (real part), given $\ln|1 - \rho|$ (the $k = 0$ term, computed by the caller without
    cancellation)."""
    psi = rho ** (2 - depth) / (2 - depth) - log_abs_one_minus / depth
    for k in range(1, depth):
        theta = 2 * np.pi * k / depth
        modulus = jnp.log1p(rho * (rho - 2 * np.cos(theta))) / 2
        angle = jnp.arctan2(-rho * np.sin(theta), 1 - rho * np.cos(theta))
        psi = psi - (np.cos(2 * theta) * modulus + np.sin(2 * theta) * angle) / depth
    return psi


def _time_below(w, s, depth: int):
    r"""$\frac{D}{\tau}\,t$ up to a constant, at $u = s\,\mathrm{sigmoid}(w) < s$, for $D \ge 3$.

    With $\rho = (u/s)^{1/D}$ the layer singular value over its limit, partial fractions over the
    $D$-th roots of unity $\omega_k = e^{i\theta_k}$ give
    $\frac{D}{\tau}t = D\,s^{2/D - 2}\,\Psi(\rho)$ with
    $\Psi(\rho) = \frac{\rho^{2-D}}{2-D} - \frac1D\sum_k \omega_k^{-2}\ln(1 - \omega_k\rho)$,
    the same function as the hypergeometric $\Phi$ of `time_to_learn`, but elementary: real parts
    $\cos 2\theta_k \ln|1 - \omega_k\rho| + \sin 2\theta_k \arg(1 - \omega_k\rho)$, and
    $\ln(1 - \rho)$ from $1 - \rho^D = \mathrm{sigmoid}(-w)$ without cancellation.
    """
    rho = jax.nn.sigmoid(w) ** (1.0 / depth)
    log_one_minus = jax.nn.log_sigmoid(-w) - jnp.log(sum(rho**j for j in range(depth)))
    return depth * s ** (2.0 / depth - 2.0) * _psi(rho, log_one_minus, depth)


def _time_above(v, s, depth: int):
    r"""The same at $u = s\,(1 + e^v) > s$, where $\ln(\rho - 1) = v - \ln\sum_j \rho^j$ (the
    real part of $\Psi$ continues across $\rho = 1$: $u$ decreases to $s$ as $t$ grows)."""
    rho = (1 + jnp.exp(v)) ** (1.0 / depth)
    log_minus_one = v - jnp.log(sum(rho**j for j in range(depth)))
    return depth * s ** (2.0 / depth - 2.0) * _psi(rho, log_minus_one, depth)


def _time_at(u, s, depth: int):
    r"""$\frac{D}{\tau}\,t$ up to a constant at any $u > 0$, $u \ne s$ (for the derivatives)."""
    rho = (u / s) ** (1.0 / depth)
    log_abs = jnp.log(jnp.abs(s - u)) - jnp.log(s) - jnp.log(sum(rho**j for j in range(depth)))
    return depth * s ** (2.0 / depth - 2.0) * _psi(rho, log_abs, depth)


def _bisect(f, lo, hi, target):
    """The root of the increasing `f(x) - target` in `[lo, hi]`, by bisection."""

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        below = f(mid) < target
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _BISECTIONS, body, (lo, hi))
    return 0.5 * (lo + hi)


@partial(jax.custom_jvp, nondiff_argnums=(4,))
def _deep_root(t, s, u0, tau, depth: int):
    r"""$u(t)$ for $D \ge 3$, $s > 0$, $u_0 > 0$: bisection on the exact $t(u)$.

    Below $s$ in $w = \ln\frac{u}{s - u}$, where $t(w)$ increases; above $s$ in
    $v = \ln\frac{u - s}{s}$, where it decreases. The bracket comes from
    $|dt/dw| > \tau s^{c-1}/D$ (below) and $|dt/dv| \ge \tau/(D u_0^{2-2/D})$ (above), and is cut
    where $u = s$ in floating point.
    """
    dtype = u0.dtype
    c = 2.0 / depth - 1.0
    finite = jnp.isfinite(t)
    target = jnp.where(finite, t, 0.0) * depth / tau
    far = jnp.asarray(2.0 - np.log(np.finfo(dtype).eps), dtype)
    below = u0 < s
    # Growing from below: w from w0 upwards.
    bu0 = jnp.where(below, u0, 0.5 * s)
    w0 = jnp.log(bu0) - jnp.log(s - bu0)
    w_hi = jnp.minimum(w0 + target * s ** (1.0 - c), jnp.maximum(far, w0))
    start = _time_below(w0, s, depth)
    w = _bisect(lambda x: _time_below(x, s, depth) - start, w0, w_hi, target)
    u_below = s * jax.nn.sigmoid(w)
    # Decaying from above: v from v0 downwards (t increases as v decreases).
    au0 = jnp.where(below, 2 * s, u0)
    v0 = jnp.log(au0 - s) - jnp.log(s)
    v_lo = jnp.maximum(v0 - target * au0 ** (2.0 - 2.0 / depth), jnp.minimum(-far, v0))
    start = _time_above(v0, s, depth)
    v = -_bisect(lambda x: _time_above(-x, s, depth) - start, -v0, -v_lo, target)
    u_above = s * (1 + jnp.exp(v))
    u = jnp.where(below, u_below, jnp.where(u0 > s, u_above, s))
    return jnp.where(finite, u, s)


@_deep_root.defjvp
def _deep_root_jvp(depth, primals, tangents):
    r"""Implicit function theorem on $\Psi(u) - \Psi(u_0) = D t/\tau$:
    $\dot u = -\dot R\, u^{2 - 2/D}(s - u)$, with $\dot R$ the derivative of the residual at fixed
    $u$. At $u = s$ (reached, or rounded to) $\dot u = \dot s$; from $u_0 = s$ the linearisation
    $\dot u = \dot s + (\dot u_0 - \dot s)\,e^{-D s^{2 - 2/D} t/\tau}$."""
    t, s, u0, tau = primals
    dt, ds, du0, dtau = tangents
    u = _deep_root(t, s, u0, tau, depth)
    finite = jnp.isfinite(t)
    regular = finite & (u != s) & (u0 != s)
    safe_u = jnp.where(regular, u, 0.5 * s)
    safe_u0 = jnp.where(regular, u0, 0.25 * s)
    safe_t = jnp.where(finite, t, 0.0)

    def residual(t, s, u0, tau):
        return _time_at(safe_u, s, depth) - _time_at(u0, s, depth) - depth * t / tau

    dr = jax.jvp(residual, (safe_t, s, safe_u0, tau), (dt, ds, du0, dtau))[1]
    general = -dr * safe_u ** (2.0 - 2.0 / depth) * (s - safe_u)
    rate = depth * s ** (2.0 - 2.0 / depth) * safe_t / tau
    linear = ds + (du0 - ds) * jnp.where(finite, jnp.exp(-rate), 0.0)
    return u, jnp.where(regular, general, jnp.where(finite & (u0 == s), linear, ds))


def deep_mode(t, s, u0, tau=1.0, depth: int = 3, weight_decay=0.0):
    r"""Mode strength of a balanced, aligned network of `depth` $D$ weight matrices.

    Solves $\tau\,\dot u = D\,u^{2 - 2/D}(s - u)$ (Saxe, McClelland & Ganguli 2014; Arora, Cohen
    & Hazan 2018, "On the optimization of deep networks: implicit acceleration by
    overparameterization"): $D = 1$ is `shallow`, $D = 2$ is `saxe_deep`; for $D \ge 3$ the
    implicit solution $t = \frac{\tau}{D}[\Phi(u) - \Phi(u_0)]$,
    $\Phi(x) = \frac{x^c}{c\,s}\,{}_2F_1(1, c; c+1; x/s)$, $c = 2/D - 1$ (evaluated with
    elementary functions, by partial fractions over the $D$-th roots of unity), is inverted by
    bisection (64 fixed steps in `lax.fori_loop`, so jit- and vmap-safe) in $w = \ln\frac{u}{s-u}$
    for a start below $s$ (a sigmoid up to $s$) and in $v = \ln\frac{u - s}{s}$ for a start
    above $s$ (a decay down to $s$). $s = 0$ gives the algebraic decay
    $u = u_0\,(1 + a D u_0^a t/\tau)^{-1/a}$, $a = 2 - 2/D$; $u_0 = 0$ stays at 0 and
    $t = \infty$ gives $s$. Derivatives (`jax.grad`) follow from the implicit function theorem.

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

    **Arguments:** `t` time ($\ge 0$, may be `inf`), `s` singular value ($\ge 0$), `u0` initial
    mode strength ($\ge 0$; any real for $D = 1$), `tau` ($> 0$), `depth` $D \ge 1$ (a Python
    int), `weight_decay` $\gamma \ge 0$. Arrays broadcast.

    **Returns:** $u(t)$, the broadcast shape of `t`, `s`, `u0`, `tau`, `weight_decay`.

    **Raises:** `ValueError` for a depth below 1, a negative, NaN or non-numeric `weight_decay`,
    and values outside the ranges above (eagerly; under `jax.jit` an `equinox` runtime error
    with the same message).

    **Example:**

    ```python
    u = linflow.deep_mode(jnp.linspace(0.0, 50.0, 101), 2.0, 1e-3, depth=4)
    u = linflow.deep_mode(jnp.linspace(0.0, 50.0, 101), 2.0, 1e-2, depth=3, weight_decay=0.1)
    ```
    """
    fn = "deep_mode"
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"{fn}(..., depth={depth!r}) must be an int >= 1.")
    t, s, u0, tau = _floats(t, s, u0, tau)
    t = check_values(t, ~(t >= 0), f"{fn}(t=...) must be >= 0 (inf allowed), not NaN.")
    s = check_values(s, ~(jnp.isfinite(s) & (s >= 0)), f"{fn}(..., s=...) must be finite and >= 0.")
    bad_u0 = ~jnp.isfinite(u0) if depth == 1 else ~(jnp.isfinite(u0) & (u0 >= 0))
    u0 = check_values(
        u0,
        bad_u0,
        f"{fn}(..., u0=...) must be finite" + ("." if depth == 1 else " and >= 0."),
    )
    tau = check_values(
        tau, ~(jnp.isfinite(tau) & (tau > 0)), f"{fn}(..., tau=...) must be finite and > 0."
    )
    if decays(weight_decay):
        from .decay import deep_mode_decay  # decay.py builds on this module

        return deep_mode_decay(t, s, u0, tau, depth, weight_decay)
    return mode_strength(t, s, u0, tau, depth)


def mode_strength(t, s, u0, tau, depth: int):
    """`deep_mode` without the checks (for starts already checked, and inside `jax.vmap`)."""
    if depth == 1:
        return shallow(t, s, u0, tau)
    if depth == 2:
        return _saxe_deep(t, s, u0, tau)
    shape = jnp.broadcast_shapes(t.shape, s.shape, u0.shape, tau.shape)
    t, s, u0, tau = (jnp.broadcast_to(x, shape) for x in (t, s, u0, tau))
    moving = (s > 0) & (u0 > 0)
    safe_s = jnp.where(moving, s, 1.0)
    safe_u0 = jnp.where(moving, u0, 0.5)
    u = _deep_root(t, safe_s, safe_u0, tau, depth)
    # s = 0: tau u' = -D u^(3 - 2/D), an algebraic decay to 0.
    a = 2.0 - 2.0 / depth
    finite = jnp.isfinite(t)
    pu0 = jnp.where(u0 > 0, u0, 1.0)
    decay = pu0 * (1 + a * depth * pu0**a * jnp.where(finite, t, 0.0) / tau) ** (-1.0 / a)
    decay = jnp.where(finite, decay, 0.0)
    return jnp.where(moving, u, jnp.where(u0 > 0, decay, u0))


def _chain(U, V, weights):
    r"""Mode strengths $u_i$, layer singular values $\sigma_i = u_i^{1/D}$ and unit frames $R_l$.

    $R_0 = V$ and $R_l = W_l R_{l-1} / \sigma^l$ (columns of vanishing modes set to zero).
    """
    depth = len(weights)
    frames = [jnp.broadcast_to(V, weights[0].shape[:-2] + V.shape)]
    for w in weights:
        frames.append(w @ frames[-1])
    u = jnp.sum(lift(U, frames[-1].ndim) * frames[-1], axis=-2)
    alive = u > 0
    sigma = jnp.where(alive, jnp.where(alive, u, 1.0) ** (1.0 / depth), 0.0)
    safe = jnp.where(alive, sigma, 1.0)[..., None, :]
    scaled = [jnp.where(alive[..., None, :], f / safe**l, 0.0) for l, f in enumerate(frames[1:], 1)]
    return u, sigma, [frames[0], *scaled]


def _layers(frames, sigma):
    r"""$W_l = R_l\,\mathrm{diag}(\sigma)\,R_{l-1}^\top$."""
    return tuple(
        (upper * sigma[..., None, :]) @ jnp.swapaxes(lower, -1, -2)
        for lower, upper in zip(frames[:-1], frames[1:])
    )


@eqx.filter_jit
def _aligned_deep(task, weights, ts, tau, gamma):
    U, s, V = task.modes()
    depth = len(weights)
    u0, _, frames = _chain(U, V, weights)
    t = time_axis(ts, u0.ndim)
    shape = ts.shape + u0.shape
    args = (
        jnp.broadcast_to(t, shape),
        jnp.broadcast_to(s, shape),
        jnp.broadcast_to(jnp.maximum(u0, 0.0), shape),
        jnp.broadcast_to(tau, shape),
    )
    if gamma is None:
        u = mode_strength(*args, depth)
    else:
        from .decay import deep_mode_decay  # decay.py builds on this module

        u = deep_mode_decay(*args, depth, gamma)
    alive = u > 0
    sigma = jnp.where(alive, jnp.where(alive, u, 1.0) ** (1.0 / depth), 0.0)
    return _layers([f[None] for f in frames], sigma)


class AlignedDeep(DepthForm):
    r"""$D \ge 3$ layers, $\Sigma_{xx} = I$, balanced and aligned start.

    Every layer is $W_l = R_l\,\mathrm{diag}(\sigma)\,R_{l-1}^\top$ with orthonormal frames
    $R_0 = V$, $R_D = U$ (the task's modes) and the same singular values $\sigma_i$ in every
    layer. The flow keeps the frames and each mode strength $u_i = \sigma_i^D$ follows
    $\tau\,\dot u = D\,u^{2 - 2/D}(s_i - u)$ (Saxe, McClelland & Ganguli 2014, "Exact solutions
    to the nonlinear dynamics of learning in deep linear neural networks"; Arora, Cohen & Hazan
    2018), solved by `deep_mode`: a sigmoid up to $s_i$ from $u_i < s_i$, a decay down to $s_i$
    from $u_i > s_i$ (a large initialisation), an algebraic decay to 0 where $s_i = 0$.
    Depth 2 is the balanced case of the aligned two-layer form. With weight decay $\gamma$ the
    start stays balanced and aligned, and $u_i$ follows
    $\tau\,\dot u = D\,u^{2 - 2/D}(s_i - u) - D\gamma u$ (`deep_mode` with `weight_decay`).

    Conditions (to relative tolerance `rtol`, per initialisation): whitened inputs;
    $W_{l+1}^\top W_{l+1} = W_l W_l^\top$; $u_i = u^{i\top} W v^i \ge 0$;
    $W V = U\,\mathrm{diag}(u)$ and every layer equal to its reconstruction from the frames
    (no weight outside the modes).
    """

    name: ClassVar[str] = "aligned balanced deep"
    min_depth: ClassVar[int] = 3
    max_depth: ClassVar[None] = None

    def decay_reason(self):
        return None

    def conditions(self, task, weights, rtol, weight_decay=None):
        depth = len(weights)
        size = per_init_size(*weights)
        gaps = [
            max_abs(jnp.swapaxes(upper, -1, -2) @ upper - lower @ jnp.swapaxes(lower, -1, -2))
            for lower, upper in zip(weights[:-1], weights[1:])
        ]
        balanced = jnp.max(jnp.stack(gaps), axis=0) <= rtol * size**2
        U, _, V = task.modes()
        u, sigma, frames = _chain(U, V, weights)
        scale = size**depth
        positive = jnp.min(u, axis=-1) >= -rtol * scale
        diagonal = max_abs(
            frames[-1] * sigma[..., None, :] ** depth - lift(U, u.ndim + 1) * u[..., None, :]
        ) <= (rtol * scale)
        layers = jnp.max(
            jnp.stack([max_abs(r - w) for r, w in zip(_layers(frames, sigma), weights)]), axis=0
        )
        return [
            (WHITENED, whitened_condition(task, rtol)),
            ("not balanced: max |W_(l+1)^T W_(l+1) - W_l W_l^T| > rtol * max |W_l|^2", balanced),
            ("not aligned: a mode strength u_i = u_i^T W v_i is negative", positive),
            (
                "not aligned: W V is not U diag(u) (the product is not diagonal in the modes)",
                diagonal,
            ),
            (
                "not aligned: the layers are not R_l diag(sigma) R_(l-1)^T with R_0 = V, R_D = U",
                layers <= rtol * size,
            ),
        ]

    def solve(self, task, weights, ts, tau, rtol, weight_decay=None):
        return _aligned_deep(task, weights, ts, tau, weight_decay)
