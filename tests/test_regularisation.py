"""Weight decay (engines and closed forms) and the modified flow of gradient descent."""

import importlib.util
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import data_task, eps, max_abs_diff, whitened_task
from scipy.integrate import solve_ivp

import linflow
from linflow._exact.decay import fixed_point

TIGHT = {"rtol": 1e-11, "atol": 1e-13}
GAMMA = 0.3


def numpy_gradients(weights, sigma_yx, sigma_xx):
    """dL/dW_l = (W_N ... W_{l+1})^T (W Sigma_xx - Sigma_yx) (W_{l-1} ... W_1)^T, in NumPy."""
    prefix = [np.eye(weights[0].shape[-1])]
    for w in weights:
        prefix.append(w @ prefix[-1])
    back = prefix[-1] @ sigma_xx - sigma_yx
    grads = [None] * len(weights)
    for l in range(len(weights) - 1, -1, -1):
        grads[l] = back @ prefix[l].T
        back = weights[l].T @ back
    return grads


def numpy_descent(task, weights0, steps, lr, gamma):
    """W_l <- W_l - lr (dL/dW_l + gamma W_l), one initialisation, float64."""
    syx, sxx = np.asarray(task.sigma_yx, np.float64), np.asarray(task.sigma_xx, np.float64)
    weights = [np.asarray(w, np.float64) for w in weights0]
    for _ in range(steps):
        grads = numpy_gradients(weights, syx, sxx)
        weights = [w - lr * (g + gamma * w) for w, g in zip(weights, grads)]
    return weights


def mild_task(dtype):
    """A non-whitened task (m = 3, d = 4) whose Sigma_xx has eigenvalues in [0.08, 2.2]: GD at
    lr = 0.05 is far from unstable, so float32 rounding is not amplified."""
    task = data_task(jax.random.key(0), n=10, d=4, m=3)
    return linflow.Task(task.sigma_yx / 2, task.sigma_xx / 3).astype(dtype)


@pytest.mark.parametrize("depth", [2, 3])
def test_descent_with_decay_matches_a_numpy_loop(dtype, depth):
    task = mild_task(dtype)
    hidden = 5 if depth == 2 else (5, 4)
    w0 = linflow.init_weights(jax.random.key(1), task, hidden, scale=0.5, batch=(2,))
    traj = linflow.gradient_descent(task, w0, steps=30, lr=0.05, weight_decay=GAMMA)
    assert traj.weights[0].dtype == dtype
    for i in range(2):
        expected = numpy_descent(task, [w[i] for w in w0], 30, 0.05, GAMMA)
        for w, e in zip(traj.weights, expected):
            np.testing.assert_allclose(
                w[-1, i], e, rtol=0, atol=1e-12 if dtype == "float64" else 30 * eps(dtype)
            )
    plain = linflow.gradient_descent(task, w0, steps=30, lr=0.05)
    assert max_abs_diff(plain.weights, traj.weights) > 0.01  # the decay matters


