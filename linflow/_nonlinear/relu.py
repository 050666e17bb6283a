r"""Two-layer ReLU networks and the teacher-student setting of Akiyama & Suzuki (2021).

Akiyama & Suzuki (2021), "On learnability via gradient method for two-layer ReLU neural networks
in teacher-student setting", ICML.

$f(x; \Theta) = c_M \sum_{j=1}^M a_j\, \sigma(\langle w_j, x \rangle)$ with $\sigma(u) = \max(u, 0)$
and output scale $c_M = 1$ (standard), $1/\sqrt M$ (neural tangent kernel) or $1/M$ (mean field).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .._objective import Objective

SCALINGS = ("standard", "ntk", "mean_field")
PENALTIES = ("product", "l2")


class ReLUNetwork(NamedTuple):
    r"""Parameters $\Theta = ((a_1, w_1), \dots, (a_M, w_M))$ of a two-layer ReLU network.

    `a` has shape `(*batch, M)` (output weights), `w` shape `(*batch, M, d)` (input weights).
    """

    a: Array
    w: Array


def output_scale(scaling: str, width: int) -> float:
    r"""$c_M$: 1 (`"standard"`), $1/\sqrt M$ (`"ntk"`) or $1/M$ (`"mean_field"`)."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling={scaling!r} must be one of {SCALINGS}.")
    # A Python float (weakly typed), so that float32 parameters stay float32 with x64 on.
    return {"standard": 1.0, "ntk": 1.0 / math.sqrt(width), "mean_field": 1.0 / width}[scaling]


def relu_network(params: ReLUNetwork, x: Array, scaling: str = "standard") -> Array:
    r"""Outputs $f(x_i; \Theta) = c_M \sum_j a_j \sigma(\langle w_j, x_i \rangle)$ of ONE network.

    **Arguments:** `params` a `ReLUNetwork` without batch axes (`a` `(M,)`, `w` `(M, d)`),
    `x` inputs `(n, d)`, `scaling` one of `"standard"`, `"ntk"`, `"mean_field"`.

    **Returns:** shape `(n,)`.

    **Example:**

    ```python
    f = linflow.relu_network(linflow.ReLUNetwork(a, w), x)
    ```
    """
    c = output_scale(scaling, params.a.shape[-1])
    return c * (jax.nn.relu(x @ params.w.T) @ params.a)


def uniform_sphere(key, n: int, d: int, dtype=None) -> Array:
    r"""`n` points drawn uniformly on the sphere $S^{d-1}$, shape `(n, d)`."""
    x = jax.random.normal(key, (n, d), jnp.result_type(float) if dtype is None else dtype)
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


