r"""Discrete gradient descent (full batch, minibatch SGD, any optax optimiser) as one `lax.scan`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checks import check_positive, check_schedule, check_weights
from ._loss import layer_gradients
from ._objective import Objective, as_objective
from ._objective import vmap_n as _vmap_n
from ._progress import progress_bar
from ._task import Task
from ._trajectory import Trajectory


def _minibatch_statistics(task: Task, key, step, batch_size: int):
    r"""$\Sigma_{yx}, \Sigma_{xx}$ of minibatch number `step` (epochs reshuffle with `fold_in`)."""
    n = task.X.shape[0]
    per_epoch = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, step // per_epoch), n)
    idx = jax.lax.dynamic_slice_in_dim(perm, (step % per_epoch) * batch_size, batch_size)
    x, y = task.X[idx], task.Y[idx]
    # "mean" averages over the minibatch; "sum" sums over it, so batch_size=1 is the
    # per-sample update of source 000 (eqs. 6-7) for either convention.
    c = 1.0 / batch_size if task.normalize == "mean" else 1.0
    return c * y.T @ x, c * x.T @ x


@eqx.filter_jit
def _run_chunk(task, state, lr, optimizer, key, *, n_saves: int, save_every: int, batch_size):
    """Advance `n_saves * save_every` steps, returning the new state and the saved weights."""
    n_batch = _batch_ndim(task, state[0])

    def step(carry, _):
        weights, opt_state, k = carry
        if isinstance(task, Objective):
            grads = task.gradients(weights)
        elif batch_size is None:
            grads = layer_gradients(weights, task.sigma_yx, task._sigma_xx)
        else:
            grads = layer_gradients(weights, *_minibatch_statistics(task, key, k, batch_size))
        if optimizer is None:
            weights = jax.tree.map(lambda w, g: w - lr * g, weights, grads)
        else:
            updates, opt_state = _vmap_n(optimizer.update, n_batch)(grads, opt_state, weights)
            weights = optax.apply_updates(weights, updates)
        return (weights, opt_state, k + 1), None

    return scan_with_saves(step, state, n_saves=n_saves, save_every=save_every)


def scan_with_saves(step, state, *, n_saves: int, save_every: int):
    """Run `step` (a `lax.scan` body) `n_saves * save_every` times, keeping `state[0]` every
    `save_every` steps: returns the final state and the saves, each leaf `(n_saves, ...)`."""

    def save(carry, _):
        carry, _ = jax.lax.scan(step, carry, None, length=save_every)
        return carry, carry[0]

    return jax.lax.scan(save, state, None, length=n_saves)


def _batch_ndim(task, weights) -> int:
    """Number of batch axes: the objective's, or those before a weight matrix's last two."""
    return task.batch_ndim if isinstance(task, Objective) else weights[0].ndim - 2


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
    $\Delta W_1 = \eta W_2^\top (\Sigma_{yx} - W_2 W_1 \Sigma_{xx})$ (source 004, eq. 2).
    With `batch_size`, each step uses the statistics of a minibatch of the task's data
    (reshuffled every epoch); `batch_size=1` is the per-sample SGD of source 000 (eqs. 6-7),
    $\Delta W_1 = \eta W_2^\top (y_i - \hat y_i) x_i^\top$,
    $\Delta W_2 = \eta (y_i - \hat y_i) h_i^\top$.
    With `optimizer`, any optax transformation maps the gradients to updates, applied to each
    initialisation separately. The whole run is one jitted `lax.scan`. Step $k$ matches the
    gradient flow at $t = k$ with $\tau = 1/\eta$.

    With a `linflow.Objective` (or a plain callable, taken as an unbatched objective) in place
    of the task, the same loop trains any pytree of parameters on $\ell(\theta)$, with
    $\nabla\ell$ from `jax.grad` vmapped over the objective's batch axes.

    **Arguments:**

    - `task`: the `linflow.Task` (with data, for `batch_size`), or a `linflow.Objective` or
      callable `loss_fn(params) -> scalar`.
    - `weights0`: tuple $(W_1, \dots, W_N)$, each `(*batch, h_l, h_{l-1})`; for an objective,
      the parameter pytree with the objective's leading batch axes on every leaf.
    - `steps`: number of updates; `save_every` must divide it.
    - `lr`: learning rate $\eta > 0$ of plain gradient descent (omit when passing `optimizer`).
    - `optimizer`: an `optax.GradientTransformation`, e.g. `optax.adam(1e-2)`.
    - `batch_size`: minibatch size for SGD, with `key` (a `jax.random` key) for the shuffling.
    - `progress`: show a progress bar (runs the scan in chunks; same result), or a callable
      `progress(fraction)` called with the fraction of steps done after each chunk.
    - `throw`: raise if the weights diverge (otherwise `stats["diverged"]` flags them).

    **Returns:** a `Trajectory` with `ts = 0, save_every, ..., steps` (in steps) and the weights
    (for an objective, the parameter pytree) at those steps, each leaf with a leading time
    axis; `stats["diverged"]` has shape `batch`.

    **Raises:** `ValueError` for bad arguments, and when the weights become inf or NaN,
    naming the learning rate.

    **Example:**

    ```python
    traj = linflow.gradient_descent(task, weights0, steps=1000, lr=0.05, save_every=10)
    traj = linflow.gradient_descent(task, weights0, steps=1000, optimizer=optax.adam(1e-2))
    ```
    """
    fn = "gradient_descent"
    if isinstance(task, Task):
        weights0 = check_weights(fn, weights0, task.input_dim, task.output_dim)
    else:
        task = as_objective(fn, task)
        weights0 = task.check_params(fn, weights0)
    check_schedule(fn, steps, save_every)
    if optimizer is None:
        if lr is None:
            raise ValueError(f"{fn}(...) needs lr=... (or optimizer=...).")
        check_positive(fn, "lr", lr)
    elif lr is not None:
        raise ValueError(
            f"{fn}(..., lr={lr!r}, optimizer=...): set the learning rate inside the optimizer."
        )
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(f"{fn}(..., optimizer=...) must be an optax.GradientTransformation.")
    if batch_size is not None:
        if isinstance(task, Objective):
            raise ValueError(f"{fn}(..., batch_size=...) only applies to a Task with data.")
        if not task.has_data:
            raise ValueError(
                f"{fn}(..., batch_size={batch_size}) needs a task with data (Task.from_data)."
            )
        n = task.X.shape[0]
        if not isinstance(batch_size, int | np.integer) or not 1 <= batch_size <= n:
            raise ValueError(f"{fn}(..., batch_size={batch_size!r}) must be an int in [1, {n}].")
        if key is None:
            raise ValueError(f"{fn}(..., batch_size={batch_size}) needs key=... for the shuffling.")
        batch_size = int(batch_size)
    key = jax.random.key(0) if key is None else key

    dtype = jax.tree.leaves(weights0)[0].dtype
    n_batch = _batch_ndim(task, weights0)
    opt_state = None if optimizer is None else _vmap_n(optimizer.init, n_batch)(weights0)
    state = (weights0, opt_state, jnp.asarray(0))
    lr_array = None if lr is None else jnp.asarray(lr, dtype)

    n_saves = steps // save_every
    chunks = [n_saves] if not progress else _chunk_sizes(n_saves)
    saved = []
    with progress_bar(progress, steps, "gradient_descent") as bar:
        for size in chunks:
            if size == 0:
                continue
            state, block = _run_chunk(
                task,
                state,
                lr_array,
                optimizer,
                key,
                n_saves=size,
                save_every=save_every,
                batch_size=batch_size,
            )
            saved.append(block)
            bar.update(size * save_every)
    weights, diverged = _assemble(weights0, saved, n_batch)
    ts = jnp.arange(n_saves + 1, dtype=dtype) * save_every
    if throw and bool(jnp.any(diverged)):
        first = int(np.argmax(~np.asarray(_finite_per_save(weights))))
        what = f"lr={lr!r}" if optimizer is None else "optimizer=... (lower its learning rate)"
        raise ValueError(
            f"{fn}(..., {what}) diverged: the weights of {int(jnp.sum(diverged))} of "
            f"{diverged.size} initialisation(s) became inf or NaN by step {int(ts[first])}. "
            "Lower the learning rate: near the solution, gradient descent is stable only for "
            "lr < 2 / (largest eigenvalue of the loss Hessian)."
        )
    return Trajectory(ts=ts, weights=weights, stats={"diverged": diverged})


def _finite_per_save(weights):
    """Whether every weight of every initialisation is finite, per save, shape `(T,)`."""
    return jnp.stack(
        [jnp.all(jnp.isfinite(w.reshape(w.shape[0], -1)), axis=1) for w in jax.tree.leaves(weights)]
    ).all(0)


@eqx.filter_jit
def _assemble(weights0, saved, n_batch: int):
    """The start followed by the saved blocks along a new time axis, and per initialisation
    whether any final weight is inf or NaN (shape `batch`), in one compiled call."""
    weights = jax.tree.map(
        lambda w0, *blocks: jnp.concatenate([w0[None], *blocks]), weights0, *saved
    )
    diverged = jnp.stack(
        [
            ~jnp.all(jnp.isfinite(w[-1].reshape(*w.shape[1 : 1 + n_batch], -1)), axis=-1)
            for w in jax.tree.leaves(weights)
        ]
    ).any(0)
    return weights, diverged


def _chunk_sizes(n: int, pieces: int = 20) -> list[int]:
    """Split `n` saves into at most `pieces` near-equal chunks (two sizes, so two compiles)."""
    size = max(1, -(-n // pieces))
    return [size] * (n // size) + ([n % size] if n % size else [])