def test_decay_of_an_objective_is_the_penalty_on_all_leaves():
    """weight_decay on an Objective equals adding gamma/2 ||theta||^2 to its loss by hand."""
    target = jnp.array([[1.0, -0.5], [0.3, 2.0]])

    def loss(p):
        return 0.5 * jnp.sum((p["a"] @ p["b"] - target) ** 2)

    def penalised(p):
        return loss(p) + 0.5 * GAMMA * (jnp.sum(p["a"] ** 2) + jnp.sum(p["b"] ** 2))

    key_a, key_b = jax.random.split(jax.random.key(0))
    p0 = {"a": 0.5 * jax.random.normal(key_a, (3, 2, 2)), "b": jax.random.normal(key_b, (3, 2, 2))}
    decayed = linflow.Objective(loss, batch=(3,))
    by_hand = linflow.Objective(penalised, batch=(3,))
    gd = linflow.gradient_descent(decayed, p0, steps=20, lr=0.1, weight_decay=GAMMA)
    reference = linflow.gradient_descent(by_hand, p0, steps=20, lr=0.1)
    assert max_abs_diff(gd.weights, reference.weights) < 1e-13
    ts = jnp.array([0.0, 1.0, 3.0])
    flow = linflow.gradient_flow(decayed, p0, ts, weight_decay=GAMMA, **TIGHT)
    reference = linflow.gradient_flow(by_hand, p0, ts, **TIGHT)
    assert max_abs_diff(flow.weights, reference.weights) < 1e-9
    # lbfgs needs the loss: it sees the penalised one
    lbfgs = linflow.gradient_descent(
        decayed, p0, steps=5, optimizer=optax.lbfgs(), weight_decay=GAMMA
    )
    reference = linflow.gradient_descent(by_hand, p0, steps=5, optimizer=optax.lbfgs())
    assert max_abs_diff(lbfgs.weights, reference.weights) < 1e-10


def numpy_adam(task, weights0, steps, lr, coupled, decoupled, b1=0.9, b2=0.999, epsilon=1e-8):
    """Adam on dL/dW + coupled W, with the decoupled (AdamW) decay lr * decoupled * W."""
    syx, sxx = np.asarray(task.sigma_yx), np.asarray(task.sigma_xx)
    weights = [np.asarray(w, np.float64) for w in weights0]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    for k in range(1, steps + 1):
        grads = [g + coupled * w for g, w in zip(numpy_gradients(weights, syx, sxx), weights)]
        m = [b1 * mi + (1 - b1) * g for mi, g in zip(m, grads)]
        v = [b2 * vi + (1 - b2) * g**2 for vi, g in zip(v, grads)]
        weights = [
            w - lr * (mi / (1 - b1**k) / (np.sqrt(vi / (1 - b2**k)) + epsilon) + decoupled * w)
            for w, mi, vi in zip(weights, m, v)
        ]
    return weights


def test_adamw_is_decoupled_and_differs_from_adam_with_weight_decay():
    task = data_task(jax.random.key(0), n=10, d=4, m=3)
    w0 = linflow.init_weights(jax.random.key(1), task, 5, scale=0.5)
    lr, steps = 0.02, 40
    adamw = linflow.gradient_descent(
        task, w0, steps=steps, optimizer=optax.adamw(lr, weight_decay=GAMMA)
    )
    coupled = linflow.gradient_descent(
        task, w0, steps=steps, optimizer=optax.adam(lr), weight_decay=GAMMA
    )
    for w, e in zip(adamw.weights, numpy_adam(task, w0, steps, lr, 0.0, GAMMA)):
        np.testing.assert_allclose(w[-1], e, rtol=0, atol=1e-12)
    for w, e in zip(coupled.weights, numpy_adam(task, w0, steps, lr, GAMMA, 0.0)):
        np.testing.assert_allclose(w[-1], e, rtol=0, atol=1e-12)
    assert max_abs_diff(adamw.weights, coupled.weights) > 1e-3


def test_balance_decays_exponentially(dtype):
    """tau d/dt (W_(l+1)^T W_(l+1) - W_l W_l^T) = -2 gamma (...), any Sigma_xx and depth."""
    task = data_task(jax.random.key(0), n=10, d=4, m=3).astype(dtype)
    w0 = linflow.init_weights(jax.random.key(1), task, (4, 3), scale=0.6, batch=(2,))
    ts = jnp.array([0.0, 1.0, 2.5], dtype)
    tau = 1.5
    traj = linflow.gradient_flow(task, w0, ts, tau=tau, weight_decay=GAMMA)
    factor = jnp.exp(-2 * GAMMA * ts / tau).reshape(-1, 1, 1, 1)
    for b in traj.balance():
        assert np.abs(b[0]).max() > 0.1  # an unbalanced start
        tol = 1e-6 if dtype == "float64" else 3e-4
        np.testing.assert_allclose(b, b[:1] * factor, rtol=0, atol=tol * np.abs(b[0]).max())


