import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import data_task, eps, random_orthogonal, whitened_task
from scipy.integrate import solve_ivp

import linflow

TS = np.array([0.0, 0.3, 1.0, 2.5, 6.0])

# (s, a0, b0): balanced, both signs of lambda, opposite signs, a zero start, s = 0, anti-aligned.
PAIRS = [
    (2.0, 0.3, 0.3),
    (2.0, 1e-3, 0.5),
    (1.0, 0.7, -0.2),
    (3.0, -0.1, -0.2),
    (1.5, 0.0, 0.01),
    (0.0, 0.3, 0.5),
    (0.0, 0.4, 0.4),
    (1.5, 0.5, -0.5),
    (0.7, 2.0, 1.5),
]


def integrate_pair(s, a0, b0, tau=1.0):
    def rhs(t, y):
        e = s - y[0] * y[1]
        return [e * y[1] / tau, e * y[0] / tau]

    sol = solve_ivp(rhs, (0, TS[-1]), [a0, b0], t_eval=TS, method="DOP853", rtol=1e-13, atol=1e-15)
    return sol.y


@pytest.mark.parametrize("s, a0, b0", PAIRS)
def test_scalar_mode_matches_integration(s, a0, b0):
    a, b = linflow.scalar_mode(TS, s, a0, b0, tau=1.3)
    expected = integrate_pair(s, a0, b0, tau=1.3)
    assert np.allclose(a, expected[0], rtol=1e-9, atol=1e-11)
    assert np.allclose(b, expected[1], rtol=1e-9, atol=1e-11)
    assert a[0] == pytest.approx(a0, abs=1e-15) and b[0] == pytest.approx(b0, abs=1e-15)
    # The imbalance is conserved along the exact solution.
    assert np.allclose(b**2 - a**2, b0**2 - a0**2, atol=1e-12)


@pytest.mark.parametrize("s, a0, b0", [p for p in PAIRS if p[0] > 0 and p[1] + p[2] != 0])
def test_scalar_mode_converges_to_the_hyperbola(s, a0, b0):
    lam = b0**2 - a0**2
    K = np.hypot(2 * s, lam)
    a, b = linflow.scalar_mode(jnp.inf, s, a0, b0)
    assert float(a * b) == pytest.approx(s, rel=1e-12)
    assert float(a**2) == pytest.approx((K - lam) / 2, rel=1e-12, abs=1e-15)
    assert float(b**2) == pytest.approx((K + lam) / 2, rel=1e-12)


def test_saxe_deep_is_the_balanced_scalar_mode():
    t = jnp.linspace(0.0, 5.0, 11)
    a, b = linflow.scalar_mode(t, 2.0, 0.1, 0.1, tau=0.7)
    assert np.allclose(linflow.saxe_deep(t, 2.0, 0.01, tau=0.7), a * b, rtol=1e-12)
    # Saxe et al. (2014)'s sigmoid as printed in Shimizu & Aoyagi's lecture notes, eq. 10.
    e = np.exp(2 * 2.0 * np.asarray(t) / 0.7)
    assert np.allclose(
        linflow.saxe_deep(t, 2.0, 0.01, tau=0.7), 2.0 * e / (e - 1 + 2.0 / 0.01), rtol=1e-12
    )
    assert float(linflow.saxe_deep(jnp.inf, 2.0, 0.01)) == 2.0


@pytest.mark.parametrize("s, u0", [(2.0, 3.5), (0.0, 0.4), (1.5, 1.5), (2.0, 0.0)])
def test_saxe_deep_above_s_and_at_s_zero(s, u0):
    """From above s the balanced mode decays to s; with s = 0 it decays as u0 / (1 + 2 u0 t)."""
    sol = solve_ivp(
        lambda t, u: [2 * u[0] * (s - u[0]) / 0.8],
        (0, TS[-1]),
        [u0],
        t_eval=TS,
        rtol=1e-13,
        atol=1e-15,
        method="DOP853",
    )
    got = linflow.saxe_deep(TS, s, u0, tau=0.8)
    assert np.allclose(got, sol.y[0], rtol=1e-9, atol=1e-14)
    assert float(linflow.saxe_deep(jnp.inf, s, u0)) == (s if u0 > 0 else 0.0)


