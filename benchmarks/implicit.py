r"""Workload (f): an implicit solver, `diffrax.Kvaerno5()`, on the batched gradient flow of (b).

With an implicit solver `linflow.gradient_flow` solves each initialisation on its own (vmapped),
so that Newton's method works with one initialisation's $p \times p$ Jacobian ($p$ parameters).
Compared on the same problem with

- linflow's explicit default (Tsit5, the whole batch as one state with one step size);
- the whole batch as one implicit ODE state, as `gradient_flow` did before: a direct
  `diffrax.diffeqsolve` with Kvaerno5, whose root finder builds and factorises a dense
  $Bp \times Bp$ Jacobian. It is timed at small batches within a time budget, and its time at
  the workload's batches is extrapolated with the power law fitted to those (marked
  extrapolated); the memory of its Jacobian, $(Bp)^2$ numbers, is exact.

The flows are compared through the end-to-end map $W_2 W_1$ at every save time.
"""

from __future__ import annotations

import contextlib
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import linflow

from ._common import max_abs_diff, measure_peers, problem, with_ratios

# linflow's default tolerances per dtype, passed to every solve here.
TOLERANCES = {"float32": (1e-5, 1e-7), "float64": (1e-6, 1e-8)}


def _field(t, y, args):
    w1, w2 = y
    syx, sxx = args
    e = syx - w2 @ (w1 @ sxx)
    return jnp.swapaxes(w2, -1, -2) @ e, e @ jnp.swapaxes(w1, -1, -2)


def _batch_max_rms(y):
    """The controller norm of the old whole-batch solve: the largest RMS over the batch."""
    leaves = jax.tree.leaves(y)
    squares = sum(jnp.sum(x**2, axis=(-2, -1)) for x in leaves)
    count = sum(x.shape[-2] * x.shape[-1] for x in leaves)
    return jnp.sqrt(jnp.max(squares) / count)


def _whole_batch(ts, rtol, atol):
    """The old code path: the whole batch as one state of a Kvaerno5 solve."""
    controller = diffrax.PIDController(
        rtol=rtol, atol=atol, pcoeff=0.4, icoeff=0.3, norm=_batch_max_rms
    )

    @jax.jit
    def solve(w1, w2, syx, sxx):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_field),
            diffrax.Kvaerno5(),
            t0=ts[0],
            t1=ts[-1],
            dt0=None,
            y0=(w1, w2),
            args=(syx, sxx),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            max_steps=65536,
            throw=False,
        )
        return sol.ys[1] @ sol.ys[0], sol.stats["num_steps"]

    return solve


def _time_whole_batch(config, task, weights, reference) -> list[dict]:
    """Time the old whole-batch solve on the first `B` of `weights`, for growing `B` in
    `config["whole_batches"]`, until `config["whole_budget_s"]` would run out.

    `reference`: Tsit5's $W_2 W_1$ of every initialisation. Each batch is
    compiled ahead of time (reported apart) and run up to twice; the next batch is skipped
    when the last run times 8 (cubic growth on doubling, as a dense LU) exceeds what is left.
    """
    dtype, budget_s = config["dtype"], config["whole_budget_s"]
    ts = jnp.linspace(0.0, config["t1"], config["saves"], dtype=dtype)
    solve = _whole_batch(ts, *TOLERANCES[dtype])
    points, spent = [], 0.0
    for b in config["whole_batches"]:
        if points and spent + 8 * points[-1]["time_s"] > budget_s:
            break
        began = time.perf_counter()
        # Σyx and Σxx broadcast to the batch: the field then never promotes ranks.
        syx, sxx = (jnp.broadcast_to(x, (b, *x.shape)) for x in (task.sigma_yx, task.sigma_xx))
        args = (weights[0][:b], weights[1][:b], syx, sxx)
        compiled = solve.lower(*args).compile()
        compile_s = time.perf_counter() - began
        times = []
        while len(times) < 2 and (not times or time.perf_counter() - began + times[0] < budget_s):
            start = time.perf_counter()
            product, steps = jax.block_until_ready(compiled(*args))
            times.append(time.perf_counter() - start)
        spent += time.perf_counter() - began
        points.append(
            {
                "B": b,
                "time_s": min(times),
                "times_s": times,
                "compile_s": compile_s,
                "num_steps": int(steps),
                "jacobian_bytes": jacobian_bytes(b, config["width"], dtype),
                "max_abs_diff_vs_tsit5": max_abs_diff(product, reference[:, :b]),
            }
        )
    return points


def jacobian_bytes(b: int, n: int, dtype) -> int:
    """Bytes of the dense Jacobian of the whole-batch state: $(B \\cdot 2n^2)^2$ numbers."""
    return (b * 2 * n * n) ** 2 * jnp.dtype(dtype).itemsize


