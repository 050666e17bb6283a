"""Input validation shared by the public functions.

Every check raises `ValueError` naming the function and the argument, so that bad input
never reaches a jitted computation (where it would give a deep traceback or a silent NaN).
Checks on values only run on concrete arrays; under a JAX transformation they are skipped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """Whether `x` holds actual values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_finite(fn: str, name: str, x) -> None:
    """Raise if the concrete array `x` holds NaN or inf."""
    if is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{fn}(..., {name}=...) contains NaN or inf.")


def check_positive(fn: str, name: str, value) -> None:
    """Raise unless the concrete scalar `value` is finite and > 0."""
    if not is_concrete(value):
        return
    v = np.asarray(value)
    if v.ndim != 0 or not np.isfinite(v) or v <= 0:
        raise ValueError(f"{fn}(..., {name}={value!r}) must be a finite positive scalar.")


def check_schedule(fn: str, steps, save_every) -> None:
    """Raise unless `steps` is an int >= 0 and `save_every` a positive int dividing it."""
    if not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"{fn}(..., steps={steps!r}) must be a non-negative int.")
    if not isinstance(save_every, int | np.integer) or save_every < 1 or steps % save_every:
        raise ValueError(
            f"{fn}(..., save_every={save_every!r}) must be a positive int dividing steps={steps}."
        )


def check_times(fn: str, ts, *, allow_inf: bool = False):
    """Validate and convert save times: 1-D, non-negative, strictly increasing.

    The initial weights are the state at $t = 0$; `ts` are the times to report.
    """
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise ValueError(f"{fn}(..., ts=...) must be a non-empty 1-D array, got shape {ts.shape}.")
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(jnp.result_type(float))
    if is_concrete(ts):
        t = np.asarray(ts)
        if np.any(np.isnan(t)) or (not allow_inf and not np.all(np.isfinite(t))):
            what = "NaN" if allow_inf else "NaN or inf"
            raise ValueError(f"{fn}(..., ts=...) contains {what}.")
        if t[0] < 0:
            raise ValueError(f"{fn}(..., ts=...) must be >= 0 (the initial weights are at t = 0).")
        if np.any(np.diff(t) <= 0):
            raise ValueError(f"{fn}(..., ts=...) must be strictly increasing.")
    return ts


def check_weights(fn: str, weights, input_dim: int | None = None, output_dim: int | None = None):
    """Validate a tuple of weight matrices $(W_1, \\dots, W_N)$ and return it as a tuple.

    Each `W_l` has shape `(*batch, h_l, h_{l-1})` with the same batch shape for all layers;
    the layers must chain ($W_{l+1}$ has as many columns as $W_l$ has rows), $W_1$ has
    `input_dim` columns and $W_N$ has `output_dim` rows.
    """
    if isinstance(weights, jax.Array | np.ndarray):
        raise ValueError(
            f"{fn}(..., weights=...) must be a tuple (W_1, ..., W_N) of arrays, got a single "
            "array; wrap a one-layer network as (W,)."
        )
    weights = tuple(jnp.asarray(w) for w in weights)
    if not weights:
        raise ValueError(f"{fn}(..., weights=...) must hold at least one weight matrix.")
    batch = weights[0].shape[:-2]
    for l, w in enumerate(weights, start=1):
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
