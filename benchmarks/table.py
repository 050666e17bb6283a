"""Print Markdown tables from a results JSON: `python -m benchmarks.table [PATH]`.

Each timing cell is the best time of the repeats, with peer time / linflow time in brackets
(above 1x, linflow is faster); linflow's cell shows its first-call overhead (compilation) instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TITLES = {
    "gd_small": "(a) batched GD on tiny nets",
    "flow": "(b) batched gradient flow",
    "wide": "(c) one wide net",
    "modes": "(d) decoupled scalar modes",
}
SIZE_KEYS = ("B", "N", "d", "depth", "steps", "T")


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.3g} ms"


def _cell(timing: dict) -> str:
    if "time_s" not in timing:
        return timing.get("status", "n/a")
    text = _time(timing["time_s"])
    if "ratio_vs_linflow" in timing and timing["ratio_vs_linflow"] != 1.0:
        text += f" ({timing['ratio_vs_linflow']:.2g}x)"
    elif timing.get("compile_s", 0) > 0.05:
        text += f" (+{timing['compile_s']:.1f} s compile)"
    if "gflop_per_s" in timing and "fraction_of_peak" in timing:
        text += f", {timing['gflop_per_s']:.0f} GFLOP/s"
    return text + (" *" if timing.get("extrapolated") else "")


def _timing_table(name: str, workload: dict) -> list[str]:
    peers = list(dict.fromkeys(p for case in workload["cases"] for p in case["peers"]))
    lines = [
        f"**{TITLES[name]}** ({workload['description']})",
        "",
        "| sizes | " + " | ".join(peers) + " |",
        "| --- " * (len(peers) + 1) + "|",
    ]
    for case in workload["cases"]:
        sizes = ", ".join(f"{k}={case['sizes'][k]:g}" for k in SIZE_KEYS if k in case["sizes"])
        cells = [_cell(case["peers"].get(p, {})) for p in peers]
        lines.append(f"| {sizes} | " + " | ".join(cells) + " |")
    if any(t.get("extrapolated") for c in workload["cases"] for t in c["peers"].values()):
        lines += ["", "\\* timed on a subset of trajectories and extrapolated linearly to B."]
    if "numpy_matmul_peak" in workload:
        peak = workload["numpy_matmul_peak"]
        lines += ["", f"NumPy {peak['n']}² matmul peak: {peak['gflop_per_s']:.0f} GFLOP/s."]
    return lines + [""]


def _agreement_table(workload: dict) -> list[str]:
    lines = [
        f"**(e) agreement with the closed forms** ({workload['description']})",
        "",
        "| dtype | flow vs exact_flow | flow vs saxe_deep | GD vs exact_flow (lr: error) "
        "| log-log slope |",
        "| --- | --- | --- | --- | --- |",
    ]
    for dtype, r in workload["by_dtype"].items():
        gd = r["gd_vs_exact_flow"]
        errors = ", ".join(f"{lr:g}: {e:.2g}" for lr, e in zip(gd["lr"], gd["error"]))
        lines.append(
            f"| {dtype} | {r['flow_vs_exact_flow']:.2g} | {r['flow_vs_saxe_deep']:.2g} "
            f"| {errors} | {gd['loglog_slope']:.2f} |"
        )
    return lines + [""]


def markdown(report: dict) -> str:
    machine = report["machine"]
    v = report["versions"]
    lines = [
        f"Machine `{machine['slug']}`: {machine['cpu_model']}, {machine['cpu_count']} cores, "
        f"JAX devices {', '.join(machine['jax_devices'])}; jax {v['jax']}, numpy {v['numpy']}, "
        f"torch {v['torch']}, diffrax {v['diffrax']}. Sizes: `{report['size_setting']}`."
        + (f" Note: {report['note']}" if report.get("note") else ""),
        "",
    ]
    for name, workload in report["workloads"].items():
        lines += (
            _agreement_table(workload) if name == "agreement" else _timing_table(name, workload)
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        path = Path(argv[0])
    else:
        path = min(Path(__file__).parent.joinpath("results").glob("*.json"))
    print(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
