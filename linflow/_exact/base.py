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
    def solve(self, task, weights, ts, tau, rtol):
        """Weights at times `ts`: a tuple of arrays, each `(T, *batch, rows, cols)`.

        `rtol` is the tolerance `check` accepted the start with: a quantity the check measured
        (such as the rank of the start) must be measured with it here too."""


def time_axis(ts, ndim: int):
    """`ts` reshaped to `(T, 1, ..., 1)` to broadcast against arrays with `ndim` more axes."""
    return ts.reshape(ts.shape + (1,) * ndim)


def max_abs(x) -> float:
    return float(np.max(np.abs(x))) if np.size(x) else 0.0


def whitened_reason(task, rtol) -> str | None:
    r"""`None` if $\Sigma_{xx} = I$ to relative tolerance `rtol`, else the reason."""
    if task.whitened:
        return None
    sxx = np.asarray(task.sigma_xx, np.float64)
    if max_abs(sxx - np.eye(sxx.shape[0])) > rtol * max(max_abs(sxx), 1.0):
        return "needs whitened inputs (sigma_xx = I)"
    return None
