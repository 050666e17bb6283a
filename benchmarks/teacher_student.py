"""Two-layer ReLU teacher-student with the norm-adaptive step (Akiyama & Suzuki 2021).

An over-parameterised student (M neurons) learns a teacher with m orthonormal neurons on the
sphere by gradient descent with the per-neuron step eta_j = alpha |a_j| |w_j| / (a_j^2 + |w_j|^2)
on F = 1/(2n) sum (y - f)^2 + lam sum |a_j| |w_j|, through linflow's general-objective engine.
Reported: F(Theta_k) - F* (F* by Aitken extrapolation of the tail) with the fitted linear rate after
k0 = alpha^-2, the kernel distance of the student's measure to the teacher's, and the same for
the two-phase schedule of Akiyama & Suzuki (2023) (GLD on the L2-regularised loss, then plain
descent).

    python benchmarks/teacher_student.py            # ~1 minute on 2 cores
    python benchmarks/teacher_student.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import linflow

RESULTS = Path(__file__).parent / "results"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for the test suite")
    parser.add_argument("--d", type=int, default=5)
    parser.add_argument("--m", type=int, default=2)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--lam", type=float, default=1e-3)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=40000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    if args.quick:
        args.n, args.width, args.steps, args.seeds = 100, 6, 2000, 2
    batch = (args.seeds,)
    save_every = args.steps // 100
    problem = linflow.teacher_student(jax.random.key(0), d=args.d, m=args.m, n=args.n, lam=args.lam)
    objective = problem.objective(batch=batch)
    student = problem.init_student(jax.random.key(1), args.width, scale=0.1, batch=batch)

    start = time.perf_counter()
    traj = linflow.gradient_descent(
        objective,
        student,
        steps=args.steps,
        optimizer=linflow.norm_adaptive(args.alpha),
        save_every=save_every,
    )
    seconds = time.perf_counter() - start
    F = np.asarray(jax.vmap(objective.value)(traj.weights))  # (T, seeds)
    # F* by Aitken's extrapolation of the last three saves (exact for a geometric tail).
    d1, d2 = F[-1] - F[-2], F[-1] - 2 * F[-2] + F[-3]
    F_star = F[-1] - d1**2 / np.where(d2 != 0, d2, np.inf)
    gap = F - F_star[None]
    ts = np.asarray(traj.ts)
    k0 = args.alpha**-2
    # Linear convergence: slope of log(F - F*) after k0 (the very end is dominated by the
    # error of the estimate of F*).
    window = (ts > k0) & (ts < 0.9 * ts[-1])
    rates = [
        float(-np.polyfit(ts[window], np.log(np.maximum(g[window], 1e-300)), 1)[0]) for g in gap.T
    ]
    distance = np.asarray(linflow.measure_distance(traj.weights, problem.teacher))  # (T, seeds)
    teacher_norm = float(
        linflow.measure_distance(
            linflow.ReLUNetwork(0 * problem.teacher.a, problem.teacher.w), problem.teacher
        )
    )

    explore = problem.with_penalty(args.lam, "l2").objective(batch=batch)
    converge = problem.with_penalty(0.0).objective(batch=batch)
    half = args.steps // 2 // save_every * save_every
    two = linflow.two_phase(
        explore,
        converge,
        student,
        explore_steps=half,
        converge_steps=half,
        lr=0.05,
        beta=1e5,
        key=jax.random.key(2),
        save_every=save_every,
    )
    two_loss = np.asarray(jax.vmap(converge.value)(two.weights))
    two_distance = np.asarray(linflow.measure_distance(two.weights, problem.teacher))

    results = {
        "settings": vars(args) | {"out": str(args.out)},
        "norm_adaptive": {
            "seconds": seconds,
            "k0": k0,
            "steps": ts.tolist(),
            "F_star": F_star.tolist(),
            "F_minus_Fstar": gap.tolist(),
            "linear_rate_per_step": rates,
            "measure_distance": distance.tolist(),
            "final_relative_measure_distance": (distance[-1] / teacher_norm).tolist(),
        },
        "two_phase": {
            "switch": two.stats["switch"],
            "steps": np.asarray(two.ts).tolist(),
            "unregularised_loss": two_loss.tolist(),
            "final_relative_measure_distance": (two_distance[-1] / teacher_norm).tolist(),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "teacher_student.json").write_text(json.dumps(results, indent=1))
    figure(results, args.out / "teacher_student.png")
    print(
        f"linear rate after k0={k0:g}: {np.round(rates, 5)}; relative measure distance "
        f"{np.round(distance[-1] / teacher_norm, 4)}; wrote {args.out}/teacher_student.*"
    )
    return results


def figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    na, tp = results["norm_adaptive"], results["two_phase"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    axes[0].semilogy(na["steps"], np.maximum(na["F_minus_Fstar"], 1e-16))
    axes[0].axvline(na["k0"], color="grey", linestyle=":", label=r"$k_0 = \alpha^{-2}$")
    axes[0].set(xlabel="step k", ylabel=r"$F(\Theta_k) - F^*$", title="norm-adaptive descent")
    axes[0].legend()
    axes[1].semilogy(na["steps"], na["measure_distance"])
    axes[1].set(xlabel="step k", ylabel=r"$\|\nu_k - \nu^\circ\|_k$", title="distance to teacher")
    axes[2].semilogy(tp["steps"], tp["unregularised_loss"])
    axes[2].axvline(tp["switch"], color="grey", linestyle=":", label="GLD → GD")
    axes[2].set(xlabel="step k", ylabel="loss (no penalty)", title="two-phase schedule")
    axes[2].legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
