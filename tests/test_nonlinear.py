import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import linflow

H = jnp.array([[2.0, 0.5], [0.5, 1.0]])
BETA = 4.0
CHAINS = 10000


@pytest.fixture(scope="module")
def quadratic():
    return linflow.Objective(lambda x: 0.5 * x @ H @ x, batch=(CHAINS,))


def covariance_error(x, target):
    """Largest entry of |cov(x) - target|, relative to the largest entry of target."""
    return np.abs(np.cov(np.asarray(x).T) - target).max() / np.abs(target).max()


GIBBS = np.linalg.inv(BETA * np.asarray(H))  # covariance of π ∝ exp(-β θᵀHθ/2)


def test_gld_samples_its_own_stationary_law_and_approaches_gibbs(quadratic):
    """GLD's stationary covariance is (βH)⁻¹(I − ηH/2)⁻¹: O(η) away from the Gibbs law."""
    x0 = jnp.zeros((CHAINS, 2))
    errors = {}
    for lr in (0.2, 0.01):
        steps = int(round(6 / lr))
        traj = linflow.langevin_descent(
            quadratic, x0, steps=steps, lr=lr, beta=BETA, key=jax.random.key(1), save_every=steps
        )
        discrete = GIBBS @ np.linalg.inv(np.eye(2) - lr * np.asarray(H) / 2)
        assert covariance_error(traj.weights[-1], discrete) < 0.05
        errors[lr] = covariance_error(traj.weights[-1], GIBBS)
    assert errors[0.2] > 0.06  # the O(η) bias (≈ 11 %) is resolved by 10⁴ chains
    assert errors[0.01] < 0.05


@pytest.mark.parametrize("solver, dt", [(None, 0.01), (diffrax.Heun(), 0.05)])
def test_sde_samples_the_gibbs_law(quadratic, solver, dt):
    traj = linflow.langevin_flow(
        quadratic,
        jnp.zeros((CHAINS, 2)),
        jnp.array([0.0, 6.0]),
        beta=BETA,
        key=jax.random.key(2),
        dt=dt,
        solver=solver,
    )
    assert covariance_error(traj.weights[-1], GIBBS) < 0.05
    assert np.abs(np.mean(np.asarray(traj.weights[-1]), axis=0)).max() < 0.02


def test_sgld_centres_on_the_data_mean():
    z = jax.random.normal(jax.random.key(3), (50, 2)) + jnp.array([1.0, -2.0])[None]
    objective = linflow.Objective(
        lambda x, batch: 0.5 * jnp.mean(jnp.sum((x[None] - batch) ** 2, -1)), batch=(2000,)
    )
    traj = linflow.langevin_descent(
        objective,
        jnp.zeros((2000, 2)),
        steps=400,
        lr=0.05,
        beta=100.0,
        key=jax.random.key(4),
        samples=z,
        batch_size=10,
        save_every=400,
    )
    assert np.allclose(np.mean(np.asarray(traj.weights[-1]), axis=0), np.mean(z, 0), atol=0.02)


def test_langevin_rejects_bad_arguments(quadratic):
    x0 = jnp.zeros((CHAINS, 2))
    with pytest.raises(ValueError, match="beta=0.0\\) must be a finite positive"):
        linflow.langevin_descent(quadratic, x0, steps=2, lr=0.1, beta=0.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="go together"):
        linflow.langevin_descent(
            quadratic, x0, steps=2, lr=0.1, beta=1.0, key=jax.random.key(0), batch_size=3
        )
    with pytest.raises(ValueError, match="two_phase\\(..., save_every=2\\) must be a positive int"):
        linflow.two_phase(
            quadratic,
            quadratic,
            x0,
            explore_steps=2,
            converge_steps=3,
            lr=0.1,
            beta=1.0,
            key=jax.random.key(0),
            save_every=2,
        )
    with pytest.raises(ValueError, match="dt=-0.1\\) must be a finite positive"):
        linflow.langevin_flow(
            quadratic, x0, jnp.array([1.0]), beta=1.0, key=jax.random.key(0), dt=-0.1
        )


def test_langevin_flags_diverged_chains():
    # GLD's mean follows x <- (I - lr H) x: stable for lr < 2 / λ_max(H) ≈ 0.9, not at 1.5.
    objective = linflow.Objective(lambda x: 0.5 * x @ H @ x, batch=(3,))
    x0 = jnp.ones((3, 2))
    for lr, expected in [(0.1, False), (1.5, True)]:
        traj = linflow.langevin_descent(
            objective, x0, steps=2000, lr=lr, beta=4.0, key=jax.random.key(0), save_every=1000
        )
        assert traj.stats["diverged"].shape == (3,)
        assert np.all(np.asarray(traj.stats["diverged"]) == expected)


