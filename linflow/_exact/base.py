"""The interface shared by every closed-form solution of the gradient flow."""

from __future__ import annotations

import abc

import equinox as eqx
import numpy as np


class ClosedForm(eqx.Module):
    r"""A closed-form solution of $\tau\,dW_l/dt = -\partial L/\partial W_l$ under some conditions.

    `exact_flow` asks each registered closed form in turn whether it applies (`check`) and
    evaluates the first that does (`solve`).
    """

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def check(self, task, weights: tuple[np.ndarray, ...], rtol: float) -> str | None:
        """`None` if the closed form applies to `weights` (NumPy, float64), else the reason."""

    @abc.abstractmethod
    def solve(self, task, weights, ts, tau):
        """Weights at times `ts`: a tuple of arrays, each `(T, *batch, rows, cols)`."""


def time_axis(ts, ndim: int):
    """`ts` reshaped to `(T, 1, ..., 1)` to broadcast against arrays with `ndim` more axes."""
    return ts.reshape(ts.shape + (1,) * ndim)


def max_abs(x) -> float:
    return float(np.max(np.abs(x))) if np.size(x) else 0.0
