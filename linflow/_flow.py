r"""Continuous gradient flow $\tau\,dW_l/dt = -\partial L/\partial W_l$, integrated with diffrax."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_positive, check_times, check_weights
from ._loss import layer_gradients
from ._objective import Objective, as_objective
from ._progress import progress_meter
from ._task import Task
from ._trajectory import Trajectory


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


def pid_controller(rtol, atol, norm=batch_max_rms) -> diffrax.PIDController:
    """The default adaptive step-size control of the engines (PI coefficients for Tsit5)."""
    return diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.4, icoeff=0.3, norm=norm)


@eqx.filter_jit
def _solve(task, weights0, ts, tau, solver, controller, dt0, max_steps, progress_meter):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(_vector_field),
        solver,
        t0=jnp.zeros((), ts.dtype),
        t1=ts[-1],
        dt0=dt0,
        y0=weights0,
        args=(task, tau),
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
        progress_meter=progress_meter,
    )


def gradient_flow(
    task: Task,
    weights0,
    ts,
    *,
    tau=1.0,
    solver=None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
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
    $\tau \dot W_2 = (\Sigma_{yx} - W_2 W_1 \Sigma_{xx}) W_1^\top$ (source 004, eq. 3), with the
    weights tuple as the state. A whole batch of initialisations is one state with one step
    size, chosen so that every initialisation meets the tolerances (`batch_max_rms`). The
    default solver is Tsit5 with a PID step-size controller.

    With a `linflow.Objective` (or a plain callable, taken as an unbatched objective) in place
    of the task, it integrates $\tau\,d\theta/dt = -\nabla\ell(\theta)$ for any parameter pytree,
    with $\nabla\ell$ from `jax.grad` vmapped over the objective's batch axes.

    **Arguments:**

    - `task`: the `linflow.Task`, or a `linflow.Objective` or callable `loss_fn(params)`.
    - `weights0`: tuple $(W_1, \dots, W_N)$ at $t = 0$, each `(*batch, h_l, h_{l-1})`; for an
      objective, the parameter pytree with the objective's leading batch axes on every leaf.
    - `ts`: increasing times $\ge 0$ at which to save, shape `(T,)`.
    - `tau`: time constant $\tau > 0$ ($\tau = 1/\eta$ makes $t$ count gradient-descent steps).
    - `solver`: any diffrax solver (default `diffrax.Tsit5()`).
    - `rtol`, `atol`: tolerances of the default PID controller.
    - `stepsize_controller`, `dt0`: override the controller (e.g. `diffrax.ConstantStepSize()`
      with a `dt0`).
    - `max_steps`: most solver steps allowed.
    - `progress`: show a progress bar (diffrax's `TqdmProgressMeter`), or a callable
      `progress(fraction)` called on the host as $t/t_1$ advances (every 10 solver steps).
    - `throw`: raise if the solver fails; otherwise the failure is in `stats["result"]`.

    **Returns:** a `Trajectory`; `stats` holds `result` (a `diffrax.RESULTS` item) and
    `num_steps`.

    **Raises:** `ValueError` for bad arguments; `RuntimeError` if the solver fails and `throw`.

    **Example:**

    ```python
    traj = linflow.gradient_flow(task, weights0, jnp.linspace(0.0, 20.0, 201), rtol=1e-8)
    ```
    """
    fn = "gradient_flow"
    if isinstance(task, Task):
        weights0 = check_weights(fn, weights0, task.input_dim, task.output_dim)
        norm = batch_max_rms
    else:
        task = as_objective(fn, task)
        weights0 = task.check_params(fn, weights0)
        norm = eqx.Partial(batch_max_rms, batch_ndim=task.batch_ndim)
    dtype = jax.tree.leaves(weights0)[0].dtype
    ts = check_times(fn, ts).astype(dtype)
    check_positive(fn, "tau", tau)
    check_positive(fn, "rtol", rtol)
    check_positive(fn, "atol", atol)
    if not isinstance(max_steps, int | np.integer) or max_steps < 1:
        raise ValueError(f"{fn}(..., max_steps={max_steps!r}) must be a positive int.")
    solver = diffrax.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = pid_controller(rtol, atol, norm)
    elif isinstance(stepsize_controller, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError(f"{fn}(..., stepsize_controller=ConstantStepSize()) needs dt0=....")
    meter = progress_meter(progress)
    tau = jnp.asarray(tau, dtype)
    sol = _solve(task, weights0, ts, tau, solver, stepsize_controller, dt0, int(max_steps), meter)
    if throw and not bool(sol.result == diffrax.RESULTS.successful):
        raise RuntimeError(
            f"{fn}: the solver failed after {int(sol.stats['num_steps'])} steps: "
            f"{diffrax.RESULTS[sol.result]} (pass throw=False to get the partial trajectory)."
        )
    return Trajectory(
        ts=ts,
        weights=sol.ys,
        stats={"result": sol.result, "num_steps": sol.stats["num_steps"]},
    )
