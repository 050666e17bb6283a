"""Input validation shared by the public functions.

Errors come in the three tiers of diffrax and optimistix:

- static problems (types, shapes, dtypes, Python options) raise `ValueError` at once, also at
  trace time, naming the public function and the argument;
- value problems are checked on concrete arrays eagerly (`ValueError`), and inside a JAX
  transformation with `equinox.error_if` (an `EqxRuntimeError` with the same message);
- solver failures come back as a result code, raised unless `throw=False`.

Nothing here calls `bool()` on a traced value, so every check works under `jax.jit`,
`jax.grad` and `jax.vmap`.
"""

from __future__ import annotations

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

# linflow computes in single or double precision; half precision has no eigh/svd on the CPU
# and too little range for the closed forms.
FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))


def is_concrete(x) -> bool:
    """Whether `x` holds actual values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def all_concrete(tree) -> bool:
    """Whether every leaf of `tree` holds actual values."""
    return all(is_concrete(x) for x in jax.tree.leaves(tree))


def known(flag) -> bool | None:
    """The value of a boolean computed from the inputs, or `None` inside a trace (where even
    constants become tracers)."""
    return bool(flag) if is_concrete(flag) else None


def check_finite(fn: str, name: str, x) -> None:
    """Raise if the concrete array `x` holds NaN or inf."""
    if is_concrete(x) and known(jnp.all(jnp.isfinite(x))) is False:
        raise ValueError(f"{fn}(..., {name}=...) contains NaN or inf.")


def check_int(fn: str, name: str, value, minimum: int = 0, maximum: int | None = None) -> int:
    """`value` as an int, raising unless it is an int (not a bool) in `[minimum, maximum]`."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{fn}(..., {name}={value!r}) must be an int, got {type(value).__name__}.")
    if maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{fn}(..., {name}={value!r}) must be an int in [{minimum}, {maximum}].")
    if value < minimum:
        raise ValueError(f"{fn}(..., {name}={value!r}) must be an int >= {minimum}.")
    return int(value)


def _real_scalar(fn: str, name: str, value):
    """`value` as a JAX array, raising unless it is a real (non-bool) scalar."""
    if isinstance(value, str | bytes | bool | np.bool_) or value is None:
        raise ValueError(
            f"{fn}(..., {name}={value!r}) must be a real number, got {type(value).__name__}."
        )
    try:
        x = jnp.asarray(value)
    except TypeError as error:
        raise ValueError(
            f"{fn}(..., {name}=...) must be a real number, got {type(value).__name__}."
        ) from error
    if x.ndim != 0:
        raise ValueError(f"{fn}(..., {name}=...) must be a scalar, got shape {x.shape}.")
    if x.dtype == jnp.bool_ or not (
        jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)
    ):
        raise ValueError(f"{fn}(..., {name}=...) must be a real number, got dtype {x.dtype}.")
    return x


def check_positive(fn: str, name: str, value) -> None:
    """Raise unless `value` is a real scalar, finite and > 0 (the value only when concrete)."""
    x = _real_scalar(fn, name, value)
    if is_concrete(x):
        v = np.asarray(x)
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{fn}(..., {name}={value!r}) must be a finite positive scalar.")


def positive_scalar(fn: str, name: str, value, dtype):
    """`value` as a scalar of `dtype`, checked finite and > 0: eagerly with a `ValueError`,
    under a transformation with `equinox.error_if` (same message)."""
    check_positive(fn, name, value)
    x = jnp.asarray(value, dtype)
    if is_concrete(x):
        return x
    return eqx.error_if(
        x, ~(jnp.isfinite(x) & (x > 0)), f"{fn}(..., {name}=...) must be a finite positive scalar."
    )


def check_schedule(fn: str, steps, save_every) -> None:
    """Raise unless `steps` is an int >= 0 and `save_every` a positive int dividing it."""
    steps = check_int(fn, "steps", steps)
    save_every = check_int(fn, "save_every", save_every, minimum=1)
    if steps % save_every:
        raise ValueError(
            f"{fn}(..., save_every={save_every!r}) must be a positive int dividing steps={steps}."
        )


