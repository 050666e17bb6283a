r"""Train and test error of linear networks on finite noisy data: per sample and averaged.

The data model is that of `linflow.tasks.noisy_teacher`: inputs $x \sim N(0, I_d)$, targets
$y = \bar W x + \varepsilon$ from a teacher with $\|\bar W\|_F^2 = m\sigma_w^2$ and noise
$\varepsilon \sim N(0, \sigma_\varepsilon^2 I_m)$, $\sigma_w^2 = \mathrm{snr}/(1 + \mathrm{snr})$,
$\sigma_\varepsilon^2 = 1/(1 + \mathrm{snr})$; $n$ training samples give
$\Sigma_{xx} = Q \Lambda Q^\top$ and $\Sigma_{yx}$. In each input mode $q_i$ the least-squares
target column is $w^*_i = \Sigma_{yx} q_i / \lambda_i$ (zero where $\lambda_i = 0$), with strength
$r_i = \|w^*_i\|$; the network learns each mode separately (Advani, Saxe & Sompolinsky 2020).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ._checks import _real_scalar, check_int, check_times, known, positive_scalar
from ._exact import deep_mode
from ._loss import _loss
from ._task import Task

# Midpoint nodes in theta for the Marchenko-Pastur bulk, lambda = c + h cos(theta): the
# integrands are smooth periodic functions of theta, so the rule converges spectrally; the
# finest feature, e^{-lambda t} at the lower edge, is resolved for t up to ~ (K / pi)^2 / h
# (against 8192 nodes: relative error < 1e-9 up to t = 10^3, < 1e-6 to 10^4 but at n = d).
_NODES = 512
# Log-spaced times (in units of tau) searched for the optimal stopping time, then refined.
_SEARCH = (1e-3, 1e6, 200)


def _check_value(fn: str, name: str, value, dtype, bad, what: str):
    """`value` (a real scalar) in `dtype`, raising where `bad(value)`: eagerly a `ValueError`,
    inside a transformation with `equinox.error_if`."""
    x = _real_scalar(fn, name, value).astype(dtype)
    shown = repr(np.asarray(x).item()) if known(x) is not None else "..."
    message = f"{fn}(..., {name}={shown}) {what}."
    flag = bad(x)
    if known(flag):
        raise ValueError(message)
    return x if known(flag) is False else eqx.error_if(x, flag, message)


def _noise_split(snr):
    r"""$(\sigma_w^2, \sigma_\varepsilon^2) = (\mathrm{snr}, 1)/(1 + \mathrm{snr})$, also at inf."""
    finite = jnp.isfinite(snr)
    safe = jnp.where(finite, snr, 1.0)
    signal = jnp.where(finite, safe / (1 + safe), 1.0)
    return signal, 1.0 - signal


def _modes(train: Task):
    r"""$(\lambda_i, \hat z_i, r_i)$: input-mode eigenvalues `(d,)`, unit target directions
    `(m, d)` and target strengths `(d,)`, plus the input modes `Q` `(d, d)`.

    With whitened inputs the modes are the right singular vectors of $\Sigma_{yx}$, in which a
    deep network's gradient flow decouples exactly (Saxe et al. 2014).
    """
    d = train.input_dim
    if train.whitened:
        _, _, vt = jnp.linalg.svd(train.sigma_yx, full_matrices=True)
        Q = vt.T
        lam = jnp.ones(d, train.sigma_yx.dtype)
    else:
        lam, Q = jnp.linalg.eigh(train.sigma_xx)
        # As in exact_flow: directions with (numerically) zero input variance feel no gradient.
        lam = jnp.where(lam > lam[-1] * d * jnp.finfo(lam.dtype).eps, lam, 0.0)
    z = train.sigma_yx @ Q  # (m, d)
    norm = jnp.sqrt(jnp.sum(z * z, axis=0))
    # A target at rounding level (a mode outside the span of sigma_yx) is no target.
    learnable = (lam > 0) & (norm > jnp.max(norm) * d * jnp.finfo(norm.dtype).eps)
    r = jnp.where(learnable, norm / jnp.where(lam > 0, lam, 1.0), 0.0)
    direction = z / jnp.where(learnable, norm, 1.0).reshape(1, d)
    return lam, direction, r, Q


def _mode_strengths(ts, lam, r, u0, tau, depth: int):
    r"""$u_i(t)$ of the aligned network, `(T, d)`: $\tau \dot u = D\lambda u^{2-2/D}(r - u)$
    from $u_0$ (from 0 where $r = 0$), i.e. `deep_mode` at time $\lambda t$."""
    learnable = (r > 0).reshape(1, -1)
    lam = lam.reshape(1, -1)
    t = jnp.where(lam > 0, ts.reshape(-1, 1) * lam, 0.0)
    start = jnp.where(learnable, u0, 0.0)
    u = deep_mode(t, jnp.where(learnable, r.reshape(1, -1), 1.0), start, tau, depth)
    return jnp.where(learnable, u, 0.0)


def _check_start(fn: str, u0, r, depth: int):
    """For depth >= 3, `deep_mode` needs every learnable mode's target above its start."""
    if depth < 3:
        return u0
    low = jnp.any((r > 0) & (r <= u0))
    message = (
        f"{fn}(..., u0=...) must lie below every mode's target strength r_i for depth >= 3 "
        "(a mode would have to shrink to its target); use a smaller start."
    )
    if known(low):
        raise ValueError(message)
    return u0 if known(low) is False else eqx.error_if(u0, low, message)


