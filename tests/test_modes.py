import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import data_task, max_abs_diff, tree_allclose, whitened_task

import linflow

TS = jnp.array([0.0, 0.7, 2.0, 4.0])


@pytest.fixture(scope="module")
def wide():
    return whitened_task(jax.random.key(0), m=3, d=5)  # m < d, whitened


@pytest.fixture(scope="module")
def tall():
    return data_task(jax.random.key(1), n=12, d=3, m=4)  # m > d, correlated inputs


def random_weights(key, task, hidden=4, batch=(2,), scale=0.7):
    return linflow.init_weights(key, task, hidden, scale=scale, batch=batch)


@pytest.mark.parametrize("which", ["wide", "tall"])
def test_bases_diagonalise_sigma_yx(which, request):
    task = request.getfixturevalue(which)
    U, s, V = linflow.mode_bases(task)
    m, d = task.output_dim, task.input_dim
    assert U.shape == (m, m) and V.shape == (d, d)
    assert np.allclose(U.T @ U, np.eye(m), atol=1e-13)
    assert np.allclose(V.T @ V, np.eye(d), atol=1e-13)
    U_k, s_k, V_k = task.modes()
    assert np.array_equal(U[:, : s.size], U_k) and np.array_equal(V[:, : s.size], V_k)
    s_bar = np.zeros((m, d))
    s_bar[np.arange(s.size), np.arange(s.size)] = s_k
    assert np.allclose(U.T @ task.sigma_yx @ V, s_bar, atol=1e-12)
    assert np.array_equal(linflow.mode_task(task).sigma_yx, s_bar)


@pytest.mark.parametrize(("which", "hidden"), [("wide", ()), ("tall", 4), ("wide", (4, 3))])
def test_change_of_basis_round_trip(which, hidden, request):
    task = request.getfixturevalue(which)
    weights = linflow.init_weights(jax.random.key(2), task, hidden, scale=0.5, batch=(2,))
    bar = linflow.to_modes(task, weights)
    assert tree_allclose(linflow.from_modes(task, bar), weights, rtol=0, atol=1e-14)
    # The end-to-end map becomes UᵀWV; its diagonal is the mode strengths.
    U, _, V = linflow.mode_bases(task)
    w_bar = linflow.product(bar)
    assert np.allclose(w_bar, U.T @ linflow.product(weights) @ V, atol=1e-13)
    k = min(task.output_dim, task.input_dim)
    strengths = linflow.Trajectory(
        ts=TS[:1], weights=tuple(w[None] for w in weights)
    ).mode_strengths(task)[0]
    assert np.allclose(jnp.diagonal(w_bar, axis1=-2, axis2=-1)[..., :k], strengths, atol=1e-13)
    # Same loss in the task's own basis (Σyy is rotated with it).
    assert np.allclose(
        linflow.loss(linflow.mode_task(task), bar), linflow.loss(task, weights), rtol=1e-12
    )


def test_first_layer_columns_and_last_layer_rows(wide):
    W1, W2 = random_weights(jax.random.key(3), wide, batch=())
    a, b = linflow.mode_vectors(linflow.to_modes(wide, (W1, W2)))
    U, _, V = linflow.mode_bases(wide)
    assert a.shape == (5, 4) and b.shape == (3, 4)
    assert np.allclose(a[1], W1 @ V[:, 1], atol=1e-14)  # a^i = W1 v^i
    assert np.allclose(b[2], U[:, 2] @ W2, atol=1e-14)  # b^iᵀ = u^iᵀ W2
    with pytest.raises(ValueError, match="mode_vectors"):
        linflow.mode_vectors((W2 @ W1,))
    with pytest.raises(ValueError, match="to_modes"):
        linflow.to_modes(wide, (W1.T, W2))


def eqs_6_7(s, a, b, tau):
    """Saxe et al. (2014)'s mode-vector equations, term by term (one initialisation, whitened)."""
    da, db = np.zeros_like(a), np.zeros_like(b)
    for i in range(a.shape[0]):
        s_i = s[i] if i < len(s) else 0.0
        if i < b.shape[0]:
            da[i] += (s_i - a[i] @ b[i]) * b[i]
        da[i] -= sum((a[i] @ b[j]) * b[j] for j in range(b.shape[0]) if j != i)
    for i in range(b.shape[0]):
        s_i = s[i] if i < len(s) else 0.0
        if i < a.shape[0]:
            db[i] += (s_i - a[i] @ b[i]) * a[i]
        db[i] -= sum((a[j] @ b[i]) * a[j] for j in range(a.shape[0]) if j != i)
    return da / tau, db / tau


