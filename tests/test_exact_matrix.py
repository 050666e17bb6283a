"""Matrix closed forms (zero- and lambda-balanced two-layer), depth-D aligned modes, dispatch."""

import importlib.util
import json
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import data_task, eps, random_orthogonal, whitened_task
from scipy.integrate import solve_ivp
from test_exact import integrate

import linflow

TS = jnp.array([0.0, 0.4, 1.5, 4.0, 12.0, 40.0])
TS_INF = jnp.concatenate([TS, jnp.array([jnp.inf])])
TAU = 1.3


def invariants(weights):
    """Gauge-invariant blocks of $QQ^\\top$: $W_2W_1$, $W_1^\\top W_1$, $W_2W_2^\\top$."""
    w1, w2 = weights
    return w2 @ w1, jnp.swapaxes(w1, -1, -2) @ w1, w2 @ jnp.swapaxes(w2, -1, -2)


def rel_err(x, y) -> float:
    """Largest entry of x - y relative to the largest of y, over matching leaves (float64)."""
    return max(
        float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))
        for a, b in zip(jax.tree.leaves(x), (np.asarray(b, np.float64) for b in jax.tree.leaves(y)))
    )


# (m, d, hidden, s, regimes): each regime is (scheme kwargs, expected closed form, limit rank).
GROUPS = {
    "m<d": (
        3,
        4,
        3,
        (3.0, 2.0, 1.0),
        [
            ({"scheme": "balanced", "scale": 0.3}, "zero-balanced two-layer"),
            ({"scheme": "lambda_balanced", "lam": 0.5, "scale": 0.3}, "lambda-balanced two-layer"),
            ({"scheme": "lambda_balanced", "lam": -0.4, "scale": 1.0}, "lambda-balanced two-layer"),
        ],
    ),
    # h = m > d: the zero-balanced start has rank 3 < h; lambda > 0 grows an output direction.
    "m>d": (
        4,
        3,
        4,
        (2.5, 1.5, 0.7),
        [
            ({"scheme": "balanced", "scale": 0.2}, "zero-balanced two-layer"),
            ({"scheme": "lambda_balanced", "lam": 0.8, "scale": 0.2}, "lambda-balanced two-layer"),
        ],
    ),
    # h = 2 < rank of the task: only the top two modes are learned.
    "h<k": (
        3,
        4,
        2,
        (3.0, 2.0, 1.0),
        [
            ({"scheme": "balanced", "scale": 0.1}, "zero-balanced two-layer"),
            ({"scheme": "lambda_balanced", "lam": -0.3, "scale": 1.0}, "lambda-balanced two-layer"),
        ],
    ),
}


@pytest.fixture(scope="module")
def group_flows():
    """Per group: the task, the starts of each regime and one gradient flow of all of them."""
    cache = {}

    def get(group):
        if group not in cache:
            m, d, hidden, s, regimes = GROUPS[group]
            task = whitened_task(jax.random.key(0), m=m, d=d, s=s)
            starts = [
                linflow.init_weights(jax.random.key(i + 1), task, hidden, batch=(2,), **kwargs)
                for i, (kwargs, _) in enumerate(regimes)
            ]
            # One flow for every regime: one compilation.
            joint = tuple(jnp.concatenate(ws, axis=0) for ws in zip(*starts))
            flow = linflow.gradient_flow(task, joint, TS, tau=TAU, rtol=1e-11, atol=1e-13)
            cache[group] = task, starts, flow
        return cache[group]

    return get


@pytest.mark.parametrize("group", GROUPS)
def test_riccati_forms_match_gradient_flow(group, group_flows):
    m, d, hidden, _, regimes = GROUPS[group]
    task, starts, flow = group_flows(group)
    U, sv, V = task.modes()
    r = min(hidden, m, d)
    limit = (U[:, :r] * sv[None, :r]) @ V[:, :r].T
    for i, ((kwargs, name), w0) in enumerate(zip(regimes, starts)):
        exact = linflow.exact_flow(task, w0, TS_INF, tau=TAU)
        assert exact.stats["closed_form"] == name
        ref = tuple(w[:, 2 * i : 2 * i + 2] for w in flow.weights)
        got = tuple(w[:-1] for w in exact.weights)
        assert rel_err(invariants(got), invariants(ref)) < 1e-8, kwargs
        # t = 0 returns the start itself, t = inf the best rank-r approximation of sigma_yx.
        assert rel_err(tuple(w[0] for w in exact.weights), w0) < 1e-12
        assert rel_err(exact.product()[-1], jnp.broadcast_to(limit, (2, m, d))) < 1e-12
        # The imbalance is conserved exactly: lambda I at all times.
        lam = kwargs.get("lam", 0.0)
        assert np.allclose(exact.balance()[0], lam * jnp.eye(hidden), atol=1e-12)


