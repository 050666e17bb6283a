r"""Two-layer networks with whitened inputs and a zero-balanced start, not necessarily aligned."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import ClosedForm
from .lambda_balanced import riccati_reason, riccati_two_layer, solve_rank


class ZeroBalancedTwoLayer(ClosedForm):
    r"""Two layers, $\Sigma_{xx} = I$, $W_2^\top W_2 = W_1 W_1^\top$, any (not only aligned) start.

    The closed form of Braun, Dominé, Fitzgerald & Saxe (NeurIPS 2022, "Exact learning dynamics
    of deep linear networks with prior knowledge"): with $Q = [W_1^\top; W_2]$,
    $F = \begin{bmatrix} 0 & \Sigma_{yx}^\top \\ \Sigma_{yx} & 0 \end{bmatrix}$ and $s = t/\tau$,

    $$QQ^\top(t) = e^{Fs} Q_0 \Big[I + Q_0^\top \Big(\int_0^s e^{2Fr} dr\Big) Q_0\Big]^{-1}
    Q_0^\top e^{Fs},$$

    the $\lambda = 0$ case of `linflow.exact_flow`'s λ-balanced solution (see
    `linflow._exact.lambda_balanced` for the derivation and the stable evaluation). Conditions:
    depth 2; whitened inputs; $W_2^\top W_2 = W_1 W_1^\top$ to relative tolerance `rtol`; the rank
    $r$ of $Q_0$ at most the number of distinct nonzero singular values of $\Sigma_{yx}$ (so the
    network learns the top $r$ modes) and a start with weight on each of them.

    The weights returned match the gradient flow up to an orthogonal rotation of the hidden
    layer; the product $W_2 W_1$, $W_1^\top W_1$, $W_2 W_2^\top$ and the loss are exact.
    """

    name: ClassVar[str] = "zero-balanced two-layer"

    def check(self, task, weights, rtol):
        return riccati_reason(task, weights, rtol, zero=True)

    def solve(self, task, weights, ts, tau, rtol):
        # Under a transformation, assume the full rank min(h, number of nonzero s_i).
        s = np.linalg.svd(np.asarray(task.sigma_yx, np.float64), compute_uv=False)
        full = min(weights[0].shape[-2], int(np.sum(s > s[0] * 1000 * np.finfo(s.dtype).eps)))
        rank = solve_rank(weights, rtol, full)
        return riccati_two_layer(task.sigma_yx, weights, ts, tau, rank, True)