def energy_eq_8(s, a, b, tau):
    """Saxe et al. (2014)'s energy, term by term; modes beyond min(m, d) have s = 0, no partner."""
    total = 0.0
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            target = s[i] if (i == j and i < len(s)) else 0.0
            total += (target - a[i] @ b[j]) ** 2
    return total / (2 * tau)


def test_mode_equations_are_eqs_6_7_and_energy_is_eq_8(wide):
    tau = 1.7
    weights = random_weights(jax.random.key(4), wide, batch=())
    bar = linflow.to_modes(wide, weights)
    a, b = (np.asarray(x) for x in linflow.mode_vectors(bar))
    s = np.asarray(wide.modes()[1])
    da, db = eqs_6_7(s, a, b, tau)
    dW1, dW2 = linflow.mode_equations(wide, bar, tau=tau)
    assert np.allclose(dW1.T, da, atol=1e-12) and np.allclose(dW2, db, atol=1e-12)
    assert np.abs(da).max() > 0.1
    assert np.isclose(linflow.energy(wide, bar, tau=tau), energy_eq_8(s, a, b, tau), rtol=1e-12)


@pytest.mark.parametrize("hidden", [4, (4, 3)])
@pytest.mark.parametrize("which", ["wide", "tall"])
def test_minus_grad_energy_is_the_mode_flow(which, hidden, request):
    task = request.getfixturevalue(which)
    tau = 0.6
    weights = linflow.init_weights(jax.random.key(5), task, hidden, scale=0.7)
    bar = linflow.to_modes(task, weights)
    grad = jax.grad(lambda w: linflow.energy(task, w, tau=tau))(bar)
    rhs = linflow.mode_equations(task, bar, tau=tau)
    assert tree_allclose(jax.tree.map(jnp.negative, grad), rhs, rtol=1e-11, atol=1e-12)
    # ... and it is the weight-space flow seen in the modes (Σxx ≠ I included).
    flow = tuple(-g / tau for g in linflow.gradients(task, weights))
    assert tree_allclose(linflow.to_modes(task, flow), rhs, rtol=1e-11, atol=1e-12)
    assert max(float(jnp.abs(x).max()) for x in rhs) > 0.05


@pytest.mark.parametrize("which", ["wide", "tall"])
def test_loss_is_tau_energy_plus_constant(which, request):
    task = request.getfixturevalue(which)
    tau = 2.5
    weights = linflow.init_weights(jax.random.key(6), task, 4, scale=0.8, batch=(5,))
    bar = linflow.to_modes(task, weights)
    gap = linflow.loss(task, weights) - tau * linflow.energy(task, bar, tau=tau)
    assert np.ptp(np.asarray(gap)) < 1e-12
    assert np.ptp(np.asarray(linflow.loss(task, weights))) > 0.1  # not a constant loss
    if task.whitened:  # realisable targets: F vanishes at the optimum, τF = L exactly
        assert np.allclose(gap, 0.0, atol=1e-13)


@pytest.mark.parametrize(("which", "hidden"), [("wide", 4), ("tall", (3, 3))])
def test_mode_flow_equals_gradient_flow(which, hidden, request):
    task = request.getfixturevalue(which)
    weights0 = linflow.init_weights(jax.random.key(7), task, hidden, scale=0.6, batch=(2,))
    kwargs = {"tau": 1.5, "rtol": 1e-12, "atol": 1e-14}
    modes = linflow.mode_flow(task, weights0, TS, **kwargs)
    weights = linflow.gradient_flow(task, weights0, TS, **kwargs)
    assert max_abs_diff(modes.weights, weights.weights) < 1e-8
    assert np.array_equal(modes.ts, TS)
    moved = max_abs_diff(tuple(w[-1] for w in weights.weights), weights0)
    assert moved > 0.1


# Learning events: every solve below has the same shapes (3 x 3 task, width 3, batch of 2,
# three fractions), so that the event solver compiles once.

FRACTIONS = jnp.array([0.1, 0.5, 0.9])


@pytest.fixture(scope="module")
def square():
    return whitened_task(jax.random.key(8), m=3, d=3, s=(3.0, 2.0, 1.0))


