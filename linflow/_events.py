r"""Learning events: when each mode is learnt, in which order, and the plateaus between.

Mode $\alpha$ is learnt to a fraction $f$ when its strength
$u_\alpha(t) = u^{\alpha\top} W(t)\, v^\alpha$ first reaches $f s_\alpha$. `learning_times`
finds these times with diffrax events (exact to the solver's tolerance);
`Trajectory.learning_times` reads them off saved trajectories by interpolation.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array

from ._checks import (
    check_fractions,
    check_int,
    check_task_weights,
    known,
    positive_scalar,
)
from ._flow import _vector_field, pid_controller, tolerances
from ._modes import mode_task, to_modes
from ._task import Task


def _mode_strength(mode_weights, alpha):
    """$u_\\alpha$: the diagonal entry of $\\bar W_N \\cdots \\bar W_1$, without forming it all."""
    row = mode_weights[-1][alpha]
    for w in mode_weights[-2::-1]:
        row = row @ w
    return row[alpha]


@eqx.filter_jit
def _event_times(bar, mode_weights0, alphas, targets, tau, t_max, rtol, atol, max_steps):
    """First time each initialisation (leading axis) reaches `targets[j]` in mode `alphas[j]`."""

    root_atol = max(1e-3 * atol, 100 * float(jnp.finfo(t_max.dtype).eps))

    def one(y0, alpha, target):
        def cond(t, y, args, **kwargs):
            # Relative to the target, so that the root find's tolerance on the value is
            # scale-free: its rounding noise is a few eps whatever s is.
            value = _mode_strength(y, alpha) / target - 1
            # In the default float dtype: diffrax compares it with a Python 0.0 in a
            # `lax.cond`, which fails for float32 values when x64 is on.
            return value.astype(jnp.result_type(float))

        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_vector_field),
            diffrax.Tsit5(),
            t0=jnp.zeros((), t_max.dtype),
            t1=t_max,
            dt0=None,
            y0=y0,
            args=(bar, tau),
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=pid_controller(rtol, atol),
            event=diffrax.Event(cond, optx.Newton(rtol=rtol, atol=root_atol), direction=True),
            max_steps=max_steps,
            throw=False,
        )
        started = cond(0.0, y0, None) >= 0
        hit = jnp.any(jnp.asarray(jax.tree.leaves(sol.event_mask)))
        t = jnp.where(hit, sol.ts[-1], jnp.inf)
        return jnp.where(started, 0.0, t), sol.result

    per_target = jax.vmap(one, in_axes=(None, 0, 0))
    return jax.vmap(per_target, in_axes=(0, None, None))(mode_weights0, alphas, targets)


# Default (rtol, atol) of the event solves, per dtype: the times are the product, so they are
# resolved about as finely as the dtype allows.
TOLERANCES = {"float32": (1e-6, 1e-8), "float64": (1e-10, 1e-12)}


def learning_times(
    task: Task,
    weights0,
    fractions=(0.5,),
    *,
    tau=1.0,
    t_max=None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 65536,
    throw: bool = True,
) -> Array:
    r"""First time each mode strength reaches a fraction of its singular value, by diffrax events.

    For every initialisation, mode $\alpha$ and fraction $f$, the first $t$ with
    $u_\alpha(t) = u^{\alpha\top} W(t)\, v^\alpha = f\, s_\alpha$ under
    $\tau\,\dot W_l = -\partial L/\partial W_l$. Each is a separate solve in mode space (where
    $u_\alpha$ is a diagonal entry) that stops at the event; the crossing inside the last step
    is located by a Newton root find (optimistix) on the dense solution, so the time is exact
    to the solver's tolerance. For balanced aligned starts compare `time_to_learn`.

    Works eagerly and inside `jax.jit`, `jax.vmap` and `jax.grad`. Computes in the dtype of
    the weights, with default tolerances per dtype (float64: `rtol=1e-10`, `atol=1e-12`;
    float32: `rtol=1e-6`, `atol=1e-8`, which give times to about $10^{-4}$ relative).

    **Arguments:**

    - `task`, `weights0` (tuple, each `(*batch, h_l, h_{l-1})`), `tau` as for `gradient_flow`.
    - `fractions`: the fractions $f$, shape `(F,)`.
    - `t_max`: give up at this time (default $100\,\tau/s_{\min}$, $s_{\min}$ the smallest
      positive singular value; raise it for deep networks started very close to zero, whose
      plateaus grow like a power of $1/u_0$). A solve ends at its event, so a generous `t_max`
      costs little.
    - `rtol`, `atol`, `max_steps`: solver settings (tolerance defaults per dtype, above).
    - `throw`: raise if a solve fails; otherwise failed solves give `nan`.

    **Returns:** times in units of `tau`'s time, shape `(*batch, k, F)` with `k = min(m, d)`:
    0 for a mode already at or above $f s_\alpha$ at $t = 0$, `inf` where it is not reached by
    `t_max` (also for $s = 0$).

    **Raises:** `ValueError` for bad arguments; `RuntimeError` naming the solver's failure
    (e.g. the maximum number of steps) if a solve fails and `throw`.

    **Example:**

    ```python
    weights0 = linflow.init_weights(key, task, 8, scheme="aligned", scale=1e-2)
    linflow.learning_times(task, weights0, (0.1, 0.5, 0.9))   # (k, 3)
    ```
    """
    fn = "learning_times"
    task, weights0 = check_task_weights(fn, task, weights0)
    dtype = weights0[0].dtype
    tau = positive_scalar(fn, "tau", tau, dtype)
    rtol, atol = tolerances(fn, dtype, rtol, atol, TOLERANCES)
    max_steps = check_int(fn, "max_steps", max_steps, minimum=1)
    fractions = check_fractions(fn, fractions, dtype)
    _, s, _ = task.modes()
    k, n_f = s.shape[0], fractions.shape[0]
    if t_max is None:
        s_min = jnp.min(jnp.where(s > 0, s, jnp.inf))
        t_max = jnp.where(jnp.isfinite(s_min), 100.0 * tau / s_min, tau)
    else:
        t_max = positive_scalar(fn, "t_max", t_max, dtype)
    batch = weights0[0].shape[:-2]
    flat = tuple(w.reshape((-1, *w.shape[-2:])) for w in to_modes(task, weights0))
    alphas = jnp.repeat(jnp.arange(k), n_f)
    targets = (s.reshape(k, 1) * fractions.reshape(1, n_f)).reshape(-1)
    # s = 0 modes: a target of 0 would be met by noise; aim above any reachable value instead.
    targets = jnp.where(jnp.repeat(s, n_f) > 0, targets, jnp.finfo(dtype).max)
    times, result = _event_times(
        mode_task(task), flat, alphas, targets, tau, t_max, rtol, atol, max_steps
    )
    ok = (result._value == diffrax.RESULTS.successful._value) | (
        result._value == diffrax.RESULTS.event_occurred._value
    )
    if throw:
        failed = jnp.any(~ok)
        message = f"{fn}: an event solve failed (pass throw=False to get nan for it)"
        if known(failed):
            first = int(np.argmax(~np.asarray(ok).reshape(-1)))
            item = jax.tree.map(lambda v: v.reshape(-1)[first], result)
            raise RuntimeError(f"{message}: {diffrax.RESULTS[item]}")
        if known(failed) is None:
            times = eqx.error_if(times, failed, message + ".")
    times = jnp.where(ok, times, jnp.nan)
    return times.reshape((*batch, k, n_f))


def acquisition_order(times) -> Array:
    r"""Modes in the order they are learnt: indices sorting `times` along the mode axis.

    **Arguments:** `times` of shape `(*batch, k)`, e.g. `learning_times(...)[..., 0]` (modes that
    are never learnt, time `inf`, come last).

    **Returns:** mode indices, shape `(*batch, k)`, earliest first (ties keep mode order).

    **Example:**

    ```python
    order = linflow.acquisition_order(linflow.learning_times(task, weights0)[..., 0])
    ```
    """
    times = jnp.asarray(times)
    if times.ndim < 1:
        raise ValueError("acquisition_order(times=...) must have a mode axis (last).")
    return jnp.argsort(times, axis=-1, stable=True)


def plateau_lengths(onsets, completions) -> Array:
    r"""Plateaus of stage-like learning: the quiet time before each mode starts to be learnt.

    Modes are taken in the order of their onsets (e.g. the times to reach $0.1\,s_\alpha$);
    the plateau before the $n$-th of them is its onset minus the completion (e.g. the time to
    reach $0.9\,s_\alpha$) of the $(n-1)$-th, and the first plateau is its onset itself
    (Saxe et al. 2014; 2019). A negative value means the two transitions overlap.

    **Arguments:** `onsets`, `completions`: times, shape `(*batch, k)`, as from `learning_times`.

    **Returns:** plateau lengths, shape `(*batch, k)`, in acquisition order.

    **Raises:** `ValueError` if the shapes differ.

    **Example:**

    ```python
    times = linflow.learning_times(task, weights0, (0.1, 0.9))
    linflow.plateau_lengths(times[..., 0], times[..., 1])
    ```
    """
    onsets, completions = jnp.asarray(onsets), jnp.asarray(completions)
    if onsets.shape != completions.shape or onsets.ndim < 1:
        raise ValueError(
            "plateau_lengths(onsets=..., completions=...) must have the same shape "
            f"(*batch, k), got {onsets.shape} and {completions.shape}."
        )
    order = acquisition_order(onsets)
    start = jnp.take_along_axis(onsets, order, axis=-1)
    end = jnp.take_along_axis(completions, order, axis=-1)
    previous = jnp.concatenate([jnp.zeros_like(end[..., :1]), end[..., :-1]], axis=-1)
    return start - previous
