r"""Workload (b): batched gradient flow $\dot W_1 = W_2^\top E$, $\dot W_2 = E W_1^\top$ (tau = 1).

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

from ._common import max_abs_diff, measure, small_weights, square_task, with_ratios

RTOL, ATOL = 1e-5, 1e-7
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


def run(config: dict, *, repeats: int, budget_s: float) -> dict:
    cases = []
    ts = jnp.linspace(0.0, config["t1"], config["saves"], dtype=jnp.float32)
    for b in config["batches"]:
        n = config["width"]
        task = square_task(n, jnp.float32)
        w1, w2 = small_weights(task, (b,), scale=0.1)
        syx, sxx = task.sigma_yx, task.sigma_xx
        peers, finals = {}, {}

        def adaptive():
            return linflow.gradient_flow(task, (w1, w2), ts, rtol=RTOL, atol=ATOL)

        def fixed():
            return linflow.gradient_flow(
                task, (w1, w2), ts, stepsize_controller=diffrax.ConstantStepSize(), dt0=DT0
            )

        peers["linflow"], traj = measure(adaptive, repeats=repeats, budget_s=budget_s)
        peers["linflow"]["num_steps"] = int(traj.stats["num_steps"])
        reference = traj.weights[1][-1]
        peers["linflow_fixed"], traj = measure(fixed, repeats=repeats, budget_s=budget_s)
        peers["linflow_fixed"]["num_steps"] = int(traj.stats["num_steps"])
        finals["linflow_fixed"] = traj.weights[1][-1]
        for name, adaptive_peer in (
            ("naive_diffrax_vmap", True),
            ("naive_diffrax_vmap_fixed", False),
        ):
            solver = _naive_vmap_solver(ts, adaptive_peer)
            peers[name], (ys, steps) = measure(
                lambda solver=solver: solver(w1, w2, syx, sxx), repeats=repeats, budget_s=budget_s
            )
            peers[name]["num_steps_max"] = int(jnp.max(steps))
            peers[name]["num_steps_mean"] = float(jnp.mean(steps))
            finals[name] = ys[1][:, -1]
        count = min(config["scipy_subset"], b)
        host = [np.asarray(x, np.float64) for x in (w1, w2, syx, sxx)]
        per_trajectory, scipy_finals = _scipy_subset(*host, np.asarray(ts, np.float64), count)
        peers["scipy_solve_ivp"] = {
            "time_s": per_trajectory * b,
            "extrapolated": True,
            "subset": count,
            "seconds_per_trajectory": per_trajectory,
            "max_abs_diff_vs_linflow": max_abs_diff(scipy_finals, reference[:count]),
            "note": f"RK45 float64, {count} trajectories timed one by one, scaled to B = {b}",
        }
        for name, final in finals.items():
            peers[name]["max_abs_diff_vs_linflow"] = max_abs_diff(final, reference)
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
                "peers": with_ratios(peers, work=b),
            }
        )
    return {
        "description": "batched gradient flow, B two-layer nets, Tsit5, float32 (SciPy float64)",
        "unit": "trajectories/s",
        "dtype": "float32",
        "rtol": RTOL,
        "atol": ATOL,
        "dt0_fixed": DT0,
        "peers": {
            "linflow": "linflow.gradient_flow, Tsit5 + PID (one step size for the batch)",
            "linflow_fixed": "linflow.gradient_flow, Tsit5, diffrax.ConstantStepSize, dt0",
            "naive_diffrax_vmap": "jax.jit(jax.vmap(diffrax.diffeqsolve)), Tsit5 + PID each",
            "naive_diffrax_vmap_fixed": "jax.jit(jax.vmap(diffrax.diffeqsolve)), constant dt0",
            "scipy_solve_ivp": "scipy.integrate.solve_ivp RK45 per trajectory, on a subset, "
            "extrapolated linearly to B (time_s is the extrapolation)",
        },
        "cases": cases,
    }
