"""With its default arguments, every engine runs in float32 (x64 off) and in float64, and agrees
with a float64 NumPy reference to the accuracy of the dtype.

The references are independent of JAX: a NumPy loop of gradient descent, and the closed form
of Saxe, McClelland & Ganguli (2014) for an aligned, balanced two-layer start,
$u(t) = s u_0 / (u_0 + (s - u_0) e^{-2st/\\tau})$ per mode, with its half-time
$\\frac{\\tau}{2s}\\ln\\frac{s - u_0}{u_0}$. The tolerances (relative to the size of $W$) are
what each dtype reaches with the default tolerances, with a margin, and would still catch a
factor of 2, a transposed matrix or a wrong tau.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linflow

S = np.array([3.0, 1.5, 0.5])
M, D, H = 3, 4, 3
SCALE = 0.1  # aligned: every mode starts at u0 = SCALE**2
TAU = 2.0
TS = np.array([0.0, 1.0, 3.0, 6.0])


def _modes():
    rng = np.random.default_rng(0)
    U = np.linalg.qr(rng.standard_normal((M, M)))[0]
    V = np.linalg.qr(rng.standard_normal((D, D)))[0]
    return U, V


def _task(dtype):
    U, V = _modes()
    return linflow.Task(jnp.asarray(U[:, :3] * S @ V[:, :3].T, dtype))


def _saxe_product(ts, tau):
    """$W(t) = \\sum_i u_i(t)\\, u^i v^{i\\top}$ from the closed form, float64, `(T, M, D)`."""
    U, V = _modes()
    u0 = SCALE**2
    u = S * u0 / (u0 + (S - u0) * np.exp(-2 * S * ts[:, None] / tau))
    return np.einsum("mk,tk,dk->tmd", U[:, :3], u, V[:, :3])


def _start(task):
    return linflow.init_weights(jax.random.key(0), task, H, scheme="aligned", scale=SCALE)


# Relative accuracy (of max |W|) that each engine reaches by default, per dtype.
# Measured: float32 2e-7 to 1.3e-6, float64 7e-8 to 3e-7.
FLOW_RTOL = {"float32": 2e-5, "float64": 3e-6}


def _relative_error(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("engine", ["gradient_flow", "mode_flow", "implicit"])
def test_flows_match_the_closed_form(engine, dtype):
    task = _task(dtype)
    ts = jnp.asarray(TS, dtype)
    if engine == "implicit":  # one solve per initialisation, with its own default tolerances
        traj = linflow.gradient_flow(task, _start(task), ts, tau=TAU, solver=diffrax.Kvaerno5())
    else:
        traj = getattr(linflow, engine)(task, _start(task), ts, tau=TAU)
    assert traj.ts.dtype == dtype and traj.product().dtype == dtype
    assert traj.unit == "time" and float(traj.tau) == TAU
    assert _relative_error(traj.product(), _saxe_product(TS, TAU)) < FLOW_RTOL[dtype.name]


def test_end_to_end_flow_matches_the_closed_form(dtype):
    task = _task(dtype)
    w0 = linflow.product(_start(task))
    traj = linflow.end_to_end_flow(task, w0, jnp.asarray(TS, dtype), depth=2, tau=TAU)
    assert traj.product().dtype == dtype
    assert _relative_error(traj.product(), _saxe_product(TS, TAU)) < FLOW_RTOL[dtype.name]


def test_learning_times_match_the_half_time(dtype):
    task = _task(dtype)
    times = linflow.learning_times(task, _start(task), tau=TAU)
    assert times.dtype == dtype
    u0 = SCALE**2
    half = TAU / (2 * S) * np.log((S - u0) / u0)
    # Measured: float32 3e-7, float64 5e-12.
    rtol = {"float32": 1e-5, "float64": 1e-9}[dtype.name]
    np.testing.assert_allclose(np.asarray(times[:, 0], np.float64), half, rtol=rtol)


def _numpy_descent(w1, w2, syx, lr, steps):
    w1, w2 = (np.asarray(w, np.float64) for w in (w1, w2))
    syx = np.asarray(syx, np.float64)
    out = [w2 @ w1]
    for _ in range(steps):
        e = syx - w2 @ w1
        w1, w2 = w1 + lr * w2.T @ e, w2 + lr * e @ w1.T
        out.append(w2 @ w1)
    return np.stack(out)


# Gradient descent accumulates rounding over the steps (measured: float32 1.4e-7, float64 2e-16).
DESCENT_RTOL = {"float32": 2e-6, "float64": 1e-12}


def test_gradient_descent_matches_a_numpy_loop(dtype):
    task = _task(dtype)
    w0 = linflow.init_weights(jax.random.key(1), task, H, scheme="gaussian", scale=0.3)
    traj = linflow.gradient_descent(task, w0, steps=60, lr=0.05)
    assert traj.product().dtype == dtype and traj.unit == "steps"
    assert np.isclose(float(traj.lr), 0.05)
    reference = _numpy_descent(*w0, task.sigma_yx, 0.05, 60)
    assert _relative_error(traj.product(), reference) < DESCENT_RTOL[dtype.name]


def test_langevin_without_noise_is_gradient_descent(dtype):
    """At beta = 1e30 the noise sqrt(2 eta / beta) is below rounding: GLD is GD."""
    task = _task(dtype)
    w0 = linflow.init_weights(jax.random.key(1), task, H, scheme="gaussian", scale=0.3)
    objective = linflow.Objective(lambda w: linflow.loss(task, w))
    key = jax.random.key(2)
    traj = linflow.langevin_descent(objective, w0, steps=60, lr=0.05, beta=1e30, key=key)
    assert traj.product().dtype == dtype
    reference = _numpy_descent(*w0, task.sigma_yx, 0.05, 60)
    assert _relative_error(traj.product(), reference) < DESCENT_RTOL[dtype.name]
    flow = linflow.langevin_flow(
        objective, w0, jnp.asarray([0.0, 3.0], dtype), beta=1e30, key=key, dt=0.05
    )
    assert flow.product().dtype == dtype
    # Euler with step 0.05 is gradient descent with lr 0.05 (tau = 1): 60 steps to t = 3.
    assert _relative_error(flow.product(), reference[[0, -1]]) < DESCENT_RTOL[dtype.name]