def sample_generalization_curve(train: Task, test: Task, ts, *, depth: int = 1, u0=0.0, tau=1.0):
    r"""Exact train and test error of an aligned network trained by gradient flow on `train`.

    In the eigenbasis $\Sigma_{xx} = Q \Lambda Q^\top$ of the training inputs, each input mode
    $q_i$ has the least-squares target $w^*_i = \Sigma_{yx} q_i / \lambda_i$, of strength
    $r_i = \|w^*_i\|$ and direction $\hat z_i$. The network starts *aligned*: every mode with a
    target at strength $u_0$ along $\hat z_i$ (the others at zero), and each mode strength then
    obeys $\tau \dot u_i = D \lambda_i u_i^{2 - 2/D}(r_i - u_i)$ (`deep_mode` at time
    $\lambda_i t$), so that $W(t) = \sum_i u_i(t)\, \hat z_i q_i^\top$; the errors are
    `train` and `test`'s losses of $W(t)$. For depth $D = 1$ this is exact for any sample
    ($u_i(t) = r_i(1 - e^{-\lambda_i t/\tau}) + u_0 e^{-\lambda_i t/\tau}$; from another start use
    `exact_flow(train, (W0,), ts).loss(test)`). For $D \ge 2$ it is the gradient flow of a
    network that learns each input mode in its own balanced chain, the reduction of Advani,
    Saxe & Sompolinsky (2020, "High-dimensional dynamics of generalization error in neural
    networks"); it is exact for a deep linear network with a balanced aligned start when the
    training inputs are whitened (`train` with $\Sigma_{xx} = I$: the modes are then the
    singular vectors of $\Sigma_{yx}$, as in Saxe et al. 2014 and Lampinen & Ganguli 2019,
    "An analytic theory of generalization dynamics and transfer learning in deep linear
    networks").

    **Arguments:**

    - `train`, `test`: `linflow.Task`s of the same shape, e.g. from `tasks.noisy_teacher`.
    - `ts`: times $t \ge 0$, increasing, shape `(T,)`; `jnp.inf` gives the converged errors.
    - `depth`: number of weight matrices $D \ge 1$.
    - `u0`: the start's mode strength ($\ge 0$; $> 0$ for $D \ge 2$, where 0 is a fixed
      point; for $D \ge 3$ below every $r_i$).
    - `tau`: time constant $\tau$ of $\tau\,dW/dt = -\nabla L$.

    **Returns:** `(train_error, test_error)`, each of shape `(T,)`, in the dtype of `train`.

    **Raises:** `ValueError` for tasks of different shapes, bad times, a depth below 1, or a
    negative, missing or too large `u0`.

    **Example:**

    ```python
    train, test = linflow.tasks.noisy_teacher(key, 100, 1, 80, None, snr=4.0)
    train_error, test_error = linflow.sample_generalization_curve(train, test, ts)
    ```
    """
    fn = "sample_generalization_curve"
    for name, task in (("train", train), ("test", test)):
        if not isinstance(task, Task):
            raise ValueError(f"{fn}({name}=...) must be a linflow.Task, got {type(task).__name__}.")
    if test.sigma_yx.shape != train.sigma_yx.shape:
        raise ValueError(
            f"{fn}(train=..., test=...): the tasks' shapes differ, {train.sigma_yx.shape} "
            f"and {test.sigma_yx.shape}."
        )
    dtype = train.sigma_yx.dtype
    test = test.astype(dtype)
    ts = check_times(fn, ts, dtype, allow_inf=True)
    depth = check_int(fn, "depth", depth, minimum=1)
    tau = positive_scalar(fn, "tau", tau, dtype)
    if depth == 1:
        u0 = _check_value(
            fn, "u0", u0, dtype, lambda x: ~(x >= 0) | ~jnp.isfinite(x), "must be >= 0"
        )
    else:
        u0 = _check_value(
            fn,
            "u0",
            u0,
            dtype,
            lambda x: ~(x > 0) | ~jnp.isfinite(x),
            f"must be > 0 for depth={depth} (W = 0 is a fixed point)",
        )
    lam, direction, r, Q = _modes(train)
    u0 = _check_start(fn, u0, r, depth)
    u = _mode_strengths(ts, lam, r, u0, tau, depth)  # (T, d)
    w = jnp.einsum("md,td,ed->tme", direction, u, Q)
    return _loss(train, w), _loss(test, w)


