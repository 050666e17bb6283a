"""Diagonal linear networks: the model, the limit of its flow (Woodworth et al. 2020) and the
saddle-to-saddle limit of vanishing initialisation (Pesme & Flammarion 2023)."""

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import eps
from scipy.optimize import linprog

import linflow


def gaussian_data(seed, n, d, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.standard_normal(n).astype(dtype)


def min_l1(X, y):
    """The minimum-l1 interpolator, by linear programming (beta = b+ - b-, b+- >= 0)."""
    d = X.shape[1]
    res = linprog(np.ones(2 * d), A_eq=np.hstack([X, -X]), b_eq=y, bounds=(0, None))
    assert res.status == 0
    return res.x[:d] - res.x[d:]


def flow_limit(X, y, alpha, depth, T, tau=1.0):
    """beta at T/2 and T of the simulated gradient flow from u = v = alpha, shape (2, d)."""
    objective = linflow.diagonal_objective(X, y, depth=depth)
    weights0 = linflow.diagonal_weights(alpha, X.shape[1])
    traj = linflow.gradient_flow(
        objective, weights0, jnp.array([T / 2, T]), tau=tau, rtol=1e-12, atol=1e-14
    )
    return np.asarray(linflow.diagonal_beta(traj.weights, depth=depth))


# X (4, 8) and y whose minimum-l1 interpolator is a vertex with dual certificate
# rho = max_{i off the support} |x_i^T nu*| = 0.36: the rich regime is reached quickly.
@pytest.fixture(scope="module")
def data():
    return gaussian_data(22, 4, 8)


# ---------------------------------------------------------------- the model


def test_weights_beta_and_objective(data):
    X, y = data
    u, v = linflow.diagonal_weights(jnp.array([0.1, 2.0]), 8, batch=(3,))
    assert u.shape == v.shape == (3, 2, 8)
    np.testing.assert_array_equal(u[:, 1], 2.0)
    assert linflow.diagonal_weights(0.5, 8)[0].shape == (8,)
    assert linflow.diagonal_weights(0.5, 8, dtype=jnp.float32)[0].dtype == jnp.float32
    rng = np.random.default_rng(1)
    u, v = rng.uniform(0.1, 1.0, (2, 5, 8))
    for depth in (2, 3):
        beta = linflow.diagonal_beta((u, v), depth=depth)
        np.testing.assert_allclose(beta, u**depth - v**depth, rtol=1e-14)
        objective = linflow.diagonal_objective(X, y, depth=depth, batch=(5,))
        residual = np.asarray(beta) @ X.T - y  # (5, n)
        np.testing.assert_allclose(
            objective.value((u, v)), 0.5 * np.mean(residual**2, axis=1), rtol=1e-13
        )
        # dL/du = D u^(D-1) g, dL/dv = -D v^(D-1) g, g = X^T r / n
        g = residual @ X / X.shape[0]
        du, dv = objective.gradients((u, v))
        np.testing.assert_allclose(du, depth * u ** (depth - 1) * g, rtol=1e-12)
        np.testing.assert_allclose(dv, -depth * v ** (depth - 1) * g, rtol=1e-12)


@pytest.mark.parametrize(
    "depth, alphas",
    [(2, (1e-3, 1e-2, 0.1, 1.0, 10.0)), (3, (0.3, 1.0, 3.0))],
)
def test_flow_converges_to_diagonal_limit(data, depth, alphas):
    """Woodworth et al. (2020), Theorems 1 and 3: the flow's limit is diagonal_limit."""
    X, y = data
    limits = linflow.diagonal_limit(X, y, jnp.array(alphas), depth=depth)
    assert limits.shape == (len(alphas), 8)
    for alpha, limit in zip(alphas, np.asarray(limits)):
        # Large alpha: time runs alpha^(2D-2) times faster (the kernel's scale); small alpha:
        # escaping the start takes ~ log(1/alpha) (depth 2) or ~ alpha^(2-D) (depth D).
        tau = max(1.0, alpha ** (2 * depth - 2))
        T = 60.0 * (1 + max(0.0, np.log(1 / alpha))) * max(1.0, alpha ** (2 - depth))
        beta = flow_limit(X, y, alpha, depth, T, tau)
        np.testing.assert_allclose(X @ limit, y, atol=1e-12)
        assert np.linalg.norm(beta[0] - beta[1]) < 1e-9  # the flow has converged
        assert np.linalg.norm(beta[1] - limit) / np.linalg.norm(limit) < 1e-6


def test_gradient_descent_approaches_the_limit(data):
    """Small steps follow the flow: GD's limit is diagonal_limit up to O(lr)."""
    X, y = data
    alphas = jnp.array([0.01, 1.0])
    objective = linflow.diagonal_objective(X, y, batch=alphas.shape)
    errors = []
    for lr in (0.02, 0.01):
        traj = linflow.gradient_descent(
            objective,
            linflow.diagonal_weights(alphas, 8),
            steps=int(60 / lr),
            lr=lr,
            save_every=int(60 / lr),
        )
        beta = linflow.diagonal_beta(traj.weights)[-1]
        errors.append(np.asarray(jnp.max(jnp.abs(beta - linflow.diagonal_limit(X, y, alphas)))))
    assert np.all(errors[1] < 0.1) and np.all(errors[1] < 0.7 * errors[0])


def test_small_alpha_approaches_min_l1_at_the_predicted_rate(data):
    """Depth 2: off the support beta_i ~ alpha^(2 - 2|x_i^T nu*|), so the error decays like
    alpha^(2(1 - rho)), rho = max_{i off S} |x_i^T nu*| for the l1 dual certificate nu*
    (from the dual form of Theorem 1). Depth D > 2: like alpha^D."""
    X, y = data
    beta_l1 = min_l1(X, y)
    support = np.abs(beta_l1) > 1e-9
    assert support.sum() == X.shape[0]  # a vertex: nu* is unique
    nu = np.linalg.solve(X[:, support].T, np.sign(beta_l1[support]))
    rho = np.max(np.abs(X[:, ~support].T @ nu))
    alphas = np.logspace(-4, -10, 4)
    errors = np.max(np.abs(np.asarray(linflow.diagonal_limit(X, y, alphas)) - beta_l1), axis=1)
    assert errors[-1] < 1e-7
    slopes = np.diff(np.log(errors)) / np.diff(np.log(alphas))
    np.testing.assert_allclose(slopes, 2 * (1 - rho), rtol=1e-3)
    alphas = np.array([10**-2.5, 1e-3])
    errors = np.max(np.abs(np.asarray(linflow.diagonal_limit(X, y, alphas, depth=3)) - beta_l1), 1)
    slope = np.log(errors[1] / errors[0]) / np.log(alphas[1] / alphas[0])
    np.testing.assert_allclose(slope, 3.0, rtol=0.05)


@pytest.mark.parametrize("depth", [2, 3])
def test_large_alpha_approaches_min_l2_at_the_predicted_rate(data, depth):
    """beta = alpha^D h(z) = w + c w^3 + ..., with w in the row space of X: so
    beta_alpha - beta_l2 = (I - P) beta_l2^3 c_D / alpha^(2D) + O(alpha^(-4D)),
    c_D = (p + 1)(p + 2) / (24 p^2), p = D / (D - 2) (c_2 = 1/24), P = X^+ X."""
    X, y = data
    beta_l2 = np.linalg.pinv(X) @ y
    p = depth / (depth - 2) if depth > 2 else np.inf
    c = 1 / 24 if depth == 2 else (p + 1) * (p + 2) / (24 * p**2)
    predicted = (np.eye(8) - np.linalg.pinv(X) @ X) @ beta_l2**3 * c
    errors = []
    for alpha in (3.0, 10.0):
        beta = np.asarray(linflow.diagonal_limit(X, y, alpha, depth=depth))
        coefficient = (beta - beta_l2) * alpha ** (2 * depth)
        errors.append(np.max(np.abs(coefficient - predicted)) / np.max(np.abs(predicted)))
    assert errors[1] < 1e-4
    # the remainder is O(alpha^(-2D)) relative to the leading term
    assert errors[1] < 3 * errors[0] * (3.0 / 10.0) ** (2 * depth)


def test_alpha_array_and_float32(precision, data):
    dtype, _ = precision
    X, y = (a.astype(dtype) for a in data)
    alphas = jnp.asarray([[1e-6, 1e-2], [1.0, 30.0]], dtype)
    beta = linflow.diagonal_limit(X, y, alphas)
    assert beta.shape == (2, 2, 8) and beta.dtype == dtype
    reference = linflow.diagonal_limit(*data, np.asarray(alphas, np.float64))
    np.testing.assert_allclose(beta, reference, atol=300 * eps(dtype))
    np.testing.assert_allclose(beta[0, 0], min_l1(*data), atol=1e-2)
    beta = linflow.diagonal_limit(X, y, jnp.asarray(0.5, dtype), depth=3)
    assert beta.dtype == dtype and np.allclose(X @ beta, y, atol=100 * eps(dtype))


def test_failed_solve_raises_or_gives_nan(data):
    """Depth 4 from alpha = 1e-6 needs 1 - |z| ~ 1e-12 in float32: reported, not returned."""
    X, y = (a.astype(np.float32) for a in data)
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="did not converge"):
            linflow.diagonal_limit(X, y, 1e-6, depth=4)
        alphas = np.array([1e-6, 1.0], np.float32)
        beta = linflow.diagonal_limit(X, y, alphas, depth=4, throw=False)
    assert np.all(np.isnan(beta[0])) and np.all(np.isfinite(beta[1]))


