r"""Workload (d): decoupled scalar modes, $\dot a = (s - ab)\,b$ and $\dot b = (s - ab)\,a$.

The closed form `linflow.scalar_mode` evaluates each pair at the save times directly; the peers
integrate all pairs at once (one state of shape `(N,)` per variable) with a hand-written RK4 in
a jitted `lax.scan` and with diffrax Tsit5 at a constant step.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp

import linflow

from ._common import max_abs_diff, measure, with_ratios

FLOPS_PER_RK4_STEP = 52  # four evaluations of the 2-D field plus the stage combinations


def _field(a, b, s):
    e = s - a * b
    return e * b, e * a


@jax.jit
def _closed_form(ts, s, a0, b0):
    return linflow.scalar_mode(ts.reshape(-1, 1), s[None], a0[None], b0[None])


def _rk4_scan(s, a0, b0, dt, steps_per_save: int, saves: int):
    def rk4(carry, _):
        a, b = carry
        k1 = _field(a, b, s)
        k2 = _field(a + 0.5 * dt * k1[0], b + 0.5 * dt * k1[1], s)
        k3 = _field(a + 0.5 * dt * k2[0], b + 0.5 * dt * k2[1], s)
        k4 = _field(a + dt * k3[0], b + dt * k3[1], s)
        a = a + dt / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        b = b + dt / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        return (a, b), None

    def save(carry, _):
        carry, _ = jax.lax.scan(rk4, carry, None, length=steps_per_save)
        return carry, carry

    _, (a, b) = jax.lax.scan(save, (a0, b0), None, length=saves - 1)
    return jnp.concatenate([a0[None], a]), jnp.concatenate([b0[None], b])


_rk4 = jax.jit(_rk4_scan, static_argnums=(4, 5))


@jax.jit
def _diffrax_fixed(ts, s, a0, b0, dt):
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, s: _field(*y, s)),
        diffrax.Tsit5(),
        t0=ts[0],
        t1=ts[-1],
        dt0=dt,
        y0=(a0, b0),
        args=s,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=None,  # unbounded while loop: the fastest diffrax configuration here
        throw=False,
    )
    return sol.ys


def run(config: dict, *, repeats: int, budget_s: float) -> dict:
    n, saves, t1, dt = config["pairs"], config["saves"], config["t1"], config["dt"]
    steps_per_save = int(round(t1 / dt / (saves - 1)))
    key_s, key_a, key_b = jax.random.split(jax.random.key(0), 3)
    s = jax.random.uniform(key_s, (n,), jnp.float32, 0.5, 3.0)
    # Small, unbalanced, same-sign starts (as from an aligned initialisation); starts with
    # a0 close to -b0 sit near the saddle and amplify float32 rounding.
    a0 = jax.random.uniform(key_a, (n,), jnp.float32, 0.005, 0.015)
    b0 = jax.random.uniform(key_b, (n,), jnp.float32, 0.005, 0.015)
    ts = jnp.linspace(0.0, t1, saves, dtype=jnp.float32)
    dt32 = jnp.asarray(dt, jnp.float32)
    peers = {}
    peers["linflow"], (a_ref, _) = measure(
        lambda: _closed_form(ts, s, a0, b0), repeats=repeats, budget_s=budget_s
    )
    peers["rk4_lax_scan"], (a_rk4, _) = measure(
        lambda: _rk4(s, a0, b0, dt32, steps_per_save, saves), repeats=repeats, budget_s=budget_s
    )
    peers["diffrax_tsit5_fixed"], (a_dfx, _) = measure(
        lambda: _diffrax_fixed(ts, s, a0, b0, dt32), repeats=repeats, budget_s=budget_s
    )
    steps = steps_per_save * (saves - 1)
    for name, a in (("rk4_lax_scan", a_rk4), ("diffrax_tsit5_fixed", a_dfx)):
        peers[name]["max_abs_diff_vs_closed_form"] = max_abs_diff(a, a_ref)
        peers[name]["mode_steps_per_s"] = n * steps / peers[name]["time_s"]
    peers["rk4_lax_scan"]["gflop_per_s"] = (
        FLOPS_PER_RK4_STEP * n * steps / peers["rk4_lax_scan"]["time_s"] / 1e9
    )
    return {
        "description": "N decoupled scalar modes evaluated at T times, float32",
        "unit": "mode-values/s (N x T per call)",
        "dtype": "float32",
        "peers": {
            "linflow": "linflow.scalar_mode (closed form), jitted, at the T times",
            "rk4_lax_scan": "hand-written RK4 in a jitted lax.scan, all pairs as one state",
            "diffrax_tsit5_fixed": "diffrax.diffeqsolve, Tsit5, ConstantStepSize, one state",
        },
        "cases": [
            {
                "sizes": {"N": n, "T": saves, "t1": t1, "dt": dt, "steps": steps},
                "peers": with_ratios(peers, work=n * saves),
            }
        ],
    }