def test_lambda_to_zero_limit_is_the_zero_balanced_form(group_flows):
    task = group_flows("m<d")[0]  # same shapes as there: the compiled solves are reused
    balanced = linflow.init_weights(
        jax.random.key(4), task, 3, scheme="balanced", scale=0.2, batch=(2,)
    )
    zero = linflow.exact_flow(task, balanced, TS_INF, tau=TAU)
    assert zero.stats["closed_form"] == "zero-balanced two-layer"
    # Starts with small lambda converge to the balanced one, and so do their solutions, ~ lambda.
    errors = []
    for lam in (1e-3, 1e-5):
        start = linflow.init_weights(
            jax.random.key(4), task, 3, scheme="lambda_balanced", lam=lam, scale=0.2, batch=(2,)
        )
        traj = linflow.exact_flow(task, start, TS_INF, tau=TAU)
        assert traj.stats["closed_form"] == "lambda-balanced two-layer"
        errors.append(rel_err(invariants(traj.weights), invariants(zero.weights)))
    assert errors[0] < 0.1 and errors[1] < 0.015 * errors[0]


def test_riccati_forms_are_jit_and_vmap_safe(group_flows):
    task, starts, _ = group_flows("m<d")
    for w0 in (starts[0], starts[2]):  # zero- and lambda-balanced
        traj = linflow.exact_flow(task, w0, TS_INF, tau=TAU)
        form = next(f for f in linflow.CLOSED_FORMS if f.name == traj.stats["closed_form"])

        @jax.jit
        @jax.vmap
        def one(w1, w2, form=form):
            return form.solve(task, (w1, w2), TS_INF, jnp.asarray(TAU), 1e-12)

        mapped = one(*w0)
        assert rel_err(tuple(jnp.swapaxes(w, 0, 1) for w in mapped), traj.weights) < 1e-12


@pytest.mark.parametrize("depth", [3, 4])
def test_deep_mode_matches_integration(depth):
    s, tau = 2.0, 1.3
    t = np.array([0.0, 0.5, 3.0, 30.0, 300.0, np.inf])
    u0 = np.array([1e-5, 0.05, 1.2, 2.5, 40.0, 0.0])  # below s, above s (large starts), zero
    u = linflow.deep_mode(t[None, :], s, u0[:, None], tau=tau, depth=depth)
    for row, start in zip(u, u0[:5]):
        sol = solve_ivp(
            lambda _, y: [depth * y[0] ** (2 - 2 / depth) * (s - y[0]) / tau],
            (0, t[-2]),
            [start],
            t_eval=t[:-1],
            method="DOP853",
            rtol=1e-13,
            atol=1e-16,
        )
        assert np.allclose(row[:-1], sol.y[0], rtol=1e-9, atol=0)
    assert np.all(u[:5, -1] == s) and np.all(u[5] == 0.0)  # t = inf; u0 = 0 stays put
    # time_to_learn is its inverse.
    half = linflow.time_to_learn(s, u0[:2], tau=tau, depth=depth)
    assert np.allclose(linflow.deep_mode(half, s, u0[:2], tau, depth), s / 2, rtol=1e-10)
    # jit and vmap.
    mapped = jax.vmap(jax.jit(partial(linflow.deep_mode, depth=depth)), in_axes=(None, None, 0))(
        2.0, s, jnp.asarray(u0)
    )
    assert np.allclose(mapped, linflow.deep_mode(2.0, s, u0, depth=depth), rtol=1e-14)


def test_deep_mode_low_depths_and_bad_depth():
    assert float(linflow.deep_mode(1.0, 2.0, 0.1, depth=2)) == float(
        linflow.saxe_deep(1.0, 2.0, 0.1)
    )
    assert float(linflow.deep_mode(1.0, 2.0, 0.1, depth=1)) == float(linflow.shallow(1.0, 2.0, 0.1))
    with pytest.raises(ValueError, match="depth=0"):
        linflow.deep_mode(1.0, 2.0, 0.1, depth=0)