def test_scalar_mode_derivatives_at_balanced_and_antialigned_starts():
    """p = p0 sqrt(x/x0) keeps the derivative finite where a0 = b0 (q0 = 0) or a0 = -b0."""
    for a0, b0 in ((0.3, 0.3), (0.3, -0.3), (0.2, 0.5)):
        for argnum in (2, 3):

            def u(x, argnum=argnum):
                args = [1.3, 2.0, a0, b0]
                args[argnum] = x
                a, b = linflow.scalar_mode(*args)
                return a * b

            x = (a0, b0)[argnum - 2]
            grad = float(jax.grad(u)(x))
            fd = (float(u(x + 1e-6)) - float(u(x - 1e-6))) / 2e-6
            assert np.isfinite(grad) and grad == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_shallow_matches_integration():
    sol = solve_ivp(
        lambda t, y: [(1.5 - y[0]) / 0.5], (0, TS[-1]), [0.2], t_eval=TS, rtol=1e-12, atol=1e-14
    )
    assert np.allclose(linflow.shallow(TS, 1.5, 0.2, tau=0.5), sol.y[0], rtol=1e-9)
    assert float(linflow.shallow(jnp.inf, 1.5, 0.2)) == 1.5


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_time_to_learn_matches_integration(depth, fraction):
    """$\\tau \\dot u = D u^{2 - 2/D} (s - u)$ reaches $f s$ at `time_to_learn`."""
    s, u0, tau = 2.0, 0.01, 1.5
    t = float(linflow.time_to_learn(s, u0, tau=tau, depth=depth, fraction=fraction))
    sol = solve_ivp(
        lambda _, u: [depth * u[0] ** (2 - 2 / depth) * (s - u[0]) / tau],
        (0, 2 * t),
        [u0],
        dense_output=True,
        rtol=1e-12,
        atol=1e-14,
    )
    assert sol.sol(t)[0] == pytest.approx(fraction * s, rel=1e-7)


def test_time_to_learn_closed_forms():
    s, u0 = 3.0, 1e-3
    assert float(linflow.time_to_learn(s, u0)) == pytest.approx(
        np.log((s - u0) / u0) / (2 * s), rel=1e-14
    )
    t = linflow.time_to_learn(s, u0, tau=2.0, depth=1, fraction=0.8)
    assert float(linflow.shallow(t, s, u0, tau=2.0)) == pytest.approx(0.8 * s, rel=1e-12)
    # Broadcasts over arrays.
    assert linflow.time_to_learn(jnp.array([1.0, 2.0, 3.0]), 1e-3).shape == (3,)


@pytest.mark.parametrize(
    "args, kwargs, argument",
    [
        ((1.0, 0.1), {"depth": 0}, "depth=0"),
        ((1.0, 0.1), {"depth": True}, "depth=True"),
        ((1.0, 2.0), {}, "u0=...\\) must satisfy 0 < u0 < s"),
        ((1.0, 0.0), {"depth": 3}, "u0=...\\) must satisfy 0 < u0 < s"),
        ((1.0, 1.5), {"depth": 1}, "u0=...\\) must satisfy u0 < s"),
        ((-1.0, 0.1), {}, "s=...\\) must be finite and > 0"),
        ((1.0, 0.1), {"tau": 0.0}, "tau=...\\) must be finite and > 0"),
        ((1.0, 0.1), {"fraction": 1.5}, "fraction=...\\) must lie in \\(0, 1\\)"),
    ],
)
def test_time_to_learn_rejects_bad_input(args, kwargs, argument):
    with pytest.raises(ValueError, match=f"time_to_learn\\(.*{argument}"):
        linflow.time_to_learn(*args, **kwargs)
    if "depth" not in kwargs or isinstance(kwargs["depth"], int) and kwargs["depth"] > 0:
        # The same message from inside jax.jit, through equinox.error_if.
        depth = kwargs.pop("depth", 2)
        with pytest.raises(Exception, match=argument):
            jax.jit(lambda *a: linflow.time_to_learn(*a, depth=depth, **kwargs))(*args)