def saxe_start(task, depth, scale, dtype):
    """A balanced aligned start of `depth` layers with one layer singular value per mode."""
    hidden = (3,) * (depth - 1) if depth > 2 else 3
    return linflow.init_weights(
        jax.random.key(2), task, hidden, scheme="aligned", scale=jnp.asarray(scale, dtype)
    )


@pytest.mark.parametrize("depth", [2, 3])
def test_aligned_balanced_modes_follow_the_closed_form(dtype, depth):
    """Modes of a balanced aligned start under decay follow deep_mode / saxe_deep with gamma;
    a mode with s <= gamma (two layers) or below threshold (three) decays to zero."""
    task = whitened_task(jax.random.key(0), m=3, d=4, s=(3.0, 2.0, 0.5)).astype(dtype)
    gamma = 0.8 if depth == 2 else 0.3
    # depth 3, g = gamma / s^(4/3): the third mode is past g_max (it always decays)
    scale = (0.2, 0.3, 0.6) if depth == 2 else (0.5, 0.55, 0.7)
    w0 = saxe_start(task, depth, scale, dtype)
    ts = jnp.array([0.0, 0.5, 1.5, 4.0, 10.0], dtype)
    traj = linflow.gradient_flow(task, w0, ts, tau=1.5, weight_decay=gamma)
    u = traj.mode_strengths(task)
    s = task.modes()[1]
    u0 = jnp.asarray(scale, dtype) ** depth
    closed = linflow.deep_mode(ts[:, None], s[None], u0[None], 1.5, depth=depth, weight_decay=gamma)
    if depth == 2:
        np.testing.assert_array_equal(
            closed, linflow.saxe_deep(ts[:, None], s[None], u0[None], 1.5, weight_decay=gamma)
        )
    tol = 1e-6 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(u, closed, rtol=0, atol=tol * 3)
    assert closed.dtype == dtype
    limit = fixed_point(s, depth, gamma)
    assert float(limit[2]) == 0.0 and float(u[-1, 2]) < 0.1 * float(u0[2])
    assert np.all(np.diff(u[:, 2]) < 0)
    np.testing.assert_allclose(u[-1, :2], limit[:2], rtol=1e-3)


def scalar_reference(ts, s, u0, depth, gamma, tau=1.0):
    """tau du/dt = D u^(2-2/D) (s - u) - D gamma u, by SciPy's DOP853 in log u."""

    def rhs(_, y):
        u = np.exp(y[0])
        return [depth * (u ** (1 - 2 / depth) * (s - u) - gamma) / tau]

    sol = solve_ivp(
        rhs, (0, ts[-1]), [np.log(u0)], t_eval=ts, method="DOP853", rtol=1e-13, atol=1e-13
    )
    return np.exp(sol.y[0])


CASES = [  # (s, gamma, u0)
    (2.0, 0.1, 0.05),  # grows to u*
    (2.0, 0.1, 3.0),  # decays from above to u*
    (1.0, 0.2, 0.002),  # depth >= 3: below the threshold s rho_-^D, decays to 0
    (1.0, 1.5, 0.5),  # past s (two layers) or g_max (deeper): decays to 0
    (3.0, 1e-6, 0.01),  # a tiny decay (the cancelling partial fractions)
]


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 6])
def test_deep_mode_with_decay_matches_the_integrated_mode(dtype, depth):
    ts = np.linspace(0.0, 30.0, 31)
    for s, gamma, u0 in CASES:
        u = linflow.deep_mode(jnp.asarray(ts, dtype), s, u0, depth=depth, weight_decay=gamma)
        assert u.dtype == dtype
        tol = 1e-9 if dtype == "float64" else 3e-5
        np.testing.assert_allclose(
            u, scalar_reference(ts, s, u0, depth, gamma), rtol=0, atol=tol * max(s, u0)
        )
        below_threshold = depth >= 3 and u0 == 0.002
        limit = 0.0 if below_threshold else fixed_point(s, depth, gamma)
        u_inf = linflow.deep_mode(jnp.inf, s, u0, depth=depth, weight_decay=gamma)
        np.testing.assert_allclose(u_inf, limit, rtol=10 * eps(dtype))