class TeacherStudent(eqx.Module):
    r"""Regression on the sphere with a two-layer ReLU teacher (Akiyama & Suzuki 2021).

    Inputs $x_i \sim \mathrm{Unif}(S^{d-1})$, targets $y_i = f(x_i; \Theta^\circ) + \xi_i$ from a
    teacher with $m$ neurons, positive output weights $a^\circ_j > 0$ and orthonormal input
    weights $w^\circ_j$. A student with $M \ge m$ neurons minimises

    $$F(\Theta) = \frac{1}{2n}\sum_{i=1}^n (y_i - f(x_i; \Theta))^2 + \lambda\, P(\Theta),$$

    with $P = \sum_j |a_j|\,\|w_j\|$ (`penalty="product"`, the objective of Akiyama & Suzuki
    2021, "On learnability via gradient method for two-layer ReLU neural networks in
    teacher-student setting"; the BLASSO penalty of the measure representation, De Castro &
    Gamboa 2012) or $P = \tfrac12\sum_j (a_j^2 + \|w_j\|^2)$ (`penalty="l2"`, its smooth upper
    bound, used by Akiyama & Suzuki 2023, "Excess risk of two-layer ReLU neural networks in
    teacher-student settings and its superiority to kernel methods").

    Build one with `linflow.teacher_student`.
    """

    x: Array
    y: Array
    teacher: ReLUNetwork
    lam: float
    penalty: str = eqx.field(static=True)
    scaling: str = eqx.field(static=True)

    def loss(self, params: ReLUNetwork) -> Array:
        r"""$F(\Theta)$ of ONE student (no batch axes), a scalar."""
        residual = self.y - relu_network(params, self.x, self.scaling)
        fit = 0.5 * jnp.mean(residual**2)
        if self.penalty == "product":
            reg = jnp.sum(jnp.abs(params.a) * jnp.linalg.norm(params.w, axis=-1))
        else:
            reg = 0.5 * (jnp.sum(params.a**2) + jnp.sum(params.w**2))
        return fit + self.lam * reg

    def objective(self, batch=()) -> Objective:
        """The loss as a `linflow.Objective` for students with leading `batch` axes."""
        return Objective(self.loss, batch=batch)

    def init_student(self, key, width: int, *, scale: float = 0.1, batch=()) -> ReLUNetwork:
        r"""A student of `width` $M$ neurons with i.i.d. $N(0, \text{scale}^2)$ weights."""
        batch = (batch,) if isinstance(batch, int) else tuple(batch)
        ka, kw = jax.random.split(key)
        d, dtype = self.x.shape[1], self.x.dtype
        return ReLUNetwork(
            scale * jax.random.normal(ka, (*batch, width), dtype),
            scale * jax.random.normal(kw, (*batch, width, d), dtype),
        )

    def with_penalty(self, lam: float, penalty: str | None = None) -> TeacherStudent:
        """The same data with another regularisation (e.g. none, for a final descent phase)."""
        return TeacherStudent(
            self.x, self.y, self.teacher, lam, penalty or self.penalty, self.scaling
        )


