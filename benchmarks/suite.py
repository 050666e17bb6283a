"""The benchmark suite: size settings, the command line, the results JSON and its figure."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from . import agreement, flow, gd, implicit, modes
from ._common import load_average, machine, versions

RESULTS = Path(__file__).parent / "results"

# Workload name -> function(config, *, repeats, budget_s) returning its JSON section.
WORKLOADS = {
    "gd_small": gd.run_small,
    "flow": flow.run,
    "wide": gd.run_wide,
    "modes": modes.run,
    "agreement": agreement.run,
    "implicit": implicit.run,
}
ALIASES = {
    "a": "gd_small",
    "b": "flow",
    "c": "wide",
    "d": "modes",
    "e": "agreement",
    "f": "implicit",
}

SIZES = {
    # For the test suite: seconds, not minutes; the numbers mean nothing.
    "test": {
        "repeats": 1,
        "budget_s": 0.1,
        "gd_small": {
            "batches": [64],
            "width_at": 4,
            "batch_at": 64,
            "widths": [2, 4],
            "depths": [3],
            "target_flops": 1e6,
            "min_steps": 20,
        },
        "flow": {"batches": [8], "width": 3, "t1": 1.0, "saves": 3, "scipy_subset": 2},
        "wide": {"widths": [16], "peak_n": 64, "target_flops": 1e6},
        "modes": {"pairs": 1000, "saves": 3, "t1": 1.0, "dt": 0.05},
        "agreement": {"batch": 2, "t1": 2.0, "lrs": [0.05, 0.025]},
        "implicit": {
            "dtype": "float64",
            "width": 2,
            "scale": 0.1,
            "t1": 2.0,
            "saves": 3,
            "batches": [4],
            "whole_batches": [1, 2],
            "whole_budget_s": 60.0,
        },
    },
    "quick": {
        "repeats": 3,
        "budget_s": 1.0,
        "gd_small": {
            "batches": [1000, 10000],
            "width_at": 8,
            "batch_at": 1000,
            "widths": [2, 8, 32],
            "depths": [3],
            "target_flops": 2e8,
            "min_steps": 20,
        },
        "flow": {"batches": [300], "width": 8, "t1": 5.0, "saves": 11, "scipy_subset": 3},
        "wide": {"widths": [256], "peak_n": 1024, "target_flops": 2e9},
        "modes": {"pairs": 100_000, "saves": 11, "t1": 5.0, "dt": 0.025},
        "agreement": {"batch": 8, "t1": 4.0, "lrs": [0.04, 0.02]},
        "implicit": {
            "dtype": "float64",
            "width": 4,
            "scale": 0.1,
            "t1": 10.0,
            "saves": 11,
            "batches": [10, 100],
            "whole_batches": [1, 2, 4, 8],
            "whole_budget_s": 20.0,
        },
    },
    "default": {
        "repeats": 5,
        "budget_s": 3.0,
        "gd_small": {
            "batches": [1000, 10000, 100000],
            "width_at": 8,
            "batch_at": 10000,
            # float64 doubles the work: widths 4 and 16 dropped, and at least 10 steps (was
            # 20): only B = 100000 and d = 32 take 10, where a linflow step costs >= 40 ms.
            "widths": [2, 8, 32],
            "depths": [3, 4],
            "target_flops": 2e9,
            "min_steps": 10,
        },
        # float64 doubles the work: B = 10000 replaced by 5000.
        "flow": {"batches": [1000, 5000], "width": 8, "t1": 10.0, "saves": 11, "scipy_subset": 20},
        "wide": {"widths": [256, 512, 1024], "peak_n": 2048, "target_flops": 2e10},
        "modes": {"pairs": 1_000_000, "saves": 11, "t1": 5.0, "dt": 0.01},
        "agreement": {"batch": 16, "t1": 6.0, "lrs": [0.04, 0.02, 0.01, 0.005]},
        # float64: Kvaerno5 with linflow's float32 default tolerances hits max_steps. Width 4:
        # per initialisation, Kvaerno5 costs 3.3x Tsit5's steps and a Jacobian per step.
        "implicit": {
            "dtype": "float64",
            "width": 4,
            "scale": 0.1,
            "t1": 10.0,
            "saves": 11,
            "batches": [100, 1000],
            "whole_batches": [1, 2, 4, 8, 16, 32],
            "whole_budget_s": 60.0,
        },
    },
}


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="linflow side by side with NumPy, PyTorch, naive JAX/diffrax and SciPy.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument(
        "--size", choices=sorted(SIZES), default=None, help="size setting (default: 'default')"
    )
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    parser.add_argument(
        "--only",
        action="append",
        choices=[*WORKLOADS, *ALIASES],
        help="run only this workload (repeatable); merged into an existing --out file",
    )
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    parser.add_argument("--no-plot", action="store_true", help="skip the figure")
    args = parser.parse_args(argv)
    if args.quick and args.size not in (None, "quick"):
        parser.error("--quick and --size disagree")
    args.size = "quick" if args.quick else (args.size or "default")
    return args


def main(argv=None) -> int:
    args = _parse(argv)
    sizes = SIZES[args.size]
    info = machine()
    # Smaller sizes never overwrite the committed default results.
    suffix = "" if args.size == "default" else f"_{args.size}"
    out = args.out or RESULTS / f"{info['slug']}{suffix}.json"
    names = [ALIASES.get(n, n) for n in args.only] if args.only else list(WORKLOADS)
    results = {}
    if args.only and out.exists():
        results = json.loads(out.read_text()).get("workloads", {})
    start = time.perf_counter()
    for name in names:
        print(f"[benchmarks] {name} ({args.size}) ...", file=sys.stderr, flush=True)
        began, load = time.perf_counter(), load_average()
        began_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        result = WORKLOADS[name](sizes[name], repeats=sizes["repeats"], budget_s=sizes["budget_s"])
        result["size_setting"] = args.size
        result["wall_s"] = time.perf_counter() - began
        # Above the core count, other jobs shared the cores: the timings may be perturbed.
        result["load_average_1m"] = [load, load_average()]
        result["started_local"] = began_at
        results[name] = result
        print(f"[benchmarks] {name} done in {result['wall_s']:.1f} s", file=sys.stderr, flush=True)
    report = {
        "schema": 2,  # 2: workloads (a) and (b) hold one block of peers per dtype
        "size_setting": args.size,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "note": args.note,
        "ratio_definition": "peer time / linflow time for the same work (> 1: linflow is faster)",
        "timing": "best of repeats after one warm-up call (median_s: their median); "
        "compile_s = first call - best; "
        "jax.block_until_ready on every JAX output; all peers in one process, peer by peer, "
        "a peer's float32 and float64 runs one after the other (float32 with x64 off)",
        "wall_s": time.perf_counter() - start,
        "machine": info,
        "versions": versions(),
        "workloads": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"[benchmarks] wrote {out}", file=sys.stderr)
    if not args.no_plot:
        from .figure import plot_throughput

        figure = plot_throughput(report, out.with_suffix(".png"))
        if figure is not None:
            print(f"[benchmarks] wrote {figure}", file=sys.stderr)
    return 0
