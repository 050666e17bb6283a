"""Progressive sharpening and the edge of stability in deep linear networks (Cohen et al. 2021).

Gradient descent with learning rate eta is linearly stable at a minimum only if its sharpness
(the top eigenvalue of the loss Hessian, `linflow.sharpness`) is below 2/eta. The global minima
of a deep linear network form a manifold; the balanced ones are the flattest, with sharpness
N s_1^(2 - 2/N) (whitened inputs), and unbalanced ones are sharper. Here the first layer starts
large (singular values c) and the others small, so gradient flow heads for a sharp, unbalanced
minimum, and the sharpness rises (progressive sharpening). With 2/eta between the flattest
sharpness and that of the flow's minimum, gradient descent reaches 2/eta, the loss starts to
oscillate (it falls non-monotonically), the layers rebalance, and the sharpness hovers at
2/eta until training converges to a minimum at the edge of stability. Reported per depth and
eta: the plateau of the sharpness (its median from the first step that reaches 2/eta on) and
its ratio to 2/eta, the final sharpness, and how often the loss rose; a control eta with
2/eta above the flow's minimum shows no edge of stability.

    python benchmarks/edge_of_stability.py            # ~2 minutes on 2 cores
    python benchmarks/edge_of_stability.py --quick    # smoke test
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
from linflow._init import _haar

RESULTS = Path(__file__).parent / "results"
# depth -> (c, the first layer's singular values; the other layers' entry scale)
STARTS = {2: (2.8, 1e-2), 3: (3.0, 1e-2), 4: (3.0, 0.1)}


def start(task, depth: int, batch: int, key):
    """First layer $c\\,O$ (Haar orthogonal), the others small Gaussian: unbalanced."""
    c, small = STARTS[depth]
    d = task.input_dim
    k1, k2 = jax.random.split(key)
    first = c * _haar(k1, (batch,), d, jnp.float64)
    rest = linflow.init_weights(
        k2, task, (d,) * (depth - 1), scale=small / np.sqrt(d), batch=(batch,)
    )
    return (first,) + rest[1:]


def flow_limit(task, weights0, time_limit: float):
    """Sharpness of the minimum that gradient flow reaches from `weights0`, shape `(batch,)`."""
    traj = linflow.gradient_flow(task, weights0, jnp.array([time_limit]), rtol=1e-8, atol=1e-10)
    final = tuple(w[-1] for w in traj.weights)
    return np.asarray(linflow.sharpness(task, final)), np.asarray(traj.loss(task))[-1]


def run(task, weights0, lr: float, steps: int, every: int):
    """Gradient descent; loss at every step, sharpness every `every` steps (first run)."""
    traj = linflow.gradient_descent(task, weights0, steps=steps, lr=lr, throw=False)
    loss = np.asarray(traj.loss(task))
    sub = tuple(w[::every] for w in traj.weights)
    sharp = np.asarray(linflow.sharpness(task, sub, iterations=60))
    return loss[:, 0], sharp[:, 0], bool(np.asarray(traj.stats["diverged"]).any())


def summarise(loss, sharp, edge: float):
    """Plateau (median sharpness over the second half of the run) against 2/eta; loss rises.

    Rises are counted while the loss is above `1e-12` of its start (below, it is rounding).
    """
    plateau = float(np.median(sharp[len(sharp) // 2 :]))
    rises = (np.diff(loss) > 0) & (loss[1:] > 1e-12 * loss[0])
    return {
        "plateau": plateau,
        "plateau_over_edge": plateau / edge,
        "at_edge": bool(abs(plateau / edge - 1) < 0.1),
        "max_sharpness": float(sharp.max()),
        "final_sharpness": float(sharp[-1]),
        "final_loss": float(loss[-1]),
        "loss_rises": int(rises.sum()),
        "last_loss_rise": int(np.nonzero(rises)[0][-1]) + 1 if rises.any() else 0,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for the test suite")
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=1, help="steps between sharpness saves")
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.7, 0.9, 1.5])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    if args.quick:
        args.d, args.steps, args.every, args.depths, args.fractions = 4, 200, 1, [3], [0.5]
    s = np.geomspace(4.0, 0.5, args.d)
    task = linflow.tasks.random_task(jax.random.key(0), s, args.d, args.d)
    results = {}
    start_time = time.perf_counter()
    for depth in args.depths:
        weights0 = start(task, depth, 1, jax.random.key(depth))
        flattest = depth * s[0] ** (2 - 2 / depth)
        limit, limit_loss = flow_limit(task, weights0, 200.0)
        initial = float(np.asarray(linflow.sharpness(task, weights0))[0])
        rows = []
        for fraction in args.fractions:
            edge = flattest + fraction * (float(limit[0]) - flattest)
            lr = 2.0 / edge
            loss, sharp, diverged = run(task, weights0, lr, args.steps, args.every)
            rows.append(
                {"fraction": fraction, "lr": lr, "edge": edge, "diverged": diverged}
                | summarise(loss, sharp, edge)
                | {"loss": loss.tolist(), "sharpness": sharp.tolist()}
            )
        results[str(depth)] = {
            "flattest_minimum": flattest,
            "flow_minimum": float(limit[0]),
            "flow_final_loss": float(limit_loss[0]),
            "initial_sharpness": initial,
            "start": {"c": STARTS[depth][0], "small": STARTS[depth][1]},
            "runs": rows,
        }
    payload = {
        "config": {
            "d": args.d,
            "singular_values": s.tolist(),
            "steps": args.steps,
            "every": args.every,
            "quick": args.quick,
        },
        "results": results,
        "seconds": time.perf_counter() - start_time,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "edge_of_stability" + ("_quick" if args.quick else "")
    (args.out / f"{name}.json").write_text(json.dumps(payload, indent=1))
    figure(payload, args.out / f"{name}.png")
    print(table(results))
    return payload


def table(results) -> str:
    """Markdown: per depth and eta, the sharpness plateau against 2/eta."""
    lines = [
        "| depth | flattest min | flow's min | 2/eta | plateau | plateau / (2/eta) | loss rises |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for depth, res in results.items():
        for row in res["runs"]:
            lines.append(
                f"| {depth} | {res['flattest_minimum']:.2f} | {res['flow_minimum']:.2f} | "
                f"{row['edge']:.2f} | {row['plateau']:.3f} | {row['plateau_over_edge']:.4f} | "
                f"{row['loss_rises']} |"
            )
    return "\n".join(lines)


def figure(payload, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = payload["results"]
    every = payload["config"]["every"]
    fig, axes = plt.subplots(2, len(results), figsize=(4.2 * len(results), 6.5), squeeze=False)
    for column, (depth, res) in enumerate(results.items()):
        top, bottom = axes[0, column], axes[1, column]
        for i, row in enumerate(res["runs"]):
            color = f"C{i}"
            sharp = np.asarray(row["sharpness"])
            steps = 1 + np.arange(len(sharp)) * every
            label = f"2/η = {row['edge']:.1f}"
            # Period-2 oscillations at the edge make the sharpness alternate: show each save
            # faintly and the mean of consecutive saves boldly.
            top.semilogx(steps, sharp, color=color, lw=0.5, alpha=0.3)
            top.semilogx(
                steps[1:], 0.5 * (sharp[1:] + sharp[:-1]), color=color, lw=1.2, label=label
            )
            top.axhline(row["edge"], color=color, ls="--", lw=0.8)
            bottom.loglog(1 + np.arange(len(row["loss"])), row["loss"], color=color, lw=0.6)
        top.axhline(res["flattest_minimum"], color="k", ls=":", lw=0.8, label="flattest minimum")
        top.set(title=f"depth {depth}", xlabel="step + 1", ylabel="sharpness λ_max(∇²L)")
        top.set_ylim(0, 1.6 * max(row["edge"] for row in res["runs"]))
        bottom.set(xlabel="step + 1", ylabel="training loss", ylim=(1e-12, None))
        top.legend(fontsize=7)
    fig.suptitle(
        "Gradient descent from an unbalanced start: the sharpness rises to 2/η (dashed) and "
        "hovers there (faint: every step; bold: mean of two steps)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