# ---------------------------------------------------------------- saddle to saddle


def test_saddle_to_saddle_ends_at_min_l1():
    for seed, (n, d) in enumerate([(3, 6), (5, 10), (10, 30)]):
        X, y = gaussian_data(seed, n, d)
        times, betas = linflow.saddle_to_saddle(X, y)
        assert times.shape == (4 * n + 5,) and betas.shape == (4 * n + 5, d)
        k = int(np.sum(np.isfinite(times)))
        assert times[0] == 0 and np.all(np.diff(times[:k]) > 0) and np.all(betas[0] == 0)
        np.testing.assert_allclose(betas[k - 1], min_l1(X, y), atol=1e-12)
        np.testing.assert_array_equal(betas[k:], np.broadcast_to(betas[k - 1], betas[k:].shape))
        # the first jump: the coordinate with the largest correlation, at n / (2 |X^T y|_inf)
        np.testing.assert_allclose(times[1], n / (2 * np.max(np.abs(X.T @ y))), rtol=1e-14)
    X, y = gaussian_data(0, 8, 4)  # n >= d: the least-squares solution
    times, betas = linflow.saddle_to_saddle(X, y)
    k = int(np.sum(np.isfinite(times)))
    np.testing.assert_allclose(betas[k - 1], np.linalg.lstsq(X, y, rcond=None)[0], atol=1e-12)


