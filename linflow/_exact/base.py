"""The interface shared by every closed-form solution of the gradient flow, and helpers."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .._checks import is_concrete


class ClosedForm(eqx.Module):
    r"""A closed-form solution of $\tau\,dW_l/dt = -\partial L/\partial W_l$ under some conditions.

    `exact_flow` takes, for each initialisation, the first registered closed form whose
    conditions hold, and evaluates it. The conditions come in two kinds: static ones (the depth)
    decide at trace time whether the form is a candidate at all; the others are values, measured
    on every initialisation of the batch to a relative tolerance `rtol`, so that the dispatch
    works eagerly and under `jax.jit`, `jax.grad` and `jax.vmap` alike.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def depth_reason(self, depth: int) -> str | None:
        """`None` if the form applies to networks of `depth` weight matrices, else the reason."""

    def decay_reason(self) -> str | None:
        r"""`None` if the form also solves the flow with weight decay $\gamma$, of
        $L + \frac\gamma2\sum_l\|W_l\|_F^2$ (then `conditions` and `solve` take a keyword
        `weight_decay`, a scalar array $\gamma \ge 0$, which `exact_flow` passes only when the
        user asks for decay), else the reason it does not."""
        return "has no closed form with weight decay"

    @abc.abstractmethod
    def conditions(self, task, weights, rtol: float) -> list[tuple[str, object]]:
        """The conditions in the order they are reported: `(message, holds)` pairs, `holds` a
        bool array of the batch shape (or broadcastable to it), traceable."""

    @abc.abstractmethod
    def solve(self, task, weights, ts, tau, rtol: float):
        """Weights at times `ts`: a tuple of arrays, each `(T, *batch, rows, cols)`.

        Called only on starts that meet the conditions (or, under `jax.vmap`, whose results are
        discarded): it must stay finite and raise nothing on any finite input."""


class DepthForm(ClosedForm):
    """A closed form for networks of `min_depth <= depth <= max_depth` weight matrices."""

    min_depth: ClassVar[int]
    max_depth: ClassVar[int | None]

    def depth_reason(self, depth):
        if depth < self.min_depth or (self.max_depth is not None and depth > self.max_depth):
            if self.min_depth == self.max_depth:
                return f"needs depth {self.min_depth}, got depth {depth}"
            return f"needs depth >= {self.min_depth}, got depth {depth}"
        return None


def time_axis(ts, ndim: int):
    """`ts` reshaped to `(T, 1, ..., 1)` to broadcast against arrays with `ndim` more axes."""
    return ts.reshape(ts.shape + (1,) * ndim)


def safe_sqrt(x):
    """$\\sqrt{x}$ for $x \\ge 0$ whose derivative at $x = 0$ is 0 instead of inf (no NaN in
    gradients that multiply it by zero)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def safe_norm(x, axis, keepdims=False):
    """Euclidean norm along `axis` with a finite derivative at zero."""
    return safe_sqrt(jnp.sum(x**2, axis=axis, keepdims=keepdims))


def max_abs(x, axes=(-2, -1)):
    """Largest absolute entry over the matrix axes (per initialisation)."""
    return jnp.max(jnp.abs(x), axis=axes) if x.size else jnp.zeros(x.shape[:-2], x.dtype)


def per_init_size(*arrays):
    """The largest absolute entry of `arrays` per initialisation (at least the smallest normal)."""
    size = max_abs(arrays[0])
    for a in arrays[1:]:
        size = jnp.maximum(size, max_abs(a))
    return jnp.maximum(size, jnp.finfo(arrays[0].dtype).tiny)


def off_diagonal(gram):
    """Largest absolute off-diagonal entry of square matrices `(*batch, k, k)`."""
    eye = jnp.eye(gram.shape[-1], dtype=bool).reshape((1,) * (gram.ndim - 2) + gram.shape[-2:])
    return max_abs(jnp.where(eye, 0.0, gram))


WHITENED = "needs whitened inputs: max |sigma_xx - I| <= rtol * max(max |sigma_xx|, 1)"


def whitened_condition(task, rtol):
    r"""$\Sigma_{xx} = I$ to relative tolerance `rtol` (a scalar bool; `True` if whitened)."""
    if task.whitened:
        return True
    sxx = task.sigma_xx
    deviation = jnp.max(jnp.abs(sxx - jnp.eye(sxx.shape[0], dtype=sxx.dtype)))
    return deviation <= rtol * jnp.maximum(jnp.max(jnp.abs(sxx)), 1.0)


def flat_batch(weights):
    """The batch axes of `weights` flattened into one leading axis, and the inverse for outputs.

    **Returns:** `(flat, unflatten)`; `unflatten(outputs)` takes a tuple of arrays of shape
    `(T, B, rows, cols)` back to `(T, *batch, rows, cols)`."""
    batch = weights[0].shape[:-2]
    flat = tuple(w.reshape((-1,) + w.shape[-2:]) for w in weights)

    def unflatten(outputs):
        return tuple(o.reshape(o.shape[:1] + batch + o.shape[2:]) for o in outputs)

    return flat, unflatten


def check_values(x, bad, message: str):
    """`x`, after checking that no entry of `bad` holds: a `ValueError` with `message` when
    `bad` is concrete (eagerly), `equinox.error_if` with the same message under a trace."""
    if is_concrete(bad):
        if bool(jnp.any(bad)):
            raise ValueError(message)
        return x
    return eqx.error_if(x, bad, message)
