r"""Workload (b): batched gradient flow $\dot W_1 = W_2^\top E$, $\dot W_2 = E W_1^\top$ (tau = 1),
in float32 and in float64 from the same start.

linflow integrates the whole batch as one state with one step size (`batch_max_rms`); the naive
peer vmaps `diffrax.diffeqsolve` over trajectories (each with its own steps, but a vmapped
`while_loop` runs until the slowest is done); SciPy's `solve_ivp` runs one trajectory at a time,
timed on a subset and extrapolated linearly to the batch.
"""

from __future__ import annotations

import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import linflow

from ._common import (
    by_peer,
    dtype_comparison,
    in_x64,
    max_abs_diff,
    measure_peers,
    problem,
    with_ratios,
)

# The same tolerances in both dtypes (linflow's float32 defaults), so that both take about
# the same steps and their time ratio is the cost of the arithmetic.
RTOL, ATOL = 1e-5, 1e-7
DTYPES = ("float32", "float64")
DT0 = 0.1


def _single_field(t, y, args):
    w1, w2 = y
    syx, sxx = args
    e = syx - w2 @ (w1 @ sxx)
    return w2.T @ e, e @ w1.T


def _naive_vmap_solver(ts, adaptive: bool):
    """`jax.jit(jax.vmap(diffeqsolve))`, one solve per trajectory."""
    if adaptive:
        controller, dt0 = diffrax.PIDController(rtol=RTOL, atol=ATOL, pcoeff=0.4, icoeff=0.3), None
    else:
        controller, dt0 = diffrax.ConstantStepSize(), DT0

    def solve_one(w1, w2, syx, sxx):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_single_field),
            diffrax.Tsit5(),
            t0=0.0,
            t1=ts[-1],
            dt0=dt0,
            y0=(w1, w2),
            args=(syx, sxx),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            max_steps=65536,
            throw=False,
        )
        return sol.ys, sol.stats["num_steps"]

    return jax.jit(jax.vmap(solve_one, in_axes=(0, 0, None, None)))


def _scipy_subset(w1, w2, syx, sxx, ts, count: int):
    """Solve `count` trajectories with `solve_ivp` (RK45, float64); seconds per trajectory."""
    from scipy.integrate import solve_ivp

    n_shape, m_shape = w1.shape[1:], w2.shape[1:]
    split = int(np.prod(n_shape))

    def field(t, y):
        a, b = y[:split].reshape(n_shape), y[split:].reshape(m_shape)
        e = syx - b @ (a @ sxx)
        return np.concatenate([(b.T @ e).ravel(), (e @ a.T).ravel()])

    finals = []
    start = time.perf_counter()
    for i in range(count):
        y0 = np.concatenate([w1[i].ravel(), w2[i].ravel()])
        sol = solve_ivp(field, (0.0, ts[-1]), y0, method="RK45", t_eval=ts, rtol=RTOL, atol=ATOL)
        finals.append(sol.y[split:, -1].reshape(m_shape))
    return (time.perf_counter() - start) / count, np.stack(finals)


def _calls(config: dict, b: int, dtype: str):
    """Each peer's call in `dtype` (run it under `in_x64`), its final `W_2` and its steps."""
    n = config["width"]
    task, (w1, w2) = problem(n, (b,), dtype, scale=0.1)
    ts = jnp.linspace(0.0, config["t1"], config["saves"], dtype=dtype)
    syx, sxx = task.sigma_yx, task.sigma_xx
    calls = {
        "linflow": lambda: linflow.gradient_flow(task, (w1, w2), ts, rtol=RTOL, atol=ATOL),
        "linflow_fixed": lambda: linflow.gradient_flow(
            task, (w1, w2), ts, stepsize_controller=diffrax.ConstantStepSize(), dt0=DT0
        ),
    }
    for name, adaptive in (("naive_diffrax_vmap", True), ("naive_diffrax_vmap_fixed", False)):
        solver = _naive_vmap_solver(ts, adaptive)
        calls[name] = lambda solver=solver: solver(w1, w2, syx, sxx)
    return calls