def _marchenko_pastur(ratio, dtype):
    r"""Nodes $\lambda_k$ and weights $w_k$ with $\sum_k w_k f(\lambda_k) \approx
    \int_{\lambda > 0} f\, d\rho$ for the Marchenko-Pastur law of $\Sigma_{xx} = X^\top X / n$,
    and the mass $(1 - n/d)_+$ of its atom at 0.

    With $\gamma = d/n$ the bulk is $\rho(\lambda) = \sqrt{(\lambda_+ - \lambda)(\lambda -
    \lambda_-)}/(2\pi\gamma\lambda)$ on $\lambda_\pm = (1 \pm \sqrt\gamma)^2$; substituting
    $\lambda = 1 + \gamma + 2\sqrt\gamma\cos\theta$ gives
    $d\rho = \frac{2}{\pi}\frac{\sin^2\theta}{\lambda}\,d\theta$ on $[0, \pi]$, smooth even at
    $\gamma = 1$.
    """
    gamma = 1.0 / ratio
    theta = (jnp.arange(_NODES, dtype=dtype) + 0.5) * (np.pi / _NODES)
    lam = 1.0 + gamma + 2.0 * jnp.sqrt(gamma) * jnp.cos(theta)
    weight = (2.0 / _NODES) * jnp.sin(theta) ** 2 / lam
    return lam, weight, jnp.maximum(1.0 - ratio, 0.0)


def _variance_at_convergence(ratio):
    r"""$\frac{1}{\alpha}\int_{\lambda > 0} \lambda^{-1} d\rho$: $1/(\alpha - 1)$ above
    $\alpha = n/d = 1$, $\alpha/(1 - \alpha)$ below, infinite at 1 (the double-descent peak)."""
    safe = jnp.where(ratio == 1.0, 2.0, ratio)
    value = jnp.where(safe > 1.0, 1.0 / (safe - 1.0), safe / (1.0 - safe))
    return jnp.where(ratio == 1.0, jnp.inf, value)


