r"""Continuous gradient flow $\tau\,dW_l/dt = -\partial L/\partial W_l$, integrated with diffrax."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ._checks import (
    check_int,
    check_memory,
    check_positive,
    check_task_weights,
    check_times,
    known,
    positive_scalar,
)
from ._descent import diverged_per_start
from ._loss import layer_gradients
from ._objective import Objective, as_objective
from ._progress import progress_meter
from ._task import Task
from ._trajectory import Trajectory, trajectory_bytes


def _vector_field(t, weights, args):
    task, tau = args
    if isinstance(task, Objective):
        return jax.tree.map(lambda g: -g / tau, task.gradients(weights))
    grads = layer_gradients(weights, task.sigma_yx, task._sigma_xx)
    return tuple(-g / tau for g in grads)


def batch_max_rms(tree, batch_ndim: int | None = None):
    """Largest root-mean-square over the batch: each initialisation gets its own error control.

    Leaves are `(*batch, ...)` with `batch_ndim` batch axes (default: all but the last two,
    as for weight matrices); one shared step then satisfies the tolerance for every
    trajectory, as a separate solve per trajectory would.
    """
    leaves = jax.tree.leaves(tree)

    def event_axes(x):
        return tuple(range(x.ndim - 2 if batch_ndim is None else batch_ndim, x.ndim))

    sq = sum(jnp.sum(jnp.abs(x) ** 2, axis=event_axes(x)) for x in leaves)
    count = sum(int(np.prod([x.shape[a] for a in event_axes(x)])) for x in leaves)
    return jnp.sqrt(jnp.max(sq) / count)


FLOW_OPTIONS = (
    "tau",
    "solver",
    "rtol",
    "atol",
    "stepsize_controller",
    "dt0",
    "max_steps",
    "progress",
    "throw",
)


def check_flow_options(fn: str, options: dict) -> None:
    """Raise for a keyword that `gradient_flow` does not take (for engines passing them on)."""
    unknown = sorted(set(options) - set(FLOW_OPTIONS))
    if unknown:
        raise ValueError(
            f"{fn}(..., {unknown[0]}=...) is not an option; the options of the flow are "
            f"{', '.join(FLOW_OPTIONS)}."
        )


def pid_controller(rtol, atol, norm=batch_max_rms) -> diffrax.PIDController:
    """The default adaptive step-size control of the engines (PI coefficients for Tsit5)."""
    return diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.4, icoeff=0.3, norm=norm)


# Default (rtol, atol) of the adaptive controller, per dtype: float32 cannot resolve
# error estimates much below 10 eps of the state.
TOLERANCES = {"float32": (1e-5, 1e-7), "float64": (1e-6, 1e-8)}
# Implicit solvers' Newton iterations stop on the same tolerances; in float32 they cannot
# resolve corrections near 1e-7 (Kvaerno5 then takes 30x more steps, or hits max_steps).
IMPLICIT_TOLERANCES = {"float32": (1e-5, 1e-5), "float64": (1e-6, 1e-8)}


def tolerances(fn: str, dtype, rtol, atol, defaults=TOLERANCES) -> tuple[float, float]:
    """`(rtol, atol)`: the given ones (checked positive) or the defaults of `dtype`."""
    default_rtol, default_atol = defaults[jnp.dtype(dtype).name]
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    check_positive(fn, "rtol", rtol)
    check_positive(fn, "atol", atol)
    return rtol, atol


def check_solver(fn: str, solver, stepsize_controller, dt0, dtype):
    """The solver (default Tsit5) and `dt0`, checked against the step-size controller."""
    if solver is None:
        solver = diffrax.Tsit5()
    elif not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(
            f"{fn}(..., solver={solver!r}) must be a diffrax solver instance such as "
            f"diffrax.Tsit5(), got {type(solver).__name__}."
        )
    if stepsize_controller is not None and not isinstance(
        stepsize_controller, diffrax.AbstractStepSizeController
    ):
        raise ValueError(
            f"{fn}(..., stepsize_controller={stepsize_controller!r}) must be a diffrax step-size "
            "controller such as diffrax.ConstantStepSize()."
        )
    adaptive = stepsize_controller is None or isinstance(
        stepsize_controller, diffrax.AbstractAdaptiveStepSizeController
    )
    if adaptive and not isinstance(solver, diffrax.AbstractAdaptiveSolver):
        raise ValueError(
            f"{fn}(..., solver={type(solver).__name__}()) has no error estimate, so an adaptive "
            "step-size controller cannot use it: pass stepsize_controller="
            "diffrax.ConstantStepSize() with dt0=..., or use an embedded method such as "
            "diffrax.Tsit5()."
        )
    if isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError(f"{fn}(..., stepsize_controller=ConstantStepSize()) needs dt0=....")
    if dt0 is not None:
        dt0 = positive_scalar(fn, "dt0", dt0, dtype)
    return solver, dt0


def _vector_field(t, weights, args):
    problem, tau = args
    if isinstance(problem, Objective):
        return jax.tree.map(lambda g: -g / tau, problem.gradients(weights))
    grads = layer_gradients(weights, problem.sigma_yx, problem._sigma_xx)
    return tuple(-g / tau for g in grads)


def _diffeqsolve(problem, weights0, ts, tau, solver, controller, dt0, max_steps, meter):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(_vector_field),
        solver,
        t0=jnp.zeros((), ts.dtype),
        t1=ts[-1],
        dt0=dt0,
        y0=weights0,
        args=(problem, tau),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
        progress_meter=meter,
    )


@eqx.filter_jit
def _solve(problem, weights0, ts, tau, solver, controller, dt0, max_steps, meter):
    """One solve for the whole batch; returns the saves, the result and the step count."""
    sol = _diffeqsolve(problem, weights0, ts, tau, solver, controller, dt0, max_steps, meter)
    return sol.ys, sol.result, sol.stats["num_steps"]


@eqx.filter_jit
def _solve_each(problem, weights0, ts, tau, solver, controller, dt0, max_steps, n_batch: int):
    """One solve per initialisation (vmapped), for implicit solvers: their root finder then
    works on one initialisation's parameters instead of the whole batch's (whose Jacobian
    would have (batch x parameters)^2 entries). Results and step counts are per initialisation."""
    batch = jax.tree.leaves(weights0)[0].shape[:n_batch]

    def flatten(tree):
        return jax.tree.map(lambda x: x.reshape((-1, *x.shape[n_batch:])), tree)

    def one(y0, data):
        single = Objective(problem.loss_fn, data) if isinstance(problem, Objective) else problem
        meter = diffrax.NoProgressMeter()
        return _solve(single, y0, ts, tau, solver, controller, dt0, max_steps, meter)

    data = problem.data if isinstance(problem, Objective) else None
    ys, result, num_steps = jax.vmap(one)(flatten(weights0), flatten(data))
    ys = jax.tree.map(lambda y: jnp.moveaxis(y, 0, 1).reshape(ts.shape + batch + y.shape[2:]), ys)
    return ys, jax.tree.map(lambda r: r.reshape(batch), result), num_steps.reshape(batch)


def gradient_flow(
    task: Task,
    weights0,
    ts,
    *,
    tau=1.0,
    solver=None,
    rtol: float | None = None,
    atol: float | None = None,
    stepsize_controller=None,
    dt0=None,
    max_steps: int = 65536,
    progress: bool = False,
    throw: bool = True,
) -> Trajectory:
    r"""Integrate the gradient flow of a linear network (or any objective) with diffrax.

    $$\tau \frac{dW_l}{dt} = -\frac{\partial L}{\partial W_l}
    = (W_N \cdots W_{l+1})^\top (\Sigma_{yx} - W \Sigma_{xx}) (W_{l-1} \cdots W_1)^\top,$$

    for two layers $\tau \dot W_1 = W_2^\top(\Sigma_{yx} - W_2 W_1 \Sigma_{xx})$,
    $\tau \dot W_2 = (\Sigma_{yx} - W_2 W_1 \Sigma_{xx}) W_1^\top$ (Saxe, McClelland & Ganguli
    2014), with the weights tuple as the state. A whole batch of initialisations is one state
    with one step size, chosen so that every initialisation meets the tolerances
    (`batch_max_rms`). The default solver is Tsit5 with a PID step-size controller. An
    implicit solver (e.g. `diffrax.Kvaerno5()`) instead solves each initialisation on its own
    (vmapped), so that its Newton iterations see one initialisation's Jacobian.

    With a `linflow.Objective` (or a plain callable, taken as an unbatched objective) in place
    of the task, it integrates $\tau\,d\theta/dt = -\nabla\ell(\theta)$ for any parameter pytree,
    with $\nabla\ell$ from `jax.grad` vmapped over the objective's batch axes.

    Works eagerly and inside `jax.jit`, `jax.grad` (e.g. with respect to `tau`, the start or
    the task) and `jax.vmap` (e.g. over `tau`). It computes in the dtype of the weights;
    the default tolerances depend on it (float64: `rtol=1e-6`, `atol=1e-8`; float32:
    `rtol=1e-5`, `atol=1e-7`, and `atol=1e-5` with an implicit solver, whose Newton
    iterations cannot resolve smaller corrections in float32).

    **Arguments:**

    - `task`: the `linflow.Task`, or a `linflow.Objective` or callable `loss_fn(params)`.
    - `weights0`: tuple $(W_1, \dots, W_N)$ at $t = 0$, each `(*batch, h_l, h_{l-1})`; for an
      objective, the parameter pytree with the objective's leading batch axes on every leaf.
    - `ts`: increasing times $\ge 0$ at which to save, shape `(T,)`.
    - `tau`: time constant $\tau > 0$ ($\tau = 1/\eta$ makes $t$ count gradient-descent steps).
    - `solver`: any diffrax solver (default `diffrax.Tsit5()`); one without an error estimate
      (e.g. `diffrax.Euler()`) needs `stepsize_controller=diffrax.ConstantStepSize()`.
    - `rtol`, `atol`: tolerances of the default PID controller (defaults per dtype, above).
    - `stepsize_controller`, `dt0`: override the controller (e.g. `diffrax.ConstantStepSize()`
      with a `dt0 > 0`).
    - `max_steps`: most solver steps allowed.
    - `progress`: show a progress bar (diffrax's `TqdmProgressMeter`), or a callable
      `progress(fraction)` called on the host as $t/t_1$ advances (every 10 solver steps).
    - `throw`: raise if the solver fails or the solution becomes inf or NaN; otherwise see
      `stats`.

    **Returns:** a `Trajectory` with `unit = "time"` and `tau`; `stats` holds `result` (a
    `diffrax.RESULTS` item; per initialisation for implicit solvers), `num_steps` and
    `diverged` (shape `batch`: the solution of that initialisation holds inf or NaN).

    **Raises:** `ValueError` for bad arguments (also before running if the trajectory would
    not fit in memory); `RuntimeError` if the solver fails or the solution diverges and
    `throw` (an `EquinoxRuntimeError`, also a `RuntimeError`, with the same message under
    `jax.jit`).

    **Example:**

    ```python
    traj = linflow.gradient_flow(task, weights0, jnp.linspace(0.0, 20.0, 201), rtol=1e-8)
    ```
    """
    return integrate(
        "gradient_flow",
        task,
        weights0,
        ts,
        tau=tau,
        solver=solver,
        rtol=rtol,
        atol=atol,
        stepsize_controller=stepsize_controller,
        dt0=dt0,
        max_steps=max_steps,
        progress=progress,
        throw=throw,
    )


def integrate(
    fn: str,
    task,
    weights0,
    ts,
    *,
    tau=1.0,
    solver=None,
    rtol=None,
    atol=None,
    stepsize_controller=None,
    dt0=None,
    max_steps=65536,
    progress=False,
    throw=True,
) -> Trajectory:
    """`gradient_flow` on behalf of the public function `fn` (named in its errors)."""
    if isinstance(task, Task) or task is None:
        task, weights0 = check_task_weights(fn, task, weights0)
        n_batch = weights0[0].ndim - 2
        norm = batch_max_rms
    else:
        task = as_objective(fn, task)
        weights0 = task.check_params(fn, weights0)
        n_batch = task.batch_ndim
        norm = eqx.Partial(batch_max_rms, batch_ndim=n_batch)
    dtype = jax.tree.leaves(weights0)[0].dtype
    ts = check_times(fn, ts, dtype)
    tau = positive_scalar(fn, "tau", tau, dtype)
    max_steps = check_int(fn, "max_steps", max_steps, minimum=1)
    solver, dt0 = check_solver(fn, solver, stepsize_controller, dt0, dtype)
    implicit = isinstance(solver, diffrax.AbstractImplicitSolver)
    rtol, atol = tolerances(fn, dtype, rtol, atol, IMPLICIT_TOLERANCES if implicit else TOLERANCES)
    check_memory(
        fn,
        trajectory_bytes(ts.shape[0], weights0),
        f"the trajectory ({ts.shape[0]} saves)",
        "save at fewer times ts",
    )
    if stepsize_controller is None:
        stepsize_controller = pid_controller(rtol, atol, optx.rms_norm if implicit else norm)
    if implicit:
        ys, result, num_steps = _solve_each(
            task, weights0, ts, tau, solver, stepsize_controller, dt0, max_steps, n_batch
        )
    else:
        meter = progress_meter(progress)
        ys, result, num_steps = _solve(
            task, weights0, ts, tau, solver, stepsize_controller, dt0, max_steps, meter
        )
    diverged = diverged_per_start(ys, n_batch)
    if throw:
        ys = raise_failures(fn, ys, result, num_steps, diverged, dt0)
    return Trajectory(
        ts=ts,
        weights=ys,
        stats={"result": result, "num_steps": num_steps, "diverged": diverged},
        unit="time",
        tau=tau,
    )


def raise_failures(fn: str, ys, result, num_steps, diverged, dt0):
    """Raise (eagerly) or attach an `equinox.error_if` (traced) for a failed or diverged solve.

    `result` may hold one code per initialisation (implicit solvers): the first failure's
    message is reported."""
    codes = result._value
    success = diffrax.RESULTS.successful._value
    failure = f"{fn}: the solver failed (pass throw=False to get the partial trajectory)"
    blow_up = (
        f"{fn}: the solution became inf or NaN although the solver reported success"
        + (": the constant step dt0 is too large for the solver" if dt0 is not None else "")
        + "; lower dt0 or use the adaptive default (pass throw=False to inspect "
        "stats['diverged'])."
    )
    failed = jnp.any(codes != success)
    if known(failed):
        flat = np.asarray(codes).reshape(-1)
        first = int(np.argmax(flat != success))
        item = jax.tree.map(lambda v: v.reshape(-1)[first], result)
        steps = int(np.asarray(num_steps).reshape(-1)[first])
        raise RuntimeError(f"{failure}, after {steps} steps: {diffrax.RESULTS[item]}")
    any_diverged = jnp.any(diverged)
    if known(any_diverged):
        count = f" ({int(jnp.sum(diverged))} of {diverged.size} initialisation(s).)"
        raise RuntimeError(blow_up + count)
    if known(failed) is None:
        ys = eqx.error_if(ys, failed, failure + ".")
        ys = eqx.error_if(ys, any_diverged, blow_up)
    return ys
