r"""How wrong is the balanced (Saxe) learning time for unbalanced starts?

For an aligned two-layer start every mode is a scalar pair $(a, b)$ with $u_0 = a_0 b_0$ and a
conserved imbalance $\lambda = b^2 - a^2$. `linflow.time_to_learn(s, u0)` is exact for
$\lambda = 0$ (Saxe et al. 2014). This script measures, with `linflow.learning_times` (diffrax
events), the time each mode takes to reach $f s$ for a range of $\lambda$ at fixed $u_0$, checks
it against the implicit closed form for any $\lambda$ (references/README.md; Dominé et al. 2025)

$$t(u) = \frac{\tau}{K}\bigl[\ln F(u) - \ln F(u_0)\bigr], \quad
F(u) = \frac{4 s u + \lambda^2 + K\sqrt{4u^2 + \lambda^2}}{s - u},$$

$K = \sqrt{\lambda^2 + 4s^2}$,

and reports the error of the balanced estimate. Writes `learning_times.json` and
`learning_times.png` to `benchmarks/results/` (or `--out`).

    python benchmarks/learning_times.py [--quick] [--out DIR]
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

jax.config.update("jax_enable_x64", True)

S = (3.0, 2.0, 1.0)
U0 = 1e-3
FRACTIONS = (0.1, 0.5, 0.9)


def implicit_time(s, u, u0, lam, tau=1.0):
    """Exact time for the scalar pair to go from u0 to u at imbalance lam (any sign)."""
    K = np.sqrt(lam**2 + 4 * s**2)

    def F(x):
        return (4 * s * x + lam**2 + K * np.sqrt(4 * x**2 + lam**2)) / (s - x)

    return tau / K * (np.log(F(u)) - np.log(F(u0)))


def start(lam, u0=U0):
    """(a0, b0) > 0 with a0 b0 = u0 and b0² - a0² = lam."""
    b0 = np.sqrt((lam + np.sqrt(lam**2 + 4 * u0**2)) / 2)
    return u0 / b0, b0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few imbalances only")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    task = linflow.Task(jnp.diag(jnp.asarray(S)))
    s = np.asarray(task.modes()[1])
    f = np.asarray(FRACTIONS)
    magnitudes = [1e-2, 1.0] if args.quick else [1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0]
    lams = sorted([0.0, *magnitudes, *(-m for m in magnitudes)])
    saxe = np.asarray(linflow.time_to_learn(s[:, None], U0, fraction=f[None, :]))

    rows, worst_check = [], 0.0
    began = time.perf_counter()
    for lam in lams:
        a0, b0 = start(lam)
        weights0 = linflow.init_weights(
            jax.random.key(0), task, 3, scheme="aligned", scale=a0, lam=b0**2 - a0**2
        )
        times = np.asarray(linflow.learning_times(task, weights0, f))  # (k, F)
        exact = implicit_time(s[:, None], f[None, :] * s[:, None], U0, lam)
        worst_check = max(worst_check, float(np.abs(times - exact).max()))
        rows.append(
            {
                "lambda": lam,
                "a0": a0,
                "b0": b0,
                "event_times": times.tolist(),
                "saxe_times": saxe.tolist(),
                "saxe_error": (saxe - times).tolist(),
                "saxe_relative_error": ((saxe - times) / times).tolist(),
            }
        )
    elapsed = time.perf_counter() - began

    result = {
        "description": "time for mode alpha to reach fraction f of s_alpha, aligned two-layer "
        "start with a0 b0 = u0 and imbalance lambda = b0^2 - a0^2; event times from "
        "linflow.learning_times (rtol 1e-10), Saxe estimate linflow.time_to_learn(s, u0)",
        "s": list(S),
        "u0": U0,
        "fractions": list(FRACTIONS),
        "max_abs_event_minus_implicit_closed_form": worst_check,
        "seconds": elapsed,
        "rows": rows,
    }
    (out / "learning_times.json").write_text(json.dumps(result, indent=1))
    plot(rows, out / "learning_times.png")
    print(f"event times vs implicit closed form: max |diff| = {worst_check:.2e}")
    half = FRACTIONS.index(0.5)
    for row in rows:
        err = np.asarray(row["saxe_relative_error"])[:, half]
        print(f"lambda = {row['lambda']:+8.4f}: Saxe half-time relative error per mode {err}")
    return result


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lams = np.array([r["lambda"] for r in rows])
    rel = np.array([r["saxe_relative_error"] for r in rows])  # (L, k, F)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    half = FRACTIONS.index(0.5)
    for alpha, s in enumerate(S):
        ax.plot(lams, rel[:, alpha, half], "o-", label=rf"$s = {s:g}$")
    ax.set_xscale("symlog", linthresh=1e-4)
    ax.set_xlabel(r"imbalance $\lambda = b_0^2 - a_0^2$")
    ax.set_ylabel(r"$(t_{\rm Saxe} - t) / t$ at $f = 1/2$")
    ax.set_title(rf"Balanced estimate of the half-time, $u_0 = a_0 b_0 = {U0:g}$")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