def _average(ts, ratio, snr, init_scale, output_ratio, tau, depth: int):
    """Per-output train and test errors `(T,)` and the test error's time derivative `(T,)`."""
    signal, noise = _noise_split(snr)
    lam, weight, atom = _marchenko_pastur(ratio, ts.dtype)
    lam, weight = lam.reshape(1, -1), weight.reshape(1, -1)  # nodes on the last axis
    t = ts.reshape(-1, 1)
    finite = jnp.isfinite(t)
    floor = noise * jnp.maximum(1.0 - 1.0 / ratio, 0.0)  # L_min: noise outside span(X)
    if depth == 1:
        prior = signal + init_scale**2  # teacher and random start, both isotropic
        e = jnp.exp(-jnp.where(finite, t, 0.0) * lam / tau) * finite  # (T, K), 0 at t = inf
        test = prior * (jnp.sum(weight * e**2, -1) + atom)
        test = test + noise / ratio * jnp.sum(weight * (1 - e) ** 2 / lam, -1)
        train = prior * jnp.sum(weight * lam * e**2, -1) + noise / ratio * jnp.sum(
            weight * e**2, -1
        )
        rate = jnp.sum(weight * e * (noise / ratio * (1 - e) - prior * lam * e), -1) * (2 / tau)
    else:
        r = jnp.sqrt(output_ratio * (signal + noise / (ratio * lam)))  # concentrated r_i
        u0 = init_scale * jnp.sqrt(output_ratio)
        u = deep_mode(jnp.where(finite, t * lam, jnp.inf), r, u0, tau, depth)
        overlap = output_ratio * signal / r  # E[z_i . teacher column] / r_i
        test = jnp.sum(weight * (u**2 - 2 * u * overlap), -1) / output_ratio + signal
        train = jnp.sum(weight * lam * (u - r) ** 2, -1) / output_ratio
        du = depth * lam / tau * u ** (2 - 2 / depth) * (r - u)
        rate = jnp.sum(weight * 2 * (u - overlap) * du, -1) / output_ratio
    converged = (signal + init_scale**2 * (depth == 1)) * atom
    converged = converged + noise * _variance_at_convergence(ratio)
    test = jnp.where(finite[:, 0], test, converged)  # the quadrature is inexact at t = inf
    return 0.5 * (train + floor), 0.5 * (test + noise), 0.5 * rate


def _check_curve_arguments(fn, ratio, snr, depth, init_scale, output_ratio, tau, dtype):
    depth = check_int(fn, "depth", depth, minimum=1)
    ratio = positive_scalar(fn, "ratio", ratio, dtype)
    snr = _check_value(fn, "snr", snr, dtype, lambda x: ~(x >= 0), "must be >= 0 (inf allowed)")
    tau = positive_scalar(fn, "tau", tau, dtype)
    if depth == 1:
        init_scale = _check_value(
            fn,
            "init_scale",
            init_scale,
            dtype,
            lambda x: ~(x >= 0) | ~jnp.isfinite(x),
            "must be finite and >= 0",
        )
        output_ratio = jnp.ones((), dtype)  # unused: per output, one layer needs no m/d
    else:
        init_scale = _check_value(
            fn,
            "init_scale",
            init_scale,
            dtype,
            lambda x: ~(x > 0) | ~jnp.isfinite(x),
            f"must be > 0 for depth={depth} (W = 0 is a fixed point)",
        )
        if output_ratio is None:
            raise ValueError(f"{fn}(..., depth={depth}) needs output_ratio=m/d.")
        output_ratio = positive_scalar(fn, "output_ratio", output_ratio, dtype)
        if depth >= 3:  # deep_mode needs the start below r(lambda_+), the smallest target
            signal, noise = _noise_split(snr)
            edge = (1.0 + 1.0 / jnp.sqrt(ratio)) ** 2
            smallest = signal + noise / (ratio * edge)
            init_scale = _check_value(
                fn,
                "init_scale",
                init_scale,
                dtype,
                lambda x: x**2 >= smallest,
                "must be below the smallest mode target for depth >= 3 (init_scale^2 < "
                "sigma_w^2 + sigma_eps^2 / (ratio lambda_+))",
            )
    return ratio, snr, depth, init_scale, output_ratio, tau


