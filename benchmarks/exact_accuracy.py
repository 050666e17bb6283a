r"""Accuracy of every closed form of `exact_flow` against `gradient_flow`, in float32 and float64.

For each closed form, one random case of its regime is solved by `exact_flow` in float32 and in
float64 and compared with a float64 `gradient_flow` (rtol 1e-12) from the float64 start (the
float32 error includes rounding the start to float32), at times up to t = 100, and at t = inf
with the optimum $\Sigma_{yx}\Sigma_{xx}^+$. The error is the largest entry of the
gauge-invariant quantities $W$, $W_1^\top W_1$, $W_N W_N^\top$ minus the reference, relative to
the largest entry of the reference. Writes `results/exact_accuracy.json` and
`results/exact_accuracy.png`, and prints a Markdown table.

    python benchmarks/exact_accuracy.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import linflow  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results"


def modes_task(key, m, d, s):
    ku, kv = jax.random.split(key)
    U = jnp.linalg.qr(jax.random.normal(ku, (m, m)))[0]
    V = jnp.linalg.qr(jax.random.normal(kv, (d, d)))[0]
    k = min(m, d)
    S = jnp.zeros((m, d)).at[jnp.arange(k), jnp.arange(k)].set(jnp.asarray(s[:k]))
    return linflow.Task(U @ S @ V.T)


def cases(quick: bool):
    """(label, expected closed form, task, float64 start)."""
    key = jax.random.key(0)
    whitened = modes_task(key, 3, 4, (3.0, 2.0, 1.0))
    tall = modes_task(key, 5, 3, (2.5, 1.5, 0.7))
    X = jax.random.normal(jax.random.key(1), (20, 4)) @ (jnp.eye(4) + 0.3)
    data = linflow.Task.from_data(X, X @ jax.random.normal(jax.random.key(2), (4, 3)))
    init = linflow.init_weights
    k = jax.random.key(3)
    out = [
        ("one layer, correlated inputs", "one layer", data, init(k, data, (), scale=0.3)),
        (
            "aligned two-layer, lambda = 0.4",
            "aligned two-layer",
            whitened,
            init(k, whitened, 4, scheme="aligned", scale=0.05, lam=0.4),
        ),
        (
            "zero-balanced, m < d",
            "zero-balanced two-layer",
            whitened,
            init(k, whitened, 3, scheme="balanced", scale=0.1),
        ),
        (
            "lambda-balanced, lambda = +0.5",
            "lambda-balanced two-layer",
            whitened,
            init(k, whitened, 3, scheme="lambda_balanced", lam=0.5, scale=0.1),
        ),
        (
            "lambda-balanced, lambda = -0.5",
            "lambda-balanced two-layer",
            whitened,
            init(k, whitened, 3, scheme="lambda_balanced", lam=-0.5, scale=1.0),
        ),
        (
            "aligned balanced, depth 3",
            "aligned balanced deep",
            whitened,
            init(k, whitened, (3, 3), scheme="aligned", scale=0.3),
        ),
    ]
    if not quick:
        out += [
            (
                "zero-balanced, m > d, h = 5",
                "zero-balanced two-layer",
                tall,
                init(k, tall, 5, scheme="balanced", scale=0.1),
            ),
            (
                "lambda-balanced, m > d, lambda = +1",
                "lambda-balanced two-layer",
                tall,
                init(k, tall, 5, scheme="lambda_balanced", lam=1.0, scale=0.1),
            ),
            (
                "aligned balanced, depth 5",
                "aligned balanced deep",
                whitened,
                init(k, whitened, (3, 3, 3, 3), scheme="aligned", scale=0.6),
            ),
        ]
    return out


def invariants(weights):
    w = weights[0]
    for layer in weights[1:]:
        w = layer @ w
    first, last = weights[0], weights[-1]
    grams = (jnp.swapaxes(first, -1, -2) @ first, last @ jnp.swapaxes(last, -1, -2))
    return (w,) + (grams if len(weights) > 1 else ())


def rel_err(x, y) -> float:
    return max(
        float(jnp.max(jnp.abs(a.astype(jnp.float64) - b)) / jnp.max(jnp.abs(b)))
        for a, b in zip(x, y)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    ts = jnp.array([0.0, 1.0, 5.0, 20.0, 100.0])
    rows = []
    for label, name, task, w0 in cases(args.quick):
        start32 = tuple(w.astype(jnp.float32) for w in w0)
        start64 = tuple(w.astype(jnp.float64) for w in w0)
        flow = linflow.gradient_flow(task, start64, ts, rtol=1e-12, atol=1e-14, max_steps=10**6)
        reference = invariants(flow.weights)
        limit = task.optimum  # every case has full rank: it converges to the optimum
        row = {"case": label, "closed_form": name}
        for dtype, start in (("float32", start32), ("float64", start64)):
            t_task = linflow.Task(
                task.sigma_yx.astype(dtype),
                None if task.whitened else task.sigma_xx.astype(dtype),
            )
            exact = linflow.exact_flow(t_task, start, jnp.concatenate([ts, jnp.array([jnp.inf])]))
            assert exact.stats["closed_form"] == name, (label, exact.stats)
            got = invariants(tuple(w[:-1] for w in exact.weights))
            row[dtype] = rel_err(got, reference)
            row[f"{dtype}_inf"] = rel_err((exact.product()[-1],), (limit,))
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "exact_accuracy.json").write_text(
        json.dumps(
            {
                "times": [float(t) for t in ts],
                "reference": "gradient_flow float64, rtol 1e-12",
                "cases": rows,
            },
            indent=2,
        )
    )
    print("| case | closed form | float32 | float64 |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['case']} | {r['closed_form']} | {r['float32']:.1e} | {r['float64']:.1e} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r["float32"] for r in rows], 0.4, label="float32")
    ax.barh(y + 0.2, [r["float64"] for r in rows], 0.4, label="float64")
    ax.set_yticks(y, [r["case"] for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("max relative error vs gradient_flow (float64, rtol 1e-12), t <= 100")
    ax.invert_yaxis()
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "exact_accuracy.png", dpi=120)
    return rows


if __name__ == "__main__":
    main()