@pytest.mark.parametrize("hidden", [(3, 3), (4, 5, 3)])
def test_aligned_deep_matches_gradient_flow(hidden):
    task = whitened_task(jax.random.key(7), m=3, d=4)
    scale = jnp.array([0.5, 0.4, 0.3])
    w0 = linflow.init_weights(
        jax.random.key(8), task, hidden, scheme="aligned", scale=scale, batch=(2,)
    )
    exact = linflow.exact_flow(task, w0, TS_INF, tau=TAU)
    assert exact.stats["closed_form"] == "aligned balanced deep"
    flow = linflow.gradient_flow(task, w0, TS, tau=TAU, rtol=1e-11, atol=1e-13)
    assert rel_err(tuple(w[:-1] for w in exact.weights), flow.weights) < 1e-8
    assert rel_err(tuple(w[0] for w in exact.weights), w0) < 1e-14
    assert rel_err(exact.product()[-1], jnp.broadcast_to(task.sigma_yx, (2, 3, 4))) < 1e-12
    u = exact.mode_strengths(task)
    expected = linflow.deep_mode(
        TS_INF[:, None, None], task.modes()[1], scale ** len(w0), TAU, len(w0)
    )
    assert np.allclose(u, expected, rtol=1e-12)


def test_dispatch_measures_lambda_with_a_tolerance(group_flows):
    task, starts, _ = group_flows("m<d")
    w1, w2 = starts[1]  # lambda = 0.5
    nudged = (w1, w2 + 1e-9 * jax.random.normal(jax.random.key(20), w2.shape))
    with pytest.raises(ValueError, match="lambda-balanced two-layer: not balanced"):
        linflow.exact_flow(task, nudged, TS_INF, tau=TAU)
    loose = linflow.exact_flow(task, nudged, TS_INF, tau=TAU, rtol=1e-6)
    assert loose.stats["closed_form"] == "lambda-balanced two-layer"
    exact = linflow.exact_flow(task, starts[1], TS_INF, tau=TAU)
    assert rel_err(invariants(loose.weights), invariants(exact.weights)) < 1e-7


def test_dispatch_refuses_what_no_form_solves():
    task = whitened_task(jax.random.key(9), m=3, d=4)
    gaussian = linflow.init_weights(jax.random.key(10), task, 3, scale=0.3)
    with pytest.raises(ValueError, match="zero-balanced two-layer: not balanced"):
        linflow.exact_flow(task, gaussian, TS)
    data = data_task(jax.random.key(12))
    balanced = linflow.init_weights(jax.random.key(13), data, 3, scheme="balanced", scale=0.3)
    with pytest.raises(ValueError, match="lambda-balanced two-layer: needs whitened inputs"):
        linflow.exact_flow(data, balanced, TS)
    deep = linflow.init_weights(jax.random.key(14), task, (3, 3), scheme="balanced", scale=0.3)
    with pytest.raises(ValueError, match="aligned balanced deep: not aligned"):
        linflow.exact_flow(task, deep, TS)
    unbalanced = linflow.init_weights(
        jax.random.key(14), task, (3, 3), scheme="aligned", scale=0.3, lam=0.1
    )
    with pytest.raises(ValueError, match="aligned balanced deep: not balanced"):
        linflow.exact_flow(task, unbalanced, TS)


def test_kernels_from_the_closed_form(group_flows):
    task, starts, flow = group_flows("m<d")
    traj = linflow.exact_flow(task, starts[0], TS_INF, tau=TAU)
    traj = linflow.Trajectory(traj.ts, tuple(w[:, 0] for w in traj.weights))
    X = jax.random.normal(jax.random.key(17), (5, 4))
    w1, w2 = (w[3] for w in traj.weights)
    # NTK against the Jacobian of the outputs with respect to all weights.
    jac = jax.jacobian(lambda ws: (X @ (ws[1] @ ws[0]).T).T.reshape(-1))((w1, w2))
    flat = jnp.concatenate([j.reshape(j.shape[0], -1) for j in jac], axis=1)
    assert np.allclose(linflow.ntk((w1, w2), X), flat @ flat.T, rtol=1e-12, atol=1e-12)
    kernel = linflow.ntk(traj.weights, X)
    assert kernel.shape == (TS_INF.shape[0], 15, 15)
    expected = jnp.kron(jnp.eye(3), X @ w1.T @ w1 @ X.T) + jnp.kron(w2 @ w2.T, X @ X.T)
    assert np.allclose(kernel[3], expected, rtol=1e-12, atol=1e-13)
    # Representations and test predictions are gauge invariant: exact equals flow.
    flow_weights = tuple(w[:, 0] for w in flow.weights)
    assert (
        rel_err(
            linflow.representational_similarity(traj.weights)[:-1],
            linflow.representational_similarity(flow_weights),
        )
        < 1e-8
    )
    rsm = linflow.representational_similarity(traj.weights, X)
    assert np.allclose(rsm[3], X @ w1.T @ w1 @ X.T, rtol=1e-12)
    pred = linflow.predict(traj.weights, X)
    assert rel_err(pred[:-1], linflow.predict(flow_weights, X)) < 1e-8
    assert np.allclose(pred[-1], X @ task.sigma_yx.T, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="ntk\\(..., X=...\\) must have shape"):
        linflow.ntk(traj.weights, X.T)
    with pytest.raises(ValueError, match="layer=3"):
        linflow.representational_similarity(traj.weights, layer=3)