def _crossing(ts, loss, level):
    """First time the (decreasing) loss reaches `level`, interpolated in log loss."""
    j = int(np.argmax(loss <= level))
    a, b = np.log(loss[j - 1]), np.log(loss[j])
    return ts[j - 1] + (ts[j] - ts[j - 1]) * (a - np.log(level)) / (a - b)


def test_saddle_to_saddle_matches_small_initialisation_flows():
    """Flows from alpha = 1e-6, 1e-9, 1e-12 in the time t / log(1/alpha): they visit the
    saddles (within 1e-3), and they jump (the loss halfway between two plateaus) within a few
    percent of the predicted times, with errors shrinking like 1 / log(1/alpha)."""
    X, y = gaussian_data(9, 3, 6)
    times, betas = linflow.saddle_to_saddle(X, y)
    k = int(np.sum(np.isfinite(times)))
    times, betas = np.asarray(times[:k]), np.asarray(betas[:k])
    assert k == 4  # three jumps, one coordinate more each time
    plateaus = 0.5 * np.mean((betas @ X.T - y) ** 2, axis=1)
    objective = linflow.diagonal_objective(X, y)
    lams, plateau_errors, jump_times = [], [], []
    for alpha in (1e-6, 1e-9, 1e-12):
        lam = np.log(1 / alpha)
        ts = np.linspace(0.0, 1.5 * times[-1] * lam, 6001)[1:]
        traj = linflow.gradient_flow(
            objective, linflow.diagonal_weights(alpha, 6), ts, rtol=1e-10, atol=1e-30
        )
        beta = np.asarray(linflow.diagonal_beta(traj.weights))
        loss = 0.5 * np.mean((beta @ X.T - y) ** 2, axis=1)
        rescaled = ts / lam
        edges = [*times, np.inf]
        plateau_errors.append(
            [
                np.min(np.max(np.abs(beta[(rescaled > lo) & (rescaled < hi)] - b), axis=1))
                for lo, hi, b in zip(edges[:-1], edges[1:], betas)
            ]
        )
        levels = 0.5 * (plateaus[:-1] + plateaus[1:])
        jump_times.append([_crossing(rescaled, loss, level) for level in levels])
        lams.append(lam)
    plateau_errors = np.array(plateau_errors)
    relative = np.abs(np.array(jump_times) / times[1:] - 1)
    assert np.all(plateau_errors < 1e-3)
    assert np.all(np.diff(plateau_errors[:, 1:], axis=0) < 0)
    assert np.all(relative < [[0.1], [0.06], [0.05]])
    assert np.all(np.diff(relative, axis=0) < 0)
    # t(alpha) = t~ + c / log(1/alpha): extrapolated to alpha -> 0, the predicted times
    design = np.stack([np.ones(3), 1 / np.array(lams)], axis=1)
    extrapolated = np.linalg.lstsq(design, np.array(jump_times), rcond=None)[0][0]
    np.testing.assert_allclose(extrapolated, times[1:], rtol=5e-3)