def _read(name: str, out):
    """`(final W_2 of every trajectory, steps stats)` of a peer's output."""
    if name.startswith("linflow"):
        return np.asarray(out.weights[1][-1]), {"num_steps": int(out.stats["num_steps"])}
    ys, steps = out
    return np.asarray(ys[1][:, -1]), {
        "num_steps_max": int(jnp.max(steps)),
        "num_steps_mean": float(jnp.mean(steps)),
    }


def run(config: dict, *, repeats: int, budget_s: float) -> dict:
    cases = []
    n = config["width"]
    for b in config["batches"]:
        calls = {}
        for dtype in DTYPES:
            with jax.enable_x64(dtype == "float64"):
                for name, fn in _calls(config, b, dtype).items():
                    calls[dtype, name] = in_x64(fn, dtype)
        timed = measure_peers(by_peer(calls), repeats=repeats, budget_s=budget_s)
        # SciPy's RK45 computes in float64 whatever the input: timed once, shown in both.
        count = min(config["scipy_subset"], b)
        with jax.enable_x64(True):
            task, weights = problem(n, (b,), "float64", scale=0.1)
        host = [np.asarray(x) for x in (*weights, task.sigma_yx, task.sigma_xx)]
        ts = np.linspace(0.0, config["t1"], config["saves"])
        per_trajectory, scipy_finals = _scipy_subset(*host, ts, count)
        by_dtype, finals = {}, {}
        for dtype in DTYPES:
            peers = {}
            for (d, name), (timing, out) in timed.items():
                if d == dtype:
                    with jax.enable_x64(dtype == "float64"):  # float64 arrays read with x64 on
                        final, steps = _read(name, out)
                    peers[name] = {**timing, **steps}
                    if name == "linflow":
                        finals[dtype] = final
                    else:
                        peers[name]["max_abs_diff_vs_linflow"] = max_abs_diff(final, finals[dtype])
            peers["scipy_solve_ivp"] = {
                "time_s": per_trajectory * b,
                "extrapolated": True,
                "subset": count,
                "seconds_per_trajectory": per_trajectory,
                "max_abs_diff_vs_linflow": max_abs_diff(scipy_finals, finals[dtype][:count]),
                "note": f"RK45 float64, {count} trajectories timed one by one, scaled to B = {b}",
            }
            by_dtype[dtype] = {"peers": with_ratios(peers, work=b)}
        cases.append(
            {
                "sizes": {
                    "B": b,
                    "d": n,
                    "h": n,
                    "m": n,
                    "t1": config["t1"],
                    "saves": config["saves"],
                },
                "dtypes": by_dtype,
                **dtype_comparison(by_dtype, finals),
            }
        )
    return {
        "description": "batched gradient flow, B two-layer nets, Tsit5, float32 (x64 off) and "
        "float64 (x64 on) from the same start, the same tolerances in both (SciPy: float64)",
        "unit": "trajectories/s",
        "dtypes": list(DTYPES),
        "rtol": RTOL,
        "atol": ATOL,
        "dt0_fixed": DT0,
        "peers": {
            "linflow": "linflow.gradient_flow, Tsit5 + PID (one step size for the batch)",
            "linflow_fixed": "linflow.gradient_flow, Tsit5, diffrax.ConstantStepSize, dt0",
            "naive_diffrax_vmap": "jax.jit(jax.vmap(diffrax.diffeqsolve)), Tsit5 + PID each",
            "naive_diffrax_vmap_fixed": "jax.jit(jax.vmap(diffrax.diffeqsolve)), constant dt0",
            "scipy_solve_ivp": "scipy.integrate.solve_ivp RK45 per trajectory, on a subset, "
            "extrapolated linearly to B (time_s is the extrapolation); float64 in both columns",
        },
        "cases": cases,
    }