def test_decay_closed_form_edge_cases():
    t = jnp.array([0.0, 1.0, 5.0, jnp.inf])
    # s = gamma: tau du/dt = -2u^2
    np.testing.assert_allclose(
        linflow.saxe_deep(t, 1.0, 0.2, 2.0, weight_decay=1.0), 0.2 / (1 + 2 * 0.2 * t / 2.0)
    )
    below = linflow.saxe_deep(t, 1.0, 0.2, weight_decay=1.5)
    assert np.all(np.diff(below) < 0) and float(below[-1]) == 0.0
    np.testing.assert_allclose(linflow.saxe_deep(t, 3.0, 0.0, weight_decay=0.5), 0.0)
    np.testing.assert_allclose(
        linflow.saxe_deep(t, 3.0, 1e-3, weight_decay=0.5), linflow.saxe_deep(t, 2.5, 1e-3)
    )
    # u0 = 0 is a fixed point, also for s = 0
    for depth in (2, 3):
        s = jnp.array([[0.0, 2.0]])
        u = linflow.deep_mode(t[:, None], s, 0.0, depth=depth, weight_decay=0.1)
        np.testing.assert_array_equal(u, 0.0)
    # an array of decays including zero: the decay-free formula there
    gammas = jnp.array([0.0, 0.5])
    np.testing.assert_allclose(
        linflow.deep_mode(2.0, 3.0, 0.01, depth=3, weight_decay=gammas)[0],
        linflow.deep_mode(2.0, 3.0, 0.01, depth=3),
    )


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_time_to_learn_with_decay_reaches_the_fraction(depth):
    s, gamma, u0 = 2.0, 0.1, 0.05
    for f in (0.1, 0.5, 0.9):
        t = linflow.time_to_learn(s, u0, 1.5, depth=depth, fraction=f, weight_decay=gamma)
        u = linflow.deep_mode(t, s, u0, 1.5, depth=depth, weight_decay=gamma)
        np.testing.assert_allclose(u, f * fixed_point(s, depth, gamma), rtol=1e-10)
    if depth == 2:  # the closed form with s -> s - gamma
        np.testing.assert_allclose(
            linflow.time_to_learn(3.0, 1e-3, weight_decay=0.5), np.log(2499) / 5, rtol=1e-12
        )
    # depth 1: u0 above u* = s / (1 + gamma); deeper: the mode decays (s - gamma < 0, g > g_max)
    u0, gamma = (0.06, 1.0) if depth == 1 else (0.01, 0.2)
    with pytest.raises(Exception, match="needs a mode that learns"):
        linflow.time_to_learn(0.1, u0, depth=depth, weight_decay=gamma)


def test_closed_forms_compose_with_jit_grad_and_vmap():
    for depth in (2, 3):

        def u(gamma, depth=depth):
            return linflow.deep_mode(3.0, 2.0, 0.05, depth=depth, weight_decay=gamma)

        def t(gamma, depth=depth):
            return linflow.time_to_learn(2.0, 0.05, depth=depth, weight_decay=gamma)

        for f in (u, t):
            h = 1e-6
            np.testing.assert_allclose(
                jax.jit(jax.grad(f))(0.1), (f(0.1 + h) - f(0.1 - h)) / (2 * h), rtol=1e-6
            )
            gammas = jnp.array([0.0, 0.1, 0.2])
            np.testing.assert_allclose(jax.vmap(f)(gammas), [f(0.0), f(0.1), f(0.2)], rtol=1e-12)


