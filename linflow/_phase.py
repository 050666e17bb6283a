r"""Phase-space analysis of small autonomous systems $\dot x = f(x)$: fixed points and their type.

Fixed points are found numerically (Newton's method from many starts, then deduplication),
never written in by hand; each is linearised with `jax.jacobian` and classified from the
eigenvalues of the Jacobian (the analysis of one mode of Saxe, McClelland & Ganguli 2014, "Exact
solutions to the nonlinear dynamics of learning in deep linear neural networks", as set in the
course homework "Deep linear neural networks", 2024, exercise 6). A zero eigenvalue is examined
further: if Newton's method started a little way along its eigenvector lands on a new fixed
point, the point lies on a line (or surface) of non-isolated fixed points, like the hyperbola
$ab = s$ of the scalar pair (`scalar_pair`).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._checks import check_dtype, check_positive

FIXED_POINT_KINDS = (
    "saddle",
    "stable node",
    "unstable node",
    "stable focus",
    "unstable focus",
    "centre",
    "non-isolated",
    "degenerate",
)
"""The classifications `fixed_points` gives (`FixedPoint.kind`), from the eigenvalues of the
Jacobian: hyperbolic points (saddle, node, focus), centres, points on a curve of fixed points
(non-isolated), and degenerate points that the linearisation cannot classify."""


class FixedPoint(eqx.Module):
    r"""A fixed point $f(x^*) = 0$ of $\dot x = f(x)$ and its linearisation.

    **Fields:**

    - `point`: $x^*$, shape `(n,)`.
    - `jacobian`: $J = \partial f/\partial x$ at $x^*$, shape `(n, n)`.
    - `eigenvalues`: eigenvalues of $J$, complex, shape `(n,)`, sorted by real part.
    - `kind`: one of `linflow.FIXED_POINT_KINDS`: `"saddle"` (real parts of both signs,
      none zero), `"stable node"` / `"unstable node"` (all real, all negative / positive),
      `"stable focus"` / `"unstable focus"` (complex, real parts all negative / positive),
      `"centre"` (purely imaginary), `"non-isolated"` (a zero eigenvalue whose eigenvector
      points along a continuum of fixed points), `"degenerate"` (any other zero eigenvalue, or
      zero and non-zero real parts mixed).
    """

    point: Array
    jacobian: Array
    eigenvalues: Array
    kind: str = eqx.field(static=True)


def scalar_pair(s, tau=1.0) -> Callable[[Array], Array]:
    r"""The vector field of one decoupled mode, $x = (a, b)$ (Saxe et al. 2014).

    The scalar pair of Saxe, McClelland & Ganguli (2014), "Exact solutions to the nonlinear
    dynamics of learning in deep linear neural networks".

    $$\tau\,\dot a = (s - ab)\,b, \qquad \tau\,\dot b = (s - ab)\,a,$$

    the gradient flow of $\frac{1}{2\tau}(s - ab)^2$. It conserves $b^2 - a^2$; its fixed points
    are the origin (a saddle for $s > 0$) and the hyperbola $ab = s$ (non-isolated, attracting).

    **Arguments:** `s` the singular value, `tau` the time constant (scalars).

    **Returns:** a function mapping `x` of shape `(2,)` to $\dot x$, shape `(2,)`.

    **Example:**

    ```python
    f = linflow.scalar_pair(1.0)
    f(jnp.array([0.1, 0.2]))
    ```
    """
    check_positive("scalar_pair", "tau", tau)

    def field(x):
        a, b = x[0], x[1]
        return jnp.stack([(s - a * b) * b, (s - a * b) * a]) / tau

    return field


def _newton(field, x, iterations: int):
    """Newton's method with the pseudo-inverse (minimum-norm steps where $J$ is singular)."""

    def step(_, x):
        j = jax.jacobian(field)(x)
        return x - jnp.linalg.pinv(j) @ field(x)

    return jax.lax.fori_loop(0, iterations, step, x)