def _dtype(*values):
    """The dtype of the computation: that of the array arguments, else JAX's default float."""
    dtypes = [v.dtype for v in values if isinstance(v, jax.Array | np.ndarray)]
    dtype = jnp.result_type(*dtypes, float)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def generalization_curve(
    ts, ratio, snr, *, depth: int = 1, init_scale=0.0, output_ratio=None, tau=1.0
):
    r"""Average train and test error curves in the high-dimensional limit (Marchenko-Pastur).

    The average of `sample_generalization_curve` over samples of `tasks.noisy_teacher` as
    $n, d \to \infty$ with $\alpha = n/d$ fixed (Advani, Saxe & Sompolinsky 2020, "High-dimensional
    dynamics of generalization error in neural networks"): the eigenvalues of
    $\Sigma_{xx} = X^\top X/n$ follow the Marchenko-Pastur law $\rho$ (mass $(1 - \alpha)_+$ at
    0), and, with $e = e^{-\lambda t/\tau}$, a one-layer network from a random start with
    $\|W_0\|_F^2 = m\sigma_0^2$ has, per output,

    $$\frac{E_{\text{test}}}{m} = \tfrac12\Big[(\sigma_w^2 + \sigma_0^2)\!\int\! e^2 d\rho
    + \frac{\sigma_\varepsilon^2}{\alpha}\!\int_{\lambda > 0}\!\frac{(1 - e)^2}{\lambda} d\rho
    + \sigma_\varepsilon^2\Big],\quad
    \frac{E_{\text{train}}}{m} = \tfrac12\Big[(\sigma_w^2 + \sigma_0^2)\!\int\! \lambda e^2 d\rho
    + \frac{\sigma_\varepsilon^2}{\alpha}\!\int_{\lambda > 0}\! e^2 d\rho
    + \sigma_\varepsilon^2 (1 - \tfrac1\alpha)_+\Big].$$

    Early on the test error falls as the signal is learned; later the noise in the
    small-eigenvalue modes is fitted and it rises again (overtraining; `optimal_stopping_time`).
    At convergence it is $\tfrac12[(\sigma_w^2 + \sigma_0^2)(1 - \alpha)_+ +
    \sigma_\varepsilon^2/(\alpha - 1) + \sigma_\varepsilon^2]$ for $\alpha > 1$ and
    $\tfrac12[(\sigma_w^2 + \sigma_0^2)(1 - \alpha) + \sigma_\varepsilon^2\alpha/(1 - \alpha) +
    \sigma_\varepsilon^2]$ below: infinite at $n = d$, the peak of double descent.

    For depth $D \ge 2$ the network starts aligned (see `sample_generalization_curve`) with mode
    strength $u_0 = \sigma_0\sqrt{m/d}$ (the same norm per mode as the random one-layer start)
    and each mode follows `deep_mode` towards $r(\lambda) = \sqrt{(m/d)(\sigma_w^2 +
    \sigma_\varepsilon^2/(\alpha\lambda))}$, the concentrated value of $r_i$ when $m/d$ is fixed as
    $d \to \infty$; then $E_{\text{test}}/m = \tfrac12[\frac{d}{m}\int (u^2 - 2u\frac{m}{d}
    \frac{\sigma_w^2}{r}) d\rho + \sigma_w^2 + \sigma_\varepsilon^2]$ and
    $E_{\text{train}}/m = \tfrac12[\frac{d}{m}\int\lambda(u - r)^2 d\rho + \sigma_\varepsilon^2
    (1 - \frac1\alpha)_+]$. The integrals are done by quadrature (1024 nodes), accurate to
    about $10^{-6}$ for $t \lesssim 10^4\tau$; $t = \infty$ uses the closed forms.

    **Arguments:**

    - `ts`: times $t \ge 0$ of $\tau\,dW/dt = -\nabla L$, increasing, shape `(T,)`; may end
      with `jnp.inf`.
    - `ratio`: $\alpha = n/d > 0$, training samples per input dimension.
    - `snr`: $\sigma_w^2/\sigma_\varepsilon^2 \ge 0$ (`jnp.inf`: no noise), as in
      `tasks.noisy_teacher`, where $\sigma_w^2 + \sigma_\varepsilon^2 = 1$.
    - `depth`: number of weight matrices $D$.
    - `init_scale`: $\sigma_0 \ge 0$, the start's norm per output ($> 0$ for $D \ge 2$).
    - `output_ratio`: $m/d$, needed for $D \ge 2$ (ignored for one layer).
    - `tau`: time constant $\tau$.

    **Returns:** `(train_error, test_error)` per output dimension (multiply by $m$ to compare
    with `traj.loss(train)`, `traj.loss(test)`), each of shape `(T,)`.

    **Raises:** `ValueError` for negative or decreasing times, a ratio that is not positive,
    a negative snr, a bad depth, init_scale, output_ratio or tau.

    **Example:**

    ```python
    ts = jnp.geomspace(0.01, 1000.0, 200)
    train_error, test_error = linflow.generalization_curve(ts, ratio=2.0, snr=4.0)
    ```
    """
    fn = "generalization_curve"
    dtype = _dtype(ts, ratio, snr)
    ts = check_times(fn, ts, dtype, allow_inf=True)
    ratio, snr, depth, init_scale, output_ratio, tau = _check_curve_arguments(
        fn, ratio, snr, depth, init_scale, output_ratio, tau, dtype
    )
    train, test, _ = _average(ts, ratio, snr, init_scale, output_ratio, tau, depth)
    return train, test


