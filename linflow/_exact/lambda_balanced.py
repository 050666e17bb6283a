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
$K K^\top = M^{-1}$, $M(s) = I + Q_0^\top \big(\int_0^s e^{2F_\lambda r}\,dr\big) Q_0$, so

$$P(t) = e^{F_\lambda s} Q_0\, M(s)^{-1} Q_0^\top e^{F_\lambda s}.$$

$P$ holds $W_2W_1$, $W_1^\top W_1$ and $W_2W_2^\top$. The weights themselves are fixed by $P$ only
up to a rotation $R(t)$ of the hidden layer ($W_1 \to R^\top W_1$, $W_2 \to W_2 R$), which follows
a time-ordered exponential with no closed form; the weights returned here are one exact
factor of $P(t)$, equal to `weights0` at $t = 0$.

**Stable evaluation.** Diagonalise $F_\lambda = O\,\mathrm{diag}(\mu)\,O^\top$ ($\mu$ descending:
$\pm\frac12\sqrt{4 s_i^2 + \lambda^2}$ for each mode, $\lambda/2$ on the $m - k$ output directions
outside the modes, $-\lambda/2$ on the $d - k$ input ones). First drop the hidden directions that
$Q_0$ does not use ($Q_0 = Q_r V_r^\top$ with its rank $r$; $Q(t) = Q_r(t) V_r^\top$). Split
$Z = O^\top Q_r$ into the top $r$ (growing) rows $Z_a$ and the rest $Z_c$, and let
$C = Z_c Z_a^{-1}$. Then $P_{aa} = X^{-1}$ with

$$X(s) = (Z_a^{-1} e^{-\mu_a s})^\top (Z_a^{-1} e^{-\mu_a s}) + T^\top T + \hat G_a, \quad
T_{ca} = C_{ca}\, \sqrt{g_c(s)}\, e^{-\mu_a s}, \quad
\hat G_a = \mathrm{diag}\frac{1 - e^{-2\mu_a s}}{2\mu_a},$$

with $g(s) = (e^{2\mu s} - 1)/(2\mu)$, bounded for all $s$. With $X = R^\top R$ ($R$ from the QR of
stacked square roots, so $X$ is never formed) and $Z_a^{-1} = Q_v R_0$,

$$Z_a(t) = R^{-1} Q_v^\top, \qquad Z_c(t) = \big(e^{\mu_c s}\, C\, e^{-\mu_a s}\big) Z_a(t),
\qquad Q_r(t) = O\,[Z_a(t); Z_c(t)].$$

Only decaying exponentials (the top $r$ rates exceed all others), one constant solve and one
QR per time appear, so float32 works and $t = \infty$ gives
$P = O_a\,\mathrm{diag}(2\mu_a)\,O_a^\top$.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from .._checks import is_concrete
from .base import ClosedForm, max_abs, whitened_reason


def _f_lambda(sigma_yx, lam):
    m, d = sigma_yx.shape
    top = jnp.concatenate([-0.5 * lam * jnp.eye(d, dtype=sigma_yx.dtype), sigma_yx.T], axis=1)
    bottom = jnp.concatenate([sigma_yx, 0.5 * lam * jnp.eye(m, dtype=sigma_yx.dtype)], axis=1)
    return jnp.concatenate([top, bottom], axis=0)


def imbalance(w1, w2):
    r"""$\lambda = \operatorname{tr}(W_2^\top W_2 - W_1 W_1^\top)/h$ (the conserved imbalance)."""
    b = jnp.swapaxes(w2, -1, -2) @ w2 - w1 @ jnp.swapaxes(w1, -1, -2)
    return jnp.trace(b, axis1=-2, axis2=-1) / b.shape[-1]


def _log_g_hat(mu, s):
    r"""$\log\hat g$: $g = e^{2\max(\mu, 0) s}\,\hat g$, $\hat g = (1 - e^{-2|\mu| s})/(2|\mu|)$."""
    x = 2 * jnp.abs(mu) * s
    small = x < 1e-8
    ratio = -jnp.expm1(-jnp.where(small, 1.0, x)) / jnp.where(small, 1.0, x)
    return jnp.log(s) + jnp.log(jnp.where(small, 1.0 - x / 2, ratio))


def _qr_positive(a):
    """Thin QR with a positive diagonal of R (the unique factorisation, continuous in `a`)."""
    q, r = jnp.linalg.qr(a)
    sign = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(a.dtype)
    return q * sign[None, :], r * sign[:, None]


