import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import data_task, max_abs_diff, tree_allclose, whitened_task

import linflow


@pytest.fixture(scope="module")
def task():
    return data_task(jax.random.key(0), n=8, d=4, m=3)  # non-whitened, m != d


@pytest.fixture(scope="module")
def weights0(task):
    return linflow.init_weights(jax.random.key(1), task, 5, scale=0.5, batch=(3,))


def plain_loop(task, weights, lr, steps):
    """The update of Saxe, McClelland & Ganguli (2014) and its twin, written out for two layers."""
    w1, w2 = (np.asarray(w) for w in weights)
    sxx, syx = np.asarray(task.sigma_xx), np.asarray(task.sigma_yx)
    saved = [(w1, w2)]
    for _ in range(steps):
        e = syx - w2 @ w1 @ sxx
        w1, w2 = w1 + lr * np.swapaxes(w2, -1, -2) @ e, w2 + lr * e @ np.swapaxes(w1, -1, -2)
        saved.append((w1, w2))
    return saved


def test_matches_plain_loop_of_the_update_rule(task, weights0):
    traj = linflow.gradient_descent(task, weights0, steps=40, lr=0.05, save_every=10)
    expected = plain_loop(task, weights0, 0.05, 40)[::10]
    assert np.array_equal(traj.ts, [0, 10, 20, 30, 40])
    for i, (w1, w2) in enumerate(expected):
        assert np.allclose(traj.weights[0][i], w1, rtol=1e-12, atol=1e-14)
        assert np.allclose(traj.weights[1][i], w2, rtol=1e-12, atol=1e-14)


def test_optax_sgd_equals_plain_descent(task, weights0):
    plain = linflow.gradient_descent(task, weights0, steps=20, lr=0.05, save_every=20)
    sgd = linflow.gradient_descent(
        task, weights0, steps=20, optimizer=optax.sgd(0.05), save_every=20
    )
    assert tree_allclose(plain.weights, sgd.weights, rtol=1e-12, atol=1e-14)


def test_optimizer_state_is_per_initialisation(task, weights0):
    """A global-norm clip must see one initialisation at a time, as separate runs would."""
    opt = optax.chain(optax.clip_by_global_norm(0.05), optax.adam(0.02))
    batched = linflow.gradient_descent(task, weights0, steps=15, optimizer=opt, save_every=15)
    for i in range(3):
        params = tuple(w[i] for w in weights0)
        state = opt.init(params)
        for _ in range(15):
            updates, state = opt.update(linflow.gradients(task, params), state, params)
            params = optax.apply_updates(params, updates)
        assert tree_allclose(
            tuple(w[-1, i] for w in batched.weights), params, rtol=1e-10, atol=1e-12
        )


