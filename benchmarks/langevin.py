"""Langevin dynamics on a quadratic loss: stationary law of GLD and of the SDE (Raginsky et al.
2017).

For L = theta^T H theta / 2 the Gibbs law exp(-beta L) is Gaussian with covariance (beta H)^-1.
GLD with step eta samples a Gaussian with covariance (beta H)^-1 (I - eta H / 2)^-1, so its error
shrinks linearly with eta; the diffrax SDE with a small step agrees with the Gibbs law.

    python benchmarks/langevin.py            # ~1 minute on 2 cores
    python benchmarks/langevin.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import linflow

RESULTS = Path(__file__).parent / "results"
H = np.array([[2.0, 0.5], [0.5, 1.0]])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for the test suite")
    parser.add_argument("--chains", type=int, default=50000)
    parser.add_argument("--beta", type=float, default=4.0)
    parser.add_argument("--time", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    if args.quick:
        args.chains = 2000
    lrs = [0.4, 0.2, 0.1, 0.05, 0.025]
    gibbs = np.linalg.inv(args.beta * H)
    objective = linflow.Objective(lambda x: 0.5 * x @ jnp.asarray(H) @ x, batch=(args.chains,))
    x0 = jnp.zeros((args.chains, 2))

    def error(x, target):
        return float(np.abs(np.cov(np.asarray(x).T) - target).max() / np.abs(target).max())

    rows = []
    for lr in lrs:
        steps = int(round(args.time / lr))
        traj = linflow.langevin_descent(
            objective,
            x0,
            steps=steps,
            lr=lr,
            beta=args.beta,
            key=jax.random.key(1),
            save_every=steps,
        )
        discrete = gibbs @ np.linalg.inv(np.eye(2) - lr * H / 2)
        rows.append(
            {
                "lr": lr,
                "error_vs_gibbs": error(traj.weights[-1], gibbs),
                "predicted_error_vs_gibbs": float(
                    np.abs(discrete - gibbs).max() / np.abs(gibbs).max()
                ),
                "error_vs_discrete_law": error(traj.weights[-1], discrete),
            }
        )
    sde = linflow.langevin_flow(
        objective, x0, jnp.array([0.0, args.time]), beta=args.beta, key=jax.random.key(2), dt=0.01
    )
    results = {
        "settings": vars(args) | {"out": str(args.out)},
        "statistical_error": float(np.sqrt(2.0 / args.chains)),
        "gld": rows,
        "sde_euler_dt_0.01_error_vs_gibbs": error(sde.weights[-1], gibbs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "langevin.json").write_text(json.dumps(results, indent=1))
    figure(results, args.out / "langevin.png")
    print(json.dumps(rows, indent=1))
    print(f"SDE: {results['sde_euler_dt_0.01_error_vs_gibbs']:.4f}; wrote {args.out}/langevin.*")
    return results


def figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["gld"]
    lrs = [r["lr"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4), layout="constrained")
    ax.loglog(lrs, [r["error_vs_gibbs"] for r in rows], "o-", label="GLD, measured")
    ax.loglog(
        lrs,
        [r["predicted_error_vs_gibbs"] for r in rows],
        "k:",
        label=r"$(I - \eta H/2)^{-1}$ bias",
    )
    ax.axhline(results["statistical_error"], color="grey", linestyle="--", label="sampling error")
    ax.axhline(results["sde_euler_dt_0.01_error_vs_gibbs"], color="C1", label="SDE, dt = 0.01")
    ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
    ax.minorticks_off()
    ax.set(
        xlabel=r"step $\eta$", ylabel="covariance error vs Gibbs", title="Langevin on a quadratic"
    )
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