def fixed_points(
    field: Callable[[Array], Array],
    starts,
    *,
    tol: float | None = None,
    iterations: int = 60,
    distinct: float = 1e-6,
) -> list[FixedPoint]:
    r"""Fixed points $f(x^*) = 0$ of an autonomous system $\dot x = f(x)$, found and classified.

    Newton's method $x \leftarrow x - J(x)^+ f(x)$ runs from every start (vmapped); the points
    where $\|f\| \le$ `tol` are kept, and points closer than `distinct` to an earlier one are
    dropped. Each is linearised, $J = $ `jax.jacobian(field)`$(x^*)$, and classified by the
    eigenvalues of $J$ (see `FixedPoint.kind`); an eigenvalue counts as zero below
    $10^{-6}\max(1, \max|\lambda|)$. For a continuum of fixed points (e.g. the hyperbola $ab = s$
    of `scalar_pair`) the result holds as many points of it as the starts lead to.

    **Arguments:**

    - `field`: $f$, a JAX-traceable function from shape `(n,)` to `(n,)`.
    - `starts`: initial guesses, shape `(S, n)`, e.g. a grid over the region of interest.
    - `tol`: largest $\|f(x^*)\|$ accepted (default $10^{-10}$ in float64, $10^{-4}$ in
      float32, whose rounding leaves residuals near $10^{-6}$).
    - `iterations`: Newton steps from each start.
    - `distinct`: smallest distance between two reported fixed points.

    **Returns:** a list of `FixedPoint`, isolated points first (sorted by position), then the
    non-isolated ones.

    **Raises:** `ValueError` if `starts` is not 2-D or a tolerance is not positive.

    **Example:**

    ```python
    grid = jnp.stack(jnp.meshgrid(*2 * [jnp.linspace(-2.0, 2.0, 9)]), -1).reshape(-1, 2)
    points = linflow.fixed_points(linflow.scalar_pair(1.0), grid)
    {p.kind for p in points}    # {"saddle", "non-isolated"}
    ```
    """
    fn = "fixed_points"
    starts = jnp.asarray(starts)
    if not jnp.issubdtype(starts.dtype, jnp.floating):
        starts = starts.astype(jnp.result_type(float))
    if starts.ndim != 2 or starts.shape[0] == 0:
        raise ValueError(f"{fn}(..., starts=...) must have shape (S, n), got {starts.shape}.")
    check_dtype(fn, "starts", starts.dtype)
    tol = {"float32": 1e-4, "float64": 1e-10}[starts.dtype.name] if tol is None else tol
    for name, value in (("tol", tol), ("distinct", distinct)):
        check_positive(fn, name, value)
    size = starts.shape[0]

    @jax.jit
    @jax.vmap
    def solve(x):
        x = _newton(field, x, iterations)
        return x, jnp.linalg.norm(field(x)), jax.jacobian(field)(x)

    def run(xs):
        """`solve` in chunks of the shape of `starts` (compiled once)."""
        chunks = -(-xs.shape[0] // size)
        padded = np.concatenate([xs, np.repeat(xs[:1], chunks * size - xs.shape[0], 0)])
        out = [solve(jnp.asarray(c)) for c in np.split(padded, chunks)]
        ends, residual, jac = (np.concatenate(parts)[: xs.shape[0]] for parts in zip(*out))
        return ends, np.isfinite(residual) & (residual <= tol), jac

    ends, ok, jacobians = run(np.asarray(starts))
    kept: list[int] = []
    for i in np.flatnonzero(ok):
        if all(np.linalg.norm(ends[i] - ends[j]) >= distinct for j in kept):
            kept.append(i)
    if not kept:
        return []
    points, jacobians = ends[kept], jacobians[kept]
    values, vectors = np.linalg.eig(jacobians)
    order = np.argsort(values.real, axis=-1, kind="stable")
    values = np.take_along_axis(values, order, axis=-1)
    vectors = np.take_along_axis(vectors, order[:, None, :], axis=-1)
    zero = np.abs(values) <= 1e-6 * np.maximum(1.0, np.abs(values).max(axis=-1, keepdims=True))
    kinds = [_kind(lam, z) for lam, z in zip(values, zero)]
    # A zero eigenvalue: step a little along its eigenvector both ways; Newton's method lands
    # on new fixed points there only if the point lies on a continuum of them.
    probes, owners = [], []
    for i, (x, vec, z) in enumerate(zip(points, vectors, zero)):
        if kinds[i] != "degenerate" or not z.any():
            continue
        h = 1e3 * distinct * max(1.0, float(np.linalg.norm(x)))
        for v in np.real(vec[:, z]).T:
            v = v / np.linalg.norm(v)
            probes += [x + h * v, x - h * v]
            owners += [(i, h)] * 2
    if probes:
        ends, ok, _ = run(np.stack(probes))
        moved = [
            bool(good) and np.linalg.norm(end - points[i]) >= h / 2
            for good, end, (i, h) in zip(ok, ends, owners)
        ]
        for i in {i for i, _ in owners}:
            if all(m for m, (j, _) in zip(moved, owners) if j == i):
                kinds[i] = "non-isolated"
    result = [
        FixedPoint(
            point=jnp.asarray(x), jacobian=jnp.asarray(j), eigenvalues=jnp.asarray(lam), kind=k
        )
        for x, j, lam, k in zip(points, jacobians, values, kinds)
    ]
    return sorted(result, key=lambda p: (p.kind == "non-isolated", tuple(np.asarray(p.point))))


def _kind(lam: np.ndarray, zero: np.ndarray) -> str:
    """Type of a fixed point from the eigenvalues of its Jacobian (zero ones flagged)."""
    if zero.any():
        return "degenerate"
    re = lam.real
    small = np.abs(re) <= 1e-6 * max(1.0, np.abs(lam).max())
    if small.all():
        return "centre"
    if small.any():
        return "degenerate"
    if (re < 0).any() and (re > 0).any():
        return "saddle"
    side = "stable" if (re < 0).all() else "unstable"
    real = np.all(np.abs(lam.imag) <= 1e-12 * np.abs(lam).max())
    return f"{side} {'node' if real else 'focus'}"
