import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import data_task, max_abs_diff, whitened_task
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


def test_time_to_learn_rejects_bad_input():
    with pytest.raises(ValueError, match="depth=0"):
        linflow.time_to_learn(1.0, 0.1, depth=0)
    with pytest.raises(Exception, match="time_to_learn needs"):
        linflow.time_to_learn(1.0, 2.0)
    with pytest.raises(Exception, match="time_to_learn needs"):
        linflow.time_to_learn(1.0, 0.1, fraction=1.5)


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


# exact_flow against gradient_flow --------------------------------------------------------

ALIGNED_CASES = [
    # (m, d, hidden, lam, scale)
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
    assert max_abs_diff(exact.weights, flow.weights) < 1e-7
    assert max_abs_diff(tuple(w[0] for w in exact.weights), weights0) < 1e-14


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


def test_exact_flow_one_layer_any_start_any_sigma_xx():
    task = data_task(jax.random.key(4))
    weights0 = linflow.init_weights(jax.random.key(5), task, (), scale=0.5, batch=(2,))
    ts = jnp.array([0.0, 0.5, 3.0])
    exact = linflow.exact_flow(task, weights0, ts, tau=0.5)
    flow = linflow.gradient_flow(task, weights0, ts, tau=0.5, rtol=1e-11, atol=1e-13)
    assert exact.stats["closed_form"] == "one layer"
    assert max_abs_diff(exact.weights, flow.weights) < 1e-8
    final = linflow.exact_flow(task, weights0, jnp.array([jnp.inf]))
    assert np.allclose(final.weights[0][0], np.broadcast_to(task.optimum, (2, 3, 4)), atol=1e-10)


def test_exact_flow_refuses_what_it_cannot_solve():
    task = whitened_task(jax.random.key(6))
    gaussian = linflow.init_weights(jax.random.key(7), task, 3, scale=0.1)
    with pytest.raises(
        ValueError, match="aligned two-layer: not aligned: W1 \\(W2\\) has weight outside"
    ):
        linflow.exact_flow(task, gaussian, TS)
    square = whitened_task(jax.random.key(6), m=3, d=3)
    with pytest.raises(ValueError, match="aligned two-layer: not aligned: W1 V is not diagonal"):
        linflow.exact_flow(
            square, linflow.init_weights(jax.random.key(7), square, 3, scale=0.1), TS
        )
    # Balanced and lambda-balanced starts are solved by the matrix forms (test_exact_matrix.py).
    deep = linflow.init_weights(jax.random.key(7), task, (3, 3), scale=0.1)
    with pytest.raises(ValueError, match="one layer: needs depth 1, got depth 3"):
        linflow.exact_flow(task, deep, TS)
    data = data_task(jax.random.key(8))
    aligned = linflow.init_weights(jax.random.key(9), data, 3, scheme="aligned", scale=0.1)
    with pytest.raises(ValueError, match="needs whitened inputs"):
        linflow.exact_flow(data, aligned, TS)
    with pytest.raises(ValueError, match="contains NaN"):
        linflow.exact_flow(task, gaussian, jnp.array([0.0, jnp.nan]))