def _riccati_one(sigma_yx, w1, w2, ts, tau, rank: int, zero: bool):
    """Weights at times `ts` for one initialisation `(w1, w2)`: shapes `(T, h, d)`, `(T, m, h)`."""
    d = w1.shape[-1]
    lam = jnp.zeros((), w1.dtype) if zero else imbalance(w1, w2)
    mu, O = jnp.linalg.eigh(_f_lambda(sigma_yx, lam))
    mu, O = mu[::-1], O[:, ::-1]
    q0 = jnp.concatenate([w1.T, w2], axis=0)
    if rank < q0.shape[1]:
        vr = jnp.linalg.svd(q0, full_matrices=False)[2][:rank].T  # (h, r)
    else:
        vr = jnp.eye(rank, dtype=q0.dtype)
    z = O.T @ (q0 @ vr)
    za, zc = z[:rank], z[rank:]
    mu_a, mu_c = mu[:rank], mu[rank:]
    va = jnp.linalg.solve(za, jnp.eye(rank, dtype=z.dtype))  # Z_a^{-1}, constant
    w = zc @ va
    # Z_a^{-1} = Q_v R_0 (positive diagonal), so R_0 Z_a = Q_v^T: the gauge that gives Z_a at t = 0.
    rotation = _qr_positive(va)[0].T

    def at(t):
        s = t / tau
        finite = jnp.isfinite(s)
        sf = jnp.where(finite, s, 1.0)
        decay_a = jnp.where(finite, jnp.exp(-mu_a * sf), 0.0)
        g_hat_a = jnp.where(finite, -jnp.expm1(-2 * mu_a * sf), 1.0) / (2 * mu_a)
        exponent = (
            0.5 * _log_g_hat(mu_c, sf)[:, None]
            + (jnp.maximum(mu_c, 0.0)[:, None] - mu_a[None, :]) * sf
        )
        t_ca = jnp.where(finite, w * jnp.exp(exponent), 0.0)
        # X = R^T R from the QR of its square root, never forming X (no squared condition number).
        root = jnp.concatenate([va * decay_a[None, :], t_ca, jnp.diag(jnp.sqrt(g_hat_a))], axis=0)
        qa = jsl.solve_triangular(_qr_positive(root)[1], rotation, lower=False)
        cross = jnp.where(finite, jnp.exp((mu_c[:, None] - mu_a[None, :]) * sf), 0.0)
        qc = (w * cross) @ qa
        q = (O[:, :rank] @ qa + O[:, rank:] @ qc) @ vr.T
        return q[:d].T, q[d:]

    return jax.vmap(at)(ts)


@eqx.filter_jit
def riccati_two_layer(sigma_yx, weights, ts, tau, rank: int, zero: bool):
    """`_riccati_one` over any batch axes: returns `(W1, W2)`, each `(T, *batch, rows, cols)`."""
    w1, w2 = weights
    batch = w1.shape[:-2]
    flat1 = w1.reshape((-1,) + w1.shape[-2:])
    flat2 = w2.reshape((-1,) + w2.shape[-2:])
    solve = partial(_riccati_one, rank=rank, zero=zero)
    o1, o2 = jax.vmap(solve, in_axes=(None, 0, 0, None, None), out_axes=1)(
        sigma_yx, flat1, flat2, ts, tau
    )
    return (
        o1.reshape(ts.shape + batch + o1.shape[-2:]),
        o2.reshape(ts.shape + batch + o2.shape[-2:]),
    )


def _rank(singular_values, rtol) -> int:
    top = singular_values[0]
    return int(np.sum(singular_values > rtol * top)) if top > 0 else 0


def hidden_rank(weights, rtol) -> int:
    """Largest rank of $Q_0 = [W_1^\top; W_2]$ over the batch (NumPy weights)."""
    q0 = np.concatenate([np.swapaxes(weights[0], -1, -2), weights[1]], axis=-2)
    q0 = q0.reshape((-1,) + q0.shape[-2:])
    return max(_rank(sv, rtol) for sv in np.linalg.svd(q0, compute_uv=False))


