"""Lazy (NTK) against feature (mean-field) learning in a two-layer ReLU network (Chizat et al.
2019).

The same teacher-student regression is learned by gradient descent (step 0.05, time t = step
count x 0.05) by students of width M under the NTK output scale 1/sqrt(M) and the mean-field
scale 1/M (with the step scaled by M, as mean-field theory prescribes, so both train on the same
time scale). Reported: the relative movement of the
first layer ||W(t) - W(0)|| / ||W(0)|| against M, and, under NTK scaling, the loss against the
linearised (kernel) model f(t) - y = exp(-K t / n)(f(0) - y) of the initial neural tangent
kernel K, and against the bound exp(-2 lambda_min(K) t / n) from its smallest eigenvalue.

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
    lr = 0.05
    steps = int(round(args.time / lr))
    save_every = steps // 40
    results = {"settings": vars(args) | {"out": str(args.out)}, "widths": args.widths}
    for scaling in ("ntk", "mean_field"):
        problem = linflow.teacher_student(jax.random.key(0), d=3, m=2, n=args.n, scaling=scaling)
        rows = []
        for width in args.widths:
            student = problem.init_student(jax.random.key(1), width, scale=1.0)
            # Mean-field outputs move M times slower: a step M times larger keeps t = k * lr
            # the same time in function space (and the NTK of the update is M K).
            speed = 1.0 if scaling == "ntk" else float(width)
            traj = linflow.gradient_descent(
                problem.objective(), student, steps=steps, lr=lr * speed, save_every=save_every
            )
            ts = np.asarray(traj.ts) * lr
            loss = np.asarray(jax.vmap(problem.loss)(traj.weights))
            K = speed * linflow.ntk_gram(student, problem.x, scaling)
            eigenvalues, Q = np.linalg.eigh(np.asarray(K) / args.n)
            lam_min = float(eigenvalues[0] * args.n)
            # The linearised (kernel) model: f(t) - y = exp(-K t / n) (f(0) - y).
            r0 = Q.T @ np.asarray(linflow.relu_network(student, problem.x, scaling) - problem.y)
            decay = np.exp(-np.outer(ts, eigenvalues)) * r0[None]
            linearised = 0.5 * np.mean(decay**2, axis=1)
            rows.append(
                {
                    "width": width,
                    "movement": np.asarray(linflow.relative_movement(traj.weights.w)).tolist(),
                    "loss": loss.tolist(),
                    "lambda_min": lam_min,
                    "predicted_rate": 2 * lam_min / args.n,
                    "linearised_loss": linearised.tolist(),
                    "final_rate": float(-np.polyfit(ts[-10:], np.log(loss[-10:]), 1)[0]),
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
        axes[1].semilogy(ts, row["linearised_loss"], color=f"C{i}", linestyle="--")
        bound = row["loss"][0] * np.exp(-row["predicted_rate"] * ts)
        axes[1].semilogy(ts, bound, color=f"C{i}", linestyle=":")
    title = r"NTK scaling; --: kernel model, ··: $e^{-2\lambda_{\min} t/n}$ bound"
    axes[1].set(xlabel="t", ylabel="loss", title=title)
    axes[1].legend(fontsize="small")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