def test_solve_uses_the_rank_the_check_accepted():
    # A zero-balanced start with a third direction of weight 1e-10: at rtol = 1e-6 the check
    # accepts it as rank 2 (Σyx has only two nonzero singular values), and the solve must use
    # rank 2 too (with its own tighter tolerance it took rank 3 and returned NaN).
    task = linflow.Task(jnp.diag(jnp.array([3.0, 2.0, 0.0])))
    a, b, c = (np.linalg.qr(np.random.default_rng(i).standard_normal((3, 3)))[0] for i in range(3))
    sv = np.array([0.1, 0.05, 1e-10])
    weights0 = (jnp.asarray(a * sv @ b.T), jnp.asarray(c * sv @ a.T))
    ts = jnp.array([0.0, 1.0, 5.0])
    exact = linflow.exact_flow(task, weights0, ts, rtol=1e-6)
    assert exact.stats["closed_form"] == "zero-balanced two-layer"
    flow = linflow.gradient_flow(task, weights0, ts, rtol=1e-10, atol=1e-12)
    assert np.all(np.isfinite(exact.product()))
    assert np.max(np.abs(exact.product() - flow.product())) < 1e-8


# Issue 19: no unnecessary refusals ---------------------------------------------------------


def tolerance(dtype) -> float:
    return 1e-9 if np.dtype(dtype) == np.float64 else 1e-5


def saddle_start(task, sigma, key):
    r"""A square zero-balanced start whose relative rotation $R_1'^\top R_2'$ has determinant
    $-1$: $Z_a$ is singular and the flow converges to a saddle (mode 3 is never learned)."""
    U, _, V = task.modes()
    k1, k2, k3 = jax.random.split(key, 3)
    r1 = random_orthogonal(k1, 3)
    g = random_orthogonal(k2, 3)
    g = g * jnp.where(jnp.linalg.det(g) > 0, -1.0, 1.0)  # an improper rotation
    o = random_orthogonal(k3, 3)
    sigma = jnp.asarray(sigma)
    w1 = o * sigma[None, :] @ (V @ r1 @ g).T
    w2 = (U @ r1) * sigma[None, :] @ o.T
    return w1, w2


# name -> (m, d, singular values, hidden, scheme kwargs, times)
CASES = {
    # min(m, d) < h <= m with lambda > 0 (and h <= d, lambda < 0): +-lambda/2 tie at the cut.
    "wide, lambda > 0": (5, 2, [2.0, 0.7], 4, {"scheme": "lambda_balanced", "lam": 0.5}, 1.0),
    "wide, lambda < 0": (2, 5, [2.0, 0.7], 4, {"scheme": "lambda_balanced", "lam": -0.5}, 1.0),
    "wide, m = 6, d = 3": (
        6,
        3,
        [2.0, 0.7, 0.3],
        4,
        {"scheme": "lambda_balanced", "lam": 1.0},
        1.0,
    ),
    # The hidden width cuts through the tie s = 1, 1 of the Saxe hierarchy.
    "hierarchy, h = 3": (None, None, None, 3, {"scheme": "balanced"}, 1.0),
    # A rank-3 start while Sigma_yx has rank 2 (its third mode decays algebraically).
    "rank 3 start, rank 2 task": (3, 4, [2.0, 1.0], 3, {"scheme": "balanced"}, 1.0),
    # float32 needs the small gap K/2 - |lambda|/2 = 2 s^2 / (K + |lambda|) without cancellation.
    "lambda = -50, d > m": (2, 5, [1.0, 0.5], 2, {"scheme": "lambda_balanced", "lam": -50.0}, 0.05),
    "saddle manifold": (3, 3, [3.0, 2.0, 0.5], 3, None, 1.0),
}


