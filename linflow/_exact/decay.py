r"""Closed forms of the gradient flow with weight decay.

With the loss $L_\gamma = L + \frac\gamma2\sum_l\|W_l\|_F^2$, whitened inputs and a balanced,
aligned start of $D$ layers $W_l = R_l\,\mathrm{diag}(\sigma)\,R_{l-1}^\top$, the frames stay
put and each layer singular value obeys
$\tau\,\dot\sigma = \sigma^{D-1}(s - \sigma^D) - \gamma\sigma$ (the gradient of one mode,
$(s - u)\,\sigma^{D-1}$, plus the decay $\gamma\sigma$), so the mode strength $u = \sigma^D$ follows

$$\tau\,\dot u = D\,\sigma^{D-1}\,\tau\dot\sigma = D\,u^{2 - 2/D}(s - u) - D\gamma u.$$

$D = 1$: $\tau\dot u = s - (1 + \gamma)u$, relaxing to the ridge value $s/(1 + \gamma)$.
$D = 2$: $\tau\dot u = 2u(s - \gamma - u)$, the Saxe sigmoid with $s$ replaced by $s - \gamma$
(modes with $s \le \gamma$ decay to zero). $D \ge 3$: with $\rho = (u/s)^{1/D}$ and the
dimensionless time $T = s^{2 - 2/D}\,t/\tau$ and decay $g = \gamma/s^{2 - 2/D}$,
$d\rho/dT = \rho P(\rho)$, $P(\rho) = \rho^{D-2}(1 - \rho^D) - g$. For
$g < g_{\max} = \max_\rho \rho^{D-2}(1 - \rho^D)$, $P$ has two positive roots
$\rho_- < \rho_+$: $u = 0$ and $u_+ = s\rho_+^D$ are stable, $u_- = s\rho_-^D$ is a threshold
(starts below it decay to zero); for $g \ge g_{\max}$ every mode decays. The time is the
integral of the rational function $1/(\rho P(\rho))$: by partial fractions over the roots
$r_k$ of $P$ (and $\sum_k$ of the residues $= 0$),

$$T(\rho) - T(\rho_0) = F(\rho) - F(\rho_0), \qquad
F(\rho) = \sum_k \mathrm{Re}\bigl[A_k \ln(1 - r_k/\rho)\bigr], \qquad
A_k = \frac{1}{(2D - 2)g - D\,r_k^{D-2}},$$

which is inverted by bisection. The imbalance of every pair of layers decays:
$\tau\,\frac{d}{dt}(W_{l+1}^\top W_{l+1} - W_l W_l^\top) = -2\gamma\,(W_{l+1}^\top W_{l+1} -
W_l W_l^\top)$, for any $\Sigma_{xx}$ (the data terms cancel as without decay).

The decay is the $L_2$ penalty of Krogh & Hertz (1992, "A simple weight decay can improve
generalization"); its effect on the modes of deep linear networks is discussed by Saxe,
McClelland & Ganguli (2019, "A mathematical theory of semantic development in deep neural
networks") and Lampinen & Ganguli (2019, "An analytic theory of generalization dynamics and
transfer learning in deep linear networks").
"""

from __future__ import annotations

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import is_concrete
from .base import check_values
from .deep import deep_mode
from .scalar import _floats, time_to_learn

_BISECTIONS = 64


def check_weight_decay(fn: str, weight_decay):
    """`(gamma, positive)`: `weight_decay` as an array, checked real, finite and >= 0 (with a
    `ValueError` naming `fn` and the argument when its value is known, else with
    `equinox.error_if`), and whether it is known to be > 0 everywhere. Arrays broadcast."""
    if isinstance(weight_decay, str | bytes | bool | np.bool_) or weight_decay is None:
        raise ValueError(
            f"{fn}(..., weight_decay={weight_decay!r}) must be a real number >= 0, got "
            f"{type(weight_decay).__name__}."
        )
    # Python and NumPy values are known even inside a trace.
    known = isinstance(weight_decay, int | float | np.number | np.ndarray)
    gamma = np.asarray(weight_decay) if known else jnp.asarray(weight_decay)
    if gamma.dtype == np.bool_ or not (
        np.issubdtype(gamma.dtype, np.floating) or np.issubdtype(gamma.dtype, np.integer)
    ):
        raise ValueError(f"{fn}(..., weight_decay=...) must be real, got dtype {gamma.dtype}.")
    message = f"{fn}(..., weight_decay=...) must be finite and >= 0."
    if known or is_concrete(gamma):
        value = np.asarray(gamma)
        if not np.all(np.isfinite(value) & (value >= 0)):
            raise ValueError(message)
        return gamma, bool(np.all(value > 0))
    return eqx.error_if(gamma, ~jnp.all(jnp.isfinite(gamma) & (gamma >= 0)), message), False


