r"""Workloads (a) and (c): full-batch gradient descent on linear networks (two layers unless a
depth is given).

Every peer runs the same update from the same start (workload (a) in float32 and in float64,
(c) in float32),
$E = \Sigma_{yx} - W_2 W_1 \Sigma_{xx}$, $W_1 \mathrel{+}= \eta W_2^\top E$,
$W_2 \mathrel{+}= \eta E W_1^\top$ (four $n^3$ products, $\approx 8n^3$ FLOPs per net and step;
deeper nets run the same chain of products, see `_step`), and its final weights are compared
with linflow's in the same dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import linflow

from ._common import (
    NOT_INSTALLED,
    by_peer,
    dtype_comparison,
    gd_step_flops,
    in_x64,
    max_abs_diff,
    measure,
    measure_peers,
    optional_torch,
    problem,
    torch_device,
    torch_sync,
    with_ratios,
)

LR = 0.01
DTYPES = ("float32", "float64")


def _step(weights, syx, sxx, lr, transpose):
    r"""One GD step of a depth-$N$ net in any array library with `@` (batched or not):
    $E = \Sigma_{yx} - W\Sigma_{xx}$, $W_l \mathrel{+}= \eta (W_N \cdots W_{l+1})^\top E
    (W_{l-1} \cdots W_1)^\top$; `transpose` swaps the last two axes."""
    prefix = [None, weights[0]]  # prefix[l] = W_l ... W_1
    for w in weights[1:]:
        prefix.append(w @ prefix[-1])
    back = syx - prefix[-1] @ sxx
    new = []
    for l in range(len(weights) - 1, -1, -1):
        grad = back if l == 0 else back @ transpose(prefix[l])
        new.append(weights[l] + lr * grad)
        back = transpose(weights[l]) @ back
    return tuple(reversed(new))


def _numpy_loop(weights, syx, sxx, lr, steps):
    for _ in range(steps):
        weights = _step(weights, syx, sxx, lr, lambda x: np.swapaxes(x, -1, -2))
    return weights


def _torch_loop(torch, weights, syx, sxx, lr, steps):
    with torch.inference_mode():
        for _ in range(steps):
            weights = _step(weights, syx, sxx, lr, lambda x: x.transpose(-1, -2))
    return weights


# The "naive" JAX peer: one jitted, vmapped single-net step, called from a Python loop.
_naive_step = jax.jit(
    jax.vmap(lambda w, syx, sxx, lr: _step(w, syx, sxx, lr, jnp.transpose), (0, None, None, None))
)


def _naive_jax_loop(weights, syx, sxx, lr, steps):
    for _ in range(steps):
        weights = _naive_step(weights, syx, sxx, lr)
    return weights


def _steps_for(flops_per_step: float, target_flops: float, lo: int, hi: int) -> int:
    return int(np.clip(round(target_flops / flops_per_step), lo, hi))


def _calls(n: int, batch: tuple[int, ...], steps: int, dtype: str, depth: int):
    """Each GD peer's call in `dtype` (run it under `in_x64`) and how to read its last layer."""
    task, weights = problem(n, batch, dtype, depth=depth)
    syx, sxx = task.sigma_yx, task.sigma_xx
    calls = {
        "linflow": lambda: linflow.gradient_descent(
            task, weights, steps=steps, lr=LR, save_every=steps
        )
    }
    last = {"linflow": lambda traj: traj.weights[-1][-1]}
    host = [np.array(x) for x in (*weights, syx, sxx)]  # writable copies (torch needs them)
    lr = np.dtype(dtype).type(LR)
    calls["numpy"] = lambda: _numpy_loop(tuple(host[:depth]), *host[depth:], lr, steps)
    last["numpy"] = lambda out: out[-1]
    torch = optional_torch()
    if torch is not None:
        tensors = [torch.from_numpy(x).to(torch_device(torch)) for x in host]
        calls["torch"] = (
            lambda: _torch_loop(torch, tuple(tensors[:depth]), *tensors[depth:], LR, steps),
            torch_sync(torch),
        )
        last["torch"] = lambda out: out[-1].cpu().numpy()
    if batch:
        lr_array = jnp.asarray(LR, dtype)
        calls["naive_jax_vmap"] = lambda: _naive_jax_loop(weights, syx, sxx, lr_array, steps)
        last["naive_jax_vmap"] = lambda out: out[-1]
    return calls, last