def optimal_stopping_time(
    ratio, snr, *, depth: int = 1, init_scale=0.0, output_ratio=None, tau=1.0
):
    r"""The early-stopping time that minimises the average test error, and that error.

    The test error of `generalization_curve` is evaluated at $t = 0$, at 200 log-spaced times
    in $[10^{-3}, 10^{6}]\,\tau$ and at $t = \infty$; around the best of them, the zero of
    $dE_{\text{test}}/dt$ (known in closed form under the integral) is found by bisection in
    $\log t$ (`optimistix.Bisection`). Without noise ($\mathrm{snr} = \infty$) the test error
    falls for ever and $t^* = \infty$; for pure noise ($\mathrm{snr} = 0$) it only rises and
    $t^* = 0$ (Advani, Saxe & Sompolinsky 2020).

    **Arguments:** as for `generalization_curve` (without `ts`).

    **Returns:** `(t_star, test_error)`: scalars; the test error is per output dimension.

    **Raises:** as `generalization_curve`.

    **Example:**

    ```python
    t_star, best = linflow.optimal_stopping_time(ratio=2.0, snr=4.0)
    ```
    """
    fn = "optimal_stopping_time"
    dtype = _dtype(ratio, snr)
    ratio, snr, depth, init_scale, output_ratio, tau = _check_curve_arguments(
        fn, ratio, snr, depth, init_scale, output_ratio, tau, dtype
    )
    low, high, count = _SEARCH
    grid = jnp.geomspace(low, high, count).astype(dtype) * tau
    ts = jnp.concatenate([jnp.zeros(1, dtype), grid, jnp.full(1, jnp.inf, dtype)])
    errors = _average(ts, ratio, snr, init_scale, output_ratio, tau, depth)[1]
    # Without noise the error falls for ever (its last digits are rounding): t* = inf.
    best = jnp.where(_noise_split(snr)[1] > 0, jnp.argmin(errors), count + 1)
    step = (high / low) ** (1.0 / (count - 1))
    interior = (best > 0) & (best < count + 1)
    centre = jnp.log(jnp.where(interior, ts[best], 1.0))

    def slope(log_t, _):
        time = jnp.exp(log_t).reshape(1)
        rate = _average(time, ratio, snr, init_scale, output_ratio, tau, depth)[2][0]
        return jnp.where(interior, rate, log_t - centre)  # a root in the bracket either way

    solver = optx.Bisection(rtol=0.0, atol=10 * jnp.finfo(dtype).eps ** 0.5)
    bracket = {"lower": centre - np.log(step), "upper": centre + np.log(step)}
    root = optx.root_find(slope, solver, centre, options=bracket, throw=False).value
    t_star = jnp.where(interior, jnp.exp(root), ts[best])
    refined = _average(t_star.reshape(1), ratio, snr, init_scale, output_ratio, tau, depth)[1][0]
    return t_star, jnp.where(interior, jnp.minimum(refined, errors[best]), errors[best])