@pytest.mark.parametrize(
    "args, argument",
    [
        ((-1.0, 1.0, 0.5), "t=...\\) must be >= 0"),
        ((jnp.nan, 1.0, 0.5), "t=...\\) must be >= 0"),
        ((1.0, -1.0, 0.5), "s=...\\) must be finite and >= 0"),
        ((1.0, 1.0, -0.5), "u0=...\\) must be finite and >= 0"),
        ((1.0, 1.0, 0.5, 0.0), "tau=...\\) must be finite and > 0"),
    ],
)
@pytest.mark.parametrize("depth", [2, 3])
def test_deep_mode_rejects_bad_input(args, argument, depth):
    """A clear error instead of returning u0 (or NaN), eagerly and under jax.jit."""
    with pytest.raises(ValueError, match=f"deep_mode\\(.*{argument}"):
        linflow.deep_mode(*args, depth=depth)
    with pytest.raises(Exception, match=argument):
        jax.jit(lambda *a: linflow.deep_mode(*a, depth=depth))(*args)


def test_closed_forms_are_jit_and_vmap_safe():
    a0 = jnp.linspace(-0.5, 0.5, 7)
    direct = linflow.scalar_mode(1.0, 2.0, a0, 0.3)
    mapped = jax.vmap(jax.jit(linflow.scalar_mode), in_axes=(None, None, 0, None))(
        1.0, 2.0, a0, 0.3
    )
    assert np.allclose(direct, mapped, rtol=1e-14)
    for fn, args in [(linflow.saxe_deep, (1.0, 2.0)), (linflow.shallow, (1.0, 2.0))]:
        assert np.allclose(
            jax.vmap(jax.jit(fn), in_axes=(None, None, 0))(*args, a0 + 1), fn(*args, a0 + 1)
        )
    times = jax.jit(linflow.time_to_learn, static_argnames="depth")(
        2.0, jnp.array([0.1, 0.2]), depth=3
    )
    assert times.shape == (2,)


# exact_flow: every closed form against integration, jit, vmap and grad --------------------


def integrate(task, weights, ts, tau=1.0):
    """The layer-wise flow $\\tau\\dot W_l = A_l^\\top (\\Sigma_{yx} - W\\Sigma_{xx}) B_l^\\top$ of
    one initialisation with SciPy's DOP853, in float64 (whatever the inputs' dtype)."""
    syx, sxx = (np.asarray(x, np.float64) for x in (task.sigma_yx, task.sigma_xx))
    shapes = [np.shape(w) for w in weights]
    sizes = np.cumsum([0] + [int(np.prod(s)) for s in shapes])

    def unpack(y):
        return [y[a:b].reshape(s) for a, b, s in zip(sizes[:-1], sizes[1:], shapes)]

    def rhs(_, y):
        ws = unpack(y)
        prods = [np.eye(ws[0].shape[1])]
        for w in ws:
            prods.append(w @ prods[-1])
        error = syx - prods[-1] @ sxx
        out, above = [], np.eye(ws[-1].shape[0])
        for l in reversed(range(len(ws))):
            out.append((above.T @ error @ prods[l].T).ravel())
            above = above @ ws[l]
        return np.concatenate(out[::-1]) / tau

    y0 = np.concatenate([np.asarray(w, np.float64).ravel() for w in weights])
    ts = np.asarray(ts, np.float64)
    sol = solve_ivp(rhs, (0, ts[-1]), y0, t_eval=ts, method="DOP853", rtol=1e-13, atol=1e-15)
    return tuple(np.stack(ws) for ws in zip(*(unpack(y) for y in sol.y.T)))


def tolerance(dtype) -> float:
    """Relative agreement asked of a closed form: 1e-9 in float64, 1e-5 in float32."""
    return 1e-9 if np.dtype(dtype) == np.float64 else 1e-5


def rel(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.max(np.abs(x - y)) / np.max(np.abs(y)))