def check_key(fn: str, name: str, key) -> None:
    """Raise unless `key` is a JAX PRNG key (`jax.random.key(0)` or `jax.random.PRNGKey(0)`)."""
    if isinstance(key, jax.Array | np.ndarray):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
            return
        if key.dtype == np.uint32 and key.shape == (2,):
            return
        what = f"an array of dtype {key.dtype} and shape {key.shape}"
    else:
        what = type(key).__name__
    raise ValueError(
        f"{fn}(..., {name}=...) must be one JAX PRNG key such as jax.random.key(0), got {what}."
    )


def check_dtype(fn: str, name: str, dtype):
    """Raise unless `dtype` is float32 or float64 (linflow's working precisions)."""
    if jnp.dtype(dtype) not in FLOAT_DTYPES:
        raise ValueError(
            f"{fn}(..., {name}=...) has dtype {jnp.dtype(dtype)}; linflow computes in float32 or "
            "float64: convert it, e.g. with .astype(jnp.float32)."
        )


def check_times(fn: str, ts, dtype=None, *, allow_inf: bool = False):
    """Validate save times and return them in `dtype`: 1-D, non-negative, strictly increasing.

    The initial weights are the state at $t = 0$; `ts` are the times to report. `dtype` is the
    dtype of the computation (the weights'); `None` keeps a floating `ts` as it is.
    """
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise ValueError(f"{fn}(..., ts=...) must be a non-empty 1-D array, got shape {ts.shape}.")
    if ts.dtype == jnp.bool_ or not (
        jnp.issubdtype(ts.dtype, jnp.floating) or jnp.issubdtype(ts.dtype, jnp.integer)
    ):
        raise ValueError(f"{fn}(..., ts=...) must be real numbers, got dtype {ts.dtype}.")
    if dtype is None:
        dtype = ts.dtype if jnp.issubdtype(ts.dtype, jnp.floating) else jnp.result_type(float)
    ts = ts.astype(dtype)
    what = "NaN" if allow_inf else "NaN or inf"
    messages = (
        f"{fn}(..., ts=...) contains {what}.",
        f"{fn}(..., ts=...) must be >= 0 (the initial weights are at t = 0).",
        f"{fn}(..., ts=...) must be strictly increasing.",
    )
    bad = (
        jnp.any(jnp.isnan(ts) if allow_inf else ~jnp.isfinite(ts)),
        ts[0] < 0,
        jnp.any(jnp.diff(ts) <= 0),
    )
    for flag, message in zip(bad, messages):
        if known(flag):
            raise ValueError(message)
        if known(flag) is None:
            ts = eqx.error_if(ts, flag, message)
    return ts


def check_fractions(fn: str, fractions, dtype):
    """`fractions` as a non-empty 1-D array of `dtype` with values in (0, 1)."""
    fractions = jnp.asarray(fractions, dtype)
    if fractions.ndim != 1 or fractions.shape[0] == 0:
        raise ValueError(f"{fn}(..., fractions=...) must be a non-empty 1-D array.")
    bad = ~jnp.all((fractions > 0) & (fractions < 1))
    message = f"{fn}(..., fractions=...) must lie in (0, 1)."
    if known(bad):
        raise ValueError(message)
    return fractions if known(bad) is False else eqx.error_if(fractions, bad, message)