def case_start(name, dtype):
    m, d, s, hidden, kwargs, time_scale = CASES[name]
    if m is None:
        task = linflow.tasks.saxe_hierarchy(dtype=dtype)[0]
    else:
        task = linflow.tasks.random_task(jax.random.key(0), s, m, d, dtype=dtype)
    if kwargs is None:
        w0 = tuple(w.astype(dtype) for w in saddle_start(task, [0.4, 0.3, 0.2], jax.random.key(3)))
    else:
        w0 = linflow.init_weights(jax.random.key(1), task, hidden, scale=0.3, **kwargs)
    ts = jnp.array([0.0, 0.3, 1.0, 3.0, 10.0, 30.0], dtype) * time_scale
    if kwargs is None:  # the reference leaves the saddle manifold by rounding: stay early
        ts = ts[:5] / 2.5
    return task, w0, ts


@pytest.mark.parametrize("name", CASES)
def test_issue_19_cases_match_integration(name, dtype):
    task, w0, ts = case_start(name, dtype)
    traj = linflow.exact_flow(task, w0, jnp.concatenate([ts, jnp.array([jnp.inf], dtype)]))
    expected = "zero" if CASES[name][4] in (None, {"scheme": "balanced"}) else "lambda"
    assert traj.stats["closed_form"].startswith(expected), traj.stats
    ref = integrate(task, w0, ts)
    got = tuple(w[:-1] for w in traj.weights)
    assert rel_err(invariants(got), invariants(ref)) < tolerance(dtype)
    assert traj.weights[0].dtype == dtype
    lam = CASES[name][4].get("lam", 0.0) if CASES[name][4] else 0.0
    hidden = w0[0].shape[0]
    assert np.allclose(
        traj.balance()[0], lam * jnp.eye(hidden), atol=100 * eps(dtype) * (1 + abs(lam))
    )
    # t = inf: every mode that the width allows is learned, except on the saddle manifold.
    U, s, V = (np.asarray(x, np.float64) for x in task.modes())
    learned = min(hidden, int(np.sum(s > 1e-6)))
    if name == "saddle manifold":
        learned = 2
    if name == "hierarchy, h = 3":  # which direction of the tie s = 1, 1: the start decides
        sv = np.linalg.svd(np.asarray(traj.product()[-1], np.float64), compute_uv=False)
        assert np.allclose(sv[:4], [np.sqrt(7), np.sqrt(3), 1.0, 0.0], atol=20 * eps(dtype))
        long = integrate(task, w0, [0.0, 60.0])
        limit = tuple(w[-1:] for w in traj.weights)
        assert rel_err(invariants(limit), invariants(tuple(w[-1:] for w in long))) < 1e3 * eps(
            dtype
        )
    else:
        limit = (U[:, :learned] * s[:learned]) @ V[:, :learned].T
        assert np.allclose(traj.product()[-1], limit, atol=20 * eps(dtype) * s[0])


def test_saddle_limit_is_a_fixed_point_above_the_minimum():
    task, w0, _ = case_start("saddle manifold", jnp.float64)
    end = linflow.exact_flow(task, w0, jnp.array([0.0, jnp.inf]))
    w = tuple(x[-1] for x in end.weights)
    grads = linflow.gradients(task, w)
    assert max(float(jnp.max(jnp.abs(g))) for g in grads) < 1e-12
    assert float(linflow.loss(task, w) - task.loss_min) == pytest.approx(0.5 * 0.5**2, rel=1e-12)


def test_aligned_deep_starts_above_s(dtype):
    """Large aligned balanced starts (u_i > s_i) decay to s_i; modes below s_i grow."""
    task = linflow.tasks.random_task(jax.random.key(2), [3.0, 1.5, 0.5], 3, 4, dtype=dtype)
    scale = jnp.array([1.6, 0.5, 1.2], dtype)  # u0 = scale^3 = (4.1, 0.125, 1.73)
    w0 = linflow.init_weights(jax.random.key(8), task, (3, 3), scheme="aligned", scale=scale)
    ts = jnp.array([0.0, 0.1, 0.5, 2.0, 8.0], dtype)
    traj = linflow.exact_flow(task, w0, jnp.concatenate([ts, jnp.array([jnp.inf], dtype)]), tau=1.3)
    assert traj.stats["closed_form"] == "aligned balanced deep"
    ref = linflow.Trajectory(ts, integrate(task, w0, ts, tau=1.3))
    assert rel_err(traj.product()[:-1], ref.product()) < tolerance(dtype)
    assert np.allclose(traj.product()[-1], task.sigma_yx, atol=20 * eps(dtype) * 3.0)


