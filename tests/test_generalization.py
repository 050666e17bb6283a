"""Generalisation with finite noisy data: `tasks.noisy_teacher`, the exact per-sample curves,
their Marchenko-Pastur average and the optimal stopping time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import eps

import linflow

TIMES = jnp.array([0.0, 0.3, 1.0, 3.0, 10.0, 30.0, jnp.inf])


def test_noisy_teacher(dtype):
    key = jax.random.key(0)
    train, test = linflow.tasks.noisy_teacher(key, 6, 3, 40, None, snr=3.0, dtype=dtype)
    assert train.X.shape == (40, 6) and train.Y.shape == (40, 3) and train.X.dtype == dtype
    signal, noise = 0.75, 0.25  # snr / (1 + snr), 1 / (1 + snr)
    teacher = test.optimum  # the population task's optimum is the teacher
    np.testing.assert_allclose(jnp.sum(teacher**2), 3 * signal, rtol=10 * eps(dtype))
    # Expected error of W = 0 on a new sample: signal plus noise, 1/2 per output.
    zero = (jnp.zeros((3, 6), dtype),)
    np.testing.assert_allclose(linflow.loss(test, zero), 1.5, rtol=10 * eps(dtype))
    np.testing.assert_allclose(linflow.loss(test, (teacher,)), 0.5 * 3 * noise, rtol=1e-5)
    # The training targets are the teacher's outputs plus noise of variance 1/(1 + snr).
    residual = train.Y - train.X @ teacher.T
    assert abs(float(jnp.mean(residual**2)) / noise - 1) < 0.3
    # A finite test set from the same teacher, an exactly noiseless one, a low-rank teacher.
    _, sampled = linflow.tasks.noisy_teacher(key, 6, 3, 40, 4000, snr=3.0, dtype=dtype)
    assert abs(float(linflow.loss(sampled, zero)) / 1.5 - 1) < 0.1
    clean, _ = linflow.tasks.noisy_teacher(key, 6, 3, 40, None, snr=jnp.inf, dtype=dtype)
    assert float(clean.loss_min) < 100 * eps(dtype)
    _, low = linflow.tasks.noisy_teacher(key, 6, 3, 40, None, snr=3.0, rank=1, dtype=dtype)
    s = jnp.linalg.svd(low.optimum, compute_uv=False)
    assert float(s[1]) < 1e-3 * float(s[0])


def assert_curves(actual, expected, rtol, atol):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("n", [5, 14], ids=["n<d", "n>d"])
def test_one_layer_matches_simulation(n):
    """From W = 0 and from an aligned start, against the integrated gradient flow."""
    train, test = linflow.tasks.noisy_teacher(jax.random.key(1), 8, 3, n, 30, snr=2.0)
    ts = TIMES[:-1]
    lam, Q = jnp.linalg.eigh(train.sigma_xx)
    z = train.sigma_yx @ Q
    learnable = lam > 1e-10  # an aligned start: u0 along each learnable mode's target
    directions = z / jnp.linalg.norm(z, axis=0, keepdims=True)
    for u0 in (0.0, 0.05):
        w0 = (jnp.where(learnable[None, :], u0 * directions, 0.0) @ Q.T,)
        traj = linflow.gradient_flow(train, w0, ts, rtol=1e-12, atol=1e-14)
        curves = linflow.sample_generalization_curve(train, test, ts, u0=u0)
        assert_curves(curves, (traj.loss(train), traj.loss(test)), 1e-8, 1e-12)
    # At t = inf: the minimum-norm least-squares fit.
    train_inf, test_inf = linflow.sample_generalization_curve(train, test, jnp.array([jnp.inf]))
    fit = (train.optimum,)
    np.testing.assert_allclose(train_inf, linflow.loss(train, fit), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(test_inf, linflow.loss(test, fit), rtol=1e-10)


def whitened_sample(key, d, m, n, snr):
    """Training data with $X^\\top X = n I$ exactly ($n \\ge d$), as a whitened task."""
    kx, kt = jax.random.split(key)
    X = np.sqrt(n) * jnp.linalg.qr(jax.random.normal(kx, (n, d)))[0]
    _, test = linflow.tasks.noisy_teacher(kt, d, m, 1, None, snr=snr)
    noise = jax.random.normal(jax.random.fold_in(kt, 1), (n, m)) * np.sqrt(1 / (1 + snr))
    Y = X @ test.optimum.T + noise
    return linflow.Task(Y.T @ X / n, sigma_yy=Y.T @ Y / n), test


@pytest.mark.parametrize("depth", [2, 3])
def test_deep_whitened_matches_simulation(depth):
    """With whitened inputs the aligned deep network is exact (Saxe et al. 2014)."""
    train, test = whitened_sample(jax.random.key(2), 5, 3, 12, snr=2.0)
    u0 = 1e-2
    weights0 = linflow.init_weights(
        jax.random.key(3), train, (3,) * (depth - 1), scheme="aligned", scale=u0 ** (1 / depth)
    )
    ts = jnp.array([0.0, 1.0, 3.0, 6.0, 10.0, 20.0])
    traj = linflow.gradient_flow(train, weights0, ts, rtol=1e-12, atol=1e-14)
    curves = linflow.sample_generalization_curve(train, test, ts, depth=depth, u0=u0)
    assert_curves(curves, (traj.loss(train), traj.loss(test)), 1e-8, 1e-12)


def test_deep_reduction_is_its_mode_flow():
    r"""Non-whitened inputs: the depth-D formula is the flow of one balanced chain per input
    mode, $W = \sum_i (\prod_l a_{il}) \hat z_i q_i^\top$, integrated here as an Objective."""
    train, test = linflow.tasks.noisy_teacher(jax.random.key(4), 6, 2, 9, None, snr=2.0)
    lam, Q = jnp.linalg.eigh(train.sigma_xx)
    z = train.sigma_yx @ Q
    directions = z / jnp.linalg.norm(z, axis=0, keepdims=True)
    depth, u0 = 3, 1e-2

    def loss_fn(a):  # a: (depth, d), one chain per input mode
        w = (directions * jnp.prod(a, axis=0)[None, :]) @ Q.T
        return linflow.loss(train, (w,))

    objective = linflow.Objective(loss_fn)
    a0 = jnp.full((depth, 6), u0 ** (1 / depth))
    ts = jnp.array([0.0, 2.0, 5.0, 10.0, 40.0])
    traj = linflow.gradient_flow(objective, a0, ts, rtol=1e-12, atol=1e-14)
    w = (directions[None] * jnp.prod(traj.weights, axis=1)[:, None, :]) @ Q.T
    curves = linflow.sample_generalization_curve(train, test, ts, depth=depth, u0=u0)
    np.testing.assert_allclose(curves[0], linflow.loss(train, (w,)), rtol=1e-8)
    np.testing.assert_allclose(curves[1], linflow.loss(test, (w,)), rtol=1e-8)


@pytest.mark.parametrize(
    "ratio, depth, m", [(0.5, 1, 10), (2.0, 1, 10), (2.0, 2, 200)], ids=["n<d", "n>d", "deep"]
)
def test_marchenko_pastur_average(ratio, depth, m):
    """At d = 400 the per-sample curves (two samples) are within a few percent of the limit."""
    d = 400
    scale = 0.0 if depth == 1 else 0.02
    samples = []
    for seed in range(2):
        train, test = linflow.tasks.noisy_teacher(
            jax.random.key(seed), d, m, int(ratio * d), None, snr=2.0
        )
        u0 = scale * np.sqrt(m / d)
        curves = linflow.sample_generalization_curve(train, test, TIMES, depth=depth, u0=u0)
        samples.append(np.stack(curves) / m)
    theory = linflow.generalization_curve(
        TIMES, ratio, 2.0, depth=depth, init_scale=scale, output_ratio=m / d
    )
    np.testing.assert_allclose(np.mean(samples, axis=0), np.stack(theory), rtol=0.03, atol=1e-3)


def test_closed_forms_and_double_descent():
    ratios = jnp.array([0.25, 0.5, 0.9, 1.0, 1.1, 2.0, 4.0])
    snr, signal, noise = 3.0, 0.75, 0.25
    curves = jax.vmap(lambda r: linflow.generalization_curve(TIMES, r, snr))(ratios)
    train, test = (np.asarray(c) for c in curves)
    np.testing.assert_allclose(train[:, 0], 0.5, rtol=1e-6)  # W = 0: signal + noise
    np.testing.assert_allclose(test[:, 0], 0.5, rtol=1e-6)
    a = np.asarray(ratios)
    with np.errstate(divide="ignore"):
        variance = np.where(a > 1, 1 / (a - 1), a / (1 - a))
    expected = 0.5 * (signal * np.maximum(1 - a, 0) + noise * variance + noise)
    np.testing.assert_allclose(test[:, -1], expected, rtol=1e-12)
    assert np.isinf(test[3, -1]) and np.argmax(np.where(np.isinf(test[:, -1]), 0, test[:, -1])) in (
        2,
        4,
    )  # the peak of the converged error at n = d
    np.testing.assert_allclose(train[:, -1], 0.5 * noise * np.maximum(1 - 1 / a, 0), atol=1e-12)
    # The finite-time curves approach the limit, and early stopping beats it.
    np.testing.assert_allclose(test[[0, 5, 6], -2], test[[0, 5, 6], -1], rtol=0.02)
    assert np.all(test[:, 1:-1].min(axis=1) < test[:, -1])
    # A random start's norm stays in the directions the data never see (n < d).
    _, frozen = linflow.generalization_curve(TIMES, 0.5, snr, init_scale=1.0)
    np.testing.assert_allclose(frozen[-1] - test[1, -1], 0.5 * 1.0 * 0.5, rtol=1e-10)


@pytest.mark.parametrize("depth", [1, 3])
def test_optimal_stopping_time(depth):
    kwargs = {} if depth == 1 else {"init_scale": 0.05, "output_ratio": 0.5}
    t_star, best = linflow.optimal_stopping_time(2.0, 2.0, depth=depth, **kwargs)
    ts = jnp.geomspace(0.5, 30.0, 401)  # 1% apart
    _, test = linflow.generalization_curve(ts, 2.0, 2.0, depth=depth, **kwargs)
    k = int(jnp.argmin(test))
    np.testing.assert_allclose(t_star, ts[k], rtol=0.01)
    assert float(best) <= float(test[k]) * (1 + 1e-12)
    if depth == 1:
        assert float(linflow.optimal_stopping_time(2.0, jnp.inf)[0]) == np.inf  # no noise
        t_zero, err = linflow.optimal_stopping_time(2.0, 0.0)  # pure noise: never learn
        assert float(t_zero) == 0.0 and float(err) == pytest.approx(0.5)
        by_vmap = jax.vmap(lambda r: linflow.optimal_stopping_time(r, 2.0))(jnp.array([2.0, 0.5]))
        np.testing.assert_allclose(by_vmap[0][0], t_star, rtol=1e-10)


def test_float32_and_jit(precision):
    dtype, _ = precision
    ts = TIMES.astype(dtype)
    train, test = linflow.generalization_curve(ts, 2.0, 2.0)
    assert train.dtype == dtype and test.dtype == dtype
    with jax.enable_x64(True):
        reference = linflow.generalization_curve(TIMES.astype(jnp.float64), 2.0, 2.0)
    assert_curves((train, test), reference, 100 * eps(dtype), 10 * eps(dtype))
    jitted = jax.jit(linflow.generalization_curve)(ts, 2.0, 2.0)
    assert_curves(jitted, (train, test), 10 * eps(dtype), 10 * eps(dtype))
    # One sample, in this precision, against gradient descent's flow in the same precision.
    data, population = linflow.tasks.noisy_teacher(
        jax.random.key(5), 8, 2, 12, None, snr=2.0, dtype=dtype
    )
    finite = ts[:-1]
    curves = jax.jit(linflow.sample_generalization_curve)(data, population, finite)
    assert curves[0].dtype == dtype
    traj = linflow.exact_flow(data, (jnp.zeros((2, 8), dtype),), finite)
    assert_curves(curves, (traj.loss(data), traj.loss(population)), 1e3 * eps(dtype), 1e-6)


def test_bad_input():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"noisy_teacher\(\.\.\., n_train=0\)"):
        linflow.tasks.noisy_teacher(key, 4, 2, 0, 10, snr=1.0)
    with pytest.raises(ValueError, match=r"noisy_teacher\(\.\.\., snr=-1\.0\)"):
        linflow.tasks.noisy_teacher(key, 4, 2, 5, 10, snr=-1.0)
    with pytest.raises(ValueError, match=r"noisy_teacher\(\.\.\., rank=3\)"):
        linflow.tasks.noisy_teacher(key, 4, 2, 5, 10, snr=1.0, rank=3)
    with pytest.raises(ValueError, match=r"noisy_teacher\(\.\.\., n_test=0\)"):
        linflow.tasks.noisy_teacher(key, 4, 2, 5, 0, snr=1.0)
    fn = r"generalization_curve\(\.\.\., "
    with pytest.raises(ValueError, match=fn + r"ratio=0\.0\)"):
        linflow.generalization_curve(TIMES, 0.0, 1.0)
    with pytest.raises(ValueError, match=fn + r"ratio=nan\)"):
        linflow.generalization_curve(TIMES, float("nan"), 1.0)
    with pytest.raises(ValueError, match=fn + r"snr=-0\.5\)"):
        linflow.generalization_curve(TIMES, 2.0, -0.5)
    with pytest.raises(ValueError, match=fn + r"ts=\.\.\.\) must be >= 0"):
        linflow.generalization_curve(jnp.array([-1.0, 1.0]), 2.0, 1.0)
    with pytest.raises(ValueError, match=fn + r"depth=2\) needs output_ratio"):
        linflow.generalization_curve(TIMES, 2.0, 1.0, depth=2, init_scale=0.1)
    with pytest.raises(ValueError, match=fn + r"init_scale=0\.0\) must be > 0"):
        linflow.generalization_curve(TIMES, 2.0, 1.0, depth=2, output_ratio=1.0)
    with pytest.raises(ValueError, match=fn + r"init_scale=2\.0\) must be below"):
        linflow.generalization_curve(TIMES, 2.0, 1.0, depth=3, init_scale=2.0, output_ratio=1.0)
    with pytest.raises(ValueError, match=r"optimal_stopping_time\(\.\.\., ratio=-2\.0\)"):
        linflow.optimal_stopping_time(-2.0, 1.0)
    with pytest.raises(Exception, match=r"ratio=\.\.\.\) must be a finite positive"):
        jax.jit(linflow.generalization_curve)(TIMES, -1.0, 1.0)
    train, test = linflow.tasks.noisy_teacher(key, 4, 2, 5, None, snr=1.0)
    fn = r"sample_generalization_curve\(\.\.\., "
    with pytest.raises(ValueError, match=fn + r"u0=-0\.1\) must be >= 0"):
        linflow.sample_generalization_curve(train, test, TIMES, u0=-0.1)
    with pytest.raises(ValueError, match=fn + r"u0=0\.0\) must be > 0 for depth=2"):
        linflow.sample_generalization_curve(train, test, TIMES, depth=2)
    with pytest.raises(ValueError, match=fn + r"u0=\.\.\.\) must lie below every mode"):
        linflow.sample_generalization_curve(train, test, TIMES, depth=3, u0=100.0)
    with pytest.raises(ValueError, match=fn + r"ts=\.\.\.\) must be strictly increasing"):
        linflow.sample_generalization_curve(train, test, jnp.array([2.0, 1.0]))
    other, _ = linflow.tasks.noisy_teacher(key, 5, 2, 5, None, snr=1.0)
    with pytest.raises(ValueError, match=r"sample_generalization_curve\(train=\.\.\., test"):
        linflow.sample_generalization_curve(other, test, TIMES)
