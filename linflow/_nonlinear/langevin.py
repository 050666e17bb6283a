r"""Gradient Langevin dynamics: the SDE, its discretisations GLD and SGLD, and a two-phase schedule.

$$dX_t = -\nabla L(X_t)\,dt + \sqrt{2/\beta}\; dB_t,$$

whose stationary law is the Gibbs measure $\pi \propto e^{-\beta L}$ (Raginsky, Rakhlin &
Telgarsky 2017, "Non-convex learning via stochastic gradient Langevin dynamics: a nonasymptotic
analysis"). Its
Euler-Maruyama discretisation with step $\eta$ is GLD,
$X_{k+1} = X_k - \eta \nabla L(X_k) + \sqrt{2\eta/\beta}\,\xi_k$; SGLD replaces $\nabla L$ by a
minibatch estimate (Welling & Teh 2011).
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.flatten_util import ravel_pytree

from .._checks import (
    check_int,
    check_key,
    check_memory,
    check_schedule,
    check_times,
    positive_scalar,
)
from .._descent import diverged_per_start, gradient_descent, run_saves
from .._flow import check_solver, raise_failures
from .._objective import Objective, as_objective, vmap_n
from .._trajectory import Trajectory, trajectory_bytes


def _noise_like(key, tree):
    """Independent standard normal noise shaped like every leaf of `tree`."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    )


def _sgld_gradients(objective: Objective, params, samples, key, batch_size):
    """Gradients on a random minibatch of `samples`, drawn independently for every chain."""
    n = jax.tree.leaves(samples)[0].shape[0]
    batch = jax.tree.leaves(params)[0].shape[: objective.batch_ndim]
    keys = jax.random.split(key, int(np.prod(batch))).reshape(batch)

    def single(p, k):
        idx = jax.random.choice(k, n, (batch_size,), replace=False)
        return jax.grad(objective.loss_fn)(p, jax.tree.map(lambda s: s[idx], samples))

    return vmap_n(single, objective.batch_ndim)(params, keys)


class _Langevin(eqx.Module):
    """One GLD (or SGLD) step of a batch of chains, for `run_saves`."""

    objective: Objective
    lr: jax.Array
    beta: jax.Array
    key: jax.Array
    samples: object
    batch_size: int | None = eqx.field(static=True)

    def step(self, carry):
        params, k = carry
        kg, kn = jax.random.split(jax.random.fold_in(self.key, k))
        if self.samples is None:
            grads = self.objective.gradients(params)
        else:
            grads = _sgld_gradients(self.objective, params, self.samples, kg, self.batch_size)
        noise = _noise_like(kn, params)
        scale = jnp.sqrt(2 * self.lr / self.beta)
        params = jax.tree.map(lambda p, g, xi: p - self.lr * g + scale * xi, params, grads, noise)
        return params, k + 1