def saxe_deep_decay(t, s, u0, tau, weight_decay):
    r"""$u(t)$ of $\tau\dot u = 2u(r - u)$, $r = s - \gamma$, for any sign of $r$.

    With $\kappa = |r|$, $e = e^{-2\kappa t/\tau}$ and $\psi = (1 - e)/\kappa$ ($= 2t/\tau$ at
    $\kappa = 0$): $u = u_0/(e + u_0\psi)$ for $r \ge 0$ (the sigmoid to $r$) and
    $u = u_0 e/(1 + u_0\psi)$ for $r < 0$ (the decay to 0). Only decaying exponentials appear.
    """
    gamma, _ = check_weight_decay("saxe_deep", weight_decay)
    t, s, u0, tau, gamma = _floats(t, s, u0, tau, gamma)
    r = s - gamma
    kappa = jnp.abs(r)
    positive = kappa > 0
    x = 2 * kappa * jnp.where(positive, t, 0.0) / tau  # no 0 * inf
    e = jnp.exp(-x)
    psi = jnp.where(positive, -jnp.expm1(-x) / jnp.where(positive, kappa, 1.0), 2 * t / tau)
    numerator, denominator = jnp.where(r >= 0, u0, u0 * e), jnp.where(r >= 0, e, 1.0) + u0 * psi
    # u0 = 0 is a fixed point (also where e = 0 would give 0/0).
    return jnp.where(u0 == 0, 0.0, numerator / jnp.where(u0 == 0, 1.0, denominator))


def _shallow_decay(t, s, u0, tau, gamma):
    r"""Depth 1: $\tau\dot u = s - (1 + \gamma)u$, relaxing to $s/(1 + \gamma)$."""
    fixed = s / (1 + gamma)
    return fixed + (u0 - fixed) * jnp.exp(-(1 + gamma) * t / tau)


def _h(rho, depth: int):
    r"""$h(\rho) = \rho^{D-2}(1 - \rho^D)$, so that $P = h - g$."""
    return rho ** (depth - 2) * (1 - rho**depth)


def _dh(rho, depth: int):
    return (depth - 2) * rho ** (depth - 3) - (2 * depth - 2) * rho ** (2 * depth - 3)


def _peak(depth: int, dtype):
    r"""$\rho_m = ((D-2)/(2D-2))^{1/D}$, where $h$ peaks, and $g_{\max} = h(\rho_m)$."""
    rho_m = ((depth - 2) / (2 * depth - 2)) ** (1 / depth)
    return jnp.asarray(rho_m, dtype), jnp.asarray(_h(rho_m, depth), dtype)


def _positive_roots(g, depth: int):
    r"""$\rho_- < \rho_+$ with $h(\rho_\pm) = g$ (both $\rho_m$ when $g \ge g_{\max}$).

    Bisection ($h$ rises on $[0, \rho_m]$ and falls on $[\rho_m, 1]$); the derivative in $g$
    is the implicit one, $1/h'(\rho_\pm)$, added without changing the value.
    """
    rho_m, g_max = _peak(depth, g.dtype)
    below = g < g_max

    def bisect(lo, hi, rising):
        def body(_, bracket):
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            left = (_h(mid, depth) < g) == rising
            return jnp.where(left, mid, lo), jnp.where(left, hi, mid)

        lo, hi = jax.lax.fori_loop(0, _BISECTIONS, body, (lo, hi))
        rho = jax.lax.stop_gradient(jnp.where(below, 0.5 * (lo + hi), rho_m))
        residual = _h(rho, depth) - g
        slope = _dh(rho, depth)
        slope = jnp.where(below & (slope != 0), slope, 1.0)
        return rho - (residual - jax.lax.stop_gradient(residual)) / slope

    zeros, ones = jnp.zeros_like(g), jnp.ones_like(g)
    return bisect(zeros, rho_m * ones, True), bisect(rho_m * ones, ones, False)


def _orders(n: int, ndim: int):
    r"""$1, \dots, n$ on the last of `ndim` axes (explicit broadcasting)."""
    return np.arange(1, n + 1).reshape((1,) * (ndim - 1) + (n,))


