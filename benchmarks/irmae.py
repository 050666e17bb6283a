"""IRMAE: extra linear layers after the encoder give the latent code a low-rank spectrum.

Implicit Rank-Minimizing Autoencoder (Jing, Zbontar & LeCun 2020; an experiment also in Shimizu &
Aoyagi's lecture notes on linear multilayer networks): an MLP
autoencoder on scikit-learn's 8x8 digits whose encoder is followed by k extra square linear
layers (k = 0 is the plain autoencoder), trained with optax Adam through linflow's
general-objective `gradient_descent`. Reported per k: the singular values of the covariance of
the latent codes (normalised to the largest), their entropy effective rank, the test
reconstruction error, a figure of the spectra and a figure of decoded linear interpolations
between two test digits.

    python benchmarks/irmae.py            # ~1 minute on 2 cores
    python benchmarks/irmae.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import linflow

RESULTS = Path(__file__).parent / "results"


def load_digits(n_train: int):
    """Digits scaled to [0, 1], shuffled once, split into train and test, float32."""
    from sklearn.datasets import load_digits as sklearn_digits

    x = sklearn_digits().data.astype(np.float32) / 16.0
    x = x[np.random.default_rng(0).permutation(len(x))]
    return jnp.asarray(x[:n_train]), jnp.asarray(x[n_train:])


def init_params(key, k: int, *, width: int, latent: int, dim: int = 64):
    """MLP encoder and decoder (He-scaled), with k extra linear latent x latent layers."""
    keys = iter(jax.random.split(key, k + 4))

    def layer(n_in, n_out, gain=2.0):
        w = jax.random.normal(next(keys), (n_out, n_in), jnp.float32) * np.sqrt(gain / n_in)
        return {"w": w, "b": jnp.zeros(n_out, jnp.float32)}

    return {
        "encoder": [layer(dim, width), layer(width, latent, gain=1.0)],
        "linear": [
            jax.random.normal(next(keys), (latent, latent), jnp.float32) / np.sqrt(latent)
            for _ in range(k)
        ],
        "decoder": [layer(latent, width), layer(width, dim, gain=1.0)],
    }


def dense(layer, x):
    """Affine map of a batch of rows `x`, `(n, n_in) -> (n, n_out)`."""
    return x @ layer["w"].T + layer["b"][None, :]


def encode(params, x):
    """Latent codes `(n, latent)`: the encoder, then the extra linear layers (no bias)."""
    first, second = params["encoder"]
    z = dense(second, jax.nn.relu(dense(first, x)))
    for w in params["linear"]:
        z = z @ w.T
    return z


def decode(params, z):
    """Images `(n, 64)` in [0, 1] from latent codes."""
    first, second = params["decoder"]
    return jax.nn.sigmoid(dense(second, jax.nn.relu(dense(first, z))))


def reconstruction_loss(params, x):
    """Mean squared reconstruction error per pixel."""
    return jnp.mean((decode(params, encode(params, x)) - x) ** 2)


def latent_spectrum(params, x):
    """Singular values of the latent covariance, normalised to the largest, descending."""
    z = encode(params, x)
    z = z - jnp.mean(z, axis=0, keepdims=True)
    s = jnp.linalg.svd(z.T @ z / z.shape[0], compute_uv=False)
    return s / s[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for the test suite")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--n-train", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.width, args.latent, args.n_train = 30, 16, 8, 200
    depths = (0, 2) if args.quick else (0, 2, 4, 8)
    x_train, x_test = load_digits(args.n_train)

    results, params = {}, {}
    for k in depths:
        start = time.perf_counter()
        params0 = init_params(jax.random.key(k), k, width=args.width, latent=args.latent)
        traj = linflow.gradient_descent(
            linflow.Objective(reconstruction_loss, x_train),
            params0,
            steps=args.steps,
            optimizer=optax.adam(args.lr),
            save_every=args.steps,
        )
        trained = jax.tree.map(lambda leaf: leaf[-1], traj.weights)
        spectrum = latent_spectrum(trained, x_train)
        params[k] = trained
        results[f"k={k}"] = {
            "spectrum": np.asarray(spectrum).tolist(),
            "effective_rank": float(linflow.effective_rank(jnp.diag(spectrum))),
            "dims_above_1e-3": int(jnp.sum(spectrum > 1e-3)),
            "train_mse": float(reconstruction_loss(trained, x_train)),
            "test_mse": float(reconstruction_loss(trained, x_test)),
            "seconds": time.perf_counter() - start,
        }
        r = results[f"k={k}"]
        print(
            f"k={k}: effective rank {r['effective_rank']:.2f}, {r['dims_above_1e-3']} dims > 1e-3, "
            f"test MSE {r['test_mse']:.4f} ({r['seconds']:.1f} s)"
        )

    payload = {"config": vars(args) | {"out": str(args.out), "k": list(depths)}, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "irmae" + ("_quick" if args.quick else "")
    (args.out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    _figures(results, params, x_test, args.out / name)
    return payload


def _figures(results, params, x_test, stem):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, res in results.items():
        ax.plot(np.arange(1, len(res["spectrum"]) + 1), res["spectrum"], marker=".", label=name)
    ax.set(xlabel="index", ylabel="singular value / largest", yscale="log")
    ax.set_title("latent covariance spectrum (IRMAE, 8x8 digits)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{stem}_spectra.png", dpi=120)
    plt.close(fig)

    a, b = x_test[0:1], x_test[1:2]
    alphas = jnp.linspace(0.0, 1.0, 8)[:, None]
    fig, axes = plt.subplots(len(params), 8, figsize=(8, 1.1 * len(params)))
    for row, (k, p) in enumerate(params.items()):
        images = decode(p, (1 - alphas) * encode(p, a) + alphas * encode(p, b))
        for col in range(8):
            axes[row, col].imshow(np.asarray(images[col]).reshape(8, 8), cmap="gray_r")
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
        axes[row, 0].set_ylabel(f"k={k}")
    fig.suptitle("decoded linear interpolations between two test digits")
    fig.tight_layout()
    fig.savefig(f"{stem}_interpolation.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
