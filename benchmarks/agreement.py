r"""Workload (e): how far each engine is from the closed forms, in float32 and float64.

On the Saxe et al. (2019) hierarchy with an aligned, balanced start (every mode at
$a_0 = b_0 = $ `scale`, so $u_0 = \text{scale}^2$): `gradient_flow` against `exact_flow` and its
mode strengths against `saxe_deep`; `gradient_descent` with learning rate $\eta$ against the
flow with $\tau = 1/\eta$, whose gap should shrink like $\eta$ (log-log slope $\approx 1$).
Errors are the largest absolute difference of the end-to-end map $W_2 W_1$ over all save
times and initialisations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import linflow

from ._common import max_abs_diff

SCALE = 0.1


def _one_dtype(dtype, config: dict) -> dict:
    task, _, _ = linflow.tasks.saxe_hierarchy(dtype=dtype)
    w0 = linflow.init_weights(
        jax.random.key(0), task, 4, scheme="aligned", scale=SCALE, batch=(config["batch"],)
    )
    t1 = config["t1"]
    ts = jnp.linspace(0.0, t1, 11, dtype=dtype)  # as many as the GD saves: one compile
    flow = linflow.gradient_flow(task, w0, ts)
    exact = linflow.exact_flow(task, w0, ts)
    s = task.modes()[1]
    k = s.shape[0]
    saxe = linflow.saxe_deep(ts.reshape(-1, 1, 1), s.reshape(1, 1, k), SCALE**2)
    out = {
        "flow_vs_exact_flow": max_abs_diff(flow.product(), exact.product()),
        "flow_vs_saxe_deep": max_abs_diff(flow.mode_strengths(task), saxe),
        "exact_flow_vs_saxe_deep": max_abs_diff(exact.mode_strengths(task), saxe),
        "flow_num_steps": int(flow.stats["num_steps"]),
        "flow_tolerances": "linflow defaults (rtol=1e-6, atol=1e-8)",
    }
    errors = []
    for lr in config["lrs"]:
        steps = 10 * max(1, round(t1 / lr / 10))  # ten saves
        gd = linflow.gradient_descent(task, w0, steps=steps, lr=lr, save_every=steps // 10)
        reference = linflow.exact_flow(task, w0, gd.ts, tau=1.0 / lr)
        errors.append(max_abs_diff(gd.product(), reference.product()))
    slope = np.polyfit(np.log(config["lrs"]), np.log(errors), 1)[0]
    out["gd_vs_exact_flow"] = {
        "lr": list(config["lrs"]),
        "error": errors,
        "loglog_slope": float(slope),
        "t1": t1,
    }
    return out


def run(config: dict, **_) -> dict:
    results = {}
    for name, dtype in (("float32", jnp.float32), ("float64", jnp.float64)):
        with jax.enable_x64(dtype == jnp.float64):
            results[name] = _one_dtype(dtype, config)
    return {
        "description": "max |W2 W1| error of each engine against the closed forms "
        "(Saxe hierarchy, aligned balanced start, scale 0.1, B initialisations)",
        "sizes": {"B": config["batch"], "d": 4, "h": 4, "m": 7, "t1": config["t1"]},
        "by_dtype": results,
    }
