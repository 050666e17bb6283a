r"""Discrete gradient descent (full batch, minibatch SGD, any optax optimiser) as one `lax.scan`."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checks import (
    check_int,
    check_key,
    check_memory,
    check_schedule,
    check_task_weights,
    is_concrete,
    known,
    positive_scalar,
)
from ._loss import _loss, layer_gradients, product
from ._objective import Objective, as_objective, vmap_n
from ._progress import progress_bar
from ._task import Task
from ._trajectory import Trajectory, trajectory_bytes


def _minibatch_statistics(task: Task, key, step, batch_size: int):
    r"""$\Sigma_{yx}, \Sigma_{xx}$ of minibatch number `step` (epochs reshuffle with `fold_in`)."""
    n = task.X.shape[0]
    per_epoch = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, step // per_epoch), n)
    idx = jax.lax.dynamic_slice_in_dim(perm, (step % per_epoch) * batch_size, batch_size)
    x, y = task.X[idx], task.Y[idx]
    # "mean" averages over the minibatch; "sum" sums over it, so batch_size=1 is the
    # per-sample update of Shimizu & Aoyagi (eqs. 6-7) for either convention.
    c = 1.0 / batch_size if task.normalize == "mean" else 1.0
    return c * y.T @ x, c * x.T @ x


class _Descent(eqx.Module):
    """What one step needs: the problem, the learning rate or optimiser, the minibatching."""

    problem: Task | Objective
    lr: jax.Array | Callable | None
    optimizer: optax.GradientTransformationExtraArgs | None
    key: jax.Array
    batch_size: int | None = eqx.field(static=True)

    def gradients(self, weights, k):
        if isinstance(self.problem, Objective):
            return self.problem.gradients(weights)
        if self.batch_size is None:
            return layer_gradients(weights, self.problem.sigma_yx, self.problem._sigma_xx)
        stats = _minibatch_statistics(self.problem, self.key, k, self.batch_size)
        return layer_gradients(weights, *stats)

    def step(self, carry):
        weights, opt_state, k = carry
        grads = self.gradients(weights, k)
        if self.optimizer is None:
            lr = self.lr(k) if callable(self.lr) else self.lr
            weights = jax.tree.map(lambda w, g: w - jnp.asarray(lr, w.dtype) * g, weights, grads)
        else:
            updates, opt_state = self._updates(grads, opt_state, weights)
            weights = optax.apply_updates(weights, updates)
        return weights, opt_state, k + 1

    def _updates(self, grads, opt_state, weights):
        """The optimiser's update, per initialisation, with the loss for those that need it
        (`optax.lbfgs`, `reduce_on_plateau`); XLA drops the loss when an optimiser ignores it."""
        problem = self.problem
        if isinstance(problem, Objective):
            data, n_batch, loss_of = problem.data, problem.batch_ndim, problem._single
        else:
            data, n_batch = None, weights[0].ndim - 2

            def loss_of(params, _):
                return _loss(problem, product(params))

        def update(g, state, params, data):
            def value_fn(p):
                return loss_of(p, data)

            return self.optimizer.update(
                g, state, params, value=value_fn(params), grad=g, value_fn=value_fn
            )

        return vmap_n(update, n_batch)(grads, opt_state, weights, data)


@eqx.filter_jit
def run_saves(stepper, state, first, *, n_saves: int, length: int, save_every: int):
    """Saves `first, ..., first + length - 1` of `n_saves + 1`: each save keeps `state[0]`,
    then `stepper.step` advances the state `save_every` times (except after the last save).
    Returns the new state and the saves, each leaf `(length, ...)`, written straight into the
    scan's output (no copy of the trajectory)."""

    def save(carry, i):
        def advance(carry):
            return jax.lax.fori_loop(0, save_every, lambda _, c: stepper.step(c), carry)

        carry_next = jax.lax.cond(first + i >= n_saves, lambda c: c, advance, carry)
        return carry_next, carry[0]

    return jax.lax.scan(save, state, jnp.arange(length))


@eqx.filter_jit(donate="all")
def _write(out, block, start):
    """`block` written into the preallocated `out` at `start` along the time axis (in place)."""
    return jax.tree.map(
        lambda o, b: jax.lax.dynamic_update_slice_in_dim(o, b, start, 0), out, block
    )


@eqx.filter_jit
def diverged_per_start(weights, n_batch: int):
    """Per initialisation, whether any final weight is inf or NaN (shape `batch`)."""
    flags = [
        ~jnp.all(jnp.isfinite(w[-1].reshape(*w.shape[1 : 1 + n_batch], -1)), axis=-1)
        for w in jax.tree.leaves(weights)
    ]
    return jnp.stack(flags).any(0)


def _optimizer(fn: str, optimizer):
    """An optax transformation with extra arguments (`value`, `grad`, `value_fn`)."""
    if hasattr(optimizer, "gradient_transformation"):  # optax.MultiSteps
        optimizer = optimizer.gradient_transformation()
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"{fn}(..., optimizer=...) must be an optax.GradientTransformation (or "
            f"optax.MultiSteps), got {type(optimizer).__name__}."
        )
    return optax.with_extra_args_support(optimizer)


