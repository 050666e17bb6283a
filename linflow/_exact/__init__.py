"""Closed-form solutions of the gradient flow, and `exact_flow`, which picks one that applies."""

from __future__ import annotations

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (
    all_concrete,
    check_memory,
    check_task_weights,
    check_times,
    is_concrete,
    positive_scalar,
)
from .._trajectory import Trajectory, trajectory_bytes
from .aligned import AlignedTwoLayer
from .base import ClosedForm
from .decay import check_weight_decay
from .deep import AlignedDeep, deep_mode
from .lambda_balanced import LambdaBalancedTwoLayer
from .linear import OneLayer
from .scalar import decays, saxe_deep, scalar_mode, shallow, time_to_learn
from .zero_balanced import ZeroBalancedTwoLayer

CLOSED_FORMS: tuple[ClosedForm, ...] = (
    OneLayer(),
    AlignedTwoLayer(),
    ZeroBalancedTwoLayer(),
    LambdaBalancedTwoLayer(),
    AlignedDeep(),
)
"""The closed forms `exact_flow` tries, in this order: one layer; aligned two-layer; zero-balanced
two-layer; lambda-balanced two-layer; aligned balanced deep. Each has a `name`, a static
`depth_reason`, traceable `conditions` (message, holds per initialisation) and a `solve`;
`stats["form"]` of `exact_flow` indexes this tuple."""

# A looser tolerance would let a condition be waved through (a Gaussian start taken as aligned).
MAX_RTOL = 1e-2


def _rtol(fn, rtol, dtype) -> float:
    if rtol is None:
        return 1000 * float(jnp.finfo(dtype).eps)
    if isinstance(rtol, bool | np.bool_ | str) or not is_concrete(rtol):
        raise ValueError(f"{fn}(..., rtol=...) must be a Python number, got {type(rtol).__name__}.")
    try:
        value = float(rtol)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{fn}(..., rtol={rtol!r}) must be a real number.") from error
    if not 0 < value <= MAX_RTOL:
        raise ValueError(
            f"{fn}(..., rtol={rtol!r}) must lie in (0, {MAX_RTOL}]: it is the relative tolerance "
            "of each closed form's conditions, and a looser one would accept starts the form "
            "does not solve."
        )
    return value


def _forms(fn, form) -> tuple[ClosedForm, ...]:
    if form is None:
        return CLOSED_FORMS
    if isinstance(form, ClosedForm):
        return (form,)
    names = {f.name: f for f in CLOSED_FORMS}
    if isinstance(form, str) and form in names:
        return (names[form],)
    raise ValueError(
        f"{fn}(..., form={form!r}) must be None, a linflow.ClosedForm or one of {list(names)}."
    )


@eqx.filter_jit
def _evaluate(candidates, task, weights, rtol, decay):
    """Per candidate form, its condition messages and the first failing condition per start.

    **Returns:** `(messages, codes)`: `codes` int32 of shape `(len(candidates), *batch)`, 0 where
    every condition holds, `j + 1` where condition `j` is the first to fail."""
    batch = weights[0].shape[:-2]
    messages, codes = [], []
    for form in candidates:
        conditions = form.conditions(task, weights, rtol, **decay)
        messages.append(tuple(message for message, _ in conditions))
        code = jnp.zeros(batch, jnp.int32)
        for j, (_, holds) in reversed(list(enumerate(conditions))):
            code = jnp.where(jnp.broadcast_to(holds, batch), code, j + 1)
        codes.append(code)
    return tuple(messages), jnp.stack(codes)


def _no_form(fn, forms, reasons, where: str) -> str:
    lines = [f"{form.name}: {reason}" for form, reason in zip(forms, reasons)]
    return (
        f"{fn}: no closed form applies to this task and initialisation{where}:\n  - "
        + "\n  - ".join(lines)
    )


def _select(tree, index):
    return jax.tree.map(lambda w: w[index], tree)