def langevin_descent(
    objective,
    params0,
    *,
    steps: int,
    lr,
    beta,
    key,
    save_every: int = 1,
    samples=None,
    batch_size: int | None = None,
) -> Trajectory:
    r"""Gradient Langevin dynamics (GLD), or SGLD with minibatches, for a batch of chains.

    $$\theta_{k+1} = \theta_k - \eta\, \widehat{\nabla L}(\theta_k) + \sqrt{2\eta/\beta}\;\xi_k,
    \qquad \xi_k \sim N(0, I),$$

    with $\widehat{\nabla L} = \nabla L$ (GLD) or, given `samples` and `batch_size`, the gradient
    of `loss_fn(params, minibatch)` on a random minibatch drawn each step for each chain
    (SGLD). Every chain
    (every index of the objective's batch axes) gets independent noise. For small $\eta$ the
    chains sample $\pi \propto e^{-\beta L}$; for a quadratic $L = \frac12 \theta^\top H \theta$
    the stationary covariance is $(\beta H)^{-1} (I - \eta H / 2)^{-1}$.

    **Arguments:**

    - `objective`: a `linflow.Objective` (or callable loss of one chain's parameters); for SGLD,
      its `loss_fn(params, minibatch)` takes the minibatch as second argument.
    - `params0`: parameters with the objective's leading batch axes (one per chain).
    - `steps`, `save_every` (must divide `steps`), `lr` $\eta > 0$, `beta` $\beta > 0$, `key`.
    - `samples`, `batch_size`: a pytree of data with a leading sample axis, and the minibatch size.

    **Returns:** a `Trajectory` with `ts` in steps and the parameters at those steps;
    `stats["diverged"]` (shape `batch`) flags chains whose parameters ended inf or NaN.

    **Raises:** `ValueError` for bad arguments.

    **Example:**

    ```python
    objective = linflow.Objective(lambda x: 0.5 * x @ H @ x, batch=(10000,))
    traj = linflow.langevin_descent(objective, jnp.zeros((10000, 2)), steps=2000, lr=0.01,
                                    beta=4.0, key=jax.random.key(0), save_every=100)
    ```
    """
    fn = "langevin_descent"
    objective = as_objective(fn, objective)
    if samples is None:
        params0 = objective.check_params(fn, params0)
    else:  # validate against the loss on all samples, which has the one-argument signature
        full = Objective(lambda p: objective.loss_fn(p, samples), batch_ndim=objective.batch_ndim)
        params0 = full.check_params(fn, params0)
    dtype = jax.tree.leaves(params0)[0].dtype
    lr = positive_scalar(fn, "lr", lr, dtype)
    beta = positive_scalar(fn, "beta", beta, dtype)
    check_key(fn, "key", key)
    check_schedule(fn, steps, save_every)
    if (samples is None) != (batch_size is None):
        raise ValueError(f"{fn}(..., samples=..., batch_size=...) go together (SGLD).")
    if samples is not None:
        n = jax.tree.leaves(samples)[0].shape[0]
        batch_size = check_int(fn, "batch_size", batch_size, minimum=1, maximum=n)
    n_saves = steps // save_every
    check_memory(
        fn,
        trajectory_bytes(n_saves + 1, params0),
        f"the trajectory ({n_saves + 1} saves)",
        "raise save_every",
    )
    stepper = _Langevin(objective, lr, beta, key, samples, batch_size)
    _, params = run_saves(
        stepper,
        (params0, jnp.zeros((), jnp.int32)),
        jnp.asarray(0),
        n_saves=n_saves,
        length=n_saves + 1,
        save_every=save_every,
    )
    diverged = diverged_per_start(params, objective.batch_ndim)
    ts = jnp.arange(n_saves + 1, dtype=dtype) * save_every
    return Trajectory(ts=ts, weights=params, stats={"diverged": diverged}, unit="steps", lr=lr)


@eqx.filter_jit
def _sde_solve(objective, y0, unravel, ts, beta, key, dt, solver, max_steps):
    def drift(t, y, args):
        return -ravel_pytree(objective.gradients(unravel(y)))[0]

    def diffusion(t, y, args):
        return lx.DiagonalLinearOperator(jnp.full_like(y, jnp.sqrt(2 / beta)))

    # Constant steps visit each interval once, so independent increments drawn on demand
    # are exact (and far cheaper than a VirtualBrownianTree for many chains).
    brownian = diffrax.UnsafeBrownianPath(shape=jax.ShapeDtypeStruct(y0.shape, y0.dtype), key=key)
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, brownian))
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        t0=jnp.zeros((), y0.dtype),
        t1=ts[-1],
        dt0=dt,
        y0=y0,
        saveat=diffrax.SaveAt(ts=ts),
        max_steps=max_steps,
        adjoint=diffrax.ForwardMode(),
        throw=False,
    )
    return jax.vmap(unravel)(sol.ys), sol.result, sol.stats["num_steps"]