def _learning_rate(fn: str, lr, optimizer, dtype):
    """The learning rate as a scalar array (checked positive) or a schedule `lr(step)`."""
    if optimizer is not None:
        if lr is not None:
            raise ValueError(
                f"{fn}(..., lr={lr!r}, optimizer=...): set the learning rate inside the optimizer."
            )
        return None
    if lr is None:
        raise ValueError(f"{fn}(...) needs lr=... (or optimizer=...).")
    if callable(lr):
        out = jax.eval_shape(lr, jax.ShapeDtypeStruct((), jnp.int32))
        if getattr(out, "shape", None) != ():
            raise ValueError(
                f"{fn}(..., lr=...): a schedule must map the step to a scalar learning rate."
            )
        return lr
    return positive_scalar(fn, "lr", lr, dtype)


def _divergence_message(fn: str, optimizer, lr) -> str:
    if optimizer is not None:
        what = "optimizer=... (lower its learning rate)"
    elif isinstance(lr, jax.Array) and is_concrete(lr):
        what = f"lr={float(lr)!r}"
    else:
        what = "lr=..."
    return (
        f"{fn}(..., {what}) diverged: the weights of an initialisation became inf or NaN. "
        "Lower the learning rate: near the solution, gradient descent is stable only for "
        "lr < 2 / (largest eigenvalue of the loss Hessian)."
    )