def riccati_reason(task, weights, rtol, *, zero: bool) -> str | None:
    r"""Why the Riccati solution does not apply to the NumPy `weights`, or `None`.

    Checks, on every initialisation of the batch: depth 2; whitened inputs;
    $W_2^\top W_2 - W_1 W_1^\top = \\lambda I$ (with $\lambda = 0$ if `zero`); the same rank $r$
    of $Q_0$; the top $r$ eigenvalues of $F_\lambda$ positive and above the others; and
    $Z_a$ invertible (condition number below $1/$`rtol`).
    """
    if len(weights) != 2:
        return f"needs depth 2, got depth {len(weights)}"
    reason = whitened_reason(task, rtol)
    if reason is not None:
        return reason
    w1, w2 = (w.reshape((-1,) + w.shape[-2:]) for w in weights)
    sigma_yx = np.asarray(task.sigma_yx, np.float64)
    ranks = set()
    for a, b in zip(w1, w2):
        gram1, gram2 = a @ a.T, b.T @ b
        size = max(max_abs(gram1), max_abs(gram2), np.finfo(np.float64).tiny)
        lam = float(np.trace(gram2 - gram1)) / gram1.shape[0]
        if max_abs(gram2 - gram1 - lam * np.eye(gram1.shape[0])) > rtol * size:
            return "not balanced: W2^T W2 - W1 W1^T is not a multiple of the identity"
        if zero and abs(lam) > rtol * size:
            return f"not zero-balanced: W2^T W2 - W1 W1^T = lambda I with lambda = {lam:.3g}"
        q0 = np.concatenate([a.T, b], axis=0)
        sv = np.linalg.svd(q0, compute_uv=False)
        rank = _rank(sv, rtol)
        if rank == 0:
            return "the weights are zero (a fixed point)"
        ranks.add(rank)
        if len(ranks) > 1:
            return "the initialisations of the batch have different ranks"
        mu, O = np.linalg.eigh(np.asarray(_f_lambda(sigma_yx, 0.0 if zero else lam)))
        mu, O = mu[::-1], O[:, ::-1]
        scale = max(abs(mu[0]), abs(mu[-1]), np.finfo(np.float64).tiny)
        gap = mu[rank - 1] - (mu[rank] if rank < mu.shape[0] else -np.inf)
        if mu[rank - 1] <= np.sqrt(rtol) * scale or gap <= np.sqrt(rtol) * scale:
            return (
                f"the top r = {rank} (rank of [W1^T; W2]) eigenvalues of F_lambda = "
                "[[-lambda/2 I, Syx^T], [Syx, lambda/2 I]] must be positive and above the others "
                "(lambda > 0 needs h <= m, lambda < 0 needs h <= d, lambda = 0 needs rank "
                "<= the number of distinct nonzero singular values of sigma_yx)"
            )
        vr = np.linalg.svd(q0, full_matrices=False)[2][:rank].T
        za = O[:, :rank].T @ q0 @ vr
        if np.linalg.cond(za) * rtol > 1:
            return "the start has (almost) no weight on a mode it must learn (Z_a is singular)"
    return None


def solve_rank(weights, rtol: float, traced: int) -> int:
    """The rank $r$ of $Q_0$ at relative tolerance `rtol` (the one `riccati_reason` checked the
    start with), a static size of the solve; `traced` under jit."""
    if not is_concrete(weights[0]):
        return traced
    return hidden_rank(tuple(np.asarray(w, np.float64) for w in weights), rtol)


class LambdaBalancedTwoLayer(ClosedForm):
    r"""Two layers, $\Sigma_{xx} = I$, $W_2^\top W_2 - W_1 W_1^\top = \lambda I$, any start.

    The matrix Riccati solution of Dominé et al. (ICLR 2025, "From lazy to rich: exact
    learning dynamics in deep linear networks"), evaluated as derived in the module
    docstring: $QQ^\top(t)$ with $Q = [W_1^\top; W_2]$ in closed form, $\lambda$ of either
    sign. Conditions (to relative tolerance `rtol`): depth 2; whitened inputs; $\lambda$-balanced;
    the top $r$ eigenvalues of $F_\lambda$ positive and separated from the rest, where $r$ is the
    rank of $Q_0$ ($\lambda > 0$ needs $h \le m$, $\lambda < 0$ needs $h \le d$); and a start
    with weight on each of those $r$ directions.

    The weights returned match the gradient flow up to an orthogonal rotation of the hidden
    layer (which has no closed form); the product, $W_1^\top W_1$, $W_2 W_2^\top$, the loss and
    the imbalance are exact.
    """

    name: ClassVar[str] = "lambda-balanced two-layer"

    def check(self, task, weights, rtol):
        return riccati_reason(task, weights, rtol, zero=False)

    def solve(self, task, weights, ts, tau, rtol):
        # Under a transformation, assume full rank h (a lambda != 0 start has it).
        rank = solve_rank(weights, rtol, weights[0].shape[-2])
        return riccati_two_layer(task.sigma_yx, weights, ts, tau, rank, False)