class _Primitive(eqx.Module):
    r"""$F(\rho) = \sum_k \mathrm{Re}[A_k\ln(1 - r_k/\rho)]$, a primitive of $1/(\rho P(\rho))$,
    called with $z = \ln\rho$.

    The roots $r_k$ of $P$ are the eigenvalues of its companion matrix, polished by Newton
    steps on $P$ (which make the small ones accurate relative to their size), and
    $A_k = 1/((2D - 2)g - D r_k^{D-2})$. For small $g$ the $D - 2$ roots near
    $|r| = g^{1/(D-2)}$ (the *cluster*, $|r_k| < \rho_m$) have residues of order $1/g$ whose
    terms cancel: when $\rho \ge 4\max_{\rm cluster}|r_k| = 4R$ their part is summed as
    the series $-\sum_j C_j \rho^{-j}/j$, $C_j = \sum_{\rm cluster} A_k r_k^j$, where the
    cancelling moments $j \le D - 3$ come from the other roots, $C_j = -\sum_{\rm other}
    A_k r_k^j$ (all moments $1 \le j \le 2D - 3$ of all the roots vanish, as
    $1/(\rho P) = O(\rho^{-(2D-1)})$).
    """

    roots: jax.Array  # (..., 2D - 2), complex
    residues: jax.Array
    cluster: jax.Array  # (..., 2D - 2), bool
    radius: jax.Array  # R, (...)
    moments: jax.Array  # C_j / R^j, j = 1..N, (..., N)

    def __init__(self, g, depth: int):
        n = 2 * depth - 2
        # Companion matrix of the monic rho^(2D-2) - rho^(D-2) + g = -P.
        first = jnp.zeros(g.shape + (n,), g.dtype)
        first = first.at[..., depth - 1].set(1.0).at[..., n - 1].set(-g)
        below = jnp.broadcast_to(jnp.eye(n - 1, n, dtype=g.dtype), g.shape + (n - 1, n))
        r = jnp.linalg.eigvals(jnp.concatenate([first[..., None, :], below], axis=-2))
        gc = g[..., None].astype(r.dtype)
        for _ in range(3):
            p = r ** (depth - 2) * (1 - r**depth) - gc
            r = r - p / (_dh(r, depth))
        rho_m, _ = _peak(depth, g.dtype)
        self.roots = r
        self.residues = 1 / ((2 * depth - 2) * gc - depth * r ** (depth - 2))
        self.cluster = jnp.abs(r) < rho_m
        radius = jnp.max(jnp.where(self.cluster, jnp.abs(r), 0.0), axis=-1)
        self.radius = jnp.where(radius > 0, radius, 1.0)
        n_terms = int(np.ceil(-np.log2(np.finfo(g.dtype).eps) / 2)) + 1  # 4^-N < eps
        j = _orders(n_terms, g.ndim + 1)[..., None]  # (1, ..., N, 1)
        powers = (
            self.residues[..., None, :]
            * (r[..., None, :] / self.radius[..., None, None].astype(r.dtype)) ** j
        )  # (..., N, 2D - 2)
        cluster = self.cluster[..., None, :]
        own = jnp.sum(jnp.where(cluster, powers, 0), axis=-1)
        others = -jnp.sum(jnp.where(cluster, 0, powers), axis=-1)
        self.moments = jnp.where(j[..., 0] <= depth - 3, others, own)

    def __call__(self, z):
        x = -self.roots * jnp.exp(-z)[..., None].astype(self.roots.dtype)
        terms = jnp.real(self.residues * jnp.log1p(x))
        direct = jnp.sum(jnp.where(self.cluster, terms, 0.0), axis=-1)
        q = self.radius * jnp.exp(-z)
        near = q > 0.25
        j = _orders(self.moments.shape[-1], self.moments.ndim)
        qj = jnp.where(near, 0.0, q)[..., None] ** j
        series = -jnp.sum(jnp.real(self.moments) * qj / j, axis=-1)
        far = jnp.sum(jnp.where(self.cluster, 0.0, terms), axis=-1)
        return far + jnp.where(near, direct, series)