@pytest.mark.parametrize("whitened", [False, True], ids=["data", "whitened"])
def test_exact_flow_with_decay_one_layer_relaxes_to_ridge_regression(dtype, whitened):
    if whitened:
        task = whitened_task(jax.random.key(0), m=3, d=4, s=(2.0, 1.0, 0.5)).astype(dtype)
    else:
        task = data_task(jax.random.key(0), n=10, d=4, m=3).astype(dtype)
    w0 = linflow.init_weights(jax.random.key(1), task, (), scale=0.5, batch=(2,))
    ts = jnp.array([0.0, 0.7, 3.0, jnp.inf], dtype)
    closed = linflow.exact_flow(task, w0, ts, tau=1.5, weight_decay=GAMMA)
    flow = linflow.gradient_flow(task, w0, ts[:-1], tau=1.5, weight_decay=GAMMA, **tight(dtype))
    assert closed.weights[0].dtype == dtype
    np.testing.assert_allclose(flow.weights[0], closed.weights[0][:-1], atol=100 * eps(dtype))
    sxx, syx = np.asarray(task.sigma_xx, np.float64), np.asarray(task.sigma_yx, np.float64)
    ridge = syx @ np.linalg.inv(sxx + GAMMA * np.eye(4))
    np.testing.assert_allclose(
        closed.weights[0][-1], np.broadcast_to(ridge, (2, 3, 4)), atol=100 * eps(dtype)
    )


def tight(dtype):
    return TIGHT if dtype == jnp.float64 else {"rtol": 1e-6, "atol": 1e-8}


@pytest.mark.parametrize(
    ("scheme", "hidden", "form"),
    [
        ("aligned", 3, "aligned two-layer"),
        ("balanced", 5, "zero-balanced two-layer"),  # not aligned, h > rank
        ("balanced", 2, "zero-balanced two-layer"),  # h below the number of modes
        ("aligned", (3, 3), "aligned balanced deep"),
    ],
)
def test_exact_flow_with_decay_matches_the_integrated_flow(dtype, scheme, hidden, form):
    """gamma = 0.5 lies between the singular values 3, 1 and 0.3: the last mode is not learned;
    t = inf gives the limit (s_i - gamma for the two-layer modes learned, 0 for the other)."""
    task = linflow.tasks.random_task(jax.random.key(0), [3.0, 1.0, 0.3], 4, 3).astype(dtype)
    w0 = linflow.init_weights(jax.random.key(1), task, hidden, scheme=scheme, scale=0.3, batch=(2,))
    ts = jnp.array([0.0, 0.5, 2.0, 10.0, jnp.inf], dtype)
    gamma = 0.5
    closed = linflow.exact_flow(task, w0, ts, weight_decay=gamma)
    assert closed.stats["closed_form"] == form
    flow = linflow.gradient_flow(task, w0, ts[:-1], weight_decay=gamma, **tight(dtype))
    size = float(jnp.max(jnp.abs(flow.product())))
    np.testing.assert_allclose(
        closed.product()[:-1], flow.product(), atol=(1e-9 if dtype == jnp.float64 else 1e-4) * size
    )
    # The limit: the product's singular values.
    limit = np.linalg.svd(np.asarray(closed.product()[-1], np.float64), compute_uv=False)
    depth = len(w0)
    expected = [float(fixed_point(s, depth, gamma)) for s in (3.0, 1.0, 0.3)]
    if form != "aligned balanced deep":
        assert expected == pytest.approx([2.5, 0.5, 0.0])
    np.testing.assert_allclose(limit[:, :3], np.broadcast_to(expected, (2, 3)), atol=1e-3 * size)


