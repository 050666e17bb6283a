r"""Accuracy of every closed form of `exact_flow` against `gradient_flow`, in float32 and float64.

For each case (a closed form and a regime of it, including the ones of issue 19: hidden widths
that cut a tie of the spectrum, rank-deficient tasks, starts on the saddle manifold, large deep
starts, a singular $\Sigma_{xx}$, $\lambda = -50$), `exact_flow` is evaluated in float32 (x64 off,
JAX's default) and in float64, and compared with a float64 `gradient_flow` (rtol 1e-12) from the
float64 start (the float32 error includes rounding the start to float32), at the case's times,
and at $t = \infty$ with the known limit. The error is the largest entry of the gauge-invariant
quantities $W$, $W_1^\top W_1$, $W_N W_N^\top$ minus the reference, relative to the largest entry
of the reference. Writes `results/exact_accuracy.json` and `results/exact_accuracy.png` (with
`--quick`, fewer cases and `*_quick` files), and prints a Markdown table.

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
TIMES = (0.0, 1.0, 5.0, 20.0, 100.0)


def _saddle_start(task, key):
    """A square zero-balanced start whose relative rotation has determinant -1 (a saddle)."""
    U, _, V = task.modes()
    k1, k2, k3 = jax.random.split(key, 3)
    rotations = [jnp.linalg.qr(jax.random.normal(k, (3, 3)))[0] for k in (k1, k2, k3)]
    r1, g, o = rotations
    g = g * jnp.where(jnp.linalg.det(g) > 0, -1.0, 1.0)
    sigma = jnp.array([0.4, 0.3, 0.2])
    return (o * sigma[None, :] @ (V @ r1 @ g).T, (U @ r1) * sigma[None, :] @ o.T)


def cases(quick: bool):
    """Dicts with `label`, `form`, `task`, `start` (float64), `times`, `limit` (the product at
    t = inf; `None`: a long `gradient_flow`)."""
    random_task = linflow.tasks.random_task
    init = linflow.init_weights
    key = jax.random.key(3)
    whitened = random_task(jax.random.key(0), [3.0, 2.0, 1.0], 3, 4)
    tall = random_task(jax.random.key(0), [2.5, 1.5, 0.7], 5, 3)
    X = jax.random.normal(jax.random.key(1), (20, 4)) @ (jnp.eye(4) + 0.3)
    data = linflow.Task.from_data(X, X @ jax.random.normal(jax.random.key(2), (4, 3)))
    singular = linflow.Task.from_data(X.at[:, 3].set(0.0), X[:, :3] @ jnp.ones((3, 2)))
    one = init(key, singular, (), scale=0.3)
    sxx = np.asarray(singular.sigma_xx)
    null = np.eye(4) - np.linalg.pinv(sxx) @ sxx
    hierarchy = linflow.tasks.saxe_hierarchy()[0]
    square = random_task(jax.random.key(0), [3.0, 2.0, 0.5], 3, 3)
    U, s, V = square.modes()
    out = [
        dict(
            label="one layer, correlated inputs",
            form="one layer",
            task=data,
            start=init(key, data, (), scale=0.3),
        ),
        dict(
            label="aligned two-layer, lambda = 0.4",
            form="aligned two-layer",
            task=whitened,
            start=init(key, whitened, 4, scheme="aligned", scale=0.05, lam=0.4),
        ),
        dict(
            label="zero-balanced, m < d",
            form="zero-balanced two-layer",
            task=whitened,
            start=init(key, whitened, 3, scheme="balanced", scale=0.1),
        ),
        dict(
            label="lambda-balanced, lambda = -0.5",
            form="lambda-balanced two-layer",
            task=whitened,
            start=init(key, whitened, 3, scheme="lambda_balanced", lam=-0.5, scale=1.0),
        ),
        dict(
            label="aligned balanced, depth 3",
            form="aligned balanced deep",
            task=whitened,
            start=init(key, whitened, (3, 3), scheme="aligned", scale=0.3),
        ),
    ]
    if quick:
        return [out[0], out[2]]
    wide_up = random_task(jax.random.key(0), [2.0, 0.7], 5, 2)
    wide_down = random_task(jax.random.key(0), [2.0, 0.7], 2, 5)
    rank2 = random_task(jax.random.key(0), [2.0, 1.0], 3, 4)
    return out + [
        dict(
            label="one layer, singular sigma_xx",
            form="one layer",
            task=singular,
            start=one,
            limit=np.asarray(singular.optimum) + np.asarray(one[0]) @ null,
        ),
        dict(
            label="lambda-balanced, lambda = +0.5",
            form="lambda-balanced two-layer",
            task=whitened,
            start=init(key, whitened, 3, scheme="lambda_balanced", lam=0.5, scale=0.1),
        ),
        dict(
            label="zero-balanced, m > d, h = 5",
            form="zero-balanced two-layer",
            task=tall,
            start=init(key, tall, 5, scheme="balanced", scale=0.1),
        ),
        dict(
            label="lambda-balanced, m > d, lambda = +1",
            form="lambda-balanced two-layer",
            task=tall,
            start=init(key, tall, 5, scheme="lambda_balanced", lam=1.0, scale=0.1),
        ),
        dict(
            label="lambda = +0.5, h = 4 > min(m, d) = 2",
            form="lambda-balanced two-layer",
            task=wide_up,
            start=init(key, wide_up, 4, scheme="lambda_balanced", lam=0.5, scale=0.3),
        ),
        dict(
            label="lambda = -0.5, h = 4 > min(m, d) = 2",
            form="lambda-balanced two-layer",
            task=wide_down,
            start=init(key, wide_down, 4, scheme="lambda_balanced", lam=-0.5, scale=0.3),
        ),
        dict(
            label="lambda = -50, d > m",
            form="lambda-balanced two-layer",
            task=wide_down,
            start=init(key, wide_down, 2, scheme="lambda_balanced", lam=-50.0, scale=0.3),
            times=tuple(t / 20 for t in TIMES),
        ),
        dict(
            label="hierarchy (s = 1, 1), h = 3",
            form="zero-balanced two-layer",
            task=hierarchy,
            start=init(key, hierarchy, 3, scheme="balanced", scale=0.1),
            limit=None,
        ),
        dict(
            label="rank-3 start, rank-2 task",
            form="zero-balanced two-layer",
            task=rank2,
            start=init(key, rank2, 3, scheme="balanced", scale=0.1),
        ),
        # The float64 reference leaves the saddle manifold by rounding at t ~ 35: stop at 10.
        dict(
            label="saddle manifold (det -1)",
            form="zero-balanced two-layer",
            task=square,
            start=_saddle_start(square, key),
            times=(0.0, 1.0, 3.0, 10.0),
            limit=(U[:, :2] * s[:2]) @ V[:, :2].T,
        ),
        dict(
            label="aligned balanced, depth 3, u0 > s",
            form="aligned balanced deep",
            task=whitened,
            start=init(key, whitened, (3, 3), scheme="aligned", scale=jnp.array([1.6, 0.5, 1.2])),
        ),
        dict(
            label="aligned balanced, depth 5",
            form="aligned balanced deep",
            task=whitened,
            start=init(key, whitened, (3, 3, 3, 3), scheme="aligned", scale=0.6),
        ),
    ]


def invariants(weights):
    w = weights[0]
    for layer in weights[1:]:
        w = layer @ w
    first, last = weights[0], weights[-1]
    grams = (np.swapaxes(first, -1, -2) @ first, last @ np.swapaxes(last, -1, -2))
    return (w,) + (grams if len(weights) > 1 else ())


def rel_err(x, y) -> float:
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(x, y))


def _exact(case, dtype, ts):
    """`exact_flow` of the case in `dtype` (float32 with x64 off), as float64 NumPy arrays."""
    with jax.enable_x64(dtype == "float64"):
        task = case["task"].astype(dtype)
        start = tuple(jnp.asarray(np.asarray(w), dtype) for w in case["start"])
        traj = linflow.exact_flow(task, start, jnp.asarray(ts, dtype))
        assert traj.stats["closed_form"] == case["form"], (case["label"], traj.stats)
        return tuple(np.asarray(w, np.float64) for w in traj.weights)


def plot(rows, path):
    """Bars of the float32 and float64 errors of each case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.8))
    y = np.arange(len(rows))
    floor = 1e-17  # an exact zero still gets a bar
    ax.barh(y - 0.2, [max(r["float32"], floor) for r in rows], 0.4, label="float32 (x64 off)")
    ax.barh(y + 0.2, [max(r["float64"], floor) for r in rows], 0.4, label="float64")
    ax.set_yticks(y, [r["case"] for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("relative error (dimensionless) against gradient_flow in float64, rtol 1e-12")
    ax.set_title("exact_flow: largest error of W, W1^T W1, WN WN^T")
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases, *_quick outputs")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    suffix = "_quick" if args.quick else ""
    rows = []
    for case in cases(args.quick):
        times = np.asarray(case.get("times", TIMES))
        task = case["task"]
        start = tuple(jnp.asarray(w, jnp.float64) for w in case["start"])
        kwargs = dict(rtol=1e-12, atol=1e-14, max_steps=10**6)
        flow = linflow.gradient_flow(task, start, jnp.asarray(times), **kwargs)
        reference = invariants(tuple(np.asarray(w) for w in flow.weights))
        limit = case.get("limit", np.asarray(task.optimum))
        if limit is None:  # a limit that the start decides: a long flow
            long = linflow.gradient_flow(task, start, jnp.array([0.0, 200.0]), **kwargs)
            limit = np.asarray(long.product()[-1])
        row = {"case": case["label"], "closed_form": case["form"], "times": times.tolist()}
        for dtype in ("float32", "float64"):
            weights = _exact(case, dtype, np.append(times, np.inf))
            row[dtype] = rel_err(invariants(tuple(w[:-1] for w in weights)), reference)
            row[f"{dtype}_inf"] = rel_err((invariants(weights)[0][-1],), (limit,))
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"exact_accuracy{suffix}.json").write_text(
        json.dumps(
            {"reference": "gradient_flow float64, rtol 1e-12; float32 with x64 off", "cases": rows},
            indent=2,
        )
    )
    print("| case | closed form | float32 | float64 | float32, t = inf | float64, t = inf |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['case']} | {r['closed_form']} | {r['float32']:.1e} | {r['float64']:.1e} | "
            f"{r['float32_inf']:.1e} | {r['float64_inf']:.1e} |"
        )
    plot(rows, args.out / f"exact_accuracy{suffix}.png")
    return rows


if __name__ == "__main__":
    main()