def exact_flow(
    task, weights0, ts, *, tau=1.0, weight_decay=0.0, rtol=None, form=None, throw=True
) -> Trajectory:
    r"""The gradient flow $\tau\,dW_l/dt = -\partial L/\partial W_l$ from a closed form.

    For each initialisation, the first closed form in `linflow.CLOSED_FORMS` whose conditions
    hold is evaluated at `ts`:

    - depth 1, any $\Sigma_{xx}$ and start:
      $W(t) = W_* + (W_0 - W_*)\,Q e^{-\Lambda t/\tau} Q^\top$;
    - depth 2, $\Sigma_{xx} = I$, aligned start (any imbalance per mode): every mode follows
      `scalar_mode` (Saxe, McClelland & Ganguli 2014);
    - depth 2, $\Sigma_{xx} = I$, zero-balanced start $W_2^\top W_2 = W_1 W_1^\top$ (Braun,
      Dominé, Fitzgerald & Saxe 2022, "Exact learning dynamics of deep linear networks with
      prior knowledge") or $\lambda$-balanced start $W_2^\top W_2 - W_1 W_1^\top = \lambda I$
      (Dominé et al. 2025, "From lazy to rich: exact learning dynamics in deep linear
      networks"), not necessarily aligned, of any hidden width and rank: the matrix Riccati
      solution for $QQ^\top$, $Q = [W_1^\top; W_2]$. The weights are exact up to a rotation of
      the hidden layer (the product, $W_1^\top W_1$, $W_2 W_2^\top$, the loss, `ntk` and
      `representational_similarity` are exact);
    - depth $D \ge 3$, $\Sigma_{xx} = I$, balanced aligned start: every mode follows
      `deep_mode` (Arora, Cohen & Hazan 2018).

    With `weight_decay` $\gamma > 0$ it is the flow of $L + \frac\gamma2\sum_l\|W_l\|_F^2$
    (as in `gradient_flow`), whose closed forms exist where the imbalance is zero, since it
    decays as $e^{-2\gamma t/\tau}$: depth 1 (ridge regression, $\Sigma_{xx} + \gamma I$ in place of
    $\Sigma_{xx}$); aligned two-layer starts with balanced modes (the Saxe sigmoid towards
    $s_i - \gamma$); zero-balanced two-layer starts ($F - \gamma I$ in the Riccati solution);
    aligned balanced deep starts (`deep_mode` with decay). The $\lambda$-balanced form with
    $\lambda \ne 0$ and unbalanced aligned starts have none, and are refused with that reason.

    The depth is static; every other condition (whitening, the imbalance $\lambda$ from
    $W_2^\top W_2 - W_1 W_1^\top$, alignment with the task's modes) is measured on each
    initialisation to relative tolerance `rtol`, as traced values, so `exact_flow` works eagerly
    and inside `jax.jit`, `jax.grad` and `jax.vmap`.

    **Arguments:**

    - `task`, `weights0` (tuple $(W_1, \dots, W_N)$, each `(*batch, h_l, h_{l-1})`), `tau` as
      for `gradient_flow`. The task is cast to the weights' dtype, the dtype of the result.
    - `ts`: increasing times $\ge 0$, shape `(T,)`; `jnp.inf` gives the limit.
    - `weight_decay`: $\gamma \ge 0$, a scalar (traced values allowed).
    - `rtol`: relative tolerance of the conditions (default `1000 * eps` of the dtype; at most
      `1e-2`).
    - `form`: `None` (the first that applies), or one closed form (its name or an instance): only
      that one is checked and compiled.
    - `throw`: raise when no form applies to an initialisation; with `False` its weights are NaN
      and `stats["form"]` is -1 there.

    **Returns:** a `Trajectory`. `stats["form"]` (int32, the batch shape) is the index in
    `linflow.CLOSED_FORMS` of the form used for each initialisation (-1: none); when called
    eagerly, `stats["closed_form"]` also names it (a string; forms joined by ", " if the batch
    used several).

    **Raises:** `ValueError` for bad arguments, and (with `throw`) when no closed form applies,
    naming each form with the condition it fails and, eagerly, the first initialisation that
    fails; under `jax.jit` the same message comes from `equinox.branched_error_if`.

    **Example:**

    ```python
    weights0 = linflow.init_weights(key, task, 8, scheme="aligned", scale=1e-3)
    traj = linflow.exact_flow(task, weights0, jnp.array([0.0, 1.0, jnp.inf]))
    ```
    """
    fn = "exact_flow"
    task, weights0 = check_task_weights(fn, task, weights0)
    dtype = weights0[0].dtype
    ts = check_times(fn, ts, dtype, allow_inf=True)
    tau = positive_scalar(fn, "tau", tau, dtype)
    rtol = _rtol(fn, rtol, dtype)
    forms = _forms(fn, form)
    decay = {}
    if decays(weight_decay):
        gamma, _ = check_weight_decay(fn, weight_decay)
        if gamma.ndim:
            raise ValueError(
                f"{fn}(..., weight_decay=...) must be a scalar, got shape {gamma.shape}."
            )
        decay = {"weight_decay": jnp.asarray(gamma, dtype)}
    if not isinstance(throw, bool):
        raise ValueError(f"{fn}(..., throw={throw!r}) must be a bool.")
    check_memory(
        fn,
        trajectory_bytes(ts.shape[0], weights0),
        f"the trajectory ({ts.shape[0]} saves)",
        "save at fewer times ts",
    )
    depth = len(weights0)
    static = [
        form.depth_reason(depth) or (form.decay_reason() if decay else None) for form in forms
    ]
    candidates = tuple(form for form, reason in zip(forms, static) if reason is None)
    if not candidates:
        raise ValueError(_no_form(fn, forms, static, ""))
    messages, codes = _evaluate(candidates, task, weights0, rtol, decay)
    ok = codes == 0
    chosen = jnp.where(jnp.any(ok, axis=0), jnp.argmax(ok, axis=0), -1)  # into candidates

    # Forms that share an evaluation (zero- and lambda-balanced) are solved together.
    groups: dict[object, list[int]] = {}
    for i, f in enumerate(candidates):
        groups.setdefault(type(f).solve, []).append(i)
    batch = weights0[0].shape[:-2]
    registry = {id(f): i for i, f in enumerate(CLOSED_FORMS)}
    index = jnp.asarray([registry.get(id(f), -1) for f in candidates], jnp.int32)
    form_index = jnp.where(chosen >= 0, index[jnp.maximum(chosen, 0)], -1)

    if is_concrete(codes):
        chosen_np = np.asarray(chosen)
        codes_np = np.asarray(codes)
        failing = np.argwhere(chosen_np.reshape(-1) < 0)[:, 0]
        if throw and failing.size:
            first = failing[0]
            where = ""
            if batch:
                at = tuple(int(i) for i in np.unravel_index(first, batch))
                where = (
                    f" (initialisation {at} of the batch of shape {batch}; {failing.size} of "
                    f"{chosen_np.size} fail)"
                )
            init_codes = codes_np.reshape(len(candidates), -1)[:, first]
            raise ValueError(_no_form(fn, forms, _reasons(static, messages, init_codes), where))
        weights = _solve_concrete(
            candidates, groups, chosen_np, task, weights0, ts, tau, rtol, decay
        )
        stats = {"form": form_index}
        if all_concrete((ts, tau, weights0, task)):
            used = sorted({int(c) for c in chosen_np.reshape(-1) if c >= 0})
            stats["closed_form"] = ", ".join(candidates[c].name for c in used)
        return Trajectory(ts=ts, weights=weights, stats=stats, unit="time", tau=tau)

    weights = _solve_traced(candidates, groups, chosen, task, weights0, ts, tau, rtol, decay)
    if throw:
        weights = _raise_traced(fn, forms, static, messages, codes, chosen, weights)
    return Trajectory(ts=ts, weights=weights, stats={"form": form_index}, unit="time", tau=tau)