def langevin_flow(
    objective,
    params0,
    ts,
    *,
    beta,
    key,
    dt,
    solver=None,
    max_steps: int = 1_000_000,
    throw: bool = True,
) -> Trajectory:
    r"""The Langevin SDE $d\theta = -\nabla L(\theta)\,dt + \sqrt{2/\beta}\,dB_t$ with diffrax.

    All chains (the objective's batch axes) are one state driven by independent Brownian
    motions (`diffrax.UnsafeBrownianPath`), integrated with a constant step `dt` by
    `solver` (default `diffrax.Euler()`, i.e. Euler-Maruyama; any solver for additive noise
    that takes plain Brownian increments, such as `diffrax.Heun()`, works).

    **Arguments:** `objective` (a `linflow.Objective` or callable), `params0` with the
    objective's batch axes, `ts` increasing save times $\ge 0$ (the start is $t = 0$),
    `beta` $\beta > 0$, `key`, `dt` > 0, `solver`, `max_steps`, `throw` (raise if the solver
    fails or a chain becomes inf or NaN; otherwise see `stats`).

    **Returns:** a `Trajectory` of the parameters at `ts` (`unit = "time"`); `stats` holds
    `result`, `num_steps` and `diverged` (per chain, shape `batch`).

    **Raises:** `ValueError` for bad arguments; `RuntimeError` as `gradient_flow` when `throw`.

    **Example:**

    ```python
    traj = linflow.langevin_flow(objective, x0, jnp.array([0.0, 5.0]), beta=4.0,
                                 key=jax.random.key(0), dt=0.01)
    ```
    """
    fn = "langevin_flow"
    objective = as_objective(fn, objective)
    params0 = objective.check_params(fn, params0)
    y0, unravel = ravel_pytree(params0)
    ts = check_times(fn, ts, y0.dtype)
    beta = positive_scalar(fn, "beta", beta, y0.dtype)
    dt = positive_scalar(fn, "dt", dt, y0.dtype)
    check_key(fn, "key", key)
    max_steps = check_int(fn, "max_steps", max_steps, minimum=1)
    solver, _ = check_solver(
        fn, solver or diffrax.Euler(), diffrax.ConstantStepSize(), dt, dt.dtype
    )
    params, result, num_steps = _sde_solve(
        objective, y0, unravel, ts, beta, key, dt, solver, max_steps
    )
    diverged = diverged_per_start(params, objective.batch_ndim)
    if throw:
        params = raise_failures(fn, params, result, num_steps, diverged, dt)
    return Trajectory(
        ts=ts,
        weights=params,
        stats={"result": result, "num_steps": num_steps, "diverged": diverged},
        unit="time",
    )


def two_phase(
    explore,
    converge,
    params0,
    *,
    explore_steps: int,
    converge_steps: int,
    lr,
    beta,
    key,
    save_every: int = 1,
) -> Trajectory:
    r"""Two-phase optimisation: GLD exploration, then plain gradient descent (Akiyama & Suzuki).

    Phase 1 runs GLD on `explore` (e.g. the $L^2$-regularised teacher-student loss) for
    `explore_steps`; phase 2 runs noise-free gradient descent on `converge` (e.g. the
    unregularised loss) from where phase 1 ended (Akiyama & Suzuki 2023, "Excess risk of
    two-layer ReLU neural networks in teacher-student settings and its superiority to kernel
    methods", ICLR: a global search, then linear convergence to the global optimum).

    **Arguments:** the two objectives (sharing batch axes), `params0`, step counts (multiples
    of `save_every`), `lr` $\eta$, `beta` $\beta$, `key`.

    **Returns:** one `Trajectory` over both phases (`ts` in steps; `stats["switch"]` is the step
    where phase 2 starts).

    **Example:**

    ```python
    traj = linflow.two_phase(problem.with_penalty(1e-3, "l2").objective(),
                             problem.with_penalty(0.0).objective(), student,
                             explore_steps=2000, converge_steps=2000, lr=0.05, beta=1e4,
                             key=jax.random.key(0), save_every=50)
    ```
    """
    check_schedule("two_phase", converge_steps, save_every)  # before phase 1 runs, not after
    first = langevin_descent(
        explore, params0, steps=explore_steps, lr=lr, beta=beta, key=key, save_every=save_every
    )
    start = jax.tree.map(lambda p: p[-1], first.weights)
    second = gradient_descent(converge, start, steps=converge_steps, lr=lr, save_every=save_every)
    weights = jax.tree.map(lambda a, b: jnp.concatenate([a, b[1:]]), first.weights, second.weights)
    ts = jnp.concatenate([first.ts, first.ts[-1] + second.ts[1:]])
    return Trajectory(ts=ts, weights=weights, stats={"switch": explore_steps}, unit="steps")