def test_full_minibatch_equals_full_batch(task, weights0):
    full = linflow.gradient_descent(task, weights0, steps=10, lr=0.05, save_every=10)
    mini = linflow.gradient_descent(
        task, weights0, steps=10, lr=0.05, save_every=10, batch_size=8, key=jax.random.key(2)
    )
    assert tree_allclose(full.weights, mini.weights, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("normalize", ["mean", "sum"])
def test_per_sample_sgd_is_source_000_update(normalize):
    """$\\Delta W_1 = \\eta W_2^\\top (y_i - \\hat y_i) x_i^\\top$,
    $\\Delta W_2 = \\eta (y_i - \\hat y_i) h_i^\\top$,
    visiting the samples in a fresh random order every epoch."""
    task = data_task(jax.random.key(3), n=5, d=3, m=2, normalize=normalize)
    w1, w2 = linflow.init_weights(jax.random.key(4), task, 4, scale=0.5)
    key, lr, steps = jax.random.key(5), 0.03, 12
    traj = linflow.gradient_descent(task, (w1, w2), steps=steps, lr=lr, batch_size=1, key=key)
    X, Y = np.asarray(task.X), np.asarray(task.Y)
    w1, w2 = np.asarray(w1), np.asarray(w2)
    for k in range(steps):
        i = int(jax.random.permutation(jax.random.fold_in(key, k // 5), 5)[k % 5])
        x, y = X[i][:, None], Y[i][:, None]
        h = w1 @ x
        e = y - w2 @ h
        w1, w2 = w1 + lr * w2.T @ e @ x.T, w2 + lr * e @ h.T
        assert np.allclose(traj.weights[0][k + 1], w1, atol=1e-12)
        assert np.allclose(traj.weights[1][k + 1], w2, atol=1e-12)


def test_descent_approaches_flow_at_first_order_in_lr():
    """GD step $k$ at rate $\\eta$ tracks the flow at $t = k$, $\\tau = 1/\\eta$, to $O(\\eta)$."""
    task = whitened_task(jax.random.key(6))
    weights0 = linflow.init_weights(jax.random.key(7), task, 3, scale=0.3, batch=(2,))
    errors = []
    for lr in (0.02, 0.01):
        steps = int(round(2.0 / lr))
        gd = linflow.gradient_descent(task, weights0, steps=steps, lr=lr, save_every=steps // 4)
        flow = linflow.gradient_flow(task, weights0, gd.ts, tau=1 / lr, rtol=1e-11, atol=1e-13)
        errors.append(max_abs_diff(gd.product(), flow.product()))
    assert 0 < errors[0] < 0.1
    assert 1.7 < errors[0] / errors[1] < 2.3


def test_divergence_names_the_learning_rate(task, weights0):
    with pytest.raises(ValueError, match=r"lr=3\.0\) diverged"):
        linflow.gradient_descent(task, weights0, steps=200, lr=3.0, save_every=10)
    traj = linflow.gradient_descent(task, weights0, steps=200, lr=3.0, save_every=10, throw=False)
    assert traj.stats["diverged"].shape == (3,) and bool(jnp.all(traj.stats["diverged"]))


def test_progress_gives_the_same_result(task, weights0, capsys):
    quiet = linflow.gradient_descent(task, weights0, steps=30, lr=0.05, save_every=3)
    shown = linflow.gradient_descent(task, weights0, steps=30, lr=0.05, save_every=3, progress=True)
    assert tree_allclose(quiet.weights, shown.weights, rtol=0, atol=0)
    assert "gradient_descent" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0.0}, "lr=0.0\\) must be a finite positive"),
        ({"lr": -0.1}, "lr=-0.1\\) must be a finite positive"),
        ({"lr": float("nan")}, "lr=nan\\) must be a finite positive"),
        ({}, "needs lr="),
        ({"lr": 0.1, "optimizer": optax.sgd(0.1)}, "inside the optimizer"),
        ({"lr": 0.1, "save_every": 3}, "save_every=3\\) must be a positive int dividing steps=10"),
        ({"lr": 0.1, "batch_size": 2}, "needs key="),
        (
            {"lr": 0.1, "batch_size": 9, "key": jax.random.key(0)},
            "batch_size=9\\) must be an int in \\[1, 8\\]",
        ),
        ({"optimizer": "adam"}, "optax.GradientTransformation"),
    ],
)
def test_rejects_bad_arguments(task, weights0, kwargs, match):
    with pytest.raises(ValueError, match=match):
        linflow.gradient_descent(task, weights0, steps=10, **kwargs)


def test_minibatch_needs_data(weights0):
    task = linflow.Task(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="needs a task with data"):
        linflow.gradient_descent(
            task, weights0, steps=2, lr=0.1, batch_size=1, key=jax.random.key(0)
        )


def _hand_optax_loop(task, weights, optimizer, steps):
    """One initialisation, the optax loop written out, with the loss for optimisers that need it."""
    weights = tuple(weights)

    def value_fn(w):
        return linflow.loss(task, w)

    @jax.jit
    def step(weights, state):
        value, grad = jax.value_and_grad(value_fn)(weights)
        updates, state = optimizer.update(
            grad, state, weights, value=value, grad=grad, value_fn=value_fn
        )
        return optax.apply_updates(weights, updates), state

    state = optimizer.init(weights)
    for _ in range(steps):
        weights, state = step(weights, state)
    return weights


@pytest.mark.parametrize(
    "make",
    [
        optax.lbfgs,
        lambda: optax.chain(optax.sgd(0.05), optax.contrib.reduce_on_plateau(patience=2)),
        lambda: optax.MultiSteps(optax.adam(0.05), every_k_schedule=3),
    ],
    ids=["lbfgs", "reduce_on_plateau", "multi_steps"],
)
def test_optimizers_that_need_the_loss_match_a_hand_written_loop(task, weights0, make):
    traj = linflow.gradient_descent(task, weights0, steps=12, optimizer=make(), save_every=12)
    optimizer = make()
    if isinstance(optimizer, optax.MultiSteps):
        optimizer = optimizer.gradient_transformation()
    for i in range(weights0[0].shape[0]):
        expected = _hand_optax_loop(task, [w[i] for w in weights0], optimizer, 12)
        got = [w[-1, i] for w in traj.weights]
        assert tree_allclose(got, list(expected), rtol=1e-9, atol=1e-12)
    assert np.all(traj.loss(task)[-1] < traj.loss(task)[0])


def test_learning_rate_schedule_matches_a_hand_written_loop(task, weights0):
    schedule = optax.exponential_decay(0.05, transition_steps=5, decay_rate=0.5)
    traj = linflow.gradient_descent(task, weights0, steps=15, lr=schedule, save_every=15)
    assert traj.lr is None
    w1, w2 = (np.asarray(w) for w in weights0)
    sxx, syx = np.asarray(task.sigma_xx), np.asarray(task.sigma_yx)
    for k in range(15):
        lr = float(schedule(k))
        e = syx - w2 @ w1 @ sxx
        w1, w2 = w1 + lr * np.swapaxes(w2, -1, -2) @ e, w2 + lr * e @ np.swapaxes(w1, -1, -2)
    assert tree_allclose([w[-1] for w in traj.weights], [w1, w2], rtol=1e-12, atol=1e-14)


def test_peak_memory_of_the_trajectory_is_checked_before_running(task, weights0, monkeypatch):
    monkeypatch.setattr(linflow._checks, "available_memory", lambda: 10_000)
    with pytest.raises(
        ValueError, match=r"gradient_descent\(\.\.\.\): the trajectory .* raise save_every"
    ):
        linflow.gradient_descent(task, weights0, steps=100, lr=0.05)
    with pytest.raises(ValueError, match=r"gradient_flow\(\.\.\.\): the trajectory"):
        linflow.gradient_flow(task, weights0, jnp.linspace(0.0, 1.0, 100))