def test_exact_flow_with_decay_refuses_where_no_closed_form_exists():
    task = linflow.tasks.random_task(jax.random.key(0), [3.0, 1.0, 0.3], 4, 3)
    ts = jnp.array([0.0, 1.0])
    w0 = linflow.init_weights(jax.random.key(1), task, 3, scheme="lambda_balanced", lam=0.5)
    with pytest.raises(ValueError, match="no closed form with weight decay for lambda != 0"):
        linflow.exact_flow(task, w0, ts, weight_decay=0.1)
    linflow.exact_flow(task, w0, ts)  # without decay the lambda-balanced form applies
    # An aligned start with unbalanced modes (b = 2 a): solved without decay, not with it.
    w1, w2 = linflow.init_weights(jax.random.key(1), task, 3, scheme="aligned", scale=0.3)
    unbalanced = (w1 / 2, 2 * w2)
    assert linflow.exact_flow(task, unbalanced, ts).stats["closed_form"] == "aligned two-layer"
    with pytest.raises(ValueError, match="with weight_decay > 0 the modes need a"):
        linflow.exact_flow(task, unbalanced, ts, weight_decay=0.1)
    with pytest.raises(ValueError, match="exact_flow.*weight_decay"):
        linflow.exact_flow(task, unbalanced, ts, weight_decay=-0.1)
    with pytest.raises(ValueError, match="must be a scalar"):
        linflow.exact_flow(task, unbalanced, ts, weight_decay=jnp.array([0.1, 0.2]))


def test_exact_flow_with_decay_composes_with_jit_and_grad():
    task = linflow.tasks.random_task(jax.random.key(0), [3.0, 1.0, 0.3], 4, 3)
    w0 = linflow.init_weights(jax.random.key(1), task, 5, scheme="balanced", scale=0.3)
    ts = jnp.array([0.0, 1.0, 3.0])

    def loss(gamma):
        return linflow.exact_flow(task, w0, ts, weight_decay=gamma).loss(task)[-1]

    flow = linflow.gradient_flow(task, w0, ts, weight_decay=0.5, **TIGHT)
    np.testing.assert_allclose(jax.jit(loss)(0.5), flow.loss(task)[-1], rtol=1e-9)
    h = 1e-6
    np.testing.assert_allclose(
        jax.jit(jax.grad(loss))(0.5), (loss(0.5 + h) - loss(0.5 - h)) / (2 * h), rtol=1e-6
    )


def test_mode_flow_with_decay_and_modified_lr_equals_gradient_flow():
    task = data_task(jax.random.key(0), n=10, d=4, m=3)
    w0 = linflow.init_weights(jax.random.key(1), task, 5, scale=0.5, batch=(2,))
    ts = jnp.array([0.0, 1.0, 3.0])
    options = dict(tau=2.0, weight_decay=GAMMA, modified_lr=0.1, **TIGHT)
    flow = linflow.gradient_flow(task, w0, ts, **options)
    modes = linflow.mode_flow(task, w0, ts, **options)
    assert max_abs_diff(flow.weights, modes.weights) < 1e-8
    plain = linflow.gradient_flow(task, w0, ts, tau=2.0, weight_decay=GAMMA, **TIGHT)
    assert max_abs_diff(flow.weights, plain.weights) > 1e-3


ENGINES = {
    "gradient_descent": lambda task, w0, g: linflow.gradient_descent(
        task, w0, steps=20, lr=0.1, weight_decay=g
    ),
    "gradient_flow": lambda task, w0, g: linflow.gradient_flow(
        task, w0, jnp.array([0.0, 2.0]), weight_decay=g, rtol=1e-12, atol=1e-14
    ),
    "mode_flow": lambda task, w0, g: linflow.mode_flow(
        task, w0, jnp.array([0.0, 2.0]), weight_decay=g, rtol=1e-12, atol=1e-14
    ),
    "modified_flow": lambda task, w0, g: linflow.gradient_flow(
        task, w0, jnp.array([0.0, 2.0]), tau=10.0, modified_lr=g, rtol=1e-12, atol=1e-14
    ),
}


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_compose_with_jit_grad_and_vmap_over_the_rate(engine, problem):
    task, w0 = problem

    def final_loss(g):
        return ENGINES[engine](task, w0, g).loss(task)[-1]

    eager = final_loss(0.1)
    vmapped = jax.jit(jax.vmap(final_loss))(jnp.array([0.0, 0.1]))
    np.testing.assert_allclose(vmapped[1], eager, rtol=1e-9)
    np.testing.assert_allclose(vmapped[0], final_loss(0.0), rtol=1e-9)  # traced 0 = default
    assert not np.allclose(vmapped[0], vmapped[1])
    h = 1e-5
    grad = jax.grad(lambda g: jnp.sum(final_loss(g)))(0.1)
    reference = jnp.sum(final_loss(0.1 + h) - final_loss(0.1 - h)) / (2 * h)
    np.testing.assert_allclose(grad, reference, rtol=1e-6)


