"""Every engine composes with `jax.jit`, `jax.grad` and `jax.vmap`, with its default arguments.

Each engine is wrapped as `run(task, weights0, p) -> per-initialisation scalar`, where `p` is
its rate parameter (the learning rate of gradient descent, `tau` of the flows): the final loss,
or a learning time. The same wrappers are checked under each transformation, so the compiled
functions are shared across tests where they can be.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linflow

TS = jnp.array([0.0, 0.5, 2.0])
TIGHT = {"rtol": 1e-12, "atol": 1e-14}  # so that finite differences see the ODE, not the solver


def _final_loss(task, traj):
    return traj.loss(task)[-1]


ENGINES = {
    "gradient_descent": lambda task, w0, p: _final_loss(
        task, linflow.gradient_descent(task, w0, steps=20, lr=p)
    ),
    "gradient_flow": lambda task, w0, p: _final_loss(
        task, linflow.gradient_flow(task, w0, TS, tau=p, **TIGHT)
    ),
    "mode_flow": lambda task, w0, p: _final_loss(
        task, linflow.mode_flow(task, w0, TS, tau=p, **TIGHT)
    ),
    "end_to_end_flow": lambda task, w0, p: _final_loss(
        task, linflow.end_to_end_flow(task, linflow.product(w0), TS, depth=2, tau=p, **TIGHT)
    ),
    "learning_times": lambda task, w0, p: linflow.learning_times(task, w0, tau=p)[..., 0, 0],
    "langevin_descent": lambda task, w0, p: _final_loss(
        task,
        linflow.langevin_descent(
            linflow.Objective(eqx.Partial(_network_loss, task), batch=(2,)),
            w0,
            steps=20,
            lr=p,
            beta=1e4,
            key=jax.random.key(3),
        ),
    ),
}
# The rate parameter of each engine at which it is tested.
RATES = {"gradient_descent": 0.1, "langevin_descent": 0.1}


def _network_loss(task, weights):
    return linflow.loss(task, weights)


@pytest.mark.parametrize("engine", ENGINES)
def test_jit_and_vmap_equal_eager_calls(engine, problem):
    task, w0 = problem
    run, p = ENGINES[engine], RATES.get(engine, 1.0)
    eager = run(task, w0, p)
    assert eager.shape == (2,) and np.all(np.isfinite(eager))
    jitted = jax.jit(lambda w: run(task, w, p))(w0)
    np.testing.assert_allclose(jitted, eager, rtol=1e-10)
    ps = jnp.array([p, 1.5 * p])
    vmapped = jax.jit(jax.vmap(lambda q: run(task, w0, q)))(ps)
    looped = jnp.stack([run(task, w0, q) for q in ps])
    np.testing.assert_allclose(vmapped, looped, rtol=1e-9)
    assert not np.allclose(looped[0], looped[1])  # the parameter matters


@pytest.mark.parametrize("engine", ENGINES)
def test_vmap_over_tasks_equals_a_loop(engine, problem):
    task, w0 = problem
    run, p = ENGINES[engine], RATES.get(engine, 1.0)
    sigmas = jnp.stack([task.sigma_yx, 0.8 * task.sigma_yx, task.sigma_yx[::-1]])
    vmapped = jax.vmap(lambda syx: run(linflow.Task(syx), w0, p))(sigmas)
    looped = jnp.stack([run(linflow.Task(syx), w0, p) for syx in sigmas])
    np.testing.assert_allclose(vmapped, looped, rtol=1e-9)


@pytest.mark.parametrize("engine", ENGINES)
def test_grad_matches_finite_differences(engine, problem):
    """d/dp of the rate, of the init scale and of sigma_yx (along one direction), in float64."""
    task, w0 = problem
    run, p = ENGINES[engine], RATES.get(engine, 1.0)
    direction = jnp.array([[0.3, -0.2, 0.1], [0.0, 0.4, -0.5]])

    def f(x):
        rate, scale, c = x[0], x[1], x[2]
        start = linflow.init_weights(
            jax.random.key(1), task, 2, scheme="balanced", scale=scale, batch=(2,)
        )
        return jnp.sum(run(linflow.Task(task.sigma_yx + c * direction), start, rate))

    x = jnp.array([p, 0.3, 0.0])
    grad = jax.grad(f)(x)
    h = 1e-5
    reference = [(f(x + h * e) - f(x - h * e)) / (2 * h) for e in jnp.eye(3)]
    np.testing.assert_allclose(grad, reference, rtol=1e-6, atol=1e-9)


def test_learning_time_derivative_in_tau_is_exact(problem):
    """t scales with tau, so d t / d tau = t / tau (a closed-form check of the event's grad)."""
    task, w0 = problem
    times = linflow.learning_times(task, w0, tau=2.0)
    grad = jax.jacobian(lambda tau: linflow.learning_times(task, w0, tau=tau))(2.0)
    np.testing.assert_allclose(grad, times / 2.0, rtol=1e-7)


def test_a_traced_bad_value_raises_the_eager_message(problem):
    """Value problems inside jit go through equinox.error_if with the eager message."""
    task, w0 = problem
    with pytest.raises(ValueError, match=r"gradient_descent\(\.\.\., lr=-0\.1\) must be a finite"):
        linflow.gradient_descent(task, w0, steps=2, lr=-0.1)
    with pytest.raises(Exception, match=r"gradient_descent\(\.\.\., lr=\.\.\.\) must be a finite"):
        jax.jit(lambda lr: linflow.gradient_descent(task, w0, steps=2, lr=lr).weights)(-0.1)
    with pytest.raises(ValueError, match="diverged"):
        linflow.gradient_descent(task, w0, steps=50, lr=5.0)
    with pytest.raises(Exception, match=r"lr=\.\.\.\) diverged"):
        jax.jit(lambda lr: linflow.gradient_descent(task, w0, steps=50, lr=lr).weights)(5.0)
    with pytest.raises(Exception, match=r"gradient_flow\(\.\.\., ts=\.\.\.\) must be strictly"):
        jax.jit(lambda ts: linflow.gradient_flow(task, w0, ts).weights)(jnp.array([0.0, 2, 1]))
    with pytest.raises(Exception, match="the solver failed"):
        jax.jit(lambda w: linflow.gradient_flow(task, w, TS, max_steps=2).weights)(w0)
