"""Throughput figure of a results JSON: against batch size and against width."""

from __future__ import annotations

from pathlib import Path


def _series(cases, sweep: str, axis: str, value: str):
    """`{peer: (xs, ys)}` over the cases of one sweep, skipping peers that did not run."""
    series = {}
    for case in cases:
        if sweep not in case.get("sweep", [sweep]):
            continue
        for peer, timing in case["peers"].items():
            if value in timing:
                xs, ys = series.setdefault(peer, ([], []))
                xs.append(case["sizes"][axis])
                ys.append(timing[value])
    return {peer: tuple(zip(*sorted(zip(xs, ys)))) for peer, (xs, ys) in series.items()}


def plot_throughput(report: dict, path: Path) -> Path | None:
    """Save the figure to `path`; `None` (nothing written) without workloads (a) or (c)."""
    workloads = report["workloads"]
    panels = []
    if "gd_small" in workloads:
        cases = workloads["gd_small"]["cases"]
        width = next((c["sizes"]["d"] for c in cases if "batch" in c["sweep"]), None)
        batch = next((c["sizes"]["B"] for c in cases if "width" in c["sweep"]), None)
        panels.append(
            (
                f"(a) GD, tiny nets, d = h = m = {width}",
                "batch size B",
                "net-steps / s",
                _series(cases, "batch", "B", "throughput"),
                None,
            )
        )
        panels.append(
            (
                f"(a) GD, tiny nets, B = {batch}",
                "width d = h = m",
                "GFLOP/s (8 n³ per step)",
                _series(cases, "width", "d", "gflop_per_s"),
                None,
            )
        )
    if "wide" in workloads:
        wide = workloads["wide"]
        panels.append(
            (
                "(c) GD, one wide net",
                "width n",
                "GFLOP/s (8 n³ per step)",
                _series(wide["cases"], "width", "d", "gflop_per_s"),
                wide["numpy_matmul_peak"]["gflop_per_s"],
            )
        )
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    peers = sorted({peer for panel in panels for peer in panel[3]} - {"linflow"})
    colors = {"linflow": "k", **{peer: f"C{i}" for i, peer in enumerate(peers)}}
    for ax, (title, xlabel, ylabel, series, peak) in zip(axes[0], panels):
        for peer, (xs, ys) in sorted(series.items()):
            ax.plot(
                xs,
                ys,
                marker="o",
                label=peer,
                color=colors[peer],
                lw=2.5 if peer == "linflow" else 1.2,
            )
        if peak is not None:
            ax.axhline(peak, color="gray", ls="--", lw=0.8, label="NumPy matmul peak")
        ax.set(xscale="log", yscale="log", title=title, xlabel=xlabel, ylabel=ylabel)
        ticks = sorted({x for xs, _ in series.values() for x in xs})
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    machine = report["machine"]
    fig.suptitle(
        f"{machine['slug']} ({machine['cpu_model']}), float32, {report['size_setting']} sizes",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