def gradient_descent(
    task: Task,
    weights0,
    *,
    steps: int,
    lr=None,
    optimizer=None,
    save_every: int = 1,
    batch_size: int | None = None,
    key=None,
    progress: bool = False,
    throw: bool = True,
) -> Trajectory:
    r"""Train a linear network (or any objective) by gradient descent, a batch of starts at once.

    Full-batch gradient descent (the default) takes
    $W_l \leftarrow W_l - \eta\, \partial L / \partial W_l$, e.g. for two layers
    $\Delta W_1 = \eta W_2^\top (\Sigma_{yx} - W_2 W_1 \Sigma_{xx})$ (Saxe, McClelland & Ganguli
    2014). With `batch_size`, each step uses the statistics of a minibatch of the task's data
    (reshuffled every epoch); `batch_size=1` is per-sample SGD,
    $\Delta W_1 = \eta W_2^\top (y_i - \hat y_i) x_i^\top$,
    $\Delta W_2 = \eta (y_i - \hat y_i) h_i^\top$.
    With `optimizer`, any optax transformation maps the gradients to updates, applied to each
    initialisation separately; optimisers that need the loss (`optax.lbfgs`,
    `optax.contrib.reduce_on_plateau`) receive `value`, `grad` and `value_fn` of the full-batch
    loss of that initialisation. The whole run is one jitted `lax.scan`. Step $k$ matches the
    gradient flow at $t = k$ with $\tau = 1/\eta$.

    With a `linflow.Objective` (or a plain callable, taken as an unbatched objective) in place
    of the task, the same loop trains any pytree of parameters on $\ell(\theta)$, with
    $\nabla\ell$ from `jax.grad` vmapped over the objective's batch axes.

    Works eagerly and inside `jax.jit`, `jax.grad` (e.g. with respect to `lr`, the start or the
    task) and `jax.vmap` (e.g. over `lr`). It computes in the dtype of the weights (float32 or
    float64); the task is converted to it.

    **Arguments:**

    - `task`: the `linflow.Task` (with data, for `batch_size`), or a `linflow.Objective` or
      callable `loss_fn(params) -> scalar`.
    - `weights0`: tuple $(W_1, \dots, W_N)$, each `(*batch, h_l, h_{l-1})`; for an objective,
      the parameter pytree with the objective's leading batch axes on every leaf.
    - `steps`: number of updates; `save_every` must divide it.
    - `lr`: learning rate $\eta > 0$ of plain gradient descent, a scalar or an optax schedule
      (a function of the step, e.g. `optax.cosine_decay_schedule(0.1, 1000)`); omit it when
      passing `optimizer`.
    - `optimizer`: an `optax.GradientTransformation` (e.g. `optax.adam(1e-2)`) or
      `optax.MultiSteps`.
    - `batch_size`: minibatch size for SGD, with `key` (a `jax.random` key) for the shuffling.
    - `progress`: show a progress bar (runs the scan in chunks; same result; eager calls only),
      or a callable `progress(fraction)` called with the fraction of steps done after each chunk.
    - `throw`: raise if the weights diverge (otherwise `stats["diverged"]` flags them).

    **Returns:** a `Trajectory` with `unit = "steps"`, `ts = 0, save_every, ..., steps` and the
    weights (for an objective, the parameter pytree) at those steps, each leaf with a leading
    time axis; `stats["diverged"]` has shape `batch`.

    **Raises:** `ValueError` for bad arguments, and (eagerly; `EquinoxRuntimeError` under
    `jax.jit`) when the weights become inf or NaN, naming the learning rate. Before running,
    `ValueError` if the trajectory would not fit in memory (raise `save_every`).

    **Example:**

    ```python
    traj = linflow.gradient_descent(task, weights0, steps=1000, lr=0.05, save_every=10)
    traj = linflow.gradient_descent(task, weights0, steps=1000, optimizer=optax.adam(1e-2))
    ```
    """
    fn = "gradient_descent"
    if isinstance(task, Task) or task is None:
        task, weights0 = check_task_weights(fn, task, weights0)
        n_batch = weights0[0].ndim - 2
    else:
        task = as_objective(fn, task)
        weights0 = task.check_params(fn, weights0)
        n_batch = task.batch_ndim
    dtype = jax.tree.leaves(weights0)[0].dtype
    check_schedule(fn, steps, save_every)
    lr = _learning_rate(fn, lr, optimizer, dtype)
    if optimizer is not None:
        optimizer = _optimizer(fn, optimizer)
    if batch_size is not None:
        if isinstance(task, Objective):
            raise ValueError(f"{fn}(..., batch_size=...) only applies to a Task with data.")
        if not task.has_data:
            raise ValueError(
                f"{fn}(..., batch_size={batch_size}) needs a task with data (Task.from_data)."
            )
        n = task.X.shape[0]
        batch_size = check_int(fn, "batch_size", batch_size, minimum=1, maximum=n)
        if key is None:
            raise ValueError(f"{fn}(..., batch_size={batch_size}) needs key=... for the shuffling.")
    if key is not None:
        check_key(fn, "key", key)
    key = jax.random.key(0) if key is None else key
    n_saves = steps // save_every
    check_memory(
        fn,
        trajectory_bytes(n_saves + 1, weights0),
        f"the trajectory ({n_saves + 1} saves)",
        "raise save_every",
    )

    descent = _Descent(task, lr, optimizer, key, batch_size)
    opt_state = None if optimizer is None else vmap_n(optimizer.init, n_batch)(weights0)
    # The step count in the precision of the weights: a schedule `lr(k)` of an int32 `k`
    # computes in float32 (optax's convention), which would round a float64 learning rate.
    step = jnp.zeros((), jnp.int64 if dtype == jnp.float64 else jnp.int32)
    state = (weights0, opt_state, step)
    run = dict(n_saves=n_saves, save_every=save_every)
    if progress:
        weights = run_in_chunks(
            descent, state, fn, n_saves=n_saves, save_every=save_every, progress=progress
        )
    else:
        _, weights = run_saves(descent, state, jnp.asarray(0), length=n_saves + 1, **run)
    diverged = diverged_per_start(weights, n_batch)
    ts = jnp.arange(n_saves + 1, dtype=dtype) * save_every
    if throw:
        any_diverged = jnp.any(diverged)
        message = _divergence_message(fn, optimizer, lr)
        if known(any_diverged):
            first = int(np.argmax(~np.asarray(_finite_per_save(weights))))
            raise ValueError(
                f"{message} ({int(jnp.sum(diverged))} of {diverged.size} initialisation(s), "
                f"by step {first * save_every}.)"
            )
        if known(any_diverged) is None:
            weights = eqx.error_if(weights, any_diverged, message)
    return Trajectory(
        ts=ts,
        weights=weights,
        stats={"diverged": diverged},
        unit="steps",
        lr=lr if isinstance(lr, jax.Array) else None,
    )


def run_in_chunks(stepper, state, fn: str, *, n_saves: int, save_every: int, progress=True):
    """`run_saves` in chunks under a progress bar (or reporting to the callable `progress`),
    written into one preallocated trajectory (so the peak memory stays about one trajectory)."""
    weights = jax.tree.map(lambda w: jnp.empty((n_saves + 1, *w.shape), w.dtype), state[0])
    first = 0
    with progress_bar(progress, n_saves * save_every, fn) as bar:
        for length in _chunk_sizes(n_saves + 1):
            state, block = run_saves(
                stepper,
                state,
                jnp.asarray(first),
                length=length,
                n_saves=n_saves,
                save_every=save_every,
            )
            weights = _write(weights, block, jnp.asarray(first))
            bar.update((min(first + length, n_saves) - first) * save_every)
            first += length
    return weights


def _finite_per_save(weights):
    """Whether every weight of every initialisation is finite, per save, shape `(T,)`."""
    return jnp.stack(
        [jnp.all(jnp.isfinite(w.reshape(w.shape[0], -1)), axis=1) for w in jax.tree.leaves(weights)]
    ).all(0)


def _chunk_sizes(n: int, pieces: int = 20) -> list[int]:
    """Split `n` saves into at most `pieces` near-equal chunks (two sizes, so two compiles)."""
    size = max(1, -(-n // pieces))
    return [size] * (n // size) + ([n % size] if n % size else [])