def modes_task(s, m, d, dtype, key=0):
    """A whitened task with singular values `s`; `s` may be an array of several (a batch of
    tasks with the same modes, for vmap)."""
    U = random_orthogonal(jax.random.key(key), m)[:, : len(s)]
    V = random_orthogonal(jax.random.key(key + 1), d)[:, : len(s)]
    return (jnp.asarray(U, dtype) * jnp.asarray(s, dtype)[..., None, :]) @ jnp.asarray(V, dtype).T


def form_case(name, dtype):
    """(sigma_yx, sigma_xx or None, weights0 with batch (2,)) for a start that `name` solves."""
    key = jax.random.key(3)
    if name == "one layer":
        task = data_task(jax.random.key(4))
        sxx = task.sigma_xx.astype(dtype)
        task = linflow.Task(task.sigma_yx.astype(dtype), sxx)
        return task.sigma_yx, sxx, linflow.init_weights(key, task, (), scale=0.5, batch=(2,))
    syx = modes_task([3.0, 1.5, 0.5], 3, 4, dtype)
    task = linflow.Task(syx)
    kwargs = {
        "aligned two-layer": dict(hidden=4, scheme="aligned", scale=0.2, lam=0.3),
        "zero-balanced two-layer": dict(hidden=3, scheme="balanced", scale=0.3),
        "lambda-balanced two-layer": dict(hidden=3, scheme="lambda_balanced", scale=0.3, lam=0.5),
        "aligned balanced deep": dict(hidden=(3, 3), scheme="aligned", scale=0.4),
    }[name]
    hidden = kwargs.pop("hidden")
    return syx, None, linflow.init_weights(key, task, hidden, batch=(2,), **kwargs)


ALIGNED_CASES = [
    # (m, d, hidden, lam, scale): h = k, h > k with m > d, h < k, unbalanced either sign.
    (3, 4, 3, 0.0, 0.05),
    (4, 3, 6, 0.0, 0.2),
    (3, 4, 2, 0.0, 0.3),
    (3, 4, 5, 0.4, 0.1),
    (3, 3, 3, -0.2, 1.0),
]


@pytest.mark.parametrize("m, d, hidden, lam, scale", ALIGNED_CASES)
def test_exact_flow_matches_gradient_flow_for_aligned_starts(m, d, hidden, lam, scale):
    task = whitened_task(jax.random.key(0), m=m, d=d, s=(3.0, 1.5, 0.5)[: min(m, d)])
    scales = scale * jnp.linspace(1.0, 0.5, min(m, d, hidden))
    weights0 = linflow.init_weights(
        jax.random.key(1), task, hidden, scheme="aligned", scale=scales, lam=lam, batch=(2,)
    )
    ts = jnp.array([0.0, 0.5, 2.0, 6.0, 15.0])
    exact = linflow.exact_flow(task, weights0, ts, tau=1.2)
    flow = linflow.gradient_flow(task, weights0, ts, tau=1.2, rtol=1e-11, atol=1e-13)
    assert exact.stats["closed_form"] == "aligned two-layer"
    assert max(rel(a, b) for a, b in zip(exact.weights, flow.weights)) < 1e-8
    assert max(float(jnp.max(jnp.abs(w[0] - w0))) for w, w0 in zip(exact.weights, weights0)) < 1e-14


def test_exact_flow_at_infinity_is_the_optimum():
    task = whitened_task(jax.random.key(2), m=3, d=4)
    weights0 = linflow.init_weights(
        jax.random.key(3), task, 4, scheme="aligned", scale=0.1, batch=(3,)
    )
    traj = linflow.exact_flow(task, weights0, jnp.array([0.0, jnp.inf]))
    assert np.allclose(traj.product()[-1], np.broadcast_to(task.sigma_yx, (3, 3, 4)), atol=1e-12)
    # Mode strengths follow the sigmoid of Saxe, McClelland & Ganguli (2014).
    ts = jnp.linspace(0.0, 3.0, 7)
    u = linflow.exact_flow(task, weights0, ts).mode_strengths(task)
    s = task.modes()[1]
    assert np.allclose(u, linflow.saxe_deep(ts[:, None, None], s[None, None, :], 0.01), rtol=1e-10)


