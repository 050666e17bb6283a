r"""The vanishing-initialisation limit of a depth-2 diagonal network: saddle-to-saddle dynamics.

Pesme & Flammarion (2023), "Saddle-to-saddle dynamics in diagonal linear networks": as
$\alpha \to 0$, with time rescaled by $\log(1/\alpha)$, gradient flow from $u = v = \alpha$
jumps between saddles of the loss, each the minimiser of the loss over the coordinates allowed
to move with their signs, until it reaches the minimum-$\ell_1$ interpolator.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from ._checks import check_int
from ._diagonal import check_data

# With beta = u^2 - v^2, u = alpha e^{2S}, v = alpha e^{-2S}, S = -int_0^t grad L dt, so
# beta_i = 2 alpha^2 sinh(4 S_i). In the time t~ = t / log(1/alpha), with
# s = -2 int_0^t~ grad L dt~ (so that 4 S = 2 log(1/alpha) s),
# beta_i ~ sign(s_i) alpha^(2 - 2 |s_i|): coordinate i is pinned at 0 while |s_i| < 1 and free
# (with the sign of s_i) once |s_i| = 1. While beta sits at a saddle, grad L is constant and s
# moves linearly; the next jump is the first time an inactive |s_i| reaches 1, and the next
# saddle minimises L over {beta_i sign(s_i) >= 0 where |s_i| = 1, beta_i = 0 elsewhere}.


def _least_squares(X, y, free):
    r"""$\arg\min \|X\beta - y\|$ over $\beta$ supported on `free` (full column rank there)."""
    d = X.shape[1]
    mask = free.astype(X.dtype)
    # Stacking (1 - mask) I under the masked X pins the other coordinates at 0 without
    # squaring the condition number (QR of the tall matrix).
    A = jnp.concatenate([X * mask[None], jnp.diag(1 - mask)])
    b = jnp.concatenate([y, jnp.zeros(d, X.dtype)])
    return lx.linear_solve(lx.MatrixLinearOperator(A), b, lx.QR(), throw=False).value * mask


def _constrained_minimiser(X, y, sign, allowed, beta0, max_iter: int):
    r"""The support of $\arg\min \|X\beta - y\|^2$ s.t. $\sigma_i\beta_i \ge 0$ on `allowed`,
    $\beta_i = 0$ elsewhere, by the active-set method of Lawson & Hanson (1974, "Solving least
    squares problems", NNLS) on $b = \sigma\beta \ge 0$, started from the feasible `beta0`.

    Only the support (and whether the method converged) is returned: the values are solved on
    it again where gradients are wanted.
    """
    n = X.shape[0]
    Xs = X * sign[None]  # columns in the variables b = sign * beta
    tol = 10 * jnp.finfo(X.dtype).eps
    gtol = _gradient_tol(X, y)

    def cond(state):
        _, _, done, k = state
        return ~done & (k < max_iter)

    def body(state):
        b, free, _, k = state
        z = _least_squares(Xs, y, free)
        negative = free & (z <= tol * jnp.max(jnp.abs(z)))
        # Infeasible: move from b towards z until the first coordinate hits 0, and drop it.
        ratio = jnp.where(negative, b / jnp.where(negative, b - z, 1.0), jnp.inf)
        theta = jnp.clip(jnp.min(ratio), 0.0, 1.0)
        back = b + theta * (z - b)
        drop = free & ((back <= tol * jnp.max(jnp.abs(back))) | (negative & (ratio <= theta)))
        # Feasible: free the allowed coordinate whose gradient most wants it to grow, if any.
        w = -(Xs.T @ (Xs @ z - y)) / n
        grow = allowed & ~free & (w > gtol)
        j = jnp.argmax(jnp.where(grow, w, -jnp.inf))
        feasible = ~jnp.any(negative)
        b = jnp.where(feasible, z, jnp.where(drop, 0.0, back))
        free = jnp.where(feasible, free | (grow & (jnp.arange(free.size) == j)), free & ~drop)
        return b, free, feasible & ~jnp.any(grow), k + 1

    b0 = sign * beta0
    state = (b0, b0 > 0, jnp.array(False), 0)
    _, free, converged, _ = jax.lax.while_loop(cond, body, state)
    return free, converged


def _gradient_tol(X, y):
    """Gradients below this count as zero (such a coordinate would jump only after a rescaled
    time of about $1/\\sqrt\\epsilon$)."""
    return jnp.sqrt(jnp.finfo(X.dtype).eps) * jnp.max(jnp.abs(X.T @ y)) / X.shape[0]


@eqx.filter_jit
def _saddles(X, y, max_jumps: int):
    n, d = X.shape
    Xc, yc = jax.lax.stop_gradient((X, y))
    gtol = _gradient_tol(Xc, yc)
    index = jnp.arange(d)

    def step(carry, _):
        t, s, beta, allowed, converged = carry
        g = X.T @ (X @ beta - y) / n
        gc, sc, bc = jax.lax.stop_gradient((g, s, beta))
        moving = jnp.abs(gc) > gtol
        # Pinned at +-1 stay the allowed coordinates, except those at 0 pushed inwards.
        kept = allowed & ~((bc == 0) & (jnp.sign(sc) * gc > gtol))
        candidate = ~kept & moving
        done = ~jnp.any(candidate)
        # s_i - 2 dt g_i reaches -sign(g_i) after dt = (1 + sign(g_i) s_i) / (2 |g_i|).
        speed = 2 * jnp.abs(jnp.where(candidate, g, 1.0))
        dts = jnp.where(candidate, (1 + jnp.sign(gc) * s) / speed, jnp.inf)
        i = jnp.argmin(jax.lax.stop_gradient(dts))
        dt = jnp.where(done, 0.0, dts[i])
        s = jnp.where(kept, jnp.sign(sc), jnp.clip(s - 2 * dt * g, -1.0, 1.0))
        s = jnp.where(index == i, -jnp.sign(gc[i]), s)
        hit = (index == i) & ~done
        allowed = kept | hit
        sign = jnp.sign(jax.lax.stop_gradient(s))
        free, ok = _constrained_minimiser(Xc, yc, sign, allowed, bc, 4 * d + 4)
        new_beta = _least_squares(X, y, free)
        carry = (
            jnp.where(done, t, t + dt),
            jnp.where(done, carry[1], s),
            jnp.where(done, beta, new_beta),
            jnp.where(done, carry[3], allowed),
            converged & (ok | done),
        )
        return carry, (jnp.where(done, jnp.inf, t + dt), carry[2])

    zeros = jnp.zeros(d, X.dtype)
    init = (jnp.zeros((), X.dtype), zeros, zeros, jnp.zeros(d, bool), jnp.array(True))
    (_, _, beta, _, converged), (ts, betas) = jax.lax.scan(step, init, None, length=max_jumps)
    stationary = jnp.all(jnp.abs(X.T @ (X @ beta - y)) / n <= gtol)
    ts = jnp.concatenate([jnp.zeros((1,), X.dtype), ts])
    betas = jnp.concatenate([zeros[None], betas])
    return ts, betas, converged & stationary


def saddle_to_saddle(X, y, *, max_jumps: int | None = None, throw: bool = True):
    r"""Jump times and saddles of a depth-2 diagonal network's flow in the limit $\alpha \to 0$.

    Gradient flow on $L(\beta) = \frac{1}{2n}\|X\beta - y\|^2$, $\beta = u^2 - v^2$, from
    $u = v = \alpha$, followed in the time $\tilde t = t / \log(1/\alpha)$, converges as
    $\alpha \to 0$ to a piecewise-constant path (Pesme & Flammarion 2023, "Saddle-to-saddle
    dynamics in diagonal linear networks", their Algorithm 1). Starting from
    $\tilde t_0 = 0$, $\beta_0 = 0$, $s = 0$, it repeats, while $\nabla L(\beta_k) \ne 0$:

    - jump time: $\tilde t_{k+1} = \tilde t_k + \Delta$, with $\Delta$ the first time an
      inactive coordinate of $s - 2\Delta\,\nabla L(\beta_k)$ reaches $\pm 1$; update $s$;
    - saddle: $\beta_{k+1} = \arg\min L(\beta)$ subject to $\beta_i s_i \ge 0$ where
      $|s_i| = 1$ and $\beta_i = 0$ where $|s_i| < 1$.

    $s(\tilde t) = -2\int_0^{\tilde t} \nabla L$ is the rescaled integrated gradient: for small
    $\alpha$, $|\beta_i| \approx \alpha^{2 - 2|s_i|}$, so a coordinate can leave 0 only once
    $|s_i| = 1$. Coordinates may also deactivate. The last saddle is the minimum-$\ell_1$
    interpolator (for $n < d$; for $n \ge d$ the least-squares solution). Gradients of size
    below $\sqrt\epsilon$ (relative to $\|X^\top y\|_\infty / n$) count as zero.

    **Arguments:**

    - `X`: inputs, `(n, d)`; `y`: targets, `(n,)`.
    - `max_jumps`: most jumps followed (default $4\min(n, d) + 4$); the outputs have
      `max_jumps + 1` rows.
    - `throw`: raise if the last saddle is not reached within `max_jumps`; otherwise the
      outputs are NaN.

    **Returns:** `(times, betas)`: `times` `(max_jumps + 1,)`, the rescaled times
    $\tilde t_k$ at which the flow jumps to saddle $k$ (`times[0] = 0`; `inf` after the last
    saddle); `betas` `(max_jumps + 1, d)`, the saddles $\beta_k$ (`betas[0] = 0`; the last
    saddle repeated after it). The flow with a small $\alpha$ is near `betas[k]` for
    $t \in (\tilde t_k, \tilde t_{k+1}) \log(1/\alpha)$.

    **Raises:** `ValueError` if the shapes of `X` and `y` do not match, either holds NaN or inf,
    or `max_jumps` is not a positive int; an equinox runtime error (a `RuntimeError`) if the
    algorithm does not finish and `throw`.

    **Example:**

    ```python
    times, betas = linflow.saddle_to_saddle(X, y)
    k = jnp.sum(jnp.isfinite(times))      # number of saddles, beta = 0 included
    ```
    """
    fn = "saddle_to_saddle"
    X, y = check_data(fn, X, y, underdetermined=False)
    n, d = X.shape
    if max_jumps is None:
        max_jumps = 4 * min(n, d) + 4
    max_jumps = check_int(fn, "max_jumps", max_jumps, minimum=1)
    times, betas, finished = _saddles(X, y, max_jumps)
    if throw:
        times = eqx.error_if(
            times,
            ~finished,
            f"{fn}: the last saddle was not reached within max_jumps={max_jumps} jumps.",
        )
        return times, betas
    return jnp.where(finished, times, jnp.nan), jnp.where(finished, betas, jnp.nan)