def test_saddle_to_saddle_float32(precision):
    dtype, _ = precision
    X, y = gaussian_data(1, 5, 10)
    times, betas = linflow.saddle_to_saddle(X.astype(dtype), y.astype(dtype))
    assert times.dtype == betas.dtype == dtype
    reference_times, reference_betas = linflow.saddle_to_saddle(X, y)
    k = int(np.sum(np.isfinite(reference_times)))
    assert int(np.sum(np.isfinite(times))) == k
    np.testing.assert_allclose(times[:k], reference_times[:k], rtol=1e4 * eps(dtype))
    np.testing.assert_allclose(betas, reference_betas, atol=1e4 * eps(dtype))


def test_saddle_to_saddle_max_jumps():
    X, y = gaussian_data(1, 5, 10)
    with pytest.raises(RuntimeError, match="max_jumps=2"):
        linflow.saddle_to_saddle(X, y, max_jumps=2)
    times, betas = linflow.saddle_to_saddle(X, y, max_jumps=2, throw=False)
    assert times.shape == (3,) and np.all(np.isnan(times)) and np.all(np.isnan(betas))


# ---------------------------------------------------------------- JAX transformations


def test_jit_grad_vmap_of_the_limit(data):
    X, y = (jnp.asarray(a) for a in data)
    alphas = jnp.array([0.01, 1.0])
    eager = linflow.diagonal_limit(X, y, alphas)
    jitted = jax.jit(linflow.diagonal_limit, static_argnames="depth")(X, y, alphas)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12)
    mapped = jax.vmap(lambda a: linflow.diagonal_limit(X, y, a))(alphas)
    np.testing.assert_allclose(mapped, eager, rtol=1e-12)

    def f(y, alpha):
        return jnp.sum(linflow.diagonal_limit(X, y, alpha) ** 2)

    for alpha in (0.01, 1.0):
        gy, ga = jax.grad(f, argnums=(0, 1))(y, alpha)
        h = 1e-6
        fd_y = [(f(y + h * e, alpha) - f(y - h * e, alpha)) / (2 * h) for e in np.eye(4)]
        fd_a = (f(y, alpha * (1 + h)) - f(y, alpha * (1 - h))) / (2 * h * alpha)
        np.testing.assert_allclose(gy, fd_y, rtol=1e-6)
        np.testing.assert_allclose(ga, fd_a, rtol=1e-6)


