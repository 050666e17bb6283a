"""Kernel and rich regimes of a diagonal linear network (Woodworth et al. 2020, Figure 1).

A k-sparse teacher beta* (entries +-1/sqrt(k)) is seen through n < d Gaussian samples
y = X beta*. Gradient flow on beta = u^2 - v^2 from u = v = alpha interpolates; which
interpolator it finds depends on alpha: the minimum-l2 one (kernel regime, alpha -> inf),
which needs n ~ d samples to recover beta*, or the minimum-l1 one (rich regime, alpha -> 0),
which needs only n ~ k log(d / k). Reported: the test error ||beta - beta*||^2 / ||beta*||^2
(the relative population risk for isotropic Gaussian inputs) of the exact limit
(`linflow.diagonal_limit`) against alpha and n, averaged over random designs; of simulated
flows (`linflow.gradient_flow` on `linflow.diagonal_objective`) at a few (n, alpha); of the
minimum-l1 interpolator (the last saddle of `linflow.saddle_to_saddle`) and the minimum-l2 one;
and the smallest n at which the mean error drops below a threshold, against alpha.

    python benchmarks/diagonal.py            # ~3 minutes on 2 cores
    python benchmarks/diagonal.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import linflow

RESULTS = Path(__file__).parent / "results"


def problem(key, n: int, d: int, k: int):
    """Gaussian design `(n, d)`, k-sparse teacher (random support and signs), targets."""
    kx, ks, kz = jax.random.split(key, 3)
    support = jax.random.permutation(ks, d)[:k]
    signs = jnp.where(jax.random.bernoulli(kz, 0.5, (k,)), 1.0, -1.0)
    teacher = jnp.zeros(d).at[support].set(signs / np.sqrt(k))
    X = jax.random.normal(kx, (n, d))
    return X, X @ teacher, teacher


def test_error(beta, teacher):
    """$\\|\\beta - \\beta^*\\|^2 / \\|\\beta^*\\|^2$, over the last axis."""
    return jnp.sum((beta - jnp.broadcast_to(teacher, beta.shape)) ** 2, -1) / jnp.sum(teacher**2)


def simulated_limit(X, y, alpha: float) -> tuple[jax.Array, float]:
    """The end of the simulated flow from scale `alpha`, and its relative change over the
    second half of the run (how far from converged it is)."""
    # Time runs alpha^2 times faster for large alpha (the kernel's scale); escaping a small
    # start takes ~ log(1/alpha).
    tau = max(1.0, alpha**2)
    T = 400.0 * (1 + max(0.0, np.log(1 / alpha)))
    traj = linflow.gradient_flow(
        linflow.diagonal_objective(X, y),
        linflow.diagonal_weights(alpha, X.shape[1]),
        jnp.array([T / 2, T]),
        tau=tau,
        rtol=1e-8,
        atol=1e-12,
        max_steps=2**18,
    )
    beta = linflow.diagonal_beta(traj.weights)
    change = float(jnp.linalg.norm(beta[1] - beta[0]) / jnp.linalg.norm(beta[1]))
    return beta[1], change


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for the test suite")
    parser.add_argument("--d", type=int, default=100)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--threshold", type=float, default=0.05, help="for the n-needed curve")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    if args.quick:
        args.d, args.k, args.seeds = 30, 2, 2
    d, k = args.d, args.k
    if args.quick:
        ns, flow_ns = [6, 16], [16]
        alphas = np.logspace(-4, 1, 6)
        flow_alphas = alphas[[1, 5]].tolist()  # 1e-3, 10
    else:
        ns = [10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 99]
        flow_ns = [20, 40, 80]
        alphas = np.logspace(-4, 1, 26)
        flow_alphas = alphas[[5, 10, 15, 18, 20, 22]].tolist()  # 1e-3 ... 2.5

    key = jax.random.key(0)
    exact, l1, l2, flows, seconds = [], [], [], {}, {"diagonal_limit": 0.0, "flows": 0.0}
    for n in ns:
        rows, rows_l1, rows_l2 = [], [], []
        for seed in range(args.seeds):
            X, y, teacher = problem(jax.random.fold_in(key, 1000 * n + seed), n, d, k)
            start = time.perf_counter()
            beta = jax.block_until_ready(linflow.diagonal_limit(X, y, alphas))
            seconds["diagonal_limit"] += time.perf_counter() - start
            rows.append(test_error(beta, teacher))
            times, saddles = linflow.saddle_to_saddle(X, y)
            rows_l1.append(test_error(saddles[-1], teacher))
            rows_l2.append(test_error(jnp.linalg.pinv(X) @ y, teacher))
            if n in flow_ns:
                for alpha in flow_alphas:
                    start = time.perf_counter()
                    beta_flow, change = simulated_limit(X, y, alpha)
                    seconds["flows"] += time.perf_counter() - start
                    exact_alpha = beta[list(alphas).index(alpha)]
                    entry = flows.setdefault(f"{n} {alpha:g}", {"n": n, "alpha": alpha})
                    entry.setdefault("error", []).append(float(test_error(beta_flow, teacher)))
                    entry.setdefault("relative_change_last_half", []).append(change)
                    entry.setdefault("relative_diff_vs_exact", []).append(
                        float(
                            jnp.linalg.norm(beta_flow - exact_alpha) / jnp.linalg.norm(exact_alpha)
                        )
                    )
        exact.append(np.asarray(rows))
        l1.append(np.asarray(rows_l1))
        l2.append(np.asarray(rows_l2))
    exact = np.stack(exact)  # (len(ns), seeds, len(alphas))
    mean = exact.mean(1)
    below = mean <= args.threshold
    n_needed = [
        int(np.asarray(ns)[below[:, j]].min()) if below[:, j].any() else None
        for j in range(len(alphas))
    ]
    payload = {
        "config": {
            "d": d,
            "k": k,
            "n": ns,
            "seeds": args.seeds,
            "alphas": alphas.tolist(),
            "threshold": args.threshold,
            "k_log_d_over_k": k * np.log(d / k),
            "quick": args.quick,
        },
        "error_exact": mean.tolist(),
        "error_exact_std": exact.std(1).tolist(),
        "error_min_l1": np.mean(l1, 1).tolist(),
        "error_min_l2": np.mean(l2, 1).tolist(),
        "n_needed": n_needed,
        "flows": list(flows.values()),
        "seconds": seconds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "diagonal" + ("_quick" if args.quick else "")
    (args.out / f"{name}.json").write_text(json.dumps(payload, indent=1))
    figure(payload, args.out / f"{name}.png")
    worst = max(max(f["relative_diff_vs_exact"]) for f in payload["flows"])
    print(f"n needed for error <= {args.threshold} against alpha:", dict(zip(alphas, n_needed)))
    print(f"largest relative difference flow vs diagonal_limit: {worst:.1e}")
    print(f"wrote {args.out}/{name}.*")
    return payload


def figure(payload, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = payload["config"]
    ns, alphas = np.asarray(config["n"]), np.asarray(config["alphas"])
    error = np.asarray(payload["error_exact"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3), layout="constrained")
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(ns)))
    flows = payload["flows"]
    for i, n in enumerate(ns):
        axes[0].loglog(alphas, error[i], color=colors[i], label=f"n = {n}")
        points = [f for f in flows if f["n"] == n]
        if points:
            axes[0].loglog(
                [f["alpha"] for f in points],
                [np.mean(f["error"]) for f in points],
                "o",
                color=colors[i],
                markerfacecolor="none",
                markersize=9,
            )
    axes[0].plot([], [], "o", color="grey", markerfacecolor="none", label="simulated flow")
    axes[0].set(
        xlabel=r"initialisation scale $\alpha$",
        ylabel=r"test error $\|\beta_\alpha - \beta^*\|^2 / \|\beta^*\|^2$",
        title="exact limit (lines) and simulated flows (circles)",
        ylim=(1e-6, 3),
    )
    axes[0].legend(fontsize=7, ncol=2)

    picks = np.unique(np.linspace(0, len(alphas) - 1, 5).round().astype(int))
    shades = plt.cm.plasma(np.linspace(0, 0.85, len(picks)))
    for j, shade in zip(picks, shades):
        axes[1].semilogy(ns, error[:, j], "-", color=shade, label=rf"$\alpha$ = {alphas[j]:.2g}")
    axes[1].semilogy(ns, payload["error_min_l1"], "k--", label=r"min $\ell_1$ ($\alpha \to 0$)")
    axes[1].semilogy(ns, payload["error_min_l2"], "k:", label=r"min $\ell_2$ ($\alpha \to \infty$)")
    axes[1].axvline(config["k_log_d_over_k"], color="grey", lw=0.8)
    axes[1].axvline(config["d"], color="grey", lw=0.8)
    axes[1].set(
        xlabel="samples n",
        ylabel="test error",
        title=rf"d = {config['d']}, k = {config['k']} (grey: k log(d/k) and d)",
        ylim=(1e-6, 3),
    )
    axes[1].legend(fontsize=7)

    needed = np.array([np.nan if v is None else v for v in payload["n_needed"]], float)
    axes[2].semilogx(alphas, needed, "o-", label=f"n needed (of n = {ns.min()}…{ns.max()})")
    missed = np.isnan(needed)
    if missed.any():
        axes[2].semilogx(
            alphas[missed], np.full(missed.sum(), config["d"]), "^", color="C3", label="none < d"
        )
    axes[2].axhline(config["k_log_d_over_k"], color="grey", ls="--", label="k log(d/k)")
    axes[2].axhline(config["d"], color="grey", ls=":", label="d")
    axes[2].set(
        xlabel=r"initialisation scale $\alpha$",
        ylabel=f"samples needed for test error ≤ {config['threshold']}",
        title="rich regime: n ~ k log d; kernel regime: n ~ d",
        ylim=(0, config["d"] * 1.05),
    )
    axes[2].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
