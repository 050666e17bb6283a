r"""Closed forms for one decoupled mode.

With aligned weights each mode $\alpha$ of a two-layer network is a scalar pair
$\tau\,\dot a = (s - ab)\,b$, $\tau\,\dot b = (s - ab)\,a$ (Saxe, McClelland & Ganguli 2014,
"Exact solutions to the nonlinear dynamics of learning in deep linear neural networks"), whose
product $u = ab$ is the mode strength. All functions broadcast over their array arguments,
use only decaying exponentials (so $t = \infty$ gives the converged value) and are
jit- and vmap-safe.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax.scipy.special import hyp2f1


def _floats(*args):
    dtype = jnp.result_type(*args, float)
    return [jnp.asarray(a, dtype) for a in args]


def saxe_deep(t, s, u0, tau=1.0):
    r"""Mode strength of a balanced two-layer network (Saxe, McClelland & Ganguli 2014).

    The sigmoid of Saxe, McClelland & Ganguli (2014, "Exact solutions to the nonlinear dynamics
    of learning in deep linear neural networks"), as written in Shimizu & Aoyagi's lecture notes
    on linear multilayer networks (eq. 10):

    $$u(t) = \frac{s\, e^{2st/\tau}}{e^{2st/\tau} - 1 + s/u_0}
    = \frac{s\, u_0}{u_0 + (s - u_0)\, e^{-2st/\tau}},$$

    the solution of $\tau\,\dot u = 2u(s - u)$: a sigmoid from $u_0$ to $s$ whose
    half-time is $\frac{\tau}{2s}\ln\frac{s - u_0}{u_0}$.

    **Arguments:** `t` time, `s` singular value of $\Sigma_{yx}$, `u0` initial mode strength
    ($u_0 = a_0 b_0$ with $a_0 = b_0$), `tau` time constant $\tau = 1/\eta$. Arrays broadcast.

    **Returns:** $u(t)$, the broadcast shape of the arguments.

    **Example:**

    ```python
    u = linflow.saxe_deep(jnp.linspace(0, 10, 100), 3.0, 1e-3)
    ```
    """
    t, s, u0, tau = _floats(t, s, u0, tau)
    return s * u0 / (u0 + (s - u0) * jnp.exp(-2.0 * s * t / tau))


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
    return s + (b0 - s) * jnp.exp(-t / tau)


def _riccati(x0, sigma, lam2, K, t, tau):
    r"""Solve $\tau\,\dot x = -\tfrac12 (x - x_+)(x - x_-)$, $x_\pm = 2\sigma \pm K$, $x_0 \ge 0$.

    With $E = e^{-Kt/\tau}$ and $\phi = (1 - E)/(2K)$ ($= t/2\tau$ when $K = 0$),

    $$x(t) = \frac{x_0 (E + x_+ \phi) + \lambda^2 \phi}{x_0 \phi + (x_+ E - x_-)/(2K)},$$

    using $x_+ x_- = -\lambda^2$. Every term is non-negative ($x_+ \ge 0 \ge x_-$), so
    nothing cancels: $x(0) = x_0$ exactly, even for a start far below $x_+$.
    """
    positive = K > 0
    safe_K = jnp.where(positive, K, 1.0)
    # x_+ and -x_- without cancellation, from x_+ x_- = -λ².
    x_plus = jnp.where(sigma >= 0, 2 * sigma + K, lam2 / jnp.where(sigma >= 0, 1.0, K - 2 * sigma))
    minus_x_minus = jnp.where(
        sigma > 0, lam2 / jnp.where(sigma > 0, K + 2 * sigma, 1.0), K - 2 * sigma
    )
    kt = K * t / tau
    E = jnp.where(positive, jnp.exp(-kt), 1.0)
    phi = jnp.where(positive & (t > 0), -jnp.expm1(-kt) / (2 * safe_K), t / (2 * tau))
    numerator = x0 * (E + x_plus * phi) + lam2 * phi
    denominator = x0 * phi + (x_plus * E + minus_x_minus) / (2 * safe_K)
    # x0 = x_- = 0 is a fixed point (an anti-aligned balanced start); keep it for all t.
    fixed = (x0 == 0) & (minus_x_minus == 0)
    x = numerator / jnp.where(fixed | ~positive, 1.0, denominator)
    # K = 0 (σ = λ = 0): τẋ = -x²/2, written so that x0 = 0 and t = ∞ give no NaN.
    x = jnp.where(positive, x, 1 / (1 / x0 + phi))
    return jnp.where(fixed, 0.0, x)


def scalar_mode(t, s, a0, b0, tau=1.0):
    r"""Exact solution of the pair $\tau\,\dot a = (s - ab)\,b$, $\tau\,\dot b = (s - ab)\,a$.

    For any start $(a_0, b_0)$, balanced or not (Saxe et al. 2014; Kunin et al. 2024;
    Dominé et al. 2025). The imbalance $\lambda = b^2 - a^2$ is conserved. With
    $p = a + b$ and $q = b - a$ (so $pq = \lambda$), $x = p^2$ obeys the Riccati equation
    $\tau\,\dot x = -\tfrac12(x^2 - 4 s x - \lambda^2)$, with roots $x_\pm = 2s \pm K$,
    $K = \sqrt{4 s^2 + \lambda^2}$, and $y = q^2$ the same with $s \to -s$:

    $$x(t) = x_+ + \frac{(x_0 - x_+)\,e^{-Kt/\tau}}{1 + (x_0 - x_+)\,(1 - e^{-Kt/\tau})/(2K)},$$

    then $a = (p - q)/2$, $b = (p + q)/2$ with the signs of $p_0, q_0$. It converges to
    $a_*^2 = (K - \lambda)/2$, $b_*^2 = (K + \lambda)/2$, $a_* b_* = s$ (for $s > 0$, $p_0 \ne 0$).
    Only decaying exponentials appear, so $t = \infty$ is exact and no complex numbers are needed;
    $s = 0$ and $\lambda = 0$ are covered.

    **Arguments:** `t`, `s`, `a0`, `b0`, `tau`; arrays broadcast.

    **Returns:** `(a, b)` at time `t`.

    **Example:**

    ```python
    a, b = linflow.scalar_mode(jnp.linspace(0, 10, 100), 2.0, 1e-3, 0.5)
    ```
    """
    t, s, a0, b0, tau = _floats(t, s, a0, b0, tau)
    p0, q0 = a0 + b0, b0 - a0
    lam = p0 * q0
    K = jnp.hypot(2 * s, lam)
    p = jnp.sign(p0) * jnp.sqrt(_riccati(p0**2, s, lam**2, K, t, tau))
    q = jnp.sign(q0) * jnp.sqrt(_riccati(q0**2, -s, lam**2, K, t, tau))
    return (p - q) / 2, (p + q) / 2


def time_to_learn(s, u0, tau=1.0, depth: int = 2, fraction=0.5):
    r"""Time for a balanced mode to grow from $u_0$ to `fraction` $\cdot\, s$.

    The mode strength of a balanced, aligned network of `depth` $D$ weight matrices obeys
    $\tau\,\dot u = D\, u^{2 - 2/D}(s - u)$ (Saxe et al. 2014; Arora et al. 2018), so

    - $D = 1$: $t = \tau \ln\frac{s - u_0}{(1 - f)\,s}$;
    - $D = 2$: $t = \frac{\tau}{2s}\ln\frac{f\,(s - u_0)}{(1 - f)\,u_0}$ (for $f = 1/2$, the
      half-time $\frac{\tau}{2s}\ln\frac{s - u_0}{u_0}$);
    - $D \ge 3$: $t = \frac{\tau}{D}[\Phi(fs) - \Phi(u_0)]$,
      $\Phi(x) = \frac{x^c}{c\,s}\, {}_2F_1(1, c; c + 1; x/s)$, $c = 2/D - 1$.

    A negative result means the mode had already passed $f s$ ($u_0 > f s$).

    **Arguments:** `s` singular value (> 0), `u0` initial mode strength ($0 < u_0 < s$; any
    $u_0 < s$ for $D = 1$), `tau`, `depth` the number of weight matrices $D$, `fraction`
    $f \in (0, 1)$. Arrays broadcast.

    **Returns:** the time, the broadcast shape of `s`, `u0`, `tau`, `fraction`.

    **Raises:** `ValueError` for a depth below 1; an equinox runtime error for $s \le 0$,
    $u_0 \ge s$, $u_0 \le 0$ (depth $\ge 2$) or a fraction outside $(0, 1)$.

    **Example:**

    ```python
    linflow.time_to_learn(3.0, 1e-3)                 # (1/6) ln(2999)
    linflow.time_to_learn(3.0, 1e-3, depth=4, fraction=0.9)
    ```
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"time_to_learn(..., depth={depth!r}) must be an int >= 1.")
    s, u0, tau, f = _floats(s, u0, tau, fraction)
    bad = (s <= 0) | (u0 >= s) | (f <= 0) | (f >= 1)
    if depth >= 2:
        bad = bad | (u0 <= 0)
    s = eqx.error_if(
        s,
        bad,
        "time_to_learn needs s > 0, u0 < s (and u0 > 0 for depth >= 2), 0 < fraction < 1.",
    )
    if depth == 1:
        return tau * jnp.log((s - u0) / ((1 - f) * s))
    if depth == 2:
        return tau / (2 * s) * jnp.log(f * (s - u0) / ((1 - f) * u0))
    c = 2.0 / depth - 1.0

    def phi(x):
        return x**c * hyp2f1(1.0, c, c + 1.0, x / s) / (c * s)

    return tau / depth * (phi(f * s) - phi(u0))