# Teacher-student --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def problem():
    return linflow.teacher_student(jax.random.key(0), d=3, m=2, n=200, lam=1e-4)


def test_measure_representation_reproduces_the_network(problem):
    student = problem.init_student(jax.random.key(1), 6, scale=0.7)
    r, theta = linflow.measure(student)
    direct = linflow.relu_network(student, problem.x)
    assert np.allclose(direct, jax.nn.relu(problem.x @ theta.T) @ r, rtol=1e-12)
    # The distance sees measures, not parameters: splitting a teacher neuron changes nothing.
    a, w = problem.teacher
    split = linflow.ReLUNetwork(jnp.concatenate([a, a[:1]]), jnp.concatenate([w, w[:1]]) / 1.0)
    split = split._replace(a=split.a.at[0].set(a[0] / 2).at[-1].set(a[0] / 2))
    assert float(linflow.measure_distance(split, problem.teacher)) < 1e-12
    assert float(linflow.measure_distance(student, problem.teacher)) > 0.5


def test_norm_adaptive_step_is_the_hand_written_update(problem):
    student = problem.init_student(jax.random.key(2), 5, scale=0.5)
    grads = jax.grad(problem.loss)(student)
    opt = linflow.norm_adaptive(0.3)
    updates, _ = opt.update(grads, opt.init(student), student)
    new = optax.apply_updates(student, updates)
    for j in range(5):
        a, w = student.a[j], student.w[j]
        eta = 0.3 * abs(a) * np.linalg.norm(w) / (a**2 + np.linalg.norm(w) ** 2)
        assert np.isclose(new.a[j], a - eta * grads.a[j], rtol=1e-13)
        assert np.allclose(new.w[j], w - eta * grads.w[j], rtol=1e-13)
    with pytest.raises(ValueError, match="alpha=0"):
        linflow.norm_adaptive(0)


def test_norm_adaptive_descent_recovers_the_teacher(problem):
    batch = (2,)
    student = problem.init_student(jax.random.key(3), 8, scale=0.3, batch=batch)
    traj = linflow.gradient_descent(
        problem.objective(batch=batch),
        student,
        steps=10000,
        optimizer=linflow.norm_adaptive(1.0),
        save_every=2500,
    )
    final = jax.tree.map(lambda p: p[-1], traj.weights)
    scale = float(
        linflow.measure_distance(
            linflow.ReLUNetwork(0 * problem.teacher.a, problem.teacher.w), problem.teacher
        )
    )
    assert np.all(np.asarray(linflow.measure_distance(final, problem.teacher)) < 0.1 * scale)
    loss = jax.vmap(problem.objective(batch=batch).value)(traj.weights)
    assert np.all(np.diff(np.asarray(loss), axis=0) < 0)


def test_ntk_linearisation_predicts_lazy_training():
    """With NTK scaling and many neurons, f(t) − y = exp(−K t / n)(f(0) − y) (Jacot et al. 2018)."""
    problem = linflow.teacher_student(jax.random.key(5), d=3, m=2, n=20, scaling="ntk")
    student = problem.init_student(jax.random.key(6), 2000, scale=1.0)
    K = linflow.ntk_gram(student, problem.x, "ntk")
    ts = jnp.array([0.0, 2.0, 5.0])
    traj = linflow.gradient_flow(problem.objective(), student, ts, rtol=1e-8, atol=1e-10)
    outputs = jax.vmap(lambda p: linflow.relu_network(p, problem.x, "ntk"))(traj.weights)
    lam, Q = np.linalg.eigh(np.asarray(K) / 20)
    r0 = np.asarray(outputs[0] - problem.y)
    for i, t in enumerate(np.asarray(ts)):
        predicted = Q @ (np.exp(-lam * t) * (Q.T @ r0))
        assert np.linalg.norm(
            np.asarray(outputs[i] - problem.y) - predicted
        ) < 0.05 * np.linalg.norm(r0)
    movement = linflow.relative_movement(traj.weights.w)
    assert float(movement[-1]) < 0.05


def test_two_phase_schedule(problem):
    student = problem.init_student(jax.random.key(7), 6, scale=0.3, batch=(2,))
    explore = problem.with_penalty(1e-3, "l2").objective(batch=(2,))
    converge = problem.with_penalty(0.0).objective(batch=(2,))
    traj = linflow.two_phase(
        explore,
        converge,
        student,
        explore_steps=200,
        converge_steps=300,
        lr=0.1,
        beta=1e5,
        key=jax.random.key(8),
        save_every=100,
    )
    assert np.array_equal(traj.ts, np.arange(0, 501, 100)) and traj.stats["switch"] == 200
    loss = jax.vmap(converge.value)(traj.weights)
    assert np.all(loss[-1] < 0.5 * loss[0])