def _reasons(static, messages, init_codes):
    """The reason each form fails for one initialisation (static ones first come from `static`)."""
    out, it = [], iter(zip(messages, init_codes))
    for reason in static:
        if reason is None:
            form_messages, code = next(it)
            reason = form_messages[int(code) - 1]
        out.append(reason)
    return out


def _nan_like(shapes):
    return tuple(jnp.full(s.shape, jnp.nan, s.dtype) for s in shapes)


def _solve_concrete(candidates, groups, chosen, task, weights0, ts, tau, rtol, decay):
    """Solve each group of forms on the initialisations that chose it (concrete choices)."""
    batch = weights0[0].shape[:-2]
    flat_chosen = chosen.reshape(-1)
    users = {key: np.isin(flat_chosen, members) for key, members in groups.items()}
    for key, members in groups.items():
        if users[key].all():  # the whole batch: no gathering
            return tuple(candidates[members[0]].solve(task, weights0, ts, tau, rtol, **decay))
    flat = tuple(w.reshape((-1,) + w.shape[-2:]) for w in weights0)
    out = None
    for key, members in groups.items():
        rows = np.flatnonzero(users[key])
        if rows.size == 0:
            continue
        part = candidates[members[0]].solve(task, _select(flat, rows), ts, tau, rtol, **decay)
        if out is None:
            out = tuple(
                jnp.full(p.shape[:1] + (flat_chosen.size,) + p.shape[2:], jnp.nan, p.dtype)
                for p in part
            )
        out = tuple(o.at[:, rows].set(p) for o, p in zip(out, part))
    if out is None:  # nothing applies anywhere (throw=False)
        shapes = jax.eval_shape(
            lambda w: candidates[0].solve(task, w, ts, tau, rtol, **decay), weights0
        )
        return _nan_like(shapes)
    return tuple(o.reshape(o.shape[:1] + batch + o.shape[2:]) for o in out)