def test_jit_grad_vmap_of_saddle_to_saddle():
    X, y = (jnp.asarray(a) for a in gaussian_data(9, 3, 6))
    times, betas = linflow.saddle_to_saddle(X, y)
    jitted = jax.jit(linflow.saddle_to_saddle)(X, y)
    np.testing.assert_allclose(jitted[0], times, rtol=1e-12)
    # y -> c y makes the gradient c times larger: the same saddles scaled, times / c
    scaled = jax.vmap(lambda c: linflow.saddle_to_saddle(X, c * y))(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(scaled[0][1, :4], times[:4] / 2, rtol=1e-12)
    np.testing.assert_allclose(scaled[1][1], 2 * betas, rtol=1e-12)

    def f(y):
        t, b = linflow.saddle_to_saddle(X, y)
        return jnp.sum(t[1:4]) + jnp.sum(b[2] ** 2)

    grad = jax.grad(f)(y)
    h = 1e-6
    fd = [(f(y + h * e) - f(y - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_jit_grad_vmap_of_the_model(data):
    X, y = (jnp.asarray(a) for a in data)

    def final_beta(alpha):
        objective = linflow.diagonal_objective(X, y)
        traj = linflow.gradient_flow(
            objective, linflow.diagonal_weights(alpha, 8), jnp.array([5.0]), rtol=1e-10
        )
        return linflow.diagonal_beta(traj.weights)[-1]

    def final_beta_gd(alpha):
        objective = linflow.diagonal_objective(X, y)
        traj = linflow.gradient_descent(
            objective, linflow.diagonal_weights(alpha, 8), steps=20, lr=0.05, save_every=20
        )
        return linflow.diagonal_beta(traj.weights)[-1]

    for run in (final_beta, final_beta_gd):
        eager = run(0.5)
        np.testing.assert_allclose(jax.jit(run)(0.5), eager, rtol=1e-10)
        np.testing.assert_allclose(jax.vmap(run)(jnp.array([0.5, 0.5]))[1], eager, rtol=1e-10)
        grad = jax.grad(lambda a: jnp.sum(run(a)))(0.5)
        fd = (jnp.sum(run(0.5 + 1e-6)) - jnp.sum(run(0.5 - 1e-6))) / 2e-6
        np.testing.assert_allclose(grad, fd, rtol=1e-5)
    u, v = jax.jit(linflow.diagonal_weights, static_argnums=1)(jnp.array([0.1, 0.2]), 3)
    np.testing.assert_allclose(jax.grad(lambda u: linflow.diagonal_beta((u, v)).sum())(u), 2 * u)


# ---------------------------------------------------------------- bad input


def test_bad_input_names_the_argument(data):
    X, y = data
    cases = [
        (lambda: linflow.diagonal_limit(X, y[:3], 0.1), r"diagonal_limit\(X, y.*y must"),
        (lambda: linflow.diagonal_limit(X[0], y, 0.1), r"diagonal_limit\(X, y.*X must"),
        (lambda: linflow.diagonal_limit(X.T, X[0], 0.1), r"diagonal_limit\(X.*n < d"),
        (lambda: linflow.diagonal_limit(np.ones((4, 8)), y, 0.1), r"diagonal_limit\(X.*rank"),
        (lambda: linflow.diagonal_limit(X, y, 0.0), r"diagonal_limit\(\.\.\., alpha"),
        (lambda: linflow.diagonal_limit(X, y, [1.0, -1.0]), r"diagonal_limit\(\.\.\., alpha"),
        (lambda: linflow.diagonal_limit(X, y, np.nan), r"diagonal_limit\(\.\.\., alpha"),
        (lambda: linflow.diagonal_limit(X * np.nan, y, 1.0), r"diagonal_limit\(\.\.\., X"),
        (lambda: linflow.diagonal_limit(X, y * np.inf, 1.0), r"diagonal_limit\(\.\.\., y"),
        (lambda: linflow.diagonal_limit(X, y, 1.0, depth=1), r"diagonal_limit\(.*depth"),
        (lambda: linflow.diagonal_limit(X, y, 1.0, depth=2.0), r"diagonal_limit\(.*depth"),
        (lambda: linflow.diagonal_objective(X, y[:3]), r"diagonal_objective\(X, y.*y must"),
        (lambda: linflow.diagonal_objective(X, y * np.nan), r"diagonal_objective\(\.\.\., y"),
        (lambda: linflow.diagonal_objective(X, y, depth=True), r"diagonal_objective\(.*depth"),
        (lambda: linflow.diagonal_weights(0.0, 8), r"diagonal_weights\(\.\.\., alpha"),
        (lambda: linflow.diagonal_weights(np.nan, 8), r"diagonal_weights\(\.\.\., alpha"),
        (lambda: linflow.diagonal_weights(0.1, 0), r"diagonal_weights\(alpha, d"),
        (lambda: linflow.diagonal_weights(0.1, 8, dtype=int), r"diagonal_weights\(.*dtype"),
        (lambda: linflow.diagonal_beta(np.ones(3)), r"diagonal_beta\(params"),
        (lambda: linflow.diagonal_beta((np.ones(3), np.ones(4))), r"diagonal_beta\(params"),
        (lambda: linflow.saddle_to_saddle(X, y[:3]), r"saddle_to_saddle\(X, y.*y must"),
        (lambda: linflow.saddle_to_saddle(X, y * np.nan), r"saddle_to_saddle\(\.\.\., y"),
        (lambda: linflow.saddle_to_saddle(X, y, max_jumps=0), r"saddle_to_saddle\(.*max_jumps"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_traced_alpha_is_checked_inside_jit(data):
    X, y = data
    with pytest.raises(RuntimeError, match="alpha"):
        jax.jit(lambda a: linflow.diagonal_limit(X, y, a))(-1.0)
    with pytest.raises(RuntimeError, match="alpha"):
        jax.jit(lambda a: linflow.diagonal_weights(a, 3))(0.0)


# ---------------------------------------------------------------- benchmark smoke test


def test_benchmark_quick(tmp_path):
    path = Path(__file__).parent.parent / "benchmarks" / "diagonal.py"
    spec = importlib.util.spec_from_file_location("diagonal_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    payload = module.main(["--quick", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "diagonal_quick.json").read_text()) == payload
    assert (tmp_path / "diagonal_quick.png").stat().st_size > 0
    error = np.asarray(payload["error_exact"])  # (n, alpha)
    assert error.shape == (len(payload["config"]["n"]), len(payload["config"]["alphas"]))
    assert error[-1, 0] < 1e-3 < error[-1, -1]  # the rich regime recovers the teacher
    np.testing.assert_allclose(error[:, -1], payload["error_min_l2"], rtol=1e-3)
    for flow in payload["flows"]:
        assert max(flow["relative_diff_vs_exact"]) < 1e-2