def check_weights(fn: str, weights, input_dim: int | None = None, output_dim: int | None = None):
    """Validate a tuple of weight matrices $(W_1, \\dots, W_N)$ and return it as a tuple.

    Each `W_l` has shape `(*batch, h_l, h_{l-1})` with the same batch shape for all layers;
    the layers must chain ($W_{l+1}$ has as many columns as $W_l$ has rows), $W_1$ has
    `input_dim` columns and $W_N$ has `output_dim` rows. All layers share one dtype, float32
    or float64: it is the dtype of the computation.
    """
    if isinstance(weights, jax.Array | np.ndarray):
        raise ValueError(
            f"{fn}(..., weights=...) must be a tuple (W_1, ..., W_N) of arrays, got a single "
            "array; wrap a one-layer network as (W,)."
        )
    if not isinstance(weights, tuple | list):
        raise ValueError(
            f"{fn}(..., weights=...) must be a tuple (W_1, ..., W_N) of arrays, got "
            f"{type(weights).__name__}."
        )
    try:
        weights = tuple(jnp.asarray(w) for w in weights)
    except TypeError as error:
        raise ValueError(f"{fn}(..., weights=...) must hold arrays: {error}") from error
    if not weights:
        raise ValueError(f"{fn}(..., weights=...) must hold at least one weight matrix.")
    batch = weights[0].shape[:-2]
    for l, w in enumerate(weights, start=1):
        check_dtype(fn, f"weights: W_{l}", w.dtype)
        if w.dtype != weights[0].dtype:
            raise ValueError(
                f"{fn}(..., weights=...): all layers need one dtype; W_1 is {weights[0].dtype}, "
                f"W_{l} is {w.dtype}."
            )
        if w.ndim < 2:
            raise ValueError(f"{fn}(..., weights=...): W_{l} must be at least 2-D, got {w.shape}.")
        if w.shape[:-2] != batch:
            raise ValueError(
                f"{fn}(..., weights=...): all layers need the same batch shape; W_1 has "
                f"{batch}, W_{l} has {w.shape[:-2]}."
            )
        if l > 1 and w.shape[-1] != weights[l - 2].shape[-2]:
            raise ValueError(
                f"{fn}(..., weights=...): shapes don't chain: W_{l} is {w.shape[-2:]} but "
                f"W_{l - 1} "
                f"is {weights[l - 2].shape[-2:]} (W_{l} needs {weights[l - 2].shape[-2]} columns)."
            )
        check_finite(fn, "weights", w)
    if input_dim is not None and weights[0].shape[-1] != input_dim:
        raise ValueError(
            f"{fn}(..., weights=...): W_1 has {weights[0].shape[-1]} columns but the task's "
            f"inputs have dimension {input_dim}."
        )
    if output_dim is not None and weights[-1].shape[-2] != output_dim:
        raise ValueError(
            f"{fn}(..., weights=...): W_{len(weights)} has {weights[-1].shape[-2]} rows but the "
            f"task's outputs have dimension {output_dim}."
        )
    return weights


def check_task(fn: str, task, dtype=None):
    """Raise unless `task` is a `linflow.Task`; return it in `dtype` (the weights' dtype).

    The weights' dtype is the dtype of the computation: a float64 task with float32 weights
    runs in float32 (the task is rounded once), a float32 task with float64 weights in float64.
    """
    from ._task import Task

    if not isinstance(task, Task):
        raise ValueError(f"{fn}(task=...) must be a linflow.Task, got {type(task).__name__}.")
    return task if dtype is None else task.astype(dtype)


def check_task_weights(fn: str, task, weights):
    """`check_task` and `check_weights` together: `(task in the weights' dtype, weights)`."""
    check_task(fn, task)
    weights = check_weights(fn, weights, task.input_dim, task.output_dim)
    return task.astype(weights[0].dtype), weights


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (`MemAvailable`), or `None` if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1024


def check_memory(fn: str, nbytes: int, what: str, fix: str) -> None:
    """Raise if the output of `nbytes` (described by `what`) cannot fit in available memory.

    Only on the CPU, where the output lives in host memory; `fix` names the argument to change.
    """
    if jax.default_backend() != "cpu":
        return
    available = available_memory()
    if available is not None and nbytes > available:
        raise ValueError(
            f"{fn}(...): {what} would take {_bytes(nbytes)}, more than the {_bytes(available)} "
            f"of memory available; {fix}."
        )
