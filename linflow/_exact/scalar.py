r"""Closed forms for one decoupled mode.

With aligned weights each mode $\alpha$ of a two-layer network is a scalar pair
$\tau\,\dot a = (s - ab)\,b$, $\tau\,\dot b = (s - ab)\,a$ (Saxe, McClelland & Ganguli 2014,
"Exact solutions to the nonlinear dynamics of learning in deep linear neural networks"), whose
product $u = ab$ is the mode strength. All functions broadcast over their array arguments,
use only decaying exponentials (so $t = \infty$ gives the converged value) and are
jit- and vmap-safe.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import hyp2f1

from .base import check_values, safe_sqrt


def _floats(*args):
    dtype = jnp.result_type(*args, float)
    return [jnp.asarray(a, dtype) for a in args]


def saxe_deep(t, s, u0, tau=1.0):
    r"""Mode strength of a balanced two-layer network (Saxe, McClelland & Ganguli 2014).

    The sigmoid of Saxe, McClelland & Ganguli (2014, "Exact solutions to the nonlinear dynamics
    of learning in deep linear neural networks"), as written in Shimizu & Aoyagi's lecture notes
    on linear multilayer networks (eq. 10):

    $$u(t) = \frac{s\, e^{2st/\tau}}{e^{2st/\tau} - 1 + s/u_0}
    = \frac{u_0}{e^{-2st/\tau} + u_0\,(1 - e^{-2st/\tau})/s},$$

    the solution of $\tau\,\dot u = 2u(s - u)$ (Saxe, McClelland & Ganguli 2014, "Exact
    solutions to the nonlinear dynamics of learning in deep linear neural networks"): a sigmoid
    from $u_0 < s$ up to $s$ whose half-time is $\frac{\tau}{2s}\ln\frac{s - u_0}{u_0}$, a decay
    from $u_0 > s$ down to $s$, and $u_0/(1 + 2u_0 t/\tau)$ for $s = 0$.

    **Arguments:** `t` time ($\ge 0$, may be `inf`), `s` singular value of $\Sigma_{yx}$
    ($\ge 0$), `u0` initial mode strength ($u_0 = a_0 b_0 \ge 0$ with $a_0 = b_0$), `tau` time
    constant $\tau = 1/\eta$. Arrays broadcast.

    **Returns:** $u(t)$, the broadcast shape of the arguments.

    **Example:**

    ```python
    u = linflow.saxe_deep(jnp.linspace(0, 10, 100), 3.0, 1e-3)
    ```
    """
    t, s, u0, tau = _floats(t, s, u0, tau)
    return _saxe_deep(t, s, u0, tau)


def _saxe_deep(t, s, u0, tau):
    finite = jnp.isfinite(t)
    tf = jnp.where(finite, t, 0.0)
    positive = s > 0
    safe_s = jnp.where(positive, s, 1.0)
    x = 2 * safe_s * tf / tau
    decay = jnp.where(finite & positive, jnp.exp(-x), jnp.where(positive, 0.0, 1.0))
    # (1 - e^{-2st/tau}) / s, which is 2t/tau at s = 0.
    growth = jnp.where(
        finite, jnp.where(positive, -jnp.expm1(-x) / safe_s, 2 * tf / tau), 1 / safe_s
    )
    growth = jnp.where(finite | positive, growth, 0.0)
    denominator = decay + u0 * growth
    # A zero start stays at zero (0 / 0 at t = inf); s = 0, t = inf: u0 / (1 + inf) = 0.
    u = u0 / jnp.where(denominator > 0, denominator, 1.0)
    return jnp.where(finite | positive, u, 0.0)


def shallow(t, s, b0, tau=1.0):
    r"""Mode strength of a one-layer network (Saxe, McClelland & Ganguli 2019).

    The shallow network of Saxe, McClelland & Ganguli (2019, "A mathematical theory of semantic
    development in deep neural networks"), as written in Shimizu & Aoyagi's lecture notes on
    linear multilayer networks (eq. 11):

    $$b(t) = s\,(1 - e^{-t/\tau}) + b_0\, e^{-t/\tau},$$

    the solution of $\tau\,\dot b = s - b$: every mode relaxes at the same rate.

    **Arguments:** `t`, `s`, `b0` initial strength, `tau`. Arrays broadcast.

    **Returns:** $b(t)$.

    **Example:**

    ```python
    b = linflow.shallow(jnp.linspace(0, 10, 100), 3.0, 0.0)
    ```
    """
    t, s, b0, tau = _floats(t, s, b0, tau)
    finite = jnp.isfinite(t)
    decay = jnp.where(finite, jnp.exp(-jnp.where(finite, t, 0.0) / tau), 0.0)
    return s + (b0 - s) * decay


def _growth_ratio(x0, y0, sigma, big_k, t, tau):
    r"""$x(t)/x_0$ for $\tau\,\dot x = -\tfrac12 (x - x_+)(x - x_-)$, $x_\pm = 2\sigma \pm K$.

    Here $K = \sqrt{4\sigma^2 + \lambda^2}$ and $\lambda^2 = x_0 y_0$, so $x_+ x_- = -x_0 y_0$.
    With $E = e^{-Kt/\tau}$, $\phi = (1 - E)/(2K)$ ($= t/2\tau$ when $K = 0$) and
    $m = -x_- \ge 0$,

    $$\frac{x(t)}{x_0} = \frac{E + (x_+ + y_0)\,\phi}{x_0\,\phi + (x_+ E + m)/(2K)}.$$

    Every term is non-negative (nothing cancels), the ratio is finite at $x_0 = 0$ (so the
    square root of $x$ is $\sqrt{x_0}$ times a smooth factor), and it is 0 where the denominator
    vanishes (a start at the fixed point $x_0 = 0 = m$, at $t = \infty$).
    """
    positive = big_k > 0
    safe_k = jnp.where(positive, big_k, 1.0)
    lam2 = x0 * y0
    # x_+ and m = -x_- without cancellation, from x_+ x_- = -lambda^2.
    up = sigma >= 0
    x_plus = jnp.where(up, 2 * sigma + big_k, lam2 / jnp.where(up, 1.0, big_k - 2 * sigma))
    m = jnp.where(up, lam2 / jnp.where(up & positive, big_k + 2 * sigma, 1.0), big_k - 2 * sigma)
    finite = jnp.isfinite(t)
    kt = big_k * jnp.where(finite, t, 0.0) / tau
    decay = jnp.where(finite, jnp.exp(-kt), 0.0)
    phi = jnp.where(
        finite,
        jnp.where(kt > 1e-8, -jnp.expm1(-kt) / (2 * safe_k), jnp.where(finite, t, 0.0) / (2 * tau)),
        1 / (2 * safe_k),
    )
    numerator = decay + (x_plus + y0) * phi
    denominator = x0 * phi + (x_plus * decay + m) / (2 * safe_k)
    ratio = numerator / jnp.where(denominator > 0, denominator, 1.0)
    ratio = jnp.where(denominator > 0, ratio, 0.0)
    # K = 0 (sigma = lambda = 0): tau x' = -x^2/2, so x/x0 = 1/(1 + x0 t/(2 tau)).
    flat = jnp.where(finite, 1 / (1 + x0 * jnp.where(finite, t, 0.0) / (2 * tau)), 0.0)
    return jnp.where(positive, ratio, jnp.where(x0 > 0, flat, 1.0))


def scalar_mode(t, s, a0, b0, tau=1.0):
    r"""Exact solution of the pair $\tau\,\dot a = (s - ab)\,b$, $\tau\,\dot b = (s - ab)\,a$.

    For any start $(a_0, b_0)$, balanced or not (Saxe, McClelland & Ganguli 2014; Kunin et al.
    2024, "Get rich quick"; Dominé et al. 2025, "From lazy to rich"). The imbalance
    $\lambda = b^2 - a^2$ is conserved. With $p = a + b$ and $q = b - a$ (so $pq = \lambda$),
    $x = p^2$ obeys the Riccati equation $\tau\,\dot x = -\tfrac12(x^2 - 4 s x - \lambda^2)$, with
    roots $x_\pm = 2s \pm K$, $K = \sqrt{4 s^2 + \lambda^2}$, and $y = q^2$ the same with
    $s \to -s$:

    $$x(t) = x_+ + \frac{(x_0 - x_+)\,e^{-Kt/\tau}}{1 + (x_0 - x_+)\,(1 - e^{-Kt/\tau})/(2K)},$$

    evaluated as $p = p_0 \sqrt{x/x_0}$ with $x/x_0$ a sum of non-negative terms (see
    `_growth_ratio`), then $a = (p - q)/2$, $b = (p + q)/2$. It converges to
    $a_*^2 = (K - \lambda)/2$, $b_*^2 = (K + \lambda)/2$, $a_* b_* = s$ (for $s > 0$, $p_0 \ne 0$).
    Only decaying exponentials appear, so $t = \infty$ is exact; $s = 0$ and $\lambda = 0$ are
    covered, and the derivatives are finite at $a_0 = \pm b_0$.

    **Arguments:** `t`, `s`, `a0`, `b0`, `tau`; arrays broadcast.

    **Returns:** `(a, b)` at time `t`.

    **Example:**

    ```python
    a, b = linflow.scalar_mode(jnp.linspace(0, 10, 100), 2.0, 1e-3, 0.5)
    ```
    """
    t, s, a0, b0, tau = _floats(t, s, a0, b0, tau)
    p0, q0 = a0 + b0, b0 - a0
    x0, y0 = p0**2, q0**2
    big_k = safe_sqrt(4 * s**2 + x0 * y0)
    p = p0 * safe_sqrt(_growth_ratio(x0, y0, s, big_k, t, tau))
    q = q0 * safe_sqrt(_growth_ratio(y0, x0, -s, big_k, t, tau))
    return (p - q) / 2, (p + q) / 2


def time_to_learn(s, u0, tau=1.0, depth: int = 2, fraction=0.5):
    r"""Time for a balanced mode to grow from $u_0$ to `fraction` $\cdot\, s$.

    The mode strength of a balanced, aligned network of `depth` $D$ weight matrices obeys
    $\tau\,\dot u = D\, u^{2 - 2/D}(s - u)$ (Saxe, McClelland & Ganguli 2014; Arora, Cohen &
    Hazan 2018, "On the optimization of deep networks: implicit acceleration by
    overparameterization"), so

    - $D = 1$: $t = \tau \ln\frac{s - u_0}{(1 - f)\,s}$;
    - $D = 2$: $t = \frac{\tau}{2s}\ln\frac{f\,(s - u_0)}{(1 - f)\,u_0}$ (for $f = 1/2$, the
      half-time $\frac{\tau}{2s}\ln\frac{s - u_0}{u_0}$);
    - $D \ge 3$: $t = \frac{\tau}{D}[\Phi(fs) - \Phi(u_0)]$,
      $\Phi(x) = \frac{x^c}{c\,s}\, {}_2F_1(1, c; c + 1; x/s)$, $c = 2/D - 1$.

    A negative result means the mode had already passed $f s$ ($u_0 > f s$).

    **Arguments:** `s` singular value (> 0), `u0` initial mode strength ($0 < u_0 < s$; any
    $u_0 < s$ for $D = 1$), `tau` ($> 0$), `depth` the number of weight matrices $D$ (a Python
    int), `fraction` $f \in (0, 1)$. Arrays broadcast.

    **Returns:** the time, the broadcast shape of `s`, `u0`, `tau`, `fraction`.

    **Raises:** `ValueError` for a depth below 1, and for values outside the ranges above
    (eagerly; under `jax.jit` an `equinox` runtime error with the same message).

    **Example:**

    ```python
    linflow.time_to_learn(3.0, 1e-3)                 # (1/6) ln(2999)
    linflow.time_to_learn(3.0, 1e-3, depth=4, fraction=0.9)
    ```
    """
    fn = "time_to_learn"
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"{fn}(..., depth={depth!r}) must be an int >= 1.")
    s, u0, tau, f = _floats(s, u0, tau, fraction)
    s = check_values(s, ~(jnp.isfinite(s) & (s > 0)), f"{fn}(s=...) must be finite and > 0.")
    low = "u0 < s" if depth == 1 else "0 < u0 < s"
    bad_u0 = ~(jnp.isfinite(u0) & (u0 < s)) if depth == 1 else ~((u0 > 0) & (u0 < s))
    u0 = check_values(
        u0,
        bad_u0,
        f"{fn}(..., u0=...) must satisfy {low}: a balanced mode starting at or above s never "
        "grows to fraction * s (and one starting at 0 never leaves it).",
    )
    tau = check_values(
        tau, ~(jnp.isfinite(tau) & (tau > 0)), f"{fn}(..., tau=...) must be finite and > 0."
    )
    f = check_values(f, ~((f > 0) & (f < 1)), f"{fn}(..., fraction=...) must lie in (0, 1).")
    if depth == 1:
        return tau * jnp.log((s - u0) / ((1 - f) * s))
    if depth == 2:
        return tau / (2 * s) * jnp.log(f * (s - u0) / ((1 - f) * u0))
    c = 2.0 / depth - 1.0

    def phi(x):
        return x**c * hyp2f1(1.0, c, c + 1.0, x / s) / (c * s)

    return tau / depth * (phi(f * s) - phi(u0))
