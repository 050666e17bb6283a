"""Timing, machine description and shared problem set-up for every workload."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import linflow

PACKAGES = ("jax", "jaxlib", "numpy", "scipy", "torch", "diffrax", "equinox", "optax", "linflow")
NOT_INSTALLED = {"status": "not installed"}


def measure(fn, *, repeats: int, budget_s: float, sync=jax.block_until_ready):
    """Time `fn()` after one warm-up call (which compiles): the best of up to `repeats` runs.

    Fewer runs are taken when they would exceed `budget_s` (at least one). `compile_s` is the
    first call's time minus the best, i.e. tracing, compilation and first-touch costs. The best,
    not the median, because on a shared machine noise only ever adds time (the same call
    varied from 52 to 107 ms here); the median is kept as `median_s`.

    **Returns:** `(timing dict, output of the last call)`.
    """
    start = time.perf_counter()
    out = sync(fn())
    first = time.perf_counter() - start
    times = []
    while len(times) < repeats and (not times or sum(times) + times[0] <= budget_s):
        start = time.perf_counter()
        out = sync(fn())
        times.append(time.perf_counter() - start)
    return _timing(first, times), out


def measure_peers(calls: dict, *, repeats: int, budget_s: float) -> dict:
    """`measure` each peer in turn, in the order of `calls` (a name to `fn` or `(fn, sync)`).

    Each peer's warm-up and repeats run back to back, not in rounds with the other peers:
    interleaved, a call paid for the worker threads that the previous library left spinning
    (NumPy's best time rose by half here after each linflow call).

    **Returns:** `{name: (timing dict, output of its last call)}`.
    """
    timed = {}
    for name, call in calls.items():
        fn, sync = call if isinstance(call, tuple) else (call, jax.block_until_ready)
        timed[name] = measure(fn, repeats=repeats, budget_s=budget_s, sync=sync)
    return timed


def by_peer(calls: dict) -> dict:
    """`calls` keyed `(dtype, peer)` reordered peer by peer, so that `measure_peers` times
    each peer's dtypes one after the other (their time ratio then sees the same load)."""
    peers = dict.fromkeys(peer for _, peer in calls)
    return {key: calls[key] for peer in peers for key in calls if key[1] == peer}


def _timing(first: float, times: list[float]) -> dict:
    best = min(times)
    return {
        "time_s": best,
        "median_s": statistics.median(times),
        "first_call_s": first,
        "compile_s": max(first - best, 0.0),
        "repeats": len(times),
        "times_s": times,
    }


def in_x64(fn, dtype):
    """`fn` run with x64 on for float64 and off for float32 (JAX's default)."""
    x64 = jnp.dtype(dtype) == jnp.float64

    def call(*args, **kwargs):
        with jax.enable_x64(x64):
            return fn(*args, **kwargs)

    return call


def with_ratios(peers: dict, work: float, unit_gflop: float | None = None) -> dict:
    """Add `throughput` (`work` per second), GFLOP/s and `ratio_vs_linflow` to each timed peer.

    The ratio is peer time / linflow time: above 1, linflow is faster.
    """
    reference = peers.get("linflow", {}).get("time_s")
    for timing in peers.values():
        if "time_s" not in timing:
            continue
        timing["throughput"] = work / timing["time_s"]
        if unit_gflop is not None:
            timing["gflop_per_s"] = unit_gflop / timing["time_s"]
        if reference:
            timing["ratio_vs_linflow"] = timing["time_s"] / reference
    return peers


def dtype_comparison(by_dtype: dict, finals: dict) -> dict:
    """With float32 and float64 results: each timed peer's float64 time / float32 time (not
    those extrapolated from another run), and how far linflow's float32 result is from its
    float64 one (`finals`: linflow's output per dtype)."""
    if not {"float32", "float64"} <= set(by_dtype):
        return {}
    single, double = by_dtype["float32"]["peers"], by_dtype["float64"]["peers"]
    return {
        "float64_over_float32": {
            name: double[name]["time_s"] / single[name]["time_s"]
            for name in single
            if "time_s" in single[name]
            and "time_s" in double.get(name, {})
            and not single[name].get("extrapolated")
        },
        "linflow_float32_vs_float64_max_abs_diff": max_abs_diff(
            finals["float32"], finals["float64"]
        ),
    }


def optional_torch():
    """The `torch` module, or `None` when it is not installed (it is an optional peer)."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def torch_sync(torch):
    """A `sync` for `measure` that waits for the torch device (a no-op on CPU)."""

    def sync(out):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out

    return sync


def torch_device(torch) -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def load_average() -> float | None:
    """The 1-minute load average (above the core count: other jobs compete for the cores)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def machine() -> dict:
    devices = jax.devices()
    backend = jax.default_backend()
    if backend == "cpu":
        slug = f"cpu-{os.cpu_count()}core"
    else:
        kind = re.sub(r"[^a-z0-9]+", "-", devices[0].device_kind.lower()).strip("-")
        slug = f"{backend}-{kind}"
    return {
        "slug": slug,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "jax_backend": backend,
        "jax_devices": [f"{d.platform}:{d.device_kind}" for d in devices],
        "linflow_commit": _git_commit(),
    }


def square_task(n: int, dtype, seed: int = 0) -> linflow.Task:
    r"""A task with $d = m = n$, singular values spread over $[0.5, 3]$ and a generic $\Sigma_{xx}$.

    $\Sigma_{xx}$ is not the identity, so every engine does all four products of a step
    ($\approx 8 n^3$ FLOPs for two layers).
    """
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    sigma_yx = (u * np.linspace(3.0, 0.5, n)) @ v.T
    sigma_xx = (q * np.linspace(1.5, 0.5, n)) @ q.T
    sigma_xx = 0.5 * (sigma_xx + sigma_xx.T)
    return linflow.Task(jnp.asarray(sigma_yx, dtype), jnp.asarray(sigma_xx, dtype))


def small_weights(
    task: linflow.Task, batch: tuple[int, ...], scale: float = 0.5, seed: int = 1, depth: int = 2
):
    """Gaussian start of `depth` layers, hidden widths $n$, entries $N(0, \\text{scale}^2 / n)$."""
    n = task.input_dim
    return linflow.init_weights(
        jax.random.key(seed),
        task,
        (n,) * (depth - 1),
        scheme="gaussian",
        scale=scale / np.sqrt(n),
        batch=batch,
    )


def problem(n: int, batch: tuple[int, ...], dtype, *, scale: float = 0.5, depth: int = 2):
    """`square_task` and `small_weights` in `dtype` (call with x64 on for float64).

    The weights are drawn in float64 and rounded, so that every dtype starts from the same
    point and the dtypes' results can be compared.
    """
    with jax.enable_x64(True):
        task64 = square_task(n, jnp.float64)
        weights = [np.asarray(w) for w in small_weights(task64, batch, scale=scale, depth=depth)]
    return square_task(n, dtype), tuple(jnp.asarray(w, dtype) for w in weights)


def gd_step_flops(n: int, depth: int = 2) -> float:
    r"""FLOPs of one GD step of a depth-$N$ net with every width $n$: $3N - 2$ products of
    $n^3$ multiply-adds ($N - 1$ forwards, $W\Sigma_{xx}$, $2(N - 1)$ backwards), $8n^3$ at
    $N = 2$."""
    return 2.0 * (3 * depth - 2) * n**3


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
