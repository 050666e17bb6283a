"""Figure of a results JSON: throughput against batch size and width, float32 and float64 side
by side (solid and dashed), and the implicit-solver workload's time against the batch."""

from __future__ import annotations

from pathlib import Path

LINESTYLES = {"float32": ("-", "o"), "float64": ("--", "s")}
IMPLICIT_LABELS = {
    "linflow": "linflow, Kvaerno5 per initialisation",
    "linflow_tsit5": "linflow, Tsit5 (explicit default)",
}


def _blocks(case: dict, dtype: str | None):
    """`(dtype, {peer: timing})` of a case: one per dtype, or the case itself without any."""
    if "dtypes" in case:
        return [(d, block["peers"]) for d, block in case["dtypes"].items()]
    return [(dtype or "float32", case["peers"])]


def _series(cases, sweep: str | None, axis: str, value: str, dtype: str | None = None):
    """`{(peer, dtype): (xs, ys)}` over the cases of one sweep, skipping peers that did not
    run and values extrapolated rather than measured."""
    series = {}
    for case in cases:
        if sweep is not None and sweep not in case.get("sweep", [sweep]):
            continue
        for case_dtype, peers in _blocks(case, dtype):
            for peer, timing in peers.items():
                if value in timing and not timing.get("extrapolated"):
                    xs, ys = series.setdefault((peer, case_dtype), ([], []))
                    xs.append(case["sizes"][axis])
                    ys.append(timing[value])
    return {key: tuple(zip(*sorted(zip(xs, ys)))) for key, (xs, ys) in series.items()}


def _implicit_series(workload: dict) -> dict:
    """Seconds per call against B: the two linflow solvers, and the old whole-batch solve
    (measured points, then its extrapolation to the workload's batches)."""
    dtype = workload["dtype"]
    series = _series(workload["cases"], None, "B", "time_s", dtype)
    series.pop(("whole_batch_kvaerno5", dtype), None)
    points = workload["whole_batch"]["points"]
    series["whole-batch Kvaerno5 (old)", dtype] = (
        [p["B"] for p in points],
        [p["time_s"] for p in points],
    )
    old = [
        (case["sizes"]["B"], case["peers"]["whole_batch_kvaerno5"])
        for case in workload["cases"]
        if case["peers"]["whole_batch_kvaerno5"].get("extrapolated")
    ]
    for name, key in (("power-law fit", "time_s"), ("cubic", "cubic_from_largest_s")):
        if old and points:
            xs = [points[-1]["B"], *(b for b, _ in old)]
            ys = [points[-1]["time_s"], *(timing[key] for _, timing in old)]
            series[f"whole-batch Kvaerno5 (old), extrapolated: {name}", dtype] = (xs, ys)
    return series


def plot_throughput(report: dict, path: Path) -> Path | None:
    """Save the figure to `path`; `None` (nothing written) without workloads (a), (b), (c) or
    (f)."""
    workloads = report["workloads"]
    panels = []  # (title, x label, y label, series, horizontal line[, legend labels])
    if "gd_small" in workloads:
        cases = workloads["gd_small"]["cases"]
        width = next((c["sizes"]["d"] for c in cases if "batch" in c["sweep"]), None)
        batch = next((c["sizes"]["B"] for c in cases if "width" in c["sweep"]), None)
        panels.append(
            (
                f"(a) GD, tiny nets, d = h = m = {width}",
                "batch size B (nets)",
                "net-steps / s",
                _series(cases, "batch", "B", "throughput"),
                None,
            )
        )
        panels.append(
            (
                f"(a) GD, tiny nets, B = {batch}",
                "width d = h = m",
                "GFLOP/s (8 n³ per net-step)",
                _series(cases, "width", "d", "gflop_per_s"),
                None,
            )
        )
    if "flow" in workloads:
        panels.append(
            (
                "(b) gradient flow, Tsit5, d = h = m = "
                f"{workloads['flow']['cases'][0]['sizes']['d']}",
                "batch size B (trajectories)",
                "trajectories / s",
                _series(workloads["flow"]["cases"], None, "B", "throughput"),
                None,
            )
        )
    if "wide" in workloads:
        wide = workloads["wide"]
        panels.append(
            (
                "(c) GD, one wide net, float32",
                "width n",
                "GFLOP/s (8 n³ per step)",
                _series(wide["cases"], "width", "d", "gflop_per_s", "float32"),
                wide["numpy_matmul_peak"]["gflop_per_s"],
            )
        )
    if "implicit" in workloads:
        implicit = workloads["implicit"]
        size = implicit["cases"][0]["sizes"]["d"]
        panels.append(
            (
                f"(f) implicit Kvaerno5, d = h = m = {size}, {implicit['dtype']}",
                "batch size B (trajectories)",
                "seconds per call",
                _implicit_series(implicit),
                None,
                IMPLICIT_LABELS,
            )
        )
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.2 * rows), squeeze=False)
    # One colour per peer; an extrapolation takes its measurement's colour, dotted.
    peers = sorted({peer.split(",")[0] for panel in panels for peer, _ in panel[3]} - {"linflow"})
    colors = {"linflow": "k", **{peer: f"C{i % 10}" for i, peer in enumerate(peers)}}
    for ax, (title, xlabel, ylabel, series, peak, *labels) in zip(axes.flat, panels):
        labels = labels[0] if labels else {}
        for (peer, dtype), (xs, ys) in sorted(series.items()):
            linestyle, marker = LINESTYLES.get(dtype, ("-", "o"))
            if "extrapolated" in peer:
                linestyle, marker = (":", "x") if "fit" in peer else ("-.", "+")
            ax.plot(
                xs,
                ys,
                ls=linestyle,
                marker=marker,
                mfc="none" if linestyle == "--" else None,
                color=colors[peer.split(",")[0]],
                lw=2.5 if peer == "linflow" else 1.2,
            )
        handles = [
            Line2D(
                [],
                [],
                color=colors[peer.split(",")[0]],
                lw=2.5 if peer == "linflow" else 1.2,
                ls=(":" if "fit" in peer else "-.") if "extrapolated" in peer else "-",
                label=labels.get(peer, peer),
            )
            for peer in dict.fromkeys(peer for peer, _ in sorted(series))
        ]
        dtypes = {dtype for _, dtype in series}
        if len(dtypes) > 1:
            handles += [
                Line2D(
                    [],
                    [],
                    color="gray",
                    ls=ls,
                    marker=m,
                    mfc="none" if ls == "--" else None,
                    label=dtype,
                )
                for dtype, (ls, m) in LINESTYLES.items()
            ]
        if peak is not None:
            ax.axhline(peak, color="gray", ls="-.", lw=0.8)
            handles.append(Line2D([], [], color="gray", ls="-.", lw=0.8, label="NumPy matmul peak"))
        ax.set(xscale="log", yscale="log", title=title, xlabel=xlabel, ylabel=ylabel)
        ticks = sorted({x for xs, _ in series.values() for x in xs})
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
        ax.legend(handles=handles, fontsize=7)
        ax.title.set_fontsize(10)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    machine = report["machine"]
    fig.suptitle(
        f"{machine['slug']} ({machine['cpu_model']}), {report['size_setting']} sizes: "
        "float32 solid, float64 dashed",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