def teacher_student(
    key,
    *,
    d: int,
    m: int,
    n: int,
    lam: float = 0.0,
    penalty: str = "product",
    noise: float = 0.0,
    scaling: str = "standard",
    dtype=None,
) -> TeacherStudent:
    r"""A teacher-student regression problem (the setting of Akiyama & Suzuki 2021).

    The teacher has $m \le d$ neurons with $a^\circ_j \sim \mathrm{Unif}[1, 2]$ and orthonormal
    $w^\circ_j$ (rows of a random orthogonal matrix); $n$ inputs uniform on $S^{d-1}$ and
    targets $y_i = f(x_i; \Theta^\circ) + \text{noise}\cdot N(0, 1)$.

    **Arguments:** `key`; sizes `d`, `m`, `n`; `lam` $\lambda \ge 0$ and `penalty`
    (`"product"` or `"l2"`); `noise` standard deviation; `scaling` of the student's output.

    **Returns:** a `TeacherStudent`.

    **Raises:** `ValueError` if $m > d$, a size is not positive, `lam` or `noise` is negative,
    or `penalty`/`scaling` is unknown.

    **Example:**

    ```python
    problem = linflow.teacher_student(jax.random.key(0), d=5, m=2, n=500, lam=1e-3)
    student = problem.init_student(jax.random.key(1), 20, batch=(8,))
    traj = linflow.gradient_descent(problem.objective(batch=(8,)), student, steps=2000, lr=0.1)
    ```
    """
    fn = "teacher_student"
    for name, value in (("d", d), ("m", m), ("n", n)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{fn}(..., {name}={value!r}) must be a positive int.")
    if m > d:
        raise ValueError(f"{fn}(..., m={m}, d={d}): orthonormal teacher neurons need m <= d.")
    if lam < 0 or noise < 0:
        raise ValueError(f"{fn}(..., lam={lam}, noise={noise}) must be non-negative.")
    if penalty not in PENALTIES:
        raise ValueError(f"{fn}(..., penalty={penalty!r}) must be one of {PENALTIES}.")
    output_scale(scaling, m)
    dtype = jnp.result_type(float) if dtype is None else dtype
    kq, ka, kx, ke = jax.random.split(key, 4)
    q, _ = jnp.linalg.qr(jax.random.normal(kq, (d, d), dtype))
    teacher = ReLUNetwork(jax.random.uniform(ka, (m,), dtype, 1.0, 2.0), q[:m])
    x = uniform_sphere(kx, n, d, dtype)
    y = relu_network(teacher, x) + noise * jax.random.normal(ke, (n,), dtype)
    return TeacherStudent(x, y, teacher, float(lam), penalty, scaling)


def measure(params: ReLUNetwork):
    r"""Measure representation $\nu = \sum_j r_j \delta_{\theta_j}$ (Akiyama & Suzuki 2021).

    $r_j = a_j \|w_j\|$ and $\theta_j = w_j / \|w_j\|$ (zero for a dead neuron, $w_j = 0$); for
    positively homogeneous $\sigma$, $f(x; \Theta) = \int \sigma(\langle\theta, x\rangle)\,d\nu$.

    **Returns:** `(r, theta)` with shapes `(*batch, M)` and `(*batch, M, d)`.
    """
    norm = jnp.linalg.norm(params.w, axis=-1)
    safe = jnp.where(norm > 0, norm, 1.0)
    return params.a * norm, jnp.where(norm[..., None] > 0, params.w / safe[..., None], 0.0)


def measure_distance(student: ReLUNetwork, teacher: ReLUNetwork, bandwidth: float = 0.1):
    r"""Kernel distance between the measures of a student and the teacher.

    $\|\nu - \nu^\circ\|_k = \big(\iint k\, d(\nu - \nu^\circ)\, d(\nu - \nu^\circ)\big)^{1/2}$
    with the Gaussian kernel $k(\theta, \theta') = e^{-\|\theta - \theta'\|^2 / 2h^2}$ on the
    sphere (characteristic, so the distance vanishes only for equal measures): zero when the
    student's neurons carry the teacher's mass $r^\circ_j$ in the teacher's directions.

    **Arguments:** `student` (any batch axes), `teacher` (no batch axes), `bandwidth` $h$.

    **Returns:** the distance, shape `batch`.
    """

    def gram(theta1, r1, theta2, r2):
        sq = jnp.sum((theta1[..., :, None, :] - theta2[..., None, :, :]) ** 2, axis=-1)
        return jnp.einsum("...i,...ij,...j->...", r1, jnp.exp(-sq / (2 * bandwidth**2)), r2)

    r, theta = measure(student)
    r0, theta0 = measure(teacher)
    batch = r.shape[:-1]
    r0 = jnp.broadcast_to(r0, (*batch, *r0.shape))
    theta0 = jnp.broadcast_to(theta0, (*batch, *theta0.shape))
    sq = gram(theta, r, theta, r) - 2 * gram(theta, r, theta0, r0) + gram(theta0, r0, theta0, r0)
    return jnp.sqrt(jnp.maximum(sq, 0.0))


def ntk_gram(params: ReLUNetwork, x: Array, scaling: str = "standard") -> Array:
    r"""Neural tangent kernel $K_{ik} = \langle \nabla_\Theta f(x_i), \nabla_\Theta f(x_k) \rangle$.

    Under the gradient flow $\dot\Theta = -\nabla L$ of $L = \frac{1}{2n}\sum_i (y_i - f_i)^2$ the
    outputs move as $\dot f = -\frac1n K (f - y)$, so while $K$ stays near its initial value
    (the lazy regime) the loss decays at least as $e^{-2\lambda_{\min}(K) t / n}$ (Jacot,
    Gabriel & Hongler 2018, "Neural tangent kernel: convergence and generalization in neural
    networks"; Du, Zhai, Poczos & Singh 2019, "Gradient descent provably optimizes
    over-parameterized neural networks").

    **Arguments:** `params` of ONE network, inputs `x` `(n, d)`, `scaling`.

    **Returns:** `K`, shape `(n, n)`.
    """
    jac = jax.jacobian(lambda p: relu_network(p, x, scaling))(params)
    flat = jnp.concatenate([j.reshape(x.shape[0], -1) for j in jax.tree.leaves(jac)], axis=1)
    return flat @ flat.T