def time_peers(
    n: int,
    batch: tuple[int, ...],
    steps: int,
    *,
    repeats: int,
    budget_s: float,
    depth: int = 2,
    dtypes=("float32",),
):
    """Time every GD peer in every dtype on `steps` steps of `batch` nets of width `n` and
    `depth`, from the same start, peer by peer (each in its dtypes one after the other)."""
    calls, readers = {}, {}
    for dtype in dtypes:
        with jax.enable_x64(dtype == "float64"):
            peer_calls, readers[dtype] = _calls(n, batch, steps, dtype, depth)
        for name, call in peer_calls.items():
            fn, sync = call if isinstance(call, tuple) else (call, jax.block_until_ready)
            calls[dtype, name] = (in_x64(fn, dtype), sync)
    timed = measure_peers(by_peer(calls), repeats=repeats, budget_s=budget_s)
    size = int(np.prod(batch))
    flops = gd_step_flops(n, depth) * size * steps
    by_dtype, finals = {}, {}
    for dtype in dtypes:
        peers = {name: timed[dtype, name][0] for name in readers[dtype]}
        with jax.enable_x64(dtype == "float64"):  # reading float64 arrays with x64 off rounds
            finals[dtype] = np.asarray(readers[dtype]["linflow"](timed[dtype, "linflow"][1]))
            for name, read in readers[dtype].items():
                if name != "linflow":
                    final = read(timed[dtype, name][1])
                    peers[name]["max_abs_diff_vs_linflow"] = max_abs_diff(final, finals[dtype])
        if "torch" in peers:
            torch = optional_torch()
            peers["torch"].update(device=torch_device(torch), threads=torch.get_num_threads())
        else:
            peers["torch"] = dict(NOT_INSTALLED)
        by_dtype[dtype] = {
            "flops_per_call": flops,
            "peers": with_ratios(peers, work=size * steps, unit_gflop=flops / 1e9),
        }
    return {
        "sizes": {"B": size, "d": n, "h": n, "m": n, "depth": depth, "steps": steps},
        "dtypes": by_dtype,
        **dtype_comparison(by_dtype, finals),
    }


def run_small(config: dict, *, repeats: int, budget_s: float) -> dict:
    """Workload (a): many tiny nets; sweeps over the batch size, the width and the depth."""
    b0, n0 = config["batch_at"], config["width_at"]
    grid = [(b, n0, 2) for b in config["batches"]]
    grid += [(b0, n, 2) for n in config["widths"] if (b0, n, 2) not in grid]
    grid += [(b0, n0, depth) for depth in config.get("depths", []) if depth != 2]
    cases = []
    for b, n, depth in grid:
        flops = gd_step_flops(n, depth) * b
        # At least `min_steps`, so that a call's fixed cost (input checks, assembling the
        # trajectory) weighs as little as in a real run of hundreds of steps.
        steps = _steps_for(flops, config["target_flops"], config["min_steps"], 200)
        case = time_peers(
            n, (b,), steps, repeats=repeats, budget_s=budget_s, depth=depth, dtypes=DTYPES
        )
        case["sweep"] = [
            name
            for name, hit in (
                ("batch", n == n0 and depth == 2),
                ("width", b == b0 and depth == 2),
                ("depth", b == b0 and n == n0),
            )
            if hit
        ]
        cases.append(case)
    return {
        "description": "batched full-batch GD, B nets (depth 2 unless stated), d = h = m, "
        "float32 (x64 off) and float64 (x64 on) from the same start",
        "unit": "net-steps/s",
        "dtypes": list(DTYPES),
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
        case = {"sizes": case["sizes"], **case["dtypes"]["float32"]}
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
