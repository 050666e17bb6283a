"""Print Markdown tables from a results JSON:
`python -m benchmarks.table [PATH] [--markdown-out benchmarks/results/TABLES.md]`.

Each timing cell is the best time of the repeats, with peer time / linflow time in brackets
(above 1x, linflow is faster); linflow's cell shows its first-call overhead (compilation) instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

TITLES = {
    "gd_small": "(a) batched GD on tiny nets",
    "flow": "(b) batched gradient flow",
    "wide": "(c) one wide net",
    "modes": "(d) decoupled scalar modes",
    "implicit": "(f) implicit solver (Kvaerno5) against the batch",
}
SIZE_KEYS = ("B", "N", "d", "depth", "steps", "T")


def _time(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f} s"
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


def _size_text(case: dict) -> str:
    return ", ".join(f"{k}={case['sizes'][k]:g}" for k in SIZE_KEYS if k in case["sizes"])


def _timing_table(name: str, workload: dict) -> list[str]:
    """One row per case, or per case and dtype (float32 above float64) with linflow's
    float64 / float32 time ratio in the last column."""
    cases = workload["cases"]
    by_dtype = "dtypes" in cases[0]
    blocks = [
        (case, dtype, block["peers"])
        for case in cases
        for dtype, block in (case["dtypes"].items() if by_dtype else [(None, case)])
    ]
    peers = list(dict.fromkeys(p for _, _, block in blocks for p in block))
    head = ["sizes", *(["dtype"] if by_dtype else []), *peers]
    head += ["linflow float64 / float32"] if by_dtype else []
    lines = [
        f"**{TITLES[name]}** ({workload['description']})",
        "",
        "| " + " | ".join(head) + " |",
        "| --- " * len(head) + "|",
    ]
    for i, (case, dtype, block) in enumerate(blocks):
        first = i == 0 or blocks[i - 1][0] is not case
        cells = [_size_text(case) if first else "", *([dtype] if by_dtype else [])]
        cells += [_cell(block.get(p, {})) for p in peers]
        if by_dtype:
            ratio = case.get("float64_over_float32", {}).get("linflow")
            cells.append(f"{ratio:.2f}x" if ratio and dtype == "float64" else "")
        lines.append("| " + " | ".join(cells) + " |")
    if any(t.get("extrapolated") for _, _, block in blocks for t in block.values()):
        lines += ["", "\\* timed on a subset of trajectories and extrapolated linearly to B."]
    if "numpy_matmul_peak" in workload:
        peak = workload["numpy_matmul_peak"]
        lines += ["", f"NumPy {peak['n']}² matmul peak: {peak['gflop_per_s']:.0f} GFLOP/s."]
    return lines + [""]


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:g} B"


def _old_cell(timing: dict) -> str:
    """The whole-batch solve: measured, or the range of its two extrapolations."""
    if not timing.get("extrapolated"):
        return _cell(timing)
    return f"{_time(timing['time_s'])} to {_time(timing['cubic_from_largest_s'])} *"


def _implicit_table(workload: dict) -> list[str]:
    """Per-initialisation Kvaerno5 against Tsit5 and the old whole-batch solve, then the
    whole-batch solve's measured growth."""
    lines = [
        f"**{TITLES['implicit']}** ({workload['description']}; "
        f"rtol={workload['rtol']:g}, atol={workload['atol']:g}; "
        f"BLAS threads: {workload.get('blas_threads', 'default')})",
        "",
        "| B | Kvaerno5, per initialisation (linflow) | Tsit5 (linflow default) "
        "| Kvaerno5, whole batch as one state (old) | its Jacobian "
        "| max abs diff Kvaerno5 vs Tsit5 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for case in workload["cases"]:
        peers = case["peers"]
        whole = peers["whole_batch_kvaerno5"]
        steps = f", {peers['linflow']['num_steps_max']} steps"
        lines.append(
            f"| {case['sizes']['B']} | {_cell(peers['linflow'])}{steps} "
            f"| {_cell(peers['linflow_tsit5'])}, {peers['linflow_tsit5']['num_steps']} steps "
            f"| {_old_cell(whole)} | {_bytes(whole['jacobian_bytes'])} "
            f"| {case['max_abs_diff_kvaerno5_vs_tsit5']:.2g} |"
        )
    lines += [
        "",
        "Ratios are time / Kvaerno5-per-initialisation time (above 1x: the per-initialisation "
        "solve is faster).",
    ]
    if any(c["peers"]["whole_batch_kvaerno5"].get("extrapolated") for c in workload["cases"]):
        lines[-1] += (
            f" \\* extrapolated, not measured: from {workload['extrapolation']}, to cubic "
            "growth (a dense LU) from the largest measured batch."
        )
    lines += [
        "",
        "| whole-batch Kvaerno5 (old): B | time | compile | steps | Jacobian "
        "| max abs diff vs Tsit5 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for point in workload["whole_batch"]["points"]:
        lines.append(
            f"| {point['B']} | {_time(point['time_s'])} | {point['compile_s']:.1f} s "
            f"| {point['num_steps']} | {_bytes(point['jacobian_bytes'])} "
            f"| {point['max_abs_diff_vs_tsit5']:.2g} |"
        )
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
    tables = {"agreement": _agreement_table, "implicit": _implicit_table}
    for name, workload in report["workloads"].items():
        if name in tables:
            lines += tables[name](workload)
        elif name in TITLES:
            lines += _timing_table(name, workload)
    return "\n".join(lines)


def _suite_results() -> Path:
    """The first default-size suite results JSON in benchmarks/results/."""
    for path in sorted(RESULTS.glob("*.json")):
        if not path.stem.endswith(("_quick", "_test")) and "workloads" in json.loads(
            path.read_text()
        ):
            return path
    raise SystemExit(f"no suite results in {RESULTS}: run `python -m benchmarks` first")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.table", description="Markdown tables of a results JSON."
    )
    parser.add_argument("path", nargs="?", type=Path, help="results JSON (default: the suite's)")
    parser.add_argument("--markdown-out", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    text = markdown(json.loads((args.path or _suite_results()).read_text()))
    print(text)
    if args.markdown_out is not None:
        args.markdown_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
