r"""Diagonal linear networks $\beta = u^D - v^D$: the model and the limit of its gradient flow.

The scale $\alpha$ of the start $u = v = \alpha$ decides which interpolator gradient flow finds:
the minimum-$\ell_2$ one as $\alpha \to \infty$ (kernel regime), the minimum-$\ell_1$ one as
$\alpha \to 0$ (rich regime), and in between the minimiser of a potential $Q_\alpha$
(Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry & Srebro 2020, "Kernel and rich
regimes in overparametrized models").
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
from jaxtyping import Array

from ._checks import check_dtype, check_finite, check_int, is_concrete, known
from ._objective import Objective


def check_depth(fn: str, depth) -> int:
    return check_int(fn, "depth", depth, minimum=2)


def float_dtype(fn: str, name: str, *arrays):
    """The common floating dtype of `arrays` (the default float for integer inputs), which
    must be float32 or float64."""
    dtype = jnp.result_type(*arrays)
    dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)
    check_dtype(fn, name, dtype)
    return dtype


def check_data(fn: str, X, y, *, underdetermined: bool) -> tuple[Array, Array]:
    """`X` `(n, d)` and `y` `(n,)` in one float dtype, after checking shapes and values."""
    X, y = jnp.asarray(X), jnp.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"{fn}(X, y, ...): X must be 2-D (n, d), got shape {X.shape}.")
    if y.shape != X.shape[:1]:
        raise ValueError(
            f"{fn}(X, y, ...): y must have shape (n,) = ({X.shape[0]},) to match X of shape "
            f"{X.shape}, got {y.shape}."
        )
    n, d = X.shape
    if underdetermined and n >= d:
        raise ValueError(
            f"{fn}(X, ...): X has n = {n} samples and d = {d} features; the interpolating "
            "solutions form an affine space only for n < d (otherwise the interpolator, if any, "
            "is unique and does not depend on the initialisation)."
        )
    check_finite(fn, "X", X)
    check_finite(fn, "y", y)
    if underdetermined and is_concrete(X) and np.linalg.matrix_rank(np.asarray(X)) < n:
        raise ValueError(f"{fn}(X, ...): X must have full row rank n = {n}.")
    dtype = float_dtype(fn, "X", X, y)
    return X.astype(dtype), y.astype(dtype)


class _SquareLoss(eqx.Module):
    r"""$\frac{1}{2n}\|X(u^D - v^D) - y\|^2$ of one initialisation."""

    X: Array
    y: Array
    depth: int = eqx.field(static=True)

    def __call__(self, params):
        r = self.X @ diagonal_beta(params, depth=self.depth) - self.y
        return 0.5 * jnp.mean(r**2)


def diagonal_objective(X, y, *, depth: int = 2, batch=()) -> Objective:
    r"""The squared loss of a diagonal linear network, as a `linflow.Objective` over $(u, v)$.

    $$L(u, v) = \frac{1}{2n}\|X\beta - y\|^2, \qquad \beta = u^D - v^D$$

    (elementwise powers; Woodworth et al. 2020, "Kernel and rich regimes in overparametrized
    models"). `linflow.gradient_descent` and `linflow.gradient_flow` train it for a whole batch
    of initialisations at once, e.g. a sweep over scales from `linflow.diagonal_weights`;
    `linflow.diagonal_beta` reads $\beta$ off the trajectory. Minibatch SGD
    (`gradient_descent(..., batch_size=...)`) is not available for objectives: pass minibatches
    as separate objectives or use full-batch descent.

    **Arguments:**

    - `X`: inputs, `(n, d)`; `y`: targets, `(n,)`.
    - `depth`: $D \ge 2$.
    - `batch`: the leading batch axes of $u$ and $v$ (an int or a tuple), e.g.
      `alpha.shape` for `diagonal_weights(alpha, d)`.

    **Returns:** a `linflow.Objective` over the pair `(u, v)`, each `(*batch, d)`.

    **Raises:** `ValueError` if the shapes of `X` and `y` do not match, either holds NaN or inf,
    or `depth` is not an int >= 2.

    **Example:**

    ```python
    alphas = jnp.logspace(-3, 1, 5)
    objective = linflow.diagonal_objective(X, y, batch=alphas.shape)
    traj = linflow.gradient_flow(objective, linflow.diagonal_weights(alphas, d), ts)
    beta = linflow.diagonal_beta(traj.weights)          # (T, 5, d)
    ```
    """
    fn = "diagonal_objective"
    depth = check_depth(fn, depth)
    X, y = check_data(fn, X, y, underdetermined=False)
    return Objective(_SquareLoss(X, y, depth), batch=batch)


def diagonal_weights(alpha, d: int, *, batch=(), dtype=None) -> tuple[Array, Array]:
    r"""The standard start $u = v = \alpha \mathbf 1$ of a diagonal network ($\beta = 0$).

    **Arguments:**

    - `alpha`: the scale $\alpha > 0$, a scalar or an array of scales (one initialisation each).
    - `d`: the number of features.
    - `batch`: extra leading batch axes (copies of the same start).
    - `dtype`: floating dtype (default: that of `alpha`, or the default float).

    **Returns:** `(u, v)`, each of shape `(*batch, *alpha.shape, d)`.

    **Raises:** `ValueError` if `d` is not a positive int or `alpha` is not positive and finite.

    **Example:**

    ```python
    u, v = linflow.diagonal_weights(jnp.logspace(-3, 1, 5), 20)   # each (5, 20)
    ```
    """
    fn = "diagonal_weights"
    if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1:
        raise ValueError(f"{fn}(alpha, d={d!r}) must be a positive int.")
    batch = (batch,) if isinstance(batch, int | np.integer) else tuple(batch)
    alpha = jnp.asarray(alpha)
    if dtype is None:
        dtype = float_dtype(fn, "alpha", alpha)
    check_dtype(fn, "dtype", dtype)
    alpha = check_alpha(fn, alpha.astype(dtype))
    u = jnp.broadcast_to(alpha[..., None], (*batch, *alpha.shape, d))
    return u, u


def check_alpha(fn: str, alpha: Array) -> Array:
    """Raise unless `alpha` is positive and finite (`equinox.error_if` inside a trace)."""
    bad = ~jnp.all(jnp.isfinite(alpha) & (alpha > 0))
    message = f"{fn}(..., alpha=...) must be positive and finite."
    if known(bad):
        raise ValueError(message)
    return alpha if known(bad) is False else eqx.error_if(alpha, bad, message)


def diagonal_beta(params, *, depth: int = 2) -> Array:
    r"""The linear predictor $\beta = u^D - v^D$ of a diagonal network.

    **Arguments:** `params` the pair `(u, v)`, both `(..., d)` (any leading axes, e.g. the
    time and batch axes of `Trajectory.weights`); `depth` $D \ge 2$.

    **Returns:** $\beta$, shape `(..., d)`.

    **Raises:** `ValueError` if `params` is not a pair of arrays of one shape.

    **Example:**

    ```python
    beta = linflow.diagonal_beta(traj.weights)   # (T, *batch, d)
    ```
    """
    fn = "diagonal_beta"
    depth = check_depth(fn, depth)
    if not isinstance(params, tuple | list) or len(params) != 2:
        raise ValueError(f"{fn}(params=...) must be the pair (u, v).")
    u, v = jnp.asarray(params[0]), jnp.asarray(params[1])
    if u.shape != v.shape:
        raise ValueError(f"{fn}(params=(u, v)): u {u.shape} and v {v.shape} differ in shape.")
    return u**depth - v**depth


# --- the limit ---------------------------------------------------------------------------
#
# Along the flow from u = v = alpha, u and v are functions of the integrated gradient
# -int_0^t X^T r / n, which stays in the row space of X, so the limit is
# beta = alpha^D h(X^T nu) for the nu that interpolates (Woodworth et al. 2020, Thms 1, 3):
#   D = 2:  h(z) = 2 sinh(z), the derivative of the dual of q(z) = 2 - sqrt(4 + z^2) + z asinh(z/2);
#   D > 2:  h(z) = (1 - z)^(-p) - (1 + z)^(-p), p = D / (D - 2), |z| < 1.
# X beta(nu) = y is solved for nu (n unknowns) by a trust-region Gauss-Newton method
# (optimistix.Dogleg), on data rescaled so that the minimum-l2 interpolator has
# max |beta_i| = 1, in a variable mu with nu = kappa mu, kappa the size of z at which beta = 1
# (so that mu stays O(1) from the kernel to the rich regime). Small alpha is reached by
# continuation from a moderate one, each stage starting from the previous solution.

_EASY = np.log(1e-2)  # log alpha^D (rescaled) below which the solve goes by continuation
_STAGE = np.log(1e-2)  # log of the ratio of alpha^D between continuation stages
_STAGES = 25


def _log_h(z, log_a, depth: int):
    r"""$\log(\alpha^D h(|z|))$, without overflow or cancellation."""
    z = jnp.abs(z)
    if depth == 2:
        return log_a + z + jnp.log(-jnp.expm1(-2 * z))
    p = depth / (depth - 2)
    return log_a - p * jnp.log1p(z) + jnp.log(jnp.expm1(2 * p * jnp.arctanh(z)))


def _beta(nu, X, log_a, depth: int):
    z = X.T @ nu
    return jnp.sign(z) * jnp.exp(_log_h(z, log_a, depth))


def _kappa(log_a, depth: int):
    """The scale of $z$: a smooth stand-in for the $z$ at which $\\alpha^D h(z) = 1$.

    For $D = 2$ it is right in both limits ($1/(2\\alpha^2)$ and $\\log(1/\\alpha^2)$). For
    $D > 2$, where $|z| < 1$, it is frozen below the start of the continuation, so that each
    stage's solution lies inside the domain of the next.
    """
    if depth > 2:
        log_a = jnp.maximum(log_a, _EASY)
    s = jax.nn.softplus(-log_a - np.log(2.0))  # log(1 + 1/(2 alpha^D))
    return s if depth == 2 else -jnp.expm1(-s * (depth - 2) / depth)


def _limit_one(X, y, alpha, depth: int, max_steps: int):
    """The limit for one scalar `alpha`, and its relative residual $\\|X\\beta - y\\| / \\|y\\|$
    (infinite when the solver failed)."""
    tol = float(jnp.finfo(X.dtype).eps) ** (2 / 3)
    solver = optx.Dogleg(rtol=tol, atol=tol)

    def residual(mu, args):
        X, y, log_a = args
        return X @ _beta(_kappa(log_a, depth) * mu, X, log_a, depth) - y

    def solve(mu, args):
        return optx.least_squares(residual, solver, mu, args=args, max_steps=max_steps, throw=False)

    nu_l2 = lx.linear_solve(
        lx.MatrixLinearOperator(X @ X.T, lx.positive_semidefinite_tag), y, lx.Cholesky()
    ).value
    # beta(X, c y, alpha) = c beta(X, y, alpha / c^(1/D)) exactly, so the scale needs no gradient.
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(X.T @ nu_l2)))
    scale = jnp.where(scale > 0, scale, 1.0)
    y = y / scale
    log_a = depth * jnp.log(alpha) - jnp.log(scale)  # log alpha^D of the rescaled problem

    def stage(mu, k):
        Xs, ys, la = jax.lax.stop_gradient((X, y, log_a))
        return solve(mu, (Xs, ys, jnp.maximum(_EASY + k * _STAGE, la))).value, None

    mu0 = jax.lax.stop_gradient(nu_l2 / scale)
    mu, _ = jax.lax.scan(stage, mu0, jnp.arange(_STAGES, dtype=X.dtype))
    sol = solve(mu, (X, y, log_a))
    beta = _beta(_kappa(log_a, depth) * sol.value, X, log_a, depth)
    norm_y = jnp.linalg.norm(y)
    res = jnp.linalg.norm(X @ beta - y) / jnp.where(norm_y > 0, norm_y, 1.0)
    res = jnp.where(sol.result == optx.RESULTS.successful, res, jnp.inf)
    return scale * beta, res


@eqx.filter_jit
def _limits(X, y, alphas, depth: int, max_steps: int):
    """`_limit_one` for each of `alphas` `(A,)`: betas `(A, d)` and residuals `(A,)`."""
    return jax.vmap(lambda a: _limit_one(X, y, a, depth, max_steps))(alphas)


def diagonal_limit(X, y, alpha, *, depth: int = 2, max_steps: int = 256, throw: bool = True):
    r"""The interpolator that gradient flow of a diagonal network converges to from scale $\alpha$.

    Gradient flow on $L = \frac{1}{2n}\|X\beta - y\|^2$, $\beta = u^D - v^D$, from
    $u = v = \alpha\mathbf 1$ converges, for $n < d$ and $X$ of full row rank, to

    $$\beta_\alpha = \arg\min_{X\beta = y} Q_\alpha(\beta), \qquad
    Q_\alpha(\beta) = \alpha^D \sum_i q_D(\beta_i / \alpha^D),$$

    with $q_2(z) = 2 - \sqrt{4 + z^2} + z \operatorname{arcsinh}(z/2)$ for depth 2 (Woodworth,
    Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry & Srebro 2020, "Kernel and rich regimes in
    overparametrized models", Theorem 1) and $q_D = \int h_D^{-1}$,
    $h_D(z) = (1 - z)^{-D/(D-2)} - (1 + z)^{-D/(D-2)}$ for $D > 2$ (their Theorem 3). As
    $\alpha \to \infty$, $\beta_\alpha$ tends to the minimum-$\ell_2$ interpolator (kernel
    regime); as $\alpha \to 0$, to the minimum-$\ell_1$ one (rich regime).

    It is computed from the dual form $\beta = \alpha^D h_D(X^\top \nu)$ ($h_2 = 2\sinh$): the
    $n$ equations $X\beta(\nu) = y$ are solved by a trust-region Gauss-Newton method
    (`optimistix.Dogleg`), reaching small $\alpha$ by continuation from a moderate one;
    `jax.grad` differentiates the solution implicitly.

    **Conditioning.** For small $\alpha$ the problem is exponentially ill-conditioned in
    $\nu$ but not in $\beta$. For depth 2, every coordinate of $\beta$ comes out with a
    relative error of about $100\epsilon$ (machine epsilon $\epsilon$) from $\alpha = 10^{-12}$
    to $10^2$ in float32 and float64, including those off the support, of order
    $\alpha^{2(1 - |x_i^\top\nu^\star|)}$. For $D > 2$, $|x_i^\top\nu| \to 1$ on the support,
    $1 - |x_i^\top\nu| \approx (\alpha^D / |\beta_i|)^{(D-2)/D}$, and the relative error grows
    like $\epsilon\,(|\beta_i|/\alpha^D)^{(D-2)/D}$: with data of unit scale, $\alpha$ down to
    about $10^{-3}$ works for $D = 3$ in float32 and $D = 4$ in float64, $10^{-4}$ for $D = 3$
    in float64. Below that the solve reports a failure, not a wrong answer: $X\beta(\nu) = y$
    has one root (the map is the gradient of a strictly convex function), so a small residual
    means the right $\beta$.

    **Arguments:**

    - `X`: inputs, `(n, d)` with $n < d$ and full row rank; `y`: targets, `(n,)`.
    - `alpha`: the scale $\alpha > 0$ of the start, a scalar or an array (one limit each).
    - `depth`: $D \ge 2$.
    - `max_steps`: most solver steps per continuation stage.
    - `throw`: raise if a solve fails (relative residual above $\sqrt\epsilon$); otherwise
      the failed limits are NaN.

    **Returns:** $\beta_\alpha$, shape `(*alpha.shape, d)`, in the floating dtype of the
    inputs. (With x64 on, a float32 problem is solved in float64 and rounded: optimistix's
    trust-region solvers do not keep float32 throughout then.)

    **Raises:** `ValueError` if the shapes of `X` and `y` do not match, $n \ge d$, `X` is not
    of full row rank, an input holds NaN or inf, or $\alpha \le 0$; an equinox runtime error
    (a `RuntimeError`) if a solve fails and `throw`.

    **Example:**

    ```python
    beta = linflow.diagonal_limit(X, y, jnp.logspace(-4, 2, 7))   # (7, d)
    ```
    """
    fn = "diagonal_limit"
    depth = check_depth(fn, depth)
    max_steps = check_int(fn, "max_steps", max_steps, minimum=1)
    X, y = check_data(fn, X, y, underdetermined=True)
    alpha = jnp.asarray(alpha)
    dtype = float_dtype(fn, "alpha", X, alpha)
    X, y, alpha = X.astype(dtype), y.astype(dtype), check_alpha(fn, alpha.astype(dtype))
    # optimistix's trust-region solvers (0.1.0) mix float64 constants into their state when
    # x64 is on, which breaks a float32 solve; float64 is available then, so solve in it.
    solve_dtype = jax.dtypes.canonicalize_dtype(np.float64)
    beta, res = _limits(
        X.astype(solve_dtype),
        y.astype(solve_dtype),
        alpha.reshape(-1).astype(solve_dtype),
        depth,
        max_steps,
    )
    beta = beta.astype(dtype).reshape(*alpha.shape, X.shape[1])
    failed = ~(res <= jnp.sqrt(jnp.finfo(dtype).eps)).reshape(alpha.shape)
    if throw:
        return eqx.error_if(
            beta,
            failed,
            f"{fn}: the solve did not converge (for tiny alpha the problem is too "
            "ill-conditioned in this precision: use float64, a larger alpha or depth 2).",
        )
    return jnp.where(failed[..., None], jnp.nan, beta)