@partial(jax.jit, static_argnames="depth")
def _deep_mode_decay(t, s, u0, tau, gamma, depth: int):
    r"""$u(t)$ for $D \ge 3$ and $\gamma > 0$ (elements with $\gamma = 0$: garbage, masked by
    the caller): bisection on $z = \ln\rho$ between $z_0$ and the limit, then the implicit
    derivative of $F(z) - F(z_0) = T$ is attached. $u_0 = 0$ stays 0, and $s = 0$ is the
    Bernoulli equation $\tau\dot u = -D u^{1 + c} - D\gamma u$, $c = 2 - 2/D$, whose solution is
    $u = u_0\,[1 + (1 + u_0^c/\gamma)(e^{cD\gamma t/\tau} - 1)]^{-1/c}$."""
    dtype = u0.dtype
    c = 2.0 - 2.0 / depth
    x = jnp.maximum(u0, 0.0) ** c / gamma
    a = c * depth * gamma * jnp.where(jnp.isfinite(t), t, 0.0) / tau
    # ln[1 + (1 + x)(e^a - 1)], as ln(1 + x) + a + ln(1 - e^{-a} x/(1 + x)) past a = 1 (no
    # overflow at large t, so no NaN in derivatives).
    small = a < 1
    a_small, a_big = jnp.where(small, a, 0.0), jnp.where(small, 1.0, a)
    log_small = jnp.log1p((1 + x) * jnp.expm1(a_small))
    log_big = a_big + jnp.log1p(x) + jnp.log1p(-jnp.exp(-a_big) * x / (1 + x))
    bernoulli = u0 * jnp.exp(-jnp.where(small, log_small, log_big) / c)
    bernoulli = jnp.where(jnp.isfinite(t), bernoulli, 0.0)
    zero_s = (s == 0) & (u0 > 0)
    s = jnp.where((u0 == 0) | zero_s, 1.0, s)  # any s > 0 keeps u0 = 0 fixed, no 0/0
    scale = s ** (2.0 - 2.0 / depth)
    g = gamma / scale
    T = t * scale / tau
    rho0 = (jnp.maximum(u0, 0.0) / s) ** (1.0 / depth)
    rho_minus, rho_plus = _positive_roots(g, depth)
    primitive = _Primitive(g, depth)
    _, g_max = _peak(depth, dtype)
    to_plus = (g < g_max) & (rho0 > rho_minus)  # else the mode decays to zero
    fixed = (rho0 == 0) | (rho0 == rho_minus) | (to_plus & (rho0 == rho_plus))
    safe_rho0 = jnp.where(fixed, 1.0, rho0)  # P(1) = -g: never a root
    z0 = jnp.log(safe_rho0)
    finite = jnp.isfinite(T)
    target = jnp.where(finite, T, 0.0)
    # |dz/dT| = |P| <= g + rho0^(2D-2) on the way down; below z_min, u underflows anyway.
    z_min = np.log(np.finfo(dtype).tiny) / depth
    z_down = jnp.maximum(z0 - (g + safe_rho0 ** (2 * depth - 2)) * target, z_min)
    z_end = jnp.where(to_plus, jnp.log(rho_plus), z_down)
    z0, z_end, target = (jax.lax.stop_gradient(x) for x in (z0, z_end, target))
    start = primitive(z0)

    def body(_, bracket):
        lo, hi = bracket  # lo on the side of z0
        mid = 0.5 * (lo + hi)
        early = primitive(mid) - start < target
        return jnp.where(early, mid, lo), jnp.where(early, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _BISECTIONS, body, (z0, z_end))
    z = jax.lax.stop_gradient(0.5 * (lo + hi))
    # Implicit derivative: dF/dz = 1/P(e^z), so dz = -d(F(z) - F(z0) - T) * P.
    z0 = jnp.log(safe_rho0)
    residual = primitive(z) - primitive(z0) - T
    rate = _h(jnp.exp(z), depth) - g
    step = (residual - jax.lax.stop_gradient(residual)) * rate
    z = z - jnp.where(jnp.isfinite(residual), step, 0.0)
    u = s * jnp.exp(depth * z)
    limit = jnp.where(to_plus, s * rho_plus**depth, 0.0)
    u = jnp.where(finite, u, limit)
    return jnp.where(fixed | (t == 0), u0, jnp.where(zero_s, bernoulli, u))


def deep_mode_decay(t, s, u0, tau, depth: int, weight_decay):
    r"""$u(t)$ of $\tau\dot u = D u^{2 - 2/D}(s - u) - D\gamma u$ (see the module's docstring)."""
    gamma, positive = check_weight_decay("deep_mode", weight_decay)
    if depth == 2:
        return saxe_deep_decay(t, s, u0, tau, gamma)
    t, s, u0, tau, gamma = _floats(t, s, u0, tau, gamma)
    if depth == 1:
        return _shallow_decay(t, s, u0, tau, gamma)
    shape = jnp.broadcast_shapes(t.shape, s.shape, u0.shape, tau.shape, gamma.shape)
    t, s, u0, tau, gamma = (jnp.broadcast_to(x, shape) for x in (t, s, u0, tau, gamma))
    decays = gamma > 0
    u = _deep_mode_decay(t, s, u0, tau, jnp.where(decays, gamma, 1.0), depth)
    if positive:
        return u
    return jnp.where(decays, u, deep_mode(t, s, u0, tau, depth=depth))


