r"""Two layers, whitened inputs, a $\lambda$-balanced start: the matrix Riccati solution.

**Derivation** (Braun, Dominé, Fitzgerald & Saxe 2022 for $\lambda = 0$; Dominé et al. 2025
for any $\lambda$). Stack $Q = [W_1^\top; W_2]$, shape $(d + m, h)$. With $\Sigma_{xx} = I$
the flow $\tau\dot W_1 = W_2^\top(\Sigma_{yx} - W_2W_1)$,
$\tau\dot W_2 = (\Sigma_{yx} - W_2W_1)W_1^\top$ reads

$$\tau\dot Q = F Q - \begin{bmatrix} W_1^\top W_2^\top W_2 \\ W_2 W_1 W_1^\top \end{bmatrix},
\qquad F = \begin{bmatrix} 0 & \Sigma_{yx}^\top \\ \Sigma_{yx} & 0 \end{bmatrix}.$$

The imbalance $W_2^\top W_2 - W_1 W_1^\top = \lambda I$ is conserved, so
$W_2^\top W_2 = \tfrac12(Q^\top Q + \lambda I)$ and $W_1 W_1^\top = \tfrac12(Q^\top Q - \lambda I)$:

$$\tau\dot Q = F_\lambda Q - \tfrac12 Q Q^\top Q, \qquad
F_\lambda = \begin{bmatrix} -\tfrac\lambda2 I_d & \Sigma_{yx}^\top \\
\Sigma_{yx} & \tfrac\lambda2 I_m \end{bmatrix},$$

and $P = QQ^\top$ obeys the matrix Riccati equation $\tau\dot P = F_\lambda P + P F_\lambda - P^2$.
With $s = t/\tau$, $Q(t) = e^{F_\lambda s} Q_0 K(s)$ solves it whenever
$K K^\top = M^{-1}$, $M(s) = I + Q_0^\top G(s) Q_0$, $G(s) = \int_0^s e^{2F_\lambda r}\,dr$, so

$$P(t) = e^{F_\lambda s} Q_0\, M(s)^{-1} Q_0^\top e^{F_\lambda s}.$$

$M \succeq I$ for every start, so this holds for every $\lambda$-balanced start: any rank,
any hidden width, ties in the spectrum of $F_\lambda$, and starts on the invariant manifolds
that lead to saddles. $P$ holds $W_2W_1$, $W_1^\top W_1$ and $W_2W_2^\top$; the weights
themselves are fixed by $P$ only up to a rotation $R(t)$ of the hidden layer
($W_1 \to R^\top W_1$, $W_2 \to W_2 R$), which follows a time-ordered exponential with no
closed form. The weights returned are one exact factor of $P(t)$, equal to `weights0` at
$t = 0$ and continuous in $t$.

**Weight decay** $\gamma$ adds $-\gamma Q$ to $\tau\dot Q$ and makes the imbalance decay,
$\lambda(t) = \lambda e^{-2\gamma t/\tau}$: for $\lambda = 0$ it stays zero and the equation keeps
its form with $F_0 - \gamma I$ in place of $F_0$ (every eigenvalue shifted by $-\gamma$, so
modes with $s_i \le \gamma$ are not learned); for $\lambda \ne 0$, $F_\lambda$ changes in time
and there is no closed form.

**Spectrum without cancellation.** With $\Sigma_{yx} = U\,\mathrm{diag}(s_i)\,V^\top$, $F_\lambda$
has the eigenvalues $\pm\tfrac12 K_i$, $K_i = \sqrt{4 s_i^2 + \lambda^2}$, on rotations of
$(v_i, u_i)$, $+\lambda/2$ on the outputs outside the modes ($I - UU^\top$) and $-\lambda/2$ on
the inputs outside them ($I - VV^\top$). Those two projectors are used as they are (a tight
frame $\Phi$ with $\Phi^\top\Phi = I$, so no basis of a null space, and no eigenvector of a
repeated eigenvalue, is ever chosen), and differences of eigenvalues are formed as
$r_i - r_j = (r_i^2 - r_j^2)/(r_i + r_j)$, so a gap such as
$\tfrac12(K_i - |\lambda|) = 2 s_i^2/(K_i + |\lambda|)$ keeps its relative precision (float32
with $\lambda = -50$).

**Stable evaluation.** In the frame, $Z = \Phi Q_0$ has one row per direction, sorted by
eigenvalue $\mu$ (descending). A Gram-Schmidt pass over these rows, in that order, writes
$Z = T W^\top$ with $W$ orthonormal and $T$ in column echelon form: column $j$ starts at a
pivot row $p_j$ (rows above it vanish), the first row that adds a new direction. A row whose
component outside the directions found so far is below $\min(\text{rtol}, 1000\,\epsilon)\,
\|Q_0\|_F$ (rounding level) adds none: the start is taken to lie on the invariant manifold
where it has no weight there. With
$\nu_j = \max(\mu_{p_j}, 0)$, $h(\mu) = (1 - e^{-2\mu s})/(2\mu)$ and the bounded matrices

$$\hat Y_{ij} = T_{ij}\, e^{(\mu_i - \nu_j) s}, \qquad
B = \begin{bmatrix} \mathrm{diag}(e^{-\nu_j s}) \\ \mathrm{diag}(\sqrt{h(\mu_i)})\,\hat Y
\end{bmatrix}$$

(every exponent is $\le 0$ because $\mu_i \le \mu_{p_j}$ below a pivot), $M = C\,B^\top B\,C$
up to the rotation $W$ with $C = \mathrm{diag}(e^{\nu_j s})$, so with the QR factorisation
$B = Q_B R$,

$$Q(t) = \Phi^\top \hat Y R^{-1} W^\top.$$

Only decaying exponentials appear, $R$ is invertible for every start (its top block is a
positive diagonal, or a pivot where that vanishes), and no gap, rank or invertible block is
needed. At $t = \infty$ only the entries of directions with $\mu_i > 0$ tied with their
column's pivot survive: $\hat Y_{ij} = T_{ij}$, $B_{ij} = T_{ij}/\sqrt{2\mu_i}$, which gives
$P = \sum 2\mu\, o o^\top$ over the directions that were learned (a saddle of the loss when the
start lies on an invariant manifold).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from .._loss import lift
from .base import (
    WHITENED,
    DepthForm,
    flat_batch,
    max_abs,
    per_init_size,
    safe_sqrt,
    whitened_condition,
)


def imbalance(w1, w2):
    r"""$\lambda = \operatorname{tr}(W_2^\top W_2 - W_1 W_1^\top)/h$ (the conserved imbalance)."""
    b = jnp.swapaxes(w2, -1, -2) @ w2 - w1 @ jnp.swapaxes(w1, -1, -2)
    return jnp.trace(b, axis1=-2, axis2=-1) / b.shape[-1]


def _frame(U, sv, V, lam):
    r"""Rows of the tight frame $\Phi$ of the eigenspaces of $F_\lambda$, and their eigenvalues.

    **Returns:** `(phi, sign, r, x)`: `phi` of shape `(n', d + m)` with $\Phi^\top\Phi = I$; the
    eigenvalue of row $i$ is $\mu_i = $ `sign[i] * r[i]`, $r_i = \sqrt{x_i + \lambda^2/4} \ge 0$
    ($x_i = s_i^2$ for a mode, $0$ outside the modes), which gives cancellation-free
    differences.
    """
    m, d = U.shape[0], V.shape[0]
    dtype = sv.dtype
    two_s = 2 * sv
    big_k = safe_sqrt(two_s**2 + lam**2)  # K_i
    # K + lambda without cancellation for lambda < 0: (K + lambda)(K - lambda) = 4 s^2.
    denominator = big_k - lam
    k_plus = jnp.where(
        lam >= 0, big_k + lam, two_s**2 / jnp.where(denominator > 0, denominator, 1.0)
    )
    norm = safe_sqrt(two_s**2 + k_plus**2)
    alive = norm > 0
    safe = jnp.where(alive, norm, 1.0)
    cos = jnp.where(alive, two_s / safe, 1.0)
    sin = jnp.where(alive, k_plus / safe, 0.0)
    # The eigenvector of +K/2 of [[-lambda/2, s], [s, lambda/2]] in (v, u) is (cos, sin).
    plus = jnp.concatenate([cos[:, None] * V.T, sin[:, None] * U.T], axis=1)
    minus = jnp.concatenate([-sin[:, None] * V.T, cos[:, None] * U.T], axis=1)
    rows, signs, radii, xs = [plus, minus], [1.0, -1.0], [0.5 * big_k] * 2, [sv**2] * 2
    up = jnp.where(lam >= 0, 1.0, -1.0).astype(dtype)
    half = 0.5 * jnp.abs(lam)
    k = sv.shape[0]
    if m > k:  # outputs outside the modes: +lambda/2
        rows.append(
            jnp.concatenate([jnp.zeros((m, d), dtype), jnp.eye(m, dtype=dtype) - U @ U.T], 1)
        )
        signs.append(up)
        radii.append(jnp.broadcast_to(half, (m,)))
        xs.append(jnp.zeros((m,), dtype))
    if d > k:  # inputs outside the modes: -lambda/2
        rows.append(
            jnp.concatenate([jnp.eye(d, dtype=dtype) - V @ V.T, jnp.zeros((d, m), dtype)], 1)
        )
        signs.append(-up)
        radii.append(jnp.broadcast_to(half, (d,)))
        xs.append(jnp.zeros((d,), dtype))
    phi = jnp.concatenate(rows, axis=0)
    sign = jnp.concatenate(
        [jnp.broadcast_to(jnp.asarray(g, dtype), x.shape) for g, x in zip(signs, xs)]
    )
    return phi, sign, jnp.concatenate(radii), jnp.concatenate(xs)


def _differences(sign, r, x):
    r"""$\mu_i - \mu_j$ for all pairs, shape `(n', n')`, without cancellation."""
    same = sign[:, None] == sign[None, :]
    total = r[:, None] + r[None, :]
    close = (x[:, None] - x[None, :]) / jnp.where(total > 0, total, 1.0)
    return sign[:, None] * jnp.where(same, close, total)


def _echelon(z, tol):
    r"""Gram-Schmidt over the rows of `z` (in order): `z` $\approx T W^\top$, $T$ in echelon form.

    **Returns:** `(w, pivots, live)`: `w` `(h, h)` with orthonormal columns where `live` (the
    others zero), `pivots` `(h,)` the row that started each column.
    """
    n, h = z.shape

    def step(carry, row_index):
        w, pivots, count = carry
        row = z[row_index]
        residual = row - w @ (w.T @ row)
        residual = residual - w @ (w.T @ residual)  # twice is enough (Giraud et al. 2005)
        norm2 = residual @ residual
        new = (norm2 > tol**2) & (count < h)
        unit = residual / safe_sqrt(jnp.where(new, norm2, 1.0))
        slot = jnp.minimum(count, h - 1)
        w = jnp.where(new, w.at[:, slot].set(unit), w)
        pivots = jnp.where(new, pivots.at[slot].set(row_index), pivots)
        return (w, pivots, count + new.astype(count.dtype)), None

    init = (jnp.zeros((h, h), z.dtype), jnp.full((h,), n, jnp.int32), jnp.zeros((), jnp.int32))
    (w, pivots, count), _ = jax.lax.scan(step, init, jnp.arange(n, dtype=jnp.int32))
    return w, pivots, jnp.arange(h) < count


def _qr_r(a):
    """R of the thin QR of `a` with a positive diagonal."""
    r = jnp.linalg.qr(a, mode="r")
    sign = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(a.dtype)
    return r * sign[:, None]


def _sqrt_h(mu, s):
    r"""$\sqrt{\hat h}$, $\hat h = (1 - e^{-2|\mu| s})/(2|\mu|)$, as $s \cdot \mathrm{ratio}$ (no
    cancellation at small $|\mu| s$)."""
    x = 2 * jnp.abs(mu) * s
    small = x < 1e-6
    safe = jnp.where(small, 1.0, x)
    ratio = jnp.where(small, 1.0 - 0.5 * x, -jnp.expm1(-safe) / safe)
    # h(mu) = e^{2 max(-mu, 0) s} * hat h(|mu|): the growing factor is applied by the caller.
    return safe_sqrt(s * ratio)


def riccati_one(U, sv, V, w1, w2, ts, tau, lam, rtol, gamma=0.0):
    r"""Weights at times `ts` for one initialisation `(w1, w2)`: shapes `(T, h, d)`, `(T, m, h)`.
    `gamma` shifts the spectrum, $F_0 \to F_0 - \gamma I$ (weight decay, $\lambda = 0$); the
    differences of eigenvalues do not change."""
    d = w1.shape[-1]
    h = w1.shape[-2]
    dtype = w1.dtype
    phi, sign, r, x = _frame(U, sv, V, lam)
    mu = sign * r - gamma
    order = jnp.argsort(-mu, stable=True)
    phi, sign, r, x, mu = phi[order], sign[order], r[order], x[order], mu[order]
    q0 = jnp.concatenate([w1.T, w2], axis=0)
    z = phi @ q0
    # Deciding that a start lies on an invariant manifold is about rounding, not about how
    # loosely the user let the conditions be met: a looser rtol does not loosen it.
    exact = min(rtol, 1000 * float(jnp.finfo(dtype).eps))
    tol = exact * safe_sqrt(jnp.sum(q0**2))
    w, pivots, live = _echelon(z, tol)
    n = z.shape[0]
    rows = jnp.arange(n)[:, None]
    mask = live[None, :] & (rows >= pivots[None, :])
    t_mat = jnp.where(mask, z @ w, 0.0)
    p = jnp.minimum(pivots, n - 1)
    diff = _differences(sign, r, x)[:, p]  # mu_i - mu_{p_j}, (n', h)
    mu_p = jnp.where(live, mu[p], 0.0)
    grows = mu_p > 0
    nu = jnp.where(grows, mu_p, 0.0)
    # Exponents of Y and of the lower block of B (both <= 0 on the mask).
    e_y = jnp.where(mask, jnp.where(grows[None, :], diff, mu[:, None]), 0.0)
    e_b = jnp.where(mask & grows[None, :], jnp.where(mu[:, None] > 0, diff, -mu_p[None, :]), 0.0)
    # Entries that survive at t = inf: growing directions tied with their pivot.
    tie_tol = exact * jnp.maximum(jnp.max(jnp.abs(mu)), jnp.finfo(dtype).tiny)
    positive = mu > tie_tol
    lasting = mask & positive[:, None] & (jnp.abs(diff) <= tie_tol) & (mu_p > tie_tol)[None, :]
    y_inf = jnp.where(lasting, t_mat, 0.0)
    b_inf = jnp.where(lasting, t_mat / safe_sqrt(jnp.where(positive, 2 * mu, 1.0))[:, None], 0.0)
    top_inf = jnp.where(live & (mu_p > tie_tol), 0.0, 1.0)
    eye = jnp.eye(h, dtype=dtype)

    def at(t):
        s = t / tau
        finite = jnp.isfinite(s)
        positive_time = finite & (s > 0)
        sf = jnp.where(positive_time, s, 1.0)
        y = jnp.where(finite, t_mat * jnp.exp(e_y * sf), y_inf)
        lower = jnp.where(finite, t_mat * _sqrt_h(mu, sf)[:, None] * jnp.exp(e_b * sf), b_inf)
        top = jnp.where(finite, jnp.exp(-nu * sf), top_inf)
        r_mat = _qr_r(jnp.concatenate([top[:, None] * eye, lower], axis=0))
        q_tilde = jsl.solve_triangular(r_mat, y.T, trans="T", lower=False).T  # Y R^{-1}
        q = phi.T @ (q_tilde @ w.T)
        q = jnp.where(positive_time | ~finite, q, q0)
        return q[:d].T, q[d:]

    return jax.vmap(at)(ts)


@eqx.filter_jit
def riccati_two_layer(task, weights, ts, tau, rtol, gamma=0.0):
    """`riccati_one` over any batch axes, with the measured $\\lambda$ of each initialisation
    (and the weight decay `gamma`, for zero-balanced starts).

    **Returns:** `(W1, W2)`, each `(T, *batch, rows, cols)`."""
    U, sv, V = task.modes()
    flat, unflatten = flat_batch(weights)
    lam = imbalance(*flat)

    def one(w1, w2, l):
        return riccati_one(U, sv, V, w1, w2, ts, tau, l, rtol, gamma)

    return unflatten(jax.vmap(one, out_axes=1)(*flat, lam))


class LambdaBalancedTwoLayer(DepthForm):
    r"""Two layers, $\Sigma_{xx} = I$, $W_2^\top W_2 - W_1 W_1^\top = \lambda I$, any start.

    The matrix Riccati solution of Dominé et al. (ICLR 2025, "From lazy to rich: exact
    learning dynamics in deep linear networks"), which generalises the zero-balanced one of
    Braun, Dominé, Fitzgerald & Saxe (NeurIPS 2022, "Exact learning dynamics of deep linear
    networks with prior knowledge"), evaluated as derived in the module docstring: $QQ^\top(t)$
    with $Q = [W_1^\top; W_2]$ in closed form, $\lambda$ of either sign. Conditions (to relative
    tolerance `rtol`, per initialisation): depth 2; whitened inputs;
    $\max|W_2^\top W_2 - W_1 W_1^\top - \lambda I| \le$ `rtol` $\max(|W_1W_1^\top|, |W_2^\top W_2|)$
    with $\lambda$ the mean of the diagonal. Nothing else: any hidden width (also
    $h > \min(m, d)$, where $\pm\lambda/2$ is a repeated eigenvalue of $F_\lambda$ that the start
    splits), any rank, ties, and starts on invariant manifolds (which converge to saddles).
    Components of $[W_1^\top; W_2]$ in the eigen-directions of $F_\lambda$ below
    $\min(\text{rtol}, 1000\,\epsilon)$ times its norm (rounding level) are taken as zero: that
    is what puts a start exactly on such a manifold (a larger component leaves it, after a time
    of order $\ln(1/\text{component})$ over the spectral gap).

    The weights returned match the gradient flow up to an orthogonal rotation of the hidden
    layer (which has no closed form); the product, $W_1^\top W_1$, $W_2 W_2^\top$, the loss and
    the imbalance are exact.
    """

    name: ClassVar[str] = "lambda-balanced two-layer"
    min_depth: ClassVar[int] = 2
    max_depth: ClassVar[int] = 2

    def conditions(self, task, weights, rtol):
        w1, w2 = weights
        gram1, gram2 = w1 @ jnp.swapaxes(w1, -1, -2), jnp.swapaxes(w2, -1, -2) @ w2
        lam = imbalance(w1, w2)
        eye = jnp.eye(gram1.shape[-1], dtype=gram1.dtype)
        deviation = max_abs(gram2 - gram1 - lam[..., None, None] * lift(eye, gram1.ndim))
        return [
            (WHITENED, whitened_condition(task, rtol)),
            (
                "not balanced: max |W2^T W2 - W1 W1^T - lambda I| > rtol * max(|W1 W1^T|, "
                "|W2^T W2|) for every lambda",
                deviation <= rtol * per_init_size(gram1, gram2),
            ),
        ]

    def decay_reason(self):
        return (
            "has no closed form with weight decay for lambda != 0 (the imbalance decays, so "
            "F_lambda changes in time); zero-balanced starts are solved"
        )

    def solve(self, task, weights, ts, tau, rtol, weight_decay=None):
        # Called with weight_decay only through ZeroBalancedTwoLayer (lambda = 0).
        gamma = 0.0 if weight_decay is None else weight_decay
        return riccati_two_layer(task, weights, ts, tau, rtol, gamma)
