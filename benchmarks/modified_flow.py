r"""How closely gradient descent follows the gradient flow and the modified flow, against $\eta$.

Gradient descent with learning rate $\eta$ is compared step by step with the gradient flow at
$\tau = 1/\eta$ (so $t$ counts steps) and with the modified flow of Barrett & Dherin (2021,
"Implicit gradient regularization"), the flow of $L + \frac\eta4\|\nabla L\|^2$
(`linflow.gradient_flow(..., modified_lr=eta)`), over the same horizon $k\eta$ for every
$\eta$. Backward error analysis predicts gaps $O(\eta)$ to the plain flow (log-log slope 1)
and $O(\eta^2)$ to the modified flow (slope 2), with and without weight decay (the modified
flow of $L_\gamma = L + \frac\gamma2\sum_l\|W_l\|^2$). The gap is the largest absolute
difference of the end-to-end map $W_2 W_1$ over the saves and the initialisations; the flows
are solved far more tightly than the gaps. Task: $\Sigma_{xx} = I$, singular values
(2, 1, 0.5), $m = 3$, $d = 4$, hidden width 4, Gaussian starts of scale 0.5.

Writes `modified_flow.json` and `modified_flow.png` to `benchmarks/results/` (or `--out`;
`--quick` writes `modified_flow_quick.*` with two learning rates and one decay).

    python benchmarks/modified_flow.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import linflow

S = (2.0, 1.0, 0.5)
HORIZON = 2.0  # k * eta, the same for every learning rate
DECAYS = (0.0, 0.1)
# Flow tolerances per dtype, far below the gaps they are compared with.
TOLERANCES = {"float32": {"rtol": 1e-6, "atol": 1e-8}, "float64": {"rtol": 1e-11, "atol": 1e-13}}


def task_and_start(batch: int):
    """The task and the starts in float64 NumPy arrays (cast to each dtype: the same problem)."""
    with jax.enable_x64(True):
        key_u, key_v, key_w = jax.random.split(jax.random.key(0), 3)
        u, _ = jnp.linalg.qr(jax.random.normal(key_u, (3, 3), jnp.float64))
        v, _ = jnp.linalg.qr(jax.random.normal(key_v, (4, 4), jnp.float64))
        task = linflow.Task((u * jnp.asarray(S)[None, :]) @ v[:, :3].T)
        w0 = linflow.init_weights(key_w, task, 4, scale=0.5, batch=(batch,))
        return np.asarray(task.sigma_yx), [np.asarray(w) for w in w0]


def gaps(task, w0, lr: float, weight_decay: float, tolerances: dict) -> dict:
    steps = int(round(HORIZON / lr))
    decay = {"weight_decay": weight_decay} if weight_decay else {}
    gd = linflow.gradient_descent(task, w0, steps=steps, lr=lr, save_every=steps // 5, **decay)
    options = dict(tau=1.0 / lr, **decay, **tolerances)
    flow = linflow.gradient_flow(task, w0, gd.ts, **options)
    modified = linflow.gradient_flow(task, w0, gd.ts, modified_lr=lr, **options)

    def gap(other):
        return float(jnp.max(jnp.abs(gd.product() - other.product())))

    return {"flow": gap(flow), "modified_flow": gap(modified)}


def slope(lrs, values) -> float:
    return float(np.polyfit(np.log(lrs), np.log(values), 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="two learning rates, two starts, one decay"
    )
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lrs = [0.04, 0.02] if args.quick else [0.04, 0.02, 0.01, 0.005]
    batch = 2 if args.quick else 8
    decays = DECAYS[1:] if args.quick else DECAYS

    began = time.perf_counter()
    results = {}
    sigma_yx, start = task_and_start(batch)
    for name in ("float32", "float64"):
        with jax.enable_x64(name == "float64"):
            task = linflow.Task(jnp.asarray(sigma_yx, name))
            w0 = tuple(jnp.asarray(w, name) for w in start)
            for gamma in decays:
                rows = [gaps(task, w0, lr, gamma, TOLERANCES[name]) for lr in lrs]
                plain = [r["flow"] for r in rows]
                modified = [r["modified_flow"] for r in rows]
                results[f"{name}, weight_decay={gamma:g}"] = {
                    "lr": lrs,
                    "gap_to_flow": plain,
                    "gap_to_modified_flow": modified,
                    "loglog_slope_flow": slope(lrs, plain),
                    "loglog_slope_modified_flow": slope(lrs, modified),
                }
    payload = {
        "description": "max |W2 W1| gap between gradient descent (lr eta, k steps) and the "
        "gradient flow / the modified flow of Barrett & Dherin 2021 (tau = 1/eta, t = k), "
        f"over k eta <= {HORIZON}; whitened task s = {S}, m = 3, d = 4, h = 4, "
        f"{batch} Gaussian starts of scale 0.5",
        "horizon": HORIZON,
        "batch": batch,
        "tolerances": TOLERANCES,
        "seconds": time.perf_counter() - began,
        "results": results,
    }
    stem = "modified_flow_quick" if args.quick else "modified_flow"
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    plot(results, decays, out / f"{stem}.png")
    for key, r in results.items():
        print(
            f"{key}: slope to the flow {r['loglog_slope_flow']:.2f}, "
            f"to the modified flow {r['loglog_slope_modified_flow']:.2f}"
        )
    return payload


def plot(results: dict, decays, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained", sharey=True)
    for ax, name in zip(axes, ("float32", "float64")):
        for gamma, marker in zip(decays, ("o", "s")):
            r = results[f"{name}, weight_decay={gamma:g}"]
            lrs = np.asarray(r["lr"])
            suffix = rf", $\gamma = {gamma:g}$"
            ax.loglog(lrs, r["gap_to_flow"], marker + "-", color="C0", label="flow" + suffix)
            ax.loglog(
                lrs,
                r["gap_to_modified_flow"],
                marker + "--",
                color="C1",
                label="modified flow" + suffix,
            )
        r = results[f"{name}, weight_decay={decays[0]:g}"]
        anchor = np.asarray(r["lr"])
        for power, ref in ((1, r["gap_to_flow"][0]), (2, r["gap_to_modified_flow"][0])):
            ax.loglog(
                anchor,
                0.5 * ref * (anchor / anchor[0]) ** power,  # offset, to stay visible
                ":",
                color="grey",
                label=rf"slope {power}" if name == "float32" else None,
            )
        ax.set_xticks(anchor, [f"{lr:g}" for lr in anchor])
        ax.minorticks_off()
        ax.set_xlabel(r"learning rate $\eta$")
        ax.set_title(f"{name}: gradient descent against the flows")
    axes[0].set_ylabel(r"max $|W_2W_1^{\rm GD} - W_2W_1^{\rm flow}|$ over $k\eta \leq 2$")
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