def _solve_traced(candidates, groups, chosen, task, weights0, ts, tau, rtol, decay):
    """Solve each group of forms under a trace: every group runs (inside `lax.cond`, so only
    when some initialisation chose it) on the batch with the other initialisations replaced by
    one that chose it (so that no solve sees a start outside its conditions), and the results
    are selected per initialisation."""
    batch = weights0[0].shape[:-2]
    out = None
    for members in groups.values():
        form = candidates[members[0]]
        selected = jnp.isin(chosen, jnp.asarray(members))
        reference = jnp.argmax(selected.reshape(-1))
        starts = tuple(
            jnp.where(
                selected[..., None, None],
                w,
                w.reshape((-1,) + w.shape[-2:])[reference],
            )
            for w in weights0
        )

        def solve(starts, form=form):
            return tuple(form.solve(task, starts, ts, tau, rtol, **decay))

        shapes = jax.eval_shape(solve, starts)
        if out is None:
            out = _nan_like(shapes)
        if len(groups) > 1:
            part = jax.lax.cond(
                jnp.any(selected),
                solve,
                lambda s, shapes=shapes: tuple(jnp.zeros(x.shape, x.dtype) for x in shapes),
                starts,
            )
        else:
            part = solve(starts)
        mask = selected.reshape((1,) + batch + (1, 1))
        out = tuple(jnp.where(mask, p, o) for p, o in zip(part, out))
    return out


def _raise_traced(fn, forms, static, messages, codes, chosen, weights):
    """`equinox.branched_error_if` naming each form's failing condition for the first
    initialisation that no form solves."""
    radices = [len(m) for m in messages]
    if 0 in radices:  # a form without conditions always applies
        return weights
    table = [
        _no_form(fn, forms, _reasons(static, messages, [d + 1 for d in digits]), "")
        for digits in itertools.product(*(range(r) for r in radices))
    ]
    flat_codes = codes.reshape(len(messages), -1)
    failing = chosen.reshape(-1) < 0
    first = jnp.argmax(failing)
    digits = jnp.maximum(flat_codes[:, first] - 1, 0)
    strides = [math.prod(radices[i + 1 :]) for i in range(len(radices))]
    which = sum(d * stride for d, stride in zip(digits, strides))
    return eqx.branched_error_if(weights, jnp.any(failing), which, table)


__all__ = [
    "CLOSED_FORMS",
    "ClosedForm",
    "deep_mode",
    "exact_flow",
    "saxe_deep",
    "scalar_mode",
    "shallow",
    "time_to_learn",
]
