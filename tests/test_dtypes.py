"""linflow computes in the dtype of its inputs: float32 in, float32 out, with x64 off or on.

(float64 inputs give float64 outputs throughout the rest of the suite.)

`CALLS` runs every public function once on small float32 (or float64) inputs; the test checks
that every floating array it returns has the input dtype. `test_every_public_function_is_covered`
keeps the registry complete as the API grows.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linflow

_SETUPS = {}


def _setup(dtype):
    """The inputs, built once per precision (the test calls many functions on them)."""
    key = (jnp.dtype(dtype).name, jax.config.jax_enable_x64)
    if key not in _SETUPS:
        _SETUPS[key] = _build(dtype)
    return _SETUPS[key]


def _build(dtype):
    task = linflow.tasks.random_task(jax.random.key(0), [2.0, 1.0], 2, 3, dtype=dtype)
    w0 = linflow.init_weights(jax.random.key(1), task, 2, scheme="aligned", scale=0.1, batch=(2,))
    ts = jnp.asarray([0.0, 1.0, 2.0], dtype)
    traj = linflow.gradient_descent(task, w0, steps=4, lr=0.1, save_every=2)
    X = jnp.asarray(np.eye(3)[:, :3], dtype)
    data_task = linflow.Task.from_data(
        jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), dtype), jnp.ones((5, 2), dtype)
    )
    data_w0 = linflow.init_weights(jax.random.key(1), data_task, 2, scale=0.1)
    data_traj = linflow.gradient_descent(data_task, data_w0, steps=2, lr=0.1)
    target = linflow.low_rank_matrix(jax.random.key(2), 4, 4, 1, dtype=dtype)
    mask = linflow.observation_mask(jax.random.key(3), (4, 4), 10, dtype=dtype)
    problem = linflow.teacher_student(jax.random.key(4), d=3, m=2, n=6, dtype=dtype)
    student = problem.init_student(jax.random.key(5), 4)
    return locals()


def _diagonal(c):
    """Regression data for a diagonal network, n = 2 < d = 4, and a start from alpha = 0.5."""
    X = jnp.asarray([[1.0, 0.5, -0.3, 0.2], [0.1, -1.0, 0.4, 0.7]], c["dtype"])
    return X, X[:, 0], linflow.diagonal_weights(jnp.asarray(0.5, c["dtype"]), 4)


def _w_and_grad(c):
    w = linflow.product(c["w0"])[0]
    return w, w - c["task"].sigma_yx


CALLS = {
    "Task": lambda c: linflow.Task(c["task"].sigma_yx),
    "sharpness": lambda c: [linflow.sharpness(c["task"], c["w0"]), c["traj"].sharpness(c["task"])],
    "generalization_curve": lambda c: linflow.generalization_curve(c["ts"], 2.0, 3.0),
    "optimal_stopping_time": lambda c: linflow.optimal_stopping_time(
        jnp.asarray(2.0, c["dtype"]), 3.0
    ),
    "sample_generalization_curve": lambda c: linflow.sample_generalization_curve(
        c["data_task"], linflow.Task(c["data_task"].sigma_yx), c["ts"]
    ),
    "init_weights": lambda c: c["w0"],
    "loss": lambda c: linflow.loss(c["task"], c["w0"]),
    "gradients": lambda c: linflow.gradients(c["task"], c["w0"]),
    "product": lambda c: linflow.product(c["w0"]),
    "gradient_descent": lambda c: c["traj"],
    "gradient_flow": lambda c: linflow.gradient_flow(c["task"], c["w0"], c["ts"]),
    "exact_flow": lambda c: linflow.exact_flow(c["task"], c["w0"], c["ts"]).weights,
    "mode_flow": lambda c: linflow.mode_flow(c["task"], c["w0"], c["ts"]),
    "end_to_end_flow": lambda c: linflow.end_to_end_flow(
        c["task"], linflow.product(c["w0"]), c["ts"], depth=2
    ),
    "learning_times": lambda c: linflow.learning_times(c["task"], c["w0"]),
    "acquisition_order": lambda c: linflow.acquisition_order(c["traj"].ts),
    "plateau_lengths": lambda c: linflow.plateau_lengths(c["ts"], c["ts"]),
    "saxe_deep": lambda c: linflow.saxe_deep(c["ts"], 2.0, 0.1),
    "shallow": lambda c: linflow.shallow(c["ts"], 2.0, 0.1),
    "scalar_mode": lambda c: linflow.scalar_mode(c["ts"], 2.0, 0.1, 0.2),
    "deep_mode": lambda c: linflow.deep_mode(c["ts"], 2.0, 0.1, depth=3),
    "time_to_learn": lambda c: linflow.time_to_learn(jnp.asarray(2.0, c["dtype"]), 0.1),
    "preconditioned_gradient": lambda c: linflow.preconditioned_gradient(*_w_and_grad(c), 3),
    "singular_value_velocity": lambda c: linflow.singular_value_velocity(*_w_and_grad(c), 3),
    "ntk": lambda c: linflow.ntk(c["w0"], c["X"]),
    "predict": lambda c: linflow.predict(c["w0"], c["X"]),
    "representational_similarity": lambda c: linflow.representational_similarity(c["w0"], c["X"]),
    "to_modes": lambda c: linflow.to_modes(c["task"], c["w0"]),
    "from_modes": lambda c: linflow.from_modes(c["task"], c["w0"]),
    "mode_bases": lambda c: linflow.mode_bases(c["task"]),
    "mode_task": lambda c: linflow.mode_task(c["task"]).sigma_yx,
    "mode_vectors": lambda c: linflow.mode_vectors(c["w0"]),
    "mode_equations": lambda c: linflow.mode_equations(c["task"], c["w0"]),
    "energy": lambda c: linflow.energy(c["task"], c["w0"]),
    "mode_alignment": lambda c: linflow.mode_alignment(c["traj"], c["task"]),
    "illusory_correlations": lambda c: linflow.illusory_correlations(
        c["data_traj"], c["data_task"]
    ),
    "weight_movement": lambda c: linflow.weight_movement(c["traj"]),
    "relative_movement": lambda c: linflow.relative_movement(c["traj"].product()),
    "ntk_movement": lambda c: linflow.ntk_movement(c["data_traj"], c["data_task"]),
    "low_rank_matrix": lambda c: c["target"],
    "observation_mask": lambda c: c["mask"],
    "observed_loss": lambda c: linflow.observed_loss(c["target"], (c["target"], c["mask"])),
    "sensing_loss": lambda c: linflow.sensing_loss(
        c["target"], (c["target"][None], jnp.ones((1,), c["dtype"]))
    ),
    "completion_objective": lambda c: linflow.gradient_descent(
        linflow.completion_objective(c["target"], c["mask"]),
        (0.1 * c["target"], 0.1 * c["target"]),
        steps=2,
        lr=0.1,
    ),
    "effective_rank": lambda c: linflow.effective_rank(c["target"]),
    "diagonal_objective": lambda c: linflow.gradient_descent(
        linflow.diagonal_objective(*_diagonal(c)[:2]), _diagonal(c)[2], steps=2, lr=0.1
    ),
    "diagonal_weights": lambda c: linflow.diagonal_weights(jnp.asarray([0.1, 1.0], c["dtype"]), 4),
    "diagonal_beta": lambda c: linflow.diagonal_beta(_diagonal(c)[2]),
    "diagonal_limit": lambda c: linflow.diagonal_limit(
        *_diagonal(c)[:2], jnp.asarray([0.1, 1.0], c["dtype"])
    ),
    "saddle_to_saddle": lambda c: linflow.saddle_to_saddle(*_diagonal(c)[:2]),
    "unobserved_error": lambda c: linflow.unobserved_error(c["target"], c["target"], c["mask"]),
    "nuclear_norm_completion": lambda c: linflow.nuclear_norm_completion(
        c["target"], c["mask"], steps=3
    ),
    "relu_network": lambda c: [
        linflow.relu_network(c["student"], c["problem"].x, scaling)
        for scaling in ("standard", "ntk", "mean_field")
    ],
    "ReLUNetwork": lambda c: c["student"],
    "teacher_student": lambda c: [c["problem"].x, c["problem"].y],
    "TeacherStudent": lambda c: [
        c["problem"].loss(c["student"]),
        c["problem"].with_penalty(1e-3, "l2").loss(c["student"]),
    ],
    "uniform_sphere": lambda c: linflow.uniform_sphere(jax.random.key(0), 3, 2, c["dtype"]),
    "measure": lambda c: linflow.measure(c["student"]),
    "measure_distance": lambda c: linflow.measure_distance(c["student"], c["problem"].teacher),
    "ntk_gram": lambda c: linflow.ntk_gram(c["student"], c["problem"].x, "ntk"),
    "norm_adaptive": lambda c: linflow.gradient_descent(
        c["problem"].objective(), c["student"], steps=2, optimizer=linflow.norm_adaptive(0.1)
    ),
    "langevin_descent": lambda c: linflow.langevin_descent(
        c["problem"].objective(), c["student"], steps=2, lr=0.1, beta=10.0, key=jax.random.key(0)
    ),
    "langevin_flow": lambda c: linflow.langevin_flow(
        c["problem"].objective(), c["student"], c["ts"], beta=10.0, key=jax.random.key(0), dt=0.5
    ),
    "two_phase": lambda c: linflow.two_phase(
        c["problem"].objective(),
        c["problem"].objective(),
        c["student"],
        explore_steps=2,
        converge_steps=2,
        lr=0.1,
        beta=10.0,
        key=jax.random.key(0),
    ),
    "Objective": lambda c: linflow.Objective(lambda w: jnp.sum(w**2)).value(c["ts"]),
    "Trajectory": lambda c: [c["traj"][-1].product(), c["traj"][::2].loss(c["task"])],
    "scalar_pair": lambda c: linflow.scalar_pair(2.0)(c["ts"][1:]),
    "fixed_points": lambda c: [
        p.point for p in linflow.fixed_points(linflow.scalar_pair(1.0), c["ts"][1:].reshape(1, 2))
    ],
}
# Public functions whose outputs are integers (they are still run).
INTEGER_OUTPUTS = {"acquisition_order"}
# Public names that take or return no float arrays (constants, classes, files, submodules).
NOT_NUMERIC = {
    "CLOSED_FORMS",
    "ClosedForm",
    "SCHEMES",
    "FIXED_POINT_KINDS",
    "FixedPoint",
    "load_config",
    "load_sweep",
    "run_sweep",
    "plot",
    "tasks",
}


def _float_leaves(tree):
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]


def test_every_public_function_is_covered():
    public = {n for n in dir(linflow) if not n.startswith("_")} - {"annotations"}
    missing = public - set(CALLS) - NOT_NUMERIC
    assert not missing, f"add these public names to tests/test_dtypes.py CALLS: {sorted(missing)}"


@pytest.mark.parametrize("x64", [False, True], ids=["x64-off", "x64-on"])
@pytest.mark.parametrize("name", CALLS)
def test_float32_inputs_give_float32_outputs(name, x64):
    dtype = jnp.dtype("float32")
    with jax.enable_x64(x64):
        out = CALLS[name](_setup(dtype))
        leaves = _float_leaves(out)
        assert leaves or name in INTEGER_OUTPUTS, f"{name} returned no float arrays"
        assert all(x.dtype == dtype for x in leaves), [x.dtype for x in leaves]
