"""Bad or unusual input gets a clear error from linflow naming the function and the argument,
never a silent wrong answer, a NaN or a deep traceback from inside jit. One test per class of
input, parametrised over the public engines."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linflow

TS = jnp.array([0.0, 1.0])


@pytest.fixture(scope="module")
def problem():
    task = linflow.tasks.random_task(jax.random.key(0), [2.0, 1.0], 2, 3)
    w0 = linflow.init_weights(jax.random.key(1), task, 2, scheme="balanced", scale=0.3, batch=(2,))
    return task, w0


# Each engine as `run(task, weights)`, with what it needs beyond them.
ENGINES = {
    "gradient_descent": lambda task, w: linflow.gradient_descent(task, w, steps=2, lr=0.1),
    "gradient_flow": lambda task, w: linflow.gradient_flow(task, w, TS),
    "mode_flow": lambda task, w: linflow.mode_flow(task, w, TS),
    "exact_flow": lambda task, w: linflow.exact_flow(task, w, TS),
    "learning_times": lambda task, w: linflow.learning_times(task, w),
    "loss": lambda task, w: linflow.loss(task, w),
    "to_modes": lambda task, w: linflow.to_modes(task, w),
}


def _finite(out):
    leaves = jax.tree.leaves(out.weights if isinstance(out, linflow.Trajectory) else out)
    return all(np.all(np.isfinite(np.asarray(x))) for x in leaves)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "convert, what",
    [
        (lambda w: w.astype(jnp.int32), "int32"),
        (lambda w: w > 0, "bool"),
        (lambda w: w.astype(jnp.bfloat16), "bfloat16"),
        (lambda w: w.astype(jnp.complex64), "complex64"),
    ],
    ids=["int32", "bool", "bfloat16", "complex"],
)
def test_weights_of_other_dtypes_are_refused(engine, problem, convert, what):
    task, w0 = problem
    with pytest.raises(
        ValueError, match=rf"{engine}\(\.\.\., weights: W_1=\.\.\.\) has dtype {what}"
    ):
        ENGINES[engine](task, tuple(convert(w) for w in w0))


@pytest.mark.parametrize("engine", ENGINES)
def test_layers_of_mixed_dtypes_are_refused(engine, problem):
    task, w0 = problem
    mixed = (w0[0].astype(jnp.float32), w0[1])
    with pytest.raises(
        ValueError, match=rf"{engine}\(\.\.\., weights=\.\.\.\): all layers need one"
    ):
        ENGINES[engine](task, mixed)


@pytest.mark.parametrize("engine", ENGINES)
def test_float32_weights_with_a_float64_task_compute_in_float32(engine, problem):
    """The weights' dtype is the computation's: the task is rounded to it once."""
    task, w0 = problem
    out = ENGINES[engine](task, tuple(w.astype(jnp.float32) for w in w0))
    leaves = jax.tree.leaves(out.weights if isinstance(out, linflow.Trajectory) else out)
    assert all(x.dtype == jnp.float32 for x in leaves if jnp.issubdtype(x.dtype, jnp.floating))
    assert _finite(out)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_task_must_be_a_task(engine, problem):
    _, w0 = problem
    with pytest.raises(ValueError, match=rf"{engine}\(task=\.\.\.\) must be a linflow.Task"):
        ENGINES[engine](None, w0)


def test_integer_save_times_are_converted_to_the_weights_dtype(problem):
    task, w0 = problem
    traj = linflow.gradient_flow(task, w0, jnp.arange(3))
    assert traj.ts.dtype == w0[0].dtype
    np.testing.assert_array_equal(traj.ts, [0.0, 1.0, 2.0])
    fractional = linflow.gradient_flow(task, w0, jnp.linspace(0, 2, 5))
    np.testing.assert_allclose(fractional.ts, [0.0, 0.5, 1.0, 1.5, 2.0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": "0.1"}, r"lr='0.1'\) must be a real number"),
        ({"lr": True}, r"lr=True\) must be a real number"),
        ({"lr": jnp.ones(2)}, r"lr=\.\.\.\) must be a scalar"),
        ({"lr": 0.1, "steps": True}, r"steps=True\) must be an int"),
        ({"lr": 0.1, "steps": 2.0}, r"steps=2.0\) must be an int"),
        ({"lr": 0.1, "save_every": 0}, r"save_every=0\) must be an int >= 1"),
        ({"lr": 0.1, "key": 0}, r"key=\.\.\.\) must be one JAX PRNG key"),
        ({"lr": lambda k: jnp.ones(2)}, r"lr=\.\.\.\): a schedule must map the step to a scalar"),
        ({"optimizer": "adam"}, r"optimizer=\.\.\.\) must be an optax"),
    ],
)
def test_gradient_descent_arguments(problem, kwargs, match):
    task, w0 = problem
    kwargs = {"steps": 2, **kwargs}
    with pytest.raises(ValueError, match=r"gradient_descent\(\.\.\., " + match):
        linflow.gradient_descent(task, w0, **kwargs)


@pytest.mark.parametrize("engine", ["gradient_flow", "mode_flow"])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dt0": 0.0}, r"dt0=0.0\) must be a finite positive"),
        ({"dt0": -0.1, "stepsize_controller": diffrax.ConstantStepSize()}, r"dt0=-0.1\) must be"),
        ({"solver": "tsit5"}, r"solver='tsit5'\) must be a diffrax solver instance"),
        ({"solver": diffrax.Euler()}, r"solver=Euler\(\)\) has no error estimate.*ConstantStep"),
        ({"stepsize_controller": "pid"}, r"stepsize_controller='pid'\) must be a diffrax"),
        ({"rtol": True}, r"rtol=True\) must be a real number"),
        ({"max_steps": 10.0}, r"max_steps=10.0\) must be an int"),
        ({"tau": "1"}, r"tau='1'\) must be a real number"),
    ],
)
def test_flow_options_are_checked_before_the_solve(engine, problem, kwargs, match):
    task, w0 = problem
    with pytest.raises(ValueError, match=rf"{engine}\(\.\.\., " + match):
        getattr(linflow, engine)(task, w0, TS, **kwargs)


def test_options_passed_on_name_the_calling_function(problem):
    task, w0 = problem
    with pytest.raises(ValueError, match=r"mode_flow\(\.\.\., steps=\.\.\.\) is not an option"):
        linflow.mode_flow(task, w0, TS, steps=3)
    with pytest.raises(ValueError, match=r"end_to_end_flow\(\.\.\., tau=0\) must be"):
        linflow.end_to_end_flow(task, linflow.product(w0), TS, depth=2, tau=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch": (-1,)}, r"batch=\(-1,\)\) must be a tuple of non-negative ints"),
        ({"hidden": 5.0}, r"hidden=\(5.0,\)\) must be a positive int"),
        ({"hidden": True}, r"hidden=\(True,\)\) must be a positive int"),
        ({"key": 0}, r"key=\.\.\.\) must be one JAX PRNG key"),
        ({"task": None}, r"^init_weights\(task=\.\.\.\) must be a linflow.Task"),
        ({"scheme": "lambda_balanced", "lam": "a"}, r"lam='a'\) must be a real number"),
        ({"scheme": "lambda_balanced", "lam": float("nan")}, r"lam=\.\.\.\) contains NaN"),
        ({"scheme": "aligned", "scale": -0.1}, r"scale=\.\.\. must be non-negative"),
        ({"scheme": "aligned", "scale": True}, r"scale=True\) must be a real number"),
        ({"scheme": "gaussian", "lam": 0.5}, r"lam=\.\.\.\) only applies"),
    ],
)
def test_init_weights_arguments(problem, kwargs, match):
    task, _ = problem
    arguments = {"key": jax.random.key(0), "task": task, "hidden": 2, **kwargs}
    match = match if match.startswith("^") else r"init_weights\(\.\.\., " + match
    with pytest.raises(ValueError, match=match):
        linflow.init_weights(
            arguments.pop("key"), arguments.pop("task"), arguments.pop("hidden"), **arguments
        )


def test_a_covariance_that_is_not_positive_semi_definite_is_refused():
    with pytest.raises(ValueError, match=r"Task\(sigma_xx=\.\.\.\) must be positive semi-definite"):
        linflow.Task(jnp.eye(2), jnp.diag(jnp.array([1.0, -1.0])))
    # Rounding-level negative eigenvalues of a singular covariance are accepted.
    X = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    task = linflow.Task.from_data(X, X[:, :1])
    assert np.isfinite(float(task.loss_min))
