"""Lazy (NTK) against feature (mean-field) learning in a two-layer ReLU network (source 003).

The same teacher-student regression is learned by students of width M under the NTK output
scale 1/sqrt(M) and the mean-field scale 1/M (with the step scaled by M, as mean-field theory
prescribes, so both train on the same time scale). Reported: the relative movement of the
first layer ||W(t) - W(0)|| / ||W(0)|| against M, and, under NTK scaling, the loss decay
against the prediction exp(-2 lambda_min(K) t / n) from the smallest eigenvalue of the initial
neural tangent kernel K.

    python benchmarks/lazy_vs_rich.py            # ~1 minute on 2 cores
    python benchmarks/lazy_vs_rich.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

import linflow

RESULTS = Path(__file__).parent / "results"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for the test suite")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256, 1024, 4096])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--time", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    if args.quick:
        args.widths, args.time = [16, 128], 5.0
    ts = np.linspace(0.0, args.time, 41)
    results = {"settings": vars(args) | {"out": str(args.out)}, "widths": args.widths}
    for scaling in ("ntk", "mean_field"):
        problem = linflow.teacher_student(jax.random.key(0), d=3, m=2, n=args.n, scaling=scaling)
        rows = []
        for width in args.widths:
            student = problem.init_student(jax.random.key(1), width, scale=1.0)
            # Mean-field time runs M times slower: tau = 1/M keeps the function-space speed.
            tau = 1.0 if scaling == "ntk" else 1.0 / width
            traj = linflow.gradient_flow(problem.objective(), student, ts, tau=tau, rtol=1e-7)
            loss = np.asarray(jax.vmap(problem.loss)(traj.weights))
            K = linflow.ntk_gram(student, problem.x, scaling) / tau
            lam_min = float(np.linalg.eigvalsh(np.asarray(K))[0])
            rows.append(
                {
                    "width": width,
                    "movement": np.asarray(linflow.relative_movement(traj.weights.w)).tolist(),
                    "loss": loss.tolist(),
                    "lambda_min": lam_min,
                    "predicted_rate": 2 * lam_min / args.n,
                    "measured_rate": float(-np.polyfit(ts[1:], np.log(loss[1:]), 1)[0]),
                }
            )
        results[scaling] = rows
    results["ts"] = ts.tolist()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lazy_vs_rich.json").write_text(json.dumps(results, indent=1))
    figure(results, args.out / "lazy_vs_rich.png")
    for scaling in ("ntk", "mean_field"):
        print(scaling, [(r["width"], round(r["movement"][-1], 4)) for r in results[scaling]])
    print(f"wrote {args.out}/lazy_vs_rich.*")
    return results


def figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for scaling, marker in (("ntk", "o"), ("mean_field", "s")):
        rows = results[scaling]
        axes[0].loglog(
            [r["width"] for r in rows],
            [r["movement"][-1] for r in rows],
            marker=marker,
            label=scaling,
        )
    axes[0].set(
        xlabel="width M", ylabel=r"$\|W(T) - W(0)\| / \|W(0)\|$", title="first-layer movement"
    )
    axes[0].legend()
    ts = np.asarray(results["ts"])
    for i, row in enumerate(results["ntk"]):
        axes[1].semilogy(ts, row["loss"], color=f"C{i}", label=f"M = {row['width']}")
        axes[1].semilogy(
            ts,
            row["loss"][0] * np.exp(-row["predicted_rate"] * ts),
            color=f"C{i}",
            linestyle=":",
        )
    axes[1].set(xlabel="t", ylabel="loss", title=r"NTK scaling; dotted: $e^{-2\lambda_{\min} t/n}$")
    axes[1].legend(fontsize="small")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