@pytest.mark.parametrize("depth", [3, 5])
def test_deep_mode_derivatives_by_the_implicit_function_theorem(depth):
    """d u / d(t, s, u0, tau) against central differences, below s, above s and at s = 0."""
    for u0, s in ((0.05, 2.0), (3.0, 2.0), (0.4, 0.0)):
        args = (0.7, s, u0, 1.3)
        grads = jax.grad(lambda *a: linflow.deep_mode(*a, depth=depth), argnums=(0, 1, 2, 3))(*args)
        for i, grad in enumerate(grads):
            if s == 0.0 and i == 1:
                continue  # s >= 0: no central difference at s = 0
            h = 1e-6
            up, down = list(args), list(args)
            up[i] += h
            down[i] -= h
            fd = (linflow.deep_mode(*up, depth=depth) - linflow.deep_mode(*down, depth=depth)) / (
                2 * h
            )
            assert float(grad) == pytest.approx(float(fd), rel=1e-6, abs=1e-10), (u0, s, i)


def test_deep_mode_with_s_zero_decays_algebraically():
    t = np.array([0.0, 0.5, 4.0, 40.0])
    for depth in (3, 4):
        sol = solve_ivp(
            lambda _, u: [-depth * u[0] ** (3 - 2 / depth) / 1.3],
            (0, t[-1]),
            [0.8],
            t_eval=t,
            method="DOP853",
            rtol=1e-13,
            atol=1e-16,
        )
        got = linflow.deep_mode(t, 0.0, 0.8, tau=1.3, depth=depth)
        assert np.allclose(got, sol.y[0], rtol=1e-9)
        assert float(linflow.deep_mode(jnp.inf, 0.0, 0.8, depth=depth)) == 0.0


@pytest.mark.parametrize("depth", [5, 10])
def test_preconditioned_gradient_at_a_rank_deficient_product(depth, dtype):
    """Singular values at rounding level count as zero: the velocity of an exactly rank-1
    product is the one of the exact rank-1 matrix (not off by eps^(2/N))."""
    u = jnp.asarray([[0.6], [0.8], [0.0]], dtype)
    v = jnp.asarray([[1.0], [0.0], [0.0], [0.0]], dtype)
    w = 2.0 * u @ v.T  # rank 1, built so its SVD has rounding-level singular values
    rot = random_orthogonal(jax.random.key(1), 4).astype(dtype)
    w = w @ rot
    g = jax.random.normal(jax.random.key(2), w.shape, dtype)
    got = linflow.preconditioned_gradient(w, g, depth)
    # Exact: with W = s u v^T, (W W^T)^a G (W^T W)^b keeps only the u (resp. v) parts.
    uu, vv = u @ u.T, (rot.T @ v) @ (rot.T @ v).T
    s2 = 4.0
    expected = sum(
        (s2 ** ((j - 1) / depth) * uu if j > 1 else jnp.eye(3, dtype=dtype))
        @ g
        @ (s2 ** ((depth - j) / depth) * vv if j < depth else jnp.eye(4, dtype=dtype))
        for j in range(1, depth + 1)
    )
    assert rel_err(got, expected) < 100 * eps(dtype)


def test_exact_accuracy_benchmark_quick(tmp_path):
    """Smoke test of `benchmarks/exact_accuracy.py --quick` (its own outputs, sane numbers)."""
    path = Path(__file__).parent.parent / "benchmarks" / "exact_accuracy.py"
    spec = importlib.util.spec_from_file_location("exact_accuracy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--quick", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "exact_accuracy_quick.json").read_text())["cases"] == rows
    assert (tmp_path / "exact_accuracy_quick.png").stat().st_size > 0
    for row in rows:
        assert row["float64"] < 1e-9 and row["float64_inf"] < 1e-12, row
        assert row["float32"] < 1e-5 and row["float32_inf"] < 1e-5, row