FORMS = [form.name for form in linflow.CLOSED_FORMS]
TIMES = jnp.array([0.0, 0.7, 3.0])


@pytest.mark.parametrize("name", FORMS)
def test_every_form_matches_integration(name, dtype):
    """Against SciPy, with the float32 result in float32 and no 'float64 requested' warning."""
    syx, sxx, w0 = form_case(name, dtype)
    task = linflow.Task(syx, sxx)
    ts = jnp.array([0.0, 0.4, 2.0, 8.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        traj = linflow.exact_flow(task, w0, ts, tau=1.3)
    assert traj.stats["closed_form"] == name
    assert np.all(np.asarray(traj.stats["form"]) == FORMS.index(name))
    assert all(w.dtype == dtype for w in traj.weights)
    for i in range(2):
        ref = integrate(task, [w[i] for w in w0], ts, tau=1.3)
        got = linflow.Trajectory(ts, tuple(w[:, i] for w in traj.weights))
        assert rel(got.product(), linflow.Trajectory(ts, ref).product()) < tolerance(dtype)


@pytest.mark.parametrize("name", FORMS)
def test_every_form_under_jit(name, dtype):
    """jit of a wrapper with default arguments equals the eager call."""
    syx, sxx, w0 = form_case(name, dtype)
    task = linflow.Task(syx, sxx)
    eager = linflow.exact_flow(task, w0, TIMES)
    jitted = jax.jit(lambda w: linflow.exact_flow(task, w, TIMES))(w0)
    assert rel(jitted.product(), eager.product()) < 10 * eps(dtype)
    assert np.array_equal(jitted.stats["form"], eager.stats["form"])


@pytest.mark.parametrize("name", FORMS)
def test_every_form_under_vmap(name):
    """vmap over tau and over tasks (same modes, different singular values) equals a Python
    loop (with `form=`, which compiles that form only)."""
    dtype = jnp.float64
    syx, sxx, w0 = form_case(name, dtype)
    task = linflow.Task(syx, sxx)
    taus = jnp.array([0.5, 1.0, 2.0], dtype)
    mapped = jax.vmap(
        lambda tau: linflow.exact_flow(task, w0, TIMES, tau=tau, form=name).product()
    )(taus)
    for tau, got in zip(taus, mapped):
        assert rel(got, linflow.exact_flow(task, w0, TIMES, tau=tau).product()) < 10 * eps(dtype)
    if sxx is None:
        tasks = (jnp.stack([syx, modes_task([2.0, 1.0, 0.7], 3, 4, dtype)]), None)
    else:  # (Task checks a concrete sigma_xx against sigma_yx: map over both)
        tasks = (jnp.stack([syx, 0.5 * syx]), jnp.stack([sxx, sxx + 0.1 * jnp.eye(4, dtype=dtype)]))

    def product(syx, sxx):
        return linflow.exact_flow(linflow.Task(syx, sxx), w0, TIMES, form=name).product()

    mapped = jax.vmap(product)(*tasks)
    for i, got in enumerate(mapped):
        one = product(*(None if x is None else x[i] for x in tasks))
        assert rel(got, one) < 10 * eps(dtype)


@pytest.mark.parametrize("name", FORMS)
def test_every_form_gradients_match_finite_differences(name):
    """d(final loss)/d(tau, start scale, sigma_yx) against central differences in float64."""
    syx, sxx, w0 = form_case(name, jnp.float64)
    ts = jnp.array([0.0, 1.5])
    U, _, V = linflow.Task(syx).modes()
    # The aligned forms need the task's modes to stay put: move its singular values only.
    aligned = name.startswith("aligned")
    direction = (
        U * jnp.array([[0.3, -0.5, 0.8]]) @ V.T
        if aligned
        else jax.random.normal(jax.random.key(7), syx.shape)
    )

    def loss(tau, scale, step):
        # (Task checks a concrete sigma_xx against sigma_yx eagerly: keep both traced.)
        task = linflow.Task(syx + step * direction, None if sxx is None else sxx + 0 * step)
        start = tuple(scale * w for w in w0)
        return jnp.sum(linflow.exact_flow(task, start, ts, tau=tau).loss(task)[-1])

    args = (1.2, 1.0, 0.0)
    grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
    for i, grad in enumerate(grads):
        h = 1e-6
        up, down = list(args), list(args)
        up[i] += h
        down[i] -= h
        fd = (loss(*up) - loss(*down)) / (2 * h)
        assert float(grad) == pytest.approx(float(fd), rel=1e-6, abs=1e-10), (name, i)
    if name == "one layer":  # any start: the full gradient with respect to the weights
        direction_w = jax.random.normal(jax.random.key(8), w0[0].shape)

        def loss_w(w):
            task = linflow.Task(syx, sxx)
            return jnp.sum(linflow.exact_flow(task, (w,), ts).loss(task)[-1])

        grad = jnp.sum(jax.grad(loss_w)(w0[0]) * direction_w)
        fd = (loss_w(w0[0] + 1e-6 * direction_w) - loss_w(w0[0] - 1e-6 * direction_w)) / 2e-6
        assert float(grad) == pytest.approx(float(fd), rel=1e-6)


def test_one_layer_singular_sigma_xx_at_infinity():
    """Directions that Sigma_xx does not see keep their start: W* + W0 (I - Sigma_xx^+ Sigma_xx)."""
    X = jnp.array([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [2, -1, 0]])
    task = linflow.Task.from_data(X, X[:, :2].sum(1, keepdims=True))
    w0 = (jnp.ones((1, 3)),)
    traj = linflow.exact_flow(task, w0, jnp.array([0.0, 1e3, jnp.inf]))
    sxx = np.asarray(task.sigma_xx)
    limit = np.asarray(task.optimum) + np.ones((1, 3)) @ (np.eye(3) - np.linalg.pinv(sxx) @ sxx)
    assert np.allclose(traj.weights[0][1:], limit, rtol=0, atol=1e-12)
    assert np.allclose(limit, [[1.0, 1.0, 1.0]])  # the first two inputs learn y = x1 + x2


def test_refusal_names_each_form_and_condition_eagerly_and_under_jit():
    task = whitened_task(jax.random.key(6))
    gaussian = linflow.init_weights(jax.random.key(7), task, 3, scale=0.1)
    expected = [
        "one layer: needs depth 1, got depth 2",
        "aligned two-layer: not aligned: W1 \\(W2\\) has weight outside",
        "zero-balanced two-layer: not balanced",
        "lambda-balanced two-layer: not balanced",
        "aligned balanced deep: needs depth >= 3, got depth 2",
    ]
    with pytest.raises(ValueError) as eager:
        linflow.exact_flow(task, gaussian, TIMES)
    with pytest.raises(Exception) as traced:
        jax.jit(lambda w: linflow.exact_flow(task, w, TIMES).product())(gaussian)
    for text in expected:
        assert re.search(text, str(eager.value)) and re.search(text, str(traced.value))
    # A batch: eagerly, the first initialisation that fails and how many do.
    balanced = linflow.init_weights(jax.random.key(7), task, 3, scheme="balanced", batch=(2, 3))
    mixed = tuple(b.at[1, 2].set(g) for b, g in zip(balanced, gaussian))
    with pytest.raises(ValueError, match="initialisation \\(1, 2\\) of the batch of shape "):
        linflow.exact_flow(task, mixed, TIMES)
    traj = linflow.exact_flow(task, mixed, TIMES, throw=False)
    assert traj.stats["form"].shape == (2, 3) and int(traj.stats["form"][1, 2]) == -1
    assert np.all(np.isnan(traj.weights[0][:, 1, 2]))
    assert np.all(np.isfinite(traj.weights[0][:, 0])) and np.all(
        np.isfinite(traj.weights[1][:, 1, :2])
    )
    deep = linflow.init_weights(jax.random.key(7), task, (3, 3), scale=0.1)
    with pytest.raises(ValueError, match="aligned balanced deep: not balanced"):
        linflow.exact_flow(task, deep, TIMES)
    data = data_task(jax.random.key(8))
    aligned = linflow.init_weights(jax.random.key(9), data, 3, scheme="aligned", scale=0.1)
    with pytest.raises(ValueError, match="aligned two-layer: needs whitened inputs"):
        linflow.exact_flow(data, aligned, TIMES)


def test_mixed_batch_uses_a_form_per_initialisation():
    """Aligned unbalanced and balanced non-aligned starts in one batch, eagerly and under jit."""
    task = whitened_task(jax.random.key(6), m=3, d=3)
    aligned = linflow.init_weights(jax.random.key(1), task, 3, scheme="aligned", lam=0.4)
    balanced = linflow.init_weights(jax.random.key(2), task, 3, scheme="balanced", scale=0.3)
    batch = tuple(jnp.stack([a, b]) for a, b in zip(aligned, balanced))
    traj = linflow.exact_flow(task, batch, TIMES)
    assert traj.stats["closed_form"] == "aligned two-layer, zero-balanced two-layer"
    assert list(traj.stats["form"]) == [1, 2]
    for i, start in enumerate((aligned, balanced)):
        alone = linflow.exact_flow(task, start, TIMES).product()
        assert rel(traj.product()[:, i], alone) < 1e-13
    jitted = jax.jit(lambda w: linflow.exact_flow(task, w, TIMES).product())(batch)
    assert rel(jitted, traj.product()) < 1e-13


def test_rtol_is_bounded_and_form_can_be_chosen():
    task = whitened_task(jax.random.key(6), m=3, d=3)
    gaussian = linflow.init_weights(jax.random.key(7), task, 3, scale=0.1)
    for rtol in (10.0, 0.02, 0.0, -1e-3, jnp.nan, "1e-3", True):
        with pytest.raises(ValueError, match="exact_flow\\(..., rtol="):
            linflow.exact_flow(task, gaussian, TIMES, rtol=rtol)
    with pytest.raises(ValueError, match="no closed form applies"):
        linflow.exact_flow(task, gaussian, TIMES, rtol=1e-2)
    balanced = linflow.init_weights(jax.random.key(7), task, 3, scheme="balanced", scale=0.1)
    traj = linflow.exact_flow(task, balanced, TIMES, form="lambda-balanced two-layer")
    assert traj.stats["closed_form"] == "lambda-balanced two-layer"
    assert int(traj.stats["form"]) == 3
    with pytest.raises(ValueError, match="aligned two-layer: not aligned"):
        linflow.exact_flow(task, balanced, TIMES, form=linflow.CLOSED_FORMS[1])
    with pytest.raises(ValueError, match="exact_flow\\(..., form='nope'\\) must be"):
        linflow.exact_flow(task, balanced, TIMES, form="nope")
    with pytest.raises(ValueError, match="exact_flow\\(..., tau=.*\\) must be a finite positive"):
        linflow.exact_flow(task, balanced, TIMES, tau=-1.0)
    with pytest.raises(ValueError, match="contains NaN"):
        linflow.exact_flow(task, balanced, jnp.array([0.0, jnp.nan]))
    with pytest.raises(ValueError, match="exact_flow\\(..., weights.*int32"):
        linflow.exact_flow(task, tuple(w.astype(jnp.int32) for w in balanced), TIMES)


def test_float32_weights_with_x64_on_give_float32():
    """float32 weights give float32 results also with x64 on and a float64 task (which is cast
    to the weights' dtype)."""
    task = linflow.Task(modes_task([3.0, 1.5, 0.5], 3, 4, jnp.float64))
    for name in FORMS[1:]:
        _, _, w0 = form_case(name, jnp.float64)
        w0 = tuple(w.astype(jnp.float32) for w in w0)
        traj = linflow.exact_flow(task, w0, jnp.array([0.0, 1.0, jnp.inf]))
        assert all(w.dtype == jnp.float32 for w in traj.weights), name
        assert np.all(np.isfinite(traj.product()))
