"""Representation diagnostics on closed-form cases: aligned networks, one layer, Jacobians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linflow
from linflow import tasks

U0 = 1e-3


@pytest.fixture(scope="module")
def saxe():
    """Aligned balanced two-layer network on the Saxe hierarchy, from the closed form."""
    task, items, properties = tasks.saxe_hierarchy()
    weights0 = linflow.init_weights(
        jax.random.key(0), task, 4, scheme="aligned", scale=U0**0.5, batch=(2,)
    )
    ts = jnp.concatenate([jnp.linspace(0.0, 12.0, 401), jnp.array([jnp.inf])])
    return task, items, properties, linflow.exact_flow(task, weights0, ts)


def test_learning_times_match_time_to_learn(saxe):
    task, _, _, traj = saxe
    s = task.modes()[1]
    expected = linflow.time_to_learn(s, U0)
    times = traj.learning_times(task, (0.5, 0.9))
    assert times.shape == (2, 4, 2)
    np.testing.assert_allclose(times[..., 0], np.broadcast_to(expected, (2, 4)), rtol=1e-3)
    late = linflow.time_to_learn(s, U0, fraction=0.9)
    np.testing.assert_allclose(times[0, :, 1], late, rtol=1e-3)
    short = linflow.Trajectory(ts=traj.ts[:2], weights=tuple(w[:2] for w in traj.weights))
    assert np.all(np.isinf(short.learning_times(task)))
    with pytest.raises(ValueError, match="learning_times.*fractions"):
        traj.learning_times(task, (0.0,))


def test_rsm_converges_to_v_s_vt(saxe):
    task, _, _, traj = saxe
    U, s, V = task.modes()
    rsm = linflow.representational_similarity(traj.weights, task.X)
    assert rsm.shape == (traj.ts.size, 2, 4, 4)
    np.testing.assert_allclose(rsm[-1, 0], (V * s[None, :]) @ V.T, atol=1e-10)
    # By hand: V S Vᵀ = (Y Yᵀ)^(1/2); canary and salmon share Grow and Move.
    gram = task.Y @ task.Y.T
    np.testing.assert_allclose(rsm[-1, 1] @ rsm[-1, 1], gram, atol=1e-9)
    cosine = linflow.representational_similarity(traj.weights, task.X, normalize=True)
    np.testing.assert_allclose(jnp.diagonal(cosine[-1, 0]), 1.0, rtol=1e-12)
    outputs = linflow.representational_similarity(traj.weights, task.X, layer=2)
    np.testing.assert_allclose(outputs[-1, 0], gram, atol=1e-9)
    with pytest.raises(ValueError, match="representational_similarity.*layer=3"):
        linflow.representational_similarity(traj.weights, task.X, layer=3)


def test_mode_alignment_of_a_rotated_network():
    s = jnp.array([3.0, 2.0, 1.0])
    task = linflow.Task(jnp.diag(s))
    theta = 0.3
    c, sn = np.cos(theta), np.sin(theta)
    rotation = jnp.array([[c, -sn, 0.0], [sn, c, 0.0], [0.0, 0.0, 1.0]])
    # W = S Rᵀ: output modes are the task's, input modes rotated by θ in the first plane.
    traj = linflow.Trajectory(ts=jnp.zeros(1), weights=((jnp.diag(s) @ rotation.T)[None],))
    u_overlap, v_overlap = linflow.mode_alignment(traj, task)
    np.testing.assert_allclose(u_overlap[0], np.eye(3), atol=1e-12)
    expected = np.array([[c, sn, 0.0], [sn, c, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(v_overlap[0], expected, atol=1e-12)


def test_mode_alignment_of_an_aligned_start():
    task = linflow.Task(jnp.diag(jnp.array([3.0, 2.0, 1.0])), jnp.diag(jnp.array([1.0, 2.0, 3.0])))
    traj = linflow.Trajectory(
        ts=jnp.zeros(1), weights=(jnp.diag(jnp.array([0.3, 0.2, 0.1]))[None],)
    )
    # W Σxx = diag(0.3, 0.4, 0.3): the network's top mode is the task's second.
    u_overlap, v_overlap = linflow.mode_alignment(traj, task)
    assert np.isclose(u_overlap[0, 1, 0], 1.0) and np.isclose(v_overlap[0, 1, 0], 1.0)


def test_illusory_correlation_rises_and_falls(saxe):
    task, items, properties, traj = saxe
    illusory = linflow.illusory_correlations(traj, task)
    assert illusory.shape == (traj.ts.size, 2, 4, 7)
    # Where the item has the property, nothing is reported.
    assert np.all(np.asarray(illusory)[:, :, np.asarray(task.Y) == 1] == 0)
    # Closed form: Ŷᵀ = Σ_α u_α(t) u^α v^αᵀ with u_α from saxe_deep.
    U, s, V = task.modes()
    u = linflow.saxe_deep(traj.ts[:, None], s[None, :], U0)
    predicted = jnp.einsum("tk,mk,nk->tnm", u, U, V)
    salmon, fly = items.index("Salmon"), properties.index("Fly")
    curve = illusory[:, 0, salmon, fly]
    np.testing.assert_allclose(curve, predicted[:, salmon, fly], atol=1e-9)
    # Modes 1 and 2 each add 1/4 to "salmon flies" before modes 3, 4 take 1/2 away.
    peak = int(jnp.argmax(curve))
    assert 0.3 < float(curve[peak]) < 0.5 and 0 < peak < traj.ts.size - 1
    assert abs(float(curve[-1])) < 1e-9
    with pytest.raises(ValueError, match="illusory_correlations"):
        linflow.illusory_correlations(traj, linflow.Task(task.sigma_yx))


def test_weight_movement_by_hand():
    w0 = jnp.array([[1.0, 2.0], [0.0, 3.0]])
    ts = jnp.arange(3.0)
    traj = linflow.Trajectory(
        ts=ts, weights=(w0[None] * (1 + ts).reshape(3, 1, 1), jnp.stack([w0.T] * 3))
    )
    movement = linflow.weight_movement(traj)
    np.testing.assert_allclose(movement, np.stack([ts, np.zeros(3)], axis=1), atol=1e-15)


def test_ntk_equals_jacobian_product():
    task, _, _ = tasks.saxe_hierarchy()
    weights = linflow.init_weights(jax.random.key(1), task, (3, 5), scheme="gaussian", scale=0.5)
    traj = linflow.Trajectory(ts=jnp.zeros(1), weights=tuple(w[None] for w in weights))

    def outputs(params):  # output-major, as linflow.ntk: f[a, i] = (W x_i)_a
        return (linflow.product(params) @ task.X.T).ravel()

    jac = jax.jacobian(outputs)(weights)
    flat = jnp.concatenate([j.reshape(j.shape[0], -1) for j in jac], axis=1)
    theta = linflow.ntk(traj.weights, task.X)
    assert theta.shape == (1, 28, 28)
    np.testing.assert_allclose(theta[0], flat @ flat.T, rtol=1e-10, atol=1e-12)


def test_ntk_of_aligned_and_one_layer_networks(saxe):
    task, _, _, traj = saxe
    U, s, V = task.modes()
    # Balanced aligned: W1ᵀW1 = V D Vᵀ and W2 W2ᵀ = U D Uᵀ with D = u(t) per mode.
    u = traj.mode_strengths(task)[-1, 0]
    expected = jnp.kron(jnp.eye(7), V @ jnp.diag(u) @ V.T) + jnp.kron(
        U @ jnp.diag(u) @ U.T, jnp.eye(4)
    )
    np.testing.assert_allclose(linflow.ntk(traj.weights, task.X)[-1, 0], expected, atol=1e-9)
    # From u0 = 1e-3 to u = s the kernel grows by orders of magnitude: rich learning.
    assert float(linflow.ntk_movement(traj, task)[-1, 0]) > 100
    one_layer = linflow.Trajectory(
        ts=jnp.arange(2.0), weights=(jnp.stack([jnp.zeros((7, 4)), task.sigma_yx])[:, None],)
    )
    np.testing.assert_allclose(linflow.ntk_movement(one_layer, task), 0.0, atol=1e-15)
    np.testing.assert_allclose(
        linflow.ntk(one_layer.weights, task.X)[1, 0], jnp.eye(28), atol=1e-15
    )


def test_lazy_moves_less_than_rich():
    task, _, _ = tasks.saxe_hierarchy()
    movement = {}
    for lam in (0.0, -20.0):
        weights0 = linflow.init_weights(
            jax.random.key(2), task, 4, scheme="lambda_balanced", scale=0.05, lam=lam
        )
        traj = linflow.gradient_descent(task, weights0, steps=400, lr=0.025, save_every=200)
        assert float(traj.loss(task)[-1]) < 1e-3  # both learn the task
        movement[lam] = float(linflow.ntk_movement(traj, task)[-1])
    assert movement[-20.0] < 0.2 < 10 < movement[0.0]
