r"""Workloads (a) and (c): full-batch gradient descent on two-layer linear networks.

Every peer runs the same update from the same float32 start,
$E = \Sigma_{yx} - W_2 W_1 \Sigma_{xx}$, $W_1 \mathrel{+}= \eta W_2^\top E$,
$W_2 \mathrel{+}= \eta E W_1^\top$ (four $n^3$ products, $\approx 8n^3$ FLOPs per net and step),
and its final weights are compared with linflow's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import linflow

from ._common import (
    NOT_INSTALLED,
    gd_step_flops,
    max_abs_diff,
    measure,
    optional_torch,
    small_weights,
    square_task,
    torch_device,
    torch_sync,
    with_ratios,
)

LR = 0.01


def _numpy_loop(w1, w2, syx, sxx, lr, steps):
    for _ in range(steps):
        e = syx - w2 @ (w1 @ sxx)
        w1, w2 = w1 + lr * (np.swapaxes(w2, -1, -2) @ e), w2 + lr * (e @ np.swapaxes(w1, -1, -2))
    return w1, w2


def _torch_loop(torch, w1, w2, syx, sxx, lr, steps):
    with torch.inference_mode():
        for _ in range(steps):
            e = syx - w2 @ (w1 @ sxx)
            w1, w2 = w1 + lr * (w2.transpose(-1, -2) @ e), w2 + lr * (e @ w1.transpose(-1, -2))
    return w1, w2


def _single_step(w1, w2, syx, sxx, lr):
    e = syx - w2 @ (w1 @ sxx)
    return w1 + lr * (w2.T @ e), w2 + lr * (e @ w1.T)


# The "naive" JAX peer: one jitted, vmapped step, called from a Python loop.
_naive_step = jax.jit(jax.vmap(_single_step, in_axes=(0, 0, None, None, None)))


def _naive_jax_loop(w1, w2, syx, sxx, lr, steps):
    for _ in range(steps):
        w1, w2 = _naive_step(w1, w2, syx, sxx, lr)
    return w1, w2


def _steps_for(flops_per_step: float, target_flops: float, lo: int, hi: int) -> int:
    return int(np.clip(round(target_flops / flops_per_step), lo, hi))


def time_peers(n: int, batch: tuple[int, ...], steps: int, *, repeats: int, budget_s: float):
    """Time every GD peer on `steps` steps of `batch` nets of width `n` (float32)."""
    task = square_task(n, jnp.float32)
    w1, w2 = small_weights(task, batch)
    syx, sxx = task.sigma_yx, task.sigma_xx
    peers, finals = {}, {}

    def run_linflow():
        return linflow.gradient_descent(task, (w1, w2), steps=steps, lr=LR, save_every=steps)

    peers["linflow"], traj = measure(run_linflow, repeats=repeats, budget_s=budget_s)
    reference = traj.weights[1][-1]

    host = [np.array(x) for x in (w1, w2, syx, sxx)]  # writable copies (torch needs them)
    lr32 = np.float32(LR)
    peers["numpy"], finals["numpy"] = measure(
        lambda: _numpy_loop(*host, lr32, steps), repeats=repeats, budget_s=budget_s
    )
    torch = optional_torch()
    if torch is None:
        peers["torch"] = dict(NOT_INSTALLED)
    else:
        device = torch_device(torch)
        tensors = [torch.from_numpy(x).to(device) for x in host]
        peers["torch"], out = measure(
            lambda: _torch_loop(torch, *tensors, LR, steps),
            repeats=repeats,
            budget_s=budget_s,
            sync=torch_sync(torch),
        )
        peers["torch"]["device"] = device
        peers["torch"]["threads"] = torch.get_num_threads()
        finals["torch"] = tuple(t.cpu().numpy() for t in out)
    if batch:
        lr_array = jnp.asarray(LR, jnp.float32)
        peers["naive_jax_vmap"], finals["naive_jax_vmap"] = measure(
            lambda: _naive_jax_loop(w1, w2, syx, sxx, lr_array, steps),
            repeats=repeats,
            budget_s=budget_s,
        )
    for name, (_, final_w2) in finals.items():
        peers[name]["max_abs_diff_vs_linflow"] = max_abs_diff(final_w2, reference)
    size = int(np.prod(batch))
    return {
        "sizes": {"B": size, "d": n, "h": n, "m": n, "steps": steps},
        "flops_per_call": gd_step_flops(n) * size * steps,
        "peers": with_ratios(
            peers, work=size * steps, unit_gflop=gd_step_flops(n) * size * steps / 1e9
        ),
    }


def run_small(config: dict, *, repeats: int, budget_s: float) -> dict:
    """Workload (a): many tiny nets; a sweep over the batch size and one over the width."""
    cases = []
    grid = [(b, config["width_at"]) for b in config["batches"]]
    grid += [
        (config["batch_at"], n) for n in config["widths"] if (config["batch_at"], n) not in grid
    ]
    for b, n in grid:
        flops = gd_step_flops(n) * b
        # At least 20 steps, so that a call's fixed cost (input checks, assembling the
        # trajectory) weighs as little as in a real run of hundreds of steps.
        steps = _steps_for(flops, config["target_flops"], 20, 200)
        case = time_peers(n, (b,), steps, repeats=repeats, budget_s=budget_s)
        case["sweep"] = [
            name
            for name, hit in (
                ("batch", n == config["width_at"]),
                ("width", b == config["batch_at"]),
            )
            if hit
        ]
        cases.append(case)
    return {
        "description": "batched full-batch GD, B two-layer nets d = h = m, float32",
        "unit": "net-steps/s",
        "dtype": "float32",
        "lr": LR,
        "peers": {
            "linflow": "linflow.gradient_descent (one jitted lax.scan, save_every=steps)",
            "numpy": "NumPy batched matmul, Python loop over steps",
            "torch": "PyTorch batched matmul (bmm), Python loop over steps, inference_mode",
            "naive_jax_vmap": "Python loop calling jax.jit(jax.vmap(step))",
        },
        "cases": cases,
    }


def numpy_peak_gflops(n: int, repeats: int = 5) -> dict:
    """Calibration: float32 NumPy `n x n` matmul GFLOP/s ($2n^3$ FLOPs), same process."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    timing, _ = measure(lambda: a @ b, repeats=repeats, budget_s=5.0, sync=lambda x: x)
    return {"n": n, "time_s": timing["time_s"], "gflop_per_s": 2.0 * n**3 / timing["time_s"] / 1e9}


def run_wide(config: dict, *, repeats: int, budget_s: float) -> dict:
    """Workload (c): one wide net, GEMM-bound; GFLOP/s against a NumPy matmul peak."""
    peak = numpy_peak_gflops(config["peak_n"])
    cases = []
    for n in config["widths"]:
        steps = _steps_for(gd_step_flops(n), config["target_flops"], 3, 100)
        case = time_peers(n, (), steps, repeats=repeats, budget_s=budget_s)
        for timing in case["peers"].values():
            if "gflop_per_s" in timing:
                timing["fraction_of_peak"] = timing["gflop_per_s"] / peak["gflop_per_s"]
        cases.append(case)
    return {
        "description": "one wide two-layer net d = h = m = n, GD steps, float32",
        "unit": "steps/s",
        "dtype": "float32",
        "lr": LR,
        "flops_model": "8 n^3 per step (four n x n products)",
        "numpy_matmul_peak": peak,
        "cases": cases,
    }