def aligned(task, scale, lam=0.0):
    return linflow.init_weights(
        jax.random.key(9), task, 3, scheme="aligned", scale=scale, lam=lam, batch=(2,)
    )


def test_event_times_match_time_to_learn(square):
    scale = jnp.array([0.05, 0.08, 0.1])
    times = linflow.learning_times(square, aligned(square, scale), FRACTIONS, tau=1.3)
    _, s, _ = square.modes()
    expected = linflow.time_to_learn(
        s[:, None], scale[:, None] ** 2, 1.3, fraction=FRACTIONS[None, :]
    )
    assert times.shape == (2, 3, 3)
    assert np.abs(times - expected[None]).max() < 1e-6


def test_event_times_are_exact_for_unbalanced_starts(square):
    lam, scale = 0.3, 0.05
    weights0 = aligned(square, scale, lam)
    times = linflow.learning_times(square, weights0, FRACTIONS)
    _, s, _ = square.modes()
    a, b = linflow.scalar_mode(times, s[:, None][None], scale, np.sqrt(scale**2 + lam))
    assert np.abs(a * b - (s[:, None] * FRACTIONS[None, :])[None]).max() < 1e-9
    balanced = linflow.time_to_learn(s[:, None], scale**2, fraction=FRACTIONS[None, :])
    assert np.all(times < balanced[None] - 0.05)  # imbalance speeds learning up
    # The same times read off a finely saved exact trajectory, to interpolation accuracy.
    traj = linflow.exact_flow(square, weights0, jnp.linspace(0.0, 3.0, 3001))
    assert np.abs(traj.learning_times(square, FRACTIONS) - times).max() < 1e-5


def test_acquisition_order_and_plateaus(square):
    times = linflow.learning_times(square, aligned(square, 0.03), FRACTIONS)[0]
    order = linflow.acquisition_order(times[:, 0])
    assert np.array_equal(order, [0, 1, 2])  # strongest mode first
    plateaus = linflow.plateau_lengths(times[:, 0], times[:, 2])
    assert np.allclose(plateaus[0], times[0, 0])
    assert np.allclose(plateaus[1:], times[1:, 0] - times[:-1, 2])
    # Starting the weak modes much further along reverses the order.
    late = jnp.array([1e-4, 1e-2, 0.3])
    times = linflow.learning_times(square, aligned(square, late), FRACTIONS)
    assert np.array_equal(linflow.acquisition_order(times[..., 1]), [[2, 1, 0]] * 2)


def test_modes_already_learnt_or_never_learnt():
    task = linflow.Task(jnp.diag(jnp.array([2.0, 1.0, 0.0])))
    weights0 = aligned(task, jnp.array([1.2, 0.1, 0.1]))
    times = linflow.learning_times(task, weights0, FRACTIONS, t_max=20.0)
    assert np.all(times[:, 0, :2] == 0.0) and np.all(times[:, 0, 2] > 0)  # u0 = 1.44 s/2.. 0.9s
    assert np.all(np.isinf(times[:, 2]))  # s = 0
    traj = linflow.exact_flow(task, weights0, jnp.linspace(0.0, 0.2, 3))
    read = traj.learning_times(task, FRACTIONS)
    assert np.all(read[:, 0, :2] == 0.0) and np.all(np.isinf(read[:, 2]))


def test_trajectory_learning_times_interpolate_linearly():
    task = linflow.Task(jnp.diag(jnp.array([2.0])))
    ts = jnp.array([0.0, 1.0, 2.0, 3.0])
    w = jnp.array([0.0, 0.4, 1.6, 2.0]).reshape(4, 1, 1)  # one layer, u = w
    traj = linflow.Trajectory(ts=ts, weights=(w,))
    assert np.allclose(traj.learning_times(task, (0.1, 0.5, 0.95)), [[0.5, 1.5, 2.75]])
    with pytest.raises(ValueError, match="fractions"):
        traj.learning_times(task, (0.5, 1.0))


def test_learning_times_rejects_bad_arguments(square):
    weights0 = linflow.init_weights(jax.random.key(13), square, 3, scale=0.1)
    with pytest.raises(ValueError, match="fractions"):
        linflow.learning_times(square, weights0, (0.0, 0.5))
    with pytest.raises(ValueError, match="t_max"):
        linflow.learning_times(square, weights0, t_max=-1.0)
    with pytest.raises(ValueError, match="plateau_lengths"):
        linflow.plateau_lengths(jnp.zeros(3), jnp.zeros(2))