def _power_law(points: list[dict]) -> tuple[float, float] | None:
    """`(exponent, log prefactor)` of time = c B^k fitted to the points with B >= 2 (B = 1 is
    mostly fixed cost) if there are two, else to all; `None` with fewer than two points."""
    fit = [p for p in points if p["B"] >= 2]
    fit = fit if len(fit) >= 2 else points
    if len(fit) < 2:
        return None
    k, log_c = np.polyfit(np.log([p["B"] for p in fit]), np.log([p["time_s"] for p in fit]), 1)
    return float(k), float(log_c)


def run(config: dict, *, repeats: int, budget_s: float) -> dict:
    # One BLAS thread: the factorisations of every solver here go through SciPy's OpenBLAS,
    # whose two threads spin-wait when other jobs hold the cores (on this shared machine the
    # whole-batch solve at B = 8 took 23-38 s with two threads, 1.6-1.9 s with one).
    import scipy.linalg  # noqa: F401  (loads the OpenBLAS that JAX's LAPACK calls, to limit it)

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # then the default threads
        threadpool_limits = None
    blas = threadpool_limits(1, "blas") if threadpool_limits else contextlib.nullcontext()
    with jax.enable_x64(config["dtype"] == "float64"), blas:
        result = _run(config, repeats=repeats, budget_s=budget_s)
    result["blas_threads"] = 1 if threadpool_limits else "default"
    return result


def _run(config: dict, *, repeats: int, budget_s: float) -> dict:
    dtype, n = config["dtype"], config["width"]
    rtol, atol = TOLERANCES[dtype]
    largest = max(config["batches"] + config["whole_batches"])
    task, weights = problem(n, (largest,), dtype, scale=config["scale"])
    ts = jnp.linspace(0.0, config["t1"], config["saves"], dtype=dtype)
    tsit5 = linflow.gradient_flow(task, weights, ts, rtol=rtol, atol=atol).product()
    whole = _time_whole_batch(config, task, weights, tsit5)
    fit = _power_law(whole)
    cases = []
    for b in config["batches"]:
        w0 = tuple(w[:b] for w in weights)
        calls = {
            name: lambda solver=solver: linflow.gradient_flow(
                task, w0, ts, solver=solver, rtol=rtol, atol=atol
            )
            for name, solver in (("linflow", diffrax.Kvaerno5()), ("linflow_tsit5", None))
        }
        timed = measure_peers(calls, repeats=repeats, budget_s=budget_s)
        (kvaerno, traj), (explicit, explicit_traj) = timed["linflow"], timed["linflow_tsit5"]
        kvaerno["num_steps_max"] = int(jnp.max(traj.stats["num_steps"]))
        kvaerno["num_steps_mean"] = float(jnp.mean(traj.stats["num_steps"]))
        explicit["num_steps"] = int(explicit_traj.stats["num_steps"])
        explicit["max_abs_diff_vs_linflow"] = max_abs_diff(explicit_traj.product(), traj.product())
        peers = {"linflow": kvaerno, "linflow_tsit5": explicit}
        measured = next((p for p in whole if p["B"] == b), None)
        old = {"jacobian_bytes": jacobian_bytes(b, n, dtype)}
        if measured is not None:
            old["time_s"] = measured["time_s"]
        elif fit is not None:
            k, log_c = fit
            old["time_s"] = float(np.exp(log_c) * b**k)
            old["extrapolated"] = True
            old["cubic_from_largest_s"] = whole[-1]["time_s"] * (b / whole[-1]["B"]) ** 3
        else:
            old["status"] = "not measured (time budget)"
        peers["whole_batch_kvaerno5"] = old
        cases.append(
            {
                "sizes": {"B": b, "d": n, "h": n, "m": n, "t1": config["t1"]},
                "peers": with_ratios(peers, work=b),
                "max_abs_diff_kvaerno5_vs_tsit5": explicit["max_abs_diff_vs_linflow"],
            }
        )
    return {
        "description": f"gradient flow with diffrax.Kvaerno5 (implicit), B two-layer nets, "
        f"d = h = m = {n} ({2 * n * n} parameters each), {dtype}",
        "unit": "trajectories/s",
        "dtype": dtype,
        "rtol": rtol,
        "atol": atol,
        "peers": {
            "linflow": "linflow.gradient_flow(..., solver=diffrax.Kvaerno5()): one solve per "
            "initialisation (vmapped), p x p Jacobians",
            "linflow_tsit5": "linflow.gradient_flow with its explicit default (Tsit5, one state)",
            "whole_batch_kvaerno5": "jax.jit(diffrax.diffeqsolve) with Kvaerno5 on the whole "
            "batch as one state (the old gradient_flow): a dense (B p)^2 Jacobian; "
            "extrapolated from the smaller batches of whole_batch",
        },
        "extrapolation": "power law time = c B^k fitted to the whole-batch solve at "
        + ", ".join(str(p["B"]) for p in whole)
        + (f" (k = {fit[0]:.2f})" if fit else ""),
        "whole_batch": {
            "points": whole,
            "growth_exponent": fit[0] if fit else None,
            "budget_s": config["whole_budget_s"],
        },
        "cases": cases,
    }
