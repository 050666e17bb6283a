r"""The norm-adaptive gradient step of Akiyama & Suzuki (2021), as optax."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from .relu import ReLUNetwork


def norm_adaptive(alpha: float) -> optax.GradientTransformation:
    r"""Per-neuron step size $\eta_j = \alpha\, |a_j| \|w_j\| / (a_j^2 + \|w_j\|^2)$.

    The update of Akiyama & Suzuki (2021), "On learnability via gradient method for two-layer
    ReLU neural networks in teacher-student setting":

    $$a_j \leftarrow a_j - \eta_j\, \partial_{a_j} F(\Theta), \qquad
    w_j \leftarrow w_j - \eta_j\, \nabla_{w_j} F(\Theta),$$

    which makes the dynamics of each neuron scale-free ($\eta_j \le \alpha/2$, and a neuron with
    $a_j = 0$ or $w_j = 0$ stops). Linear convergence of $F(\Theta_k) - F^*$ is proved after
    $k_0 = \alpha^{-2}$ steps (Theorem 2 there).

    **Arguments:** `alpha` $\alpha > 0$.

    **Returns:** an `optax.GradientTransformation` whose `update(grads, state, params)` needs
    the current `params`, a `linflow.ReLUNetwork` (unbatched: `linflow.gradient_descent`
    applies the optimiser to each initialisation separately).

    **Raises:** `ValueError` for $\alpha \le 0$, or (at update time) when `params` is missing.

    **Example:**

    ```python
    traj = linflow.gradient_descent(problem.objective(), student, steps=5000,
                                    optimizer=linflow.norm_adaptive(0.1))
    ```
    """
    if not alpha > 0:
        raise ValueError(f"norm_adaptive(alpha={alpha!r}) must be positive.")

    def init(params):
        return optax.EmptyState()

    def update(grads, state, params=None):
        if not isinstance(params, ReLUNetwork):
            raise ValueError("norm_adaptive: update(...) needs params=ReLUNetwork(a, w).")
        w_norm = jnp.linalg.norm(params.w, axis=-1)
        denominator = params.a**2 + w_norm**2
        eta = alpha * jnp.abs(params.a) * w_norm / jnp.where(denominator > 0, denominator, 1.0)
        return ReLUNetwork(-eta * grads.a, -eta[..., None] * grads.w), state

    return optax.GradientTransformation(init, update)
