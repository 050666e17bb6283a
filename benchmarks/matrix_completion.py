"""Implicit low-rank bias of deep matrix factorisation (Arora, Cohen, Hu & Luo 2019).

A random rank-r matrix M (entries of unit variance) is observed on n_obs random entries. A
depth-N factorisation W = W_N ... W_1 (square layers) trained by gradient descent from a small
Gaussian initialisation on the observed entries only, through linflow's general-objective
engine, is compared with the minimum nuclear-norm completion (proximal gradient in JAX).
Reported per depth and number of observations: relative error on the unobserved entries and
the entropy effective rank of the result, averaged over random masks.

    python benchmarks/matrix_completion.py            # full run, ~1 minute on 2 cores
    python benchmarks/matrix_completion.py --quick    # smoke test
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


def run_depth(depth, target, masks, *, init_scale, steps, lr, key):
    """Train a depth-`depth` factorisation on every mask at once; final product `(B, m, d)`."""
    size = target.shape[0]
    weights0 = linflow.init_weights(
        key,
        linflow.Task(target),
        (size,) * (depth - 1),
        scheme="gaussian",
        scale=init_scale / np.sqrt(size),  # every layer has singular values ~ init_scale
        batch=(masks.shape[0],),
    )
    objective = linflow.completion_objective(target, masks)
    traj = linflow.gradient_descent(objective, weights0, steps=steps, lr=lr, save_every=steps)
    return traj.product()[-1], objective.value(tuple(w[-1] for w in traj.weights))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for the test suite")
    parser.add_argument("--size", type=int, default=30)
    parser.add_argument("--rank", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10000, help="for depths 1, 2; more deeper")
    parser.add_argument("--init-scale", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    if args.quick:
        args.size, args.rank, args.seeds, args.steps = 12, 1, 1, 1000
    size, rank = args.size, args.rank
    dof = rank * (2 * size - rank)
    fractions = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0) if not args.quick else (1.5, 3.0)
    n_obs = [min(int(round(f * dof)), size * size) for f in fractions]

    key = jax.random.key(0)
    target = linflow.low_rank_matrix(key, size, size, rank)
    masks = jnp.stack(
        [
            linflow.observation_mask(jax.random.fold_in(key, 1000 * n + s), (size, size), n)
            for n in n_obs
            for s in range(args.seeds)
        ]
    )  # (len(n_obs) * seeds, size, size)
    spectral = float(jnp.linalg.norm(target, 2))

    def summarise(w):
        err = np.asarray(linflow.unobserved_error(w, target, masks)).reshape(len(n_obs), -1)
        erank = np.asarray(linflow.effective_rank(w)).reshape(len(n_obs), -1)
        return {
            "error": err.mean(1).tolist(),
            "error_std": err.std(1).tolist(),
            "effective_rank": erank.mean(1).tolist(),
        }

    results = {}
    timings = {}
    start = time.perf_counter()
    results["nuclear norm"] = summarise(linflow.nuclear_norm_completion(target, masks))
    timings["nuclear norm"] = time.perf_counter() - start
    for depth in (1, 3) if args.quick else (1, 2, 3, 4):
        # stable step: the largest Hessian eigenvalue along W is ~ N sigma_max^(2 - 2/N)
        lr = 1.0 / (depth * spectral ** (2 - 2 / depth))
        # deeper factorisations leave small initialisations more slowly (rate ~ sigma^(2 - 2/N))
        steps = args.steps * max(1, 2 * (depth - 2))
        start = time.perf_counter()
        w, train_loss = run_depth(
            depth,
            target,
            masks,
            init_scale=args.init_scale,
            steps=steps,
            lr=lr,
            key=jax.random.fold_in(key, depth),
        )
        timings[f"depth {depth}"] = time.perf_counter() - start
        results[f"depth {depth}"] = summarise(w) | {
            "lr": lr,
            "steps": steps,
            "train_loss": np.asarray(train_loss).reshape(len(n_obs), -1).mean(1).tolist(),
        }

    payload = {
        "config": {
            "size": size,
            "rank": rank,
            "degrees_of_freedom": dof,
            "n_obs": n_obs,
            "seeds": args.seeds,
            "base_steps": args.steps,
            "init_scale": args.init_scale,
            "quick": args.quick,
        },
        "results": results,
        "seconds": timings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "matrix_completion" + ("_quick" if args.quick else "")
    (args.out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    _figure(n_obs, results, args.out / f"{name}.png", size, rank)
    print(_table(n_obs, results))
    return payload


def _table(n_obs, results):
    """Markdown table: error (effective rank) per method and number of observations."""
    head = "| method | " + " | ".join(f"{n} obs" for n in n_obs) + " |"
    rule = "| --- |" + " --- |" * len(n_obs)
    rows = [
        f"| {name} | "
        + " | ".join(f"{e:.3f} ({r:.2f})" for e, r in zip(res["error"], res["effective_rank"]))
        + " |"
        for name, res in results.items()
    ]
    return "\n".join([head, rule, *rows])


def _figure(n_obs, results, path, size, rank):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, res in results.items():
        style = {"ls": "--", "color": "k"} if name == "nuclear norm" else {"marker": "o"}
        axes[0].plot(n_obs, res["error"], label=name, **style)
        axes[1].plot(n_obs, res["effective_rank"], label=name, **style)
    axes[0].set(xlabel="observed entries", ylabel="relative error (unobserved)", yscale="log")
    axes[1].set(xlabel="observed entries", ylabel="effective rank", yscale="log")
    axes[1].axhline(rank, color="grey", lw=0.5)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{size}x{size} rank-{rank} completion: deeper factorisations, lower rank")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
