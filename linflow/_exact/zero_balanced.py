r"""Two-layer networks with whitened inputs and a zero-balanced start, not necessarily aligned."""

from __future__ import annotations

from typing import ClassVar

from .base import per_init_size
from .lambda_balanced import LambdaBalancedTwoLayer, imbalance


class ZeroBalancedTwoLayer(LambdaBalancedTwoLayer):
    r"""Two layers, $\Sigma_{xx} = I$, $W_2^\top W_2 = W_1 W_1^\top$, any (not only aligned) start.

    The closed form of Braun, Dominé, Fitzgerald & Saxe (NeurIPS 2022, "Exact learning dynamics
    of deep linear networks with prior knowledge"): with $Q = [W_1^\top; W_2]$,
    $F = \begin{bmatrix} 0 & \Sigma_{yx}^\top \\ \Sigma_{yx} & 0 \end{bmatrix}$ and $s = t/\tau$,

    $$QQ^\top(t) = e^{Fs} Q_0 \Big[I + Q_0^\top \Big(\int_0^s e^{2Fr} dr\Big) Q_0\Big]^{-1}
    Q_0^\top e^{Fs},$$

    the $\lambda = 0$ case of the $\lambda$-balanced form (same evaluation, see
    `linflow._exact.lambda_balanced`). Conditions (to relative tolerance `rtol`, per
    initialisation): depth 2; whitened inputs; $W_2^\top W_2 = W_1 W_1^\top$. Nothing else: any
    hidden width and rank, repeated singular values of $\Sigma_{yx}$, and starts on the invariant
    manifolds that lead to saddles (for example a square start whose relative rotation has
    determinant $-1$: it converges to a saddle, which is its limit at $t = \infty$).

    With weight decay $\gamma$ the start stays zero-balanced and the same form holds with
    $F - \gamma I$ in place of $F$ (modes with $s_i \le \gamma$ are not learned).

    The weights returned match the gradient flow up to an orthogonal rotation of the hidden
    layer; the product $W_2 W_1$, $W_1^\top W_1$, $W_2 W_2^\top$ and the loss are exact.
    """

    name: ClassVar[str] = "zero-balanced two-layer"

    def decay_reason(self):
        return None

    def conditions(self, task, weights, rtol, weight_decay=None):
        w1, w2 = weights
        size = per_init_size(w1 @ w1.swapaxes(-1, -2), w2.swapaxes(-1, -2) @ w2)
        zero = abs(imbalance(w1, w2)) <= rtol * size
        return super().conditions(task, weights, rtol) + [
            ("not zero-balanced: |lambda| > rtol * max |W1 W1^T|", zero)
        ]