def gd_gaps(task, w0, lrs, horizon, **decay):
    """max |W_GD - W_flow| over the saves, against the plain and the modified flow."""
    plain, modified = [], []
    for lr in lrs:
        steps = int(round(horizon / lr))
        gd = linflow.gradient_descent(task, w0, steps=steps, lr=lr, save_every=steps // 4, **decay)
        options = dict(tau=1 / lr, rtol=1e-11, atol=1e-13, **decay)
        flow = linflow.gradient_flow(task, w0, gd.ts, **options)
        mflow = linflow.gradient_flow(task, w0, gd.ts, modified_lr=lr, **options)
        plain.append(max_abs_diff(gd.weights, flow.weights))
        modified.append(max_abs_diff(gd.weights, mflow.weights))
    return np.array(plain), np.array(modified)


@pytest.mark.parametrize("decay", [{}, {"weight_decay": 0.1}])
def test_descent_follows_the_modified_flow_to_second_order(decay):
    """Barrett & Dherin (2021): halving eta halves the gap to the plain flow (O(eta)) and
    quarters the gap to the modified flow (O(eta^2)), which is the smaller one."""
    task = whitened_task(jax.random.key(0), m=3, d=4, s=(2.0, 1.0, 0.5))
    w0 = linflow.init_weights(jax.random.key(1), task, 4, scale=0.5, batch=(2,))
    plain, modified = gd_gaps(task, w0, [0.02, 0.01], 2.0, **decay)
    assert 1.8 < plain[0] / plain[1] < 2.2
    assert 3.6 < modified[0] / modified[1] < 4.4
    assert np.all(modified < 0.1 * plain)


def test_modified_flow_in_float32():
    with jax.enable_x64(False):
        task = whitened_task(jax.random.key(0), m=3, d=4, s=(2.0, 1.0, 0.5))
        w0 = linflow.init_weights(jax.random.key(1), task, 4, scale=0.5)
        gd = linflow.gradient_descent(task, w0, steps=100, lr=0.02, save_every=25)
        options = dict(tau=50.0, modified_lr=0.02, weight_decay=0.1)
        flow = linflow.gradient_flow(task, w0, gd.ts, **options)
        assert flow.weights[0].dtype == jnp.float32
    w64 = tuple(jnp.asarray(w, jnp.float64) for w in w0)
    reference = linflow.gradient_flow(task.astype(jnp.float64), w64, gd.ts, **options, **TIGHT)
    assert max_abs_diff(flow.weights, reference.weights) < 1e-4


def test_modified_flow_of_an_objective_equals_that_of_the_task(problem):
    task, w0 = problem
    objective = linflow.Objective(eqx.Partial(lambda t, w: linflow.loss(t, w), task), batch=(2,))
    ts = jnp.array([0.0, 5.0])
    options = dict(tau=10.0, modified_lr=0.1, weight_decay=0.05, **TIGHT)
    from_task = linflow.gradient_flow(task, w0, ts, **options)
    from_objective = linflow.gradient_flow(objective, w0, ts, **options)
    assert max_abs_diff(from_task.weights, from_objective.weights) < 1e-9


BAD = [
    (-0.1, "must be a finite scalar >= 0"),
    (float("nan"), "must be a finite scalar >= 0"),
    (True, "must be a real number"),
    ("0.1", "must be a real number"),
]


@pytest.mark.parametrize("value, match", BAD)
def test_engines_reject_bad_rates(problem, value, match):
    task, w0 = problem
    ts = jnp.array([0.0, 1.0])
    calls = {
        "gradient_descent": lambda: linflow.gradient_descent(
            task, w0, steps=2, lr=0.1, weight_decay=value
        ),
        "gradient_flow": lambda: linflow.gradient_flow(task, w0, ts, weight_decay=value),
        "mode_flow": lambda: linflow.mode_flow(task, w0, ts, weight_decay=value),
    }
    for fn, call in calls.items():
        with pytest.raises(ValueError, match=rf"{fn}\(\.\.\., weight_decay=.*{match}"):
            call()
    for fn in ("gradient_flow", "mode_flow"):
        with pytest.raises(ValueError, match=rf"{fn}\(\.\.\., modified_lr=.*{match}"):
            getattr(linflow, fn)(task, w0, ts, modified_lr=value)


@pytest.mark.parametrize("value", [-0.1, float("nan"), True, "0.1"])
def test_closed_forms_reject_bad_decays(value):
    calls = {
        "saxe_deep": lambda: linflow.saxe_deep(1.0, 2.0, 0.1, weight_decay=value),
        "deep_mode": lambda: linflow.deep_mode(1.0, 2.0, 0.1, depth=3, weight_decay=value),
        "time_to_learn": lambda: linflow.time_to_learn(2.0, 0.1, weight_decay=value),
    }
    for fn, call in calls.items():
        with pytest.raises(ValueError, match=rf"{fn}\(\.\.\., weight_decay="):
            call()


def test_traced_negative_rates_raise(problem):
    task, w0 = problem
    with pytest.raises(Exception, match=r"gradient_descent\(\.\.\., weight_decay=\.\.\.\)"):
        jax.jit(
            lambda g: linflow.gradient_descent(task, w0, steps=2, lr=0.1, weight_decay=g).weights
        )(-1.0)
    with pytest.raises(Exception, match=r"gradient_flow\(\.\.\., modified_lr=\.\.\.\)"):
        jax.jit(
            lambda e: linflow.gradient_flow(task, w0, jnp.array([0.0, 1.0]), modified_lr=e).weights
        )(-1.0)
    with pytest.raises(Exception, match=r"deep_mode\(\.\.\., weight_decay=\.\.\.\)"):
        jax.jit(lambda g: linflow.deep_mode(1.0, 2.0, 0.1, weight_decay=g))(-1.0)


def test_end_to_end_flow_refuses_the_layer_regularisers(problem):
    task, w0 = problem
    for option in ("weight_decay", "modified_lr"):
        with pytest.raises(ValueError, match=rf"end_to_end_flow\(\.\.\., {option}=\.\.\.\) is not"):
            linflow.end_to_end_flow(
                task, linflow.product(w0), jnp.array([0.0, 1.0]), depth=2, **{option: 0.1}
            )


def test_modified_flow_benchmark_quick(tmp_path):
    path = Path(__file__).parent.parent / "benchmarks" / "modified_flow.py"
    spec = importlib.util.spec_from_file_location("modified_flow", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    payload = module.main(["--quick", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "modified_flow_quick.json").read_text()) == payload
    assert (tmp_path / "modified_flow_quick.png").stat().st_size > 0
    assert set(payload["results"]) == {"float32, weight_decay=0.1", "float64, weight_decay=0.1"}
    for r in payload["results"].values():
        assert 0.8 < r["loglog_slope_flow"] < 1.2
        assert 1.8 < r["loglog_slope_modified_flow"] < 2.2