def fixed_point(s, depth: int, weight_decay):
    r"""The stable non-zero mode strength $u_*$ under decay ($0$ where the mode decays away).

    $D = 1$: $s/(1 + \gamma)$; $D = 2$: $\max(s - \gamma, 0)$; $D \ge 3$: $s\rho_+^D$ with
    $\rho_+$ the larger root of $\rho^{D-2}(1 - \rho^D) = \gamma/s^{2 - 2/D}$ (0 past
    $g_{\max}$). Arrays broadcast.
    """
    gamma, _ = check_weight_decay("fixed_point", weight_decay)
    s, gamma = _floats(s, gamma)
    if depth == 1:
        return s / (1 + gamma)
    if depth == 2:
        return jnp.maximum(s - gamma, 0.0)
    s, gamma = jnp.broadcast_arrays(s, gamma)
    g = gamma / s ** (2.0 - 2.0 / depth)
    _, rho_plus = _positive_roots(g, depth)
    _, g_max = _peak(depth, g.dtype)
    return jnp.where(g < g_max, s * rho_plus**depth, 0.0)


def time_to_learn_decay(s, u0, tau, depth: int, fraction, weight_decay):
    r"""Time for a balanced mode to grow from $u_0$ to `fraction` $\cdot\,u_*$ under decay.

    $u_*$ is the stable fixed point (`fixed_point`): $D = 1$:
    $t = \frac{\tau}{1 + \gamma}\ln\frac{u_* - u_0}{(1 - f)u_*}$; $D = 2$:
    $t = \frac{\tau}{2r}\ln\frac{f(r - u_0)}{(1 - f)u_0}$, $r = s - \gamma$; $D \ge 3$:
    $t = \frac{\tau}{s^{2 - 2/D}}[F(f^{1/D}\rho_+) - F(\rho_0)]$. Raises (equinox) unless
    the mode learns: $u_* > 0$ and $u_- < u_0 < u_*$ ($u_- = 0$ for $D \le 2$).
    """
    gamma, positive = check_weight_decay("time_to_learn", weight_decay)
    s, u0, tau, f, gamma = _floats(s, u0, tau, fraction, gamma)
    s_fixed = fixed_point(s, depth, gamma)
    bad = ~(jnp.isfinite(s) & (s > 0) & jnp.isfinite(tau) & (tau > 0))
    bad = bad | (s_fixed <= 0) | ~(u0 < s_fixed) | ~((f > 0) & (f < 1))
    if depth >= 2:
        bad = bad | (u0 <= 0)
    if depth >= 3:
        rho_minus, _ = _positive_roots(gamma / s ** (2.0 - 2.0 / depth), depth)
        bad = bad | (u0 <= s * rho_minus**depth)
    s = check_values(
        s,
        bad,
        "time_to_learn(..., weight_decay=...) needs a mode that learns: finite s > 0 and "
        "tau > 0, a positive fixed point u* (for depth 2, s > weight_decay), u0 < u*, u0 above "
        "the threshold (u0 > 0; for depth >= 3 the unstable fixed point), 0 < fraction < 1.",
    )
    if depth == 1:
        return tau / (1 + gamma) * jnp.log((s_fixed - u0) / ((1 - f) * s_fixed))
    if depth == 2:
        return tau / (2 * s_fixed) * jnp.log(f * (s_fixed - u0) / ((1 - f) * u0))
    shape = jnp.broadcast_shapes(s.shape, u0.shape, tau.shape, f.shape, gamma.shape)
    s, u0, tau, f, gamma = (jnp.broadcast_to(x, shape) for x in (s, u0, tau, f, gamma))
    decays = gamma > 0
    scale = s ** (2.0 - 2.0 / depth)
    g = jnp.where(decays, gamma, 1e-3 * scale) / scale
    primitive = _Primitive(g, depth)
    z_target = jnp.log(f * s_fixed / s) / depth
    z0 = jnp.log(u0 / s) / depth
    t = tau / scale * (primitive(z_target) - primitive(z0))
    if positive:
        return t
    return jnp.where(decays, t, time_to_learn(s, u0, tau, depth, f))
