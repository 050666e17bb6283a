r"""The `linflow` command line (also `python -m linflow`).

`linflow demo --out DIR` trains three networks on the hierarchy of Saxe, McClelland &
Ganguli (2019) with all three engines, and writes `modes.png`, `loss.png` and
`summary.json` to `DIR`, checking the engines against each other and against the closed forms.
`linflow run CONFIG.toml` runs a sweep (see `linflow._sweep`), `linflow plot RESULTS_DIR` draws it.

JAX is imported only by the command that needs it, so `linflow --help` and `--version` answer
at once. Every error a user can cause (a bad config or folder, a damaged result file) is
reported in one line on stderr, naming the file or key, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from ._config import schema_help

_LR = 0.01
_TAU = 1.0 / _LR  # gradient flow time then counts gradient-descent steps
# The slowest mode (s = 1) is half-learned after (tau / 2s) ln((s - u0) / u0) ≈ 345 steps
# from u0 = 1e-3 and within 1% of s by ~580; 1000 steps show every mode at rest.
_STEPS = 1000
_SAVE_EVERY = 5
_U0 = 1e-3
_HIDDEN = 16
_SEED = 0
_RTOL, _ATOL = 1e-8, 1e-10

# name -> (plot title, hidden widths, init scheme, init scale)
_NETWORKS = {
    "deep_aligned": (
        f"deep (2 layers), aligned start $u_0 = {_U0:g}$",
        _HIDDEN,
        "aligned",
        math.sqrt(_U0),  # each layer carries sqrt(u0), so the product's modes start at u0
    ),
    "deep_random": ("deep (2 layers), random start", _HIDDEN, "gaussian", 0.02),
    "shallow": ("shallow (1 layer)", (), "gaussian", 1e-3),
}
_ENGINE_NAMES = {"gd": "gradient descent", "flow": "gradient flow", "exact": "exact flow"}
_PAIRS = (("gd", "flow"), ("flow", "exact"), ("gd", "exact"))

_RUN_EPILOG = """\
Sharing the work: --part K/N runs chunks K, K+N, K+2N, ... (in file order) of the sweep, so N
jobs (on one machine or many sharing the folder) together write the files of one run. In a
SLURM job array, K/N come from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT when --part is
not given. A folder belongs to one config: a run of another config into it fails at once.

"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="linflow", description="Learning dynamics of deep linear networks in JAX."
    )
    parser.add_argument("--version", action="version", version=f"linflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train deep and shallow networks on the Saxe et al. (2019) hierarchy",
        description="Compare gradient descent, gradient flow and the exact solution on the "
        "Saxe et al. (2019) hierarchy, for a deep network (aligned and random starts) and a "
        "shallow one; writes modes.png, loss.png and summary.json.",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("linflow-demo"),
        help="output folder (default: linflow-demo)",
    )
    run = commands.add_parser(
        "run",
        help="run a sweep described by a TOML config (resumable, sharded over devices)",
        description="Run every (scheme, scale) of CONFIG over its batch of initialisations, "
        "written in verified chunks to the results folder; rerun to resume after an "
        "interruption (damaged chunks are computed again).",
        epilog=_RUN_EPILOG + schema_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("config", type=Path, help="the sweep's TOML file")
    run.add_argument(
        "--out", type=Path, default=None, help="results folder (default: CONFIG without .toml)"
    )
    run.add_argument(
        "--part",
        default=None,
        metavar="K/N",
        help="run only share K of N of the chunks (1 <= K <= N)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the folder's results first if they belong to a different config",
    )
    run.add_argument(
        "--memory",
        default=None,
        metavar="SIZE",
        help="memory a chunk may use, e.g. 8G or 500M (default: half the free memory)",
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    plot_parser = commands.add_parser(
        "plot",
        help="draw the standard figures of a sweep's results",
        description="Write loss.png, modes.png and learning_times.png for RESULTS_DIR.",
    )
    plot_parser.add_argument("results", type=Path, help="results folder of `linflow run`")
    plot_parser.add_argument(
        "--out", type=Path, default=None, help="folder for the figures (default: RESULTS_DIR)"
    )
    return parser


def main(argv=None) -> int:
    """Entry point of the `linflow` script; `argv` defaults to `sys.argv[1:]`."""
    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *_, **__: print(
                f"linflow {args.command}: warning: {message}", file=sys.stderr
            )
            if args.command == "demo":
                from ._folder import make_folder

                make_folder(args.out)  # before the computation, not after it
                _demo(args.out)
            elif args.command == "run":
                _run(args)
            else:
                _plot(args.results, args.out or args.results)
    except (ValueError, OSError, RuntimeError, MemoryError) as error:
        print(f"linflow {args.command}: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = "; run it again to resume" if args.command == "run" else ""
        print(f"linflow {args.command}: interrupted{again}", file=sys.stderr)
        return 130
    return 0


def _one_line(error: BaseException) -> str:
    """An exception as one line: `FILE: reason` for an OS error, bullet lines joined by `;`."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    if isinstance(error, MemoryError):
        return "out of memory; set a smaller [output] chunk or --memory"
    lines = [line.strip().removeprefix("- ") for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    return "; ".join(lines) or type(error).__name__


def _run(args) -> None:
    """`linflow run`: check the command line, then `run_sweep`."""
    config = args.config
    if args.out is None:
        if config.suffix != ".toml":
            raise ValueError(
                f"{config}: the results folder is named after a CONFIG ending in .toml; "
                "give one, or pass --out"
            )
        out = config.with_suffix("")
    else:
        out = args.out
    part = _part(args.part)
    memory = None if args.memory is None else _size(args.memory)
    from ._sweep import run_sweep

    done = run_sweep(
        config,
        out,
        part=part,
        overwrite=args.overwrite,
        memory=memory,
        progress=not args.no_progress,
    )
    share = "" if part is None else f" (part {part[0]}/{part[1]})"
    again = f", {len(done['recomputed'])} of them damaged before" if done["recomputed"] else ""
    print(
        f"{out}: {len(done['computed'])} chunks computed{again}, "
        f"{len(done['skipped'])} already done{share}"
    )


def _part(text: str | None) -> tuple[int, int] | None:
    """`--part K/N`, or the share of a SLURM job array, or None (all chunks)."""
    if text is not None:
        k, _, n = text.partition("/")
        if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
            raise ValueError(f"--part {text}: must be K/N with 1 <= K <= N, e.g. 2/3")
        return int(k), int(n)
    env = os.environ
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    try:
        task, count = int(env["SLURM_ARRAY_TASK_ID"]), int(env["SLURM_ARRAY_TASK_COUNT"])
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1"))
    except ValueError:
        raise ValueError("SLURM_ARRAY_TASK_* variables must be integers") from None
    k = (task - first) // max(step, 1) + 1
    if not 1 <= k <= count or (task - first) % max(step, 1):
        raise ValueError(
            f"SLURM_ARRAY_TASK_ID={task} is not one of {count} evenly spaced tasks from "
            f"SLURM_ARRAY_TASK_MIN={first}; pass --part K/N"
        )
    return k, count


def _size(text: str) -> int:
    """`--memory`: bytes, or a number with a unit K, M, G, T (powers of 1024; `iB`/`B` ok)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    number = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = number[-1:] if number[-1:] in units else ""
    try:
        value = float(number[: len(number) - len(unit)]) * units[unit]
    except ValueError:
        value = 0
    if not value >= 1:
        raise ValueError(f"--memory {text}: must be a size such as 8G, 500M or 2000000000")
    return int(value)


def _plot(results: Path, out: Path) -> None:
    """`linflow plot`: loss, mode strengths and learning times of every (scheme, scale)."""
    from matplotlib.figure import Figure

    from . import plot
    from ._folder import make_folder
    from ._sweep import load_sweep

    sweep = load_sweep(results)
    make_folder(out)
    missing = sum(len(r["missing"]) for r in sweep)
    if missing:
        example = next(r["missing"][0] for r in sweep if r["missing"])
        warnings.warn(f"{results}: {missing} chunk file(s) missing (e.g. {example})")
    drawn = [r for r in sweep if "ts" in r]
    if not drawn:
        raise ValueError(f"{results}: no chunk files yet; nothing to plot")
    figures = {}
    if "loss" in drawn[0]:
        figure = Figure(figsize=(7, 4.5), layout="constrained")
        plot.sweep_loss(sweep, ax=figure.subplots())
        figures["loss.png"] = figure
    for name, key, draw in (
        ("modes.png", "mode_strengths", plot.sweep_mode_strengths),
        ("learning_times.png", "learning_times", plot.sweep_learning_times),
    ):
        if key in drawn[0]:
            figure = Figure(figsize=(5 * len(drawn), 4), layout="constrained")
            for ax, result in zip(np.atleast_1d(figure.subplots(1, len(drawn))), drawn):
                draw(result, ax=ax)
            figures[name] = figure
    if missing:
        total = missing + sum(r["chunks"] for r in sweep)
        for figure in figures.values():
            figure.suptitle(
                f"incomplete sweep: {missing} of {total} chunk files missing", color="red"
            )
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=110)
        print(f"wrote {out / name}")


def _demo(out: Path) -> None:
    import jax

    from ._exact import saxe_deep, shallow, time_to_learn
    from ._init import init_weights
    from .tasks import saxe_hierarchy

    # float64 throughout, so that flow and exact solution agree to the solver tolerance; the
    # context manager leaves the caller's configuration untouched.
    print(
        f"linflow demo: {len(_NETWORKS)} networks x {len(_ENGINE_NAMES)} engines on the "
        f"Saxe et al. (2019) hierarchy, {_STEPS} steps of lr = {_LR} (float64); the first "
        "call of each engine includes compilation",
        flush=True,
    )
    with jax.enable_x64(True):
        task, items, properties = saxe_hierarchy()
        s = task.modes()[1]
        keys = jax.random.split(jax.random.key(_SEED), len(_NETWORKS))
        runs = {
            name: _run_engines(
                name, task, init_weights(key, task, hidden, scheme=scheme, scale=scale)
            )
            for key, (name, (_, hidden, scheme, scale)) in zip(keys, _NETWORKS.items())
        }
        ts = runs["deep_aligned"]["gd"].ts
        b0 = runs["shallow"]["gd"].mode_strengths(task)[0]
        # Closed forms for the mode strengths, shape (T, k): the deep aligned network is
        # balanced with u(0) = u0 in every mode; the shallow one relaxes from b0.
        analytic = {
            "deep_aligned": ("saxe_deep", saxe_deep(ts[:, None], s[None, :], _U0, _TAU)),
            "shallow": ("shallow", shallow(ts[:, None], s[None, :], b0[None, :], _TAU)),
        }
        predictions = {
            "deep_aligned": ("time_to_learn(s, u0, tau)", time_to_learn(s, _U0, _TAU)),
            "shallow": ("time_to_learn(s, b0, tau, depth=1)", time_to_learn(s, b0, _TAU, depth=1)),
        }
        summary = {
            "task": {
                "name": "saxe_hierarchy",
                "items": list(items),
                "properties": list(properties),
                "singular_values": _floats(s),
            },
            "settings": {
                "lr": _LR,
                "tau": _TAU,
                "steps": _STEPS,
                "save_every": _SAVE_EVERY,
                "u0": _U0,
                "hidden": _HIDDEN,
                "seed": _SEED,
                "flow_rtol": _RTOL,
                "flow_atol": _ATOL,
                "dtype": str(s.dtype),
            },
            "networks": {
                name: _network_summary(task, runs[name], predictions.get(name), analytic.get(name))
                for name in _NETWORKS
            },
        }
        paths = _write(out, task, runs, analytic, summary)
    for path in paths:
        print(f"wrote {path}")
    print(_table(summary))


def _run_engines(network: str, task, weights0) -> dict:
    """Trajectories of the three engines (or why `exact_flow` has none), with wall times; one
    printed line per engine."""
    from ._descent import gradient_descent
    from ._exact import exact_flow
    from ._flow import gradient_flow

    runs = {"first_call_s": {}, "wall_time_s": {}}
    engines = {
        "gd": lambda: gradient_descent(
            task, weights0, steps=_STEPS, lr=_LR, save_every=_SAVE_EVERY
        ),
        "flow": lambda: gradient_flow(
            task, weights0, runs["gd"].ts, tau=_TAU, rtol=_RTOL, atol=_ATOL
        ),
        "exact": lambda: exact_flow(task, weights0, runs["gd"].ts, tau=_TAU),
    }
    for name, engine in engines.items():
        label = f"{network:<13} {_ENGINE_NAMES[name]:<17}"
        try:
            # The first call includes compilation (what a user waits for once per shape);
            # the second is the cost of the computation itself.
            runs["first_call_s"][name], runs[name] = _timed(engine)
        except ValueError as error:
            runs["reasons"], runs["skipped"] = _no_closed_form(str(error))
            print(f"{label} {runs['skipped']}", flush=True)
            continue
        runs["wall_time_s"][name] = _timed(engine)[0]
        print(
            f"{label} first call {runs['first_call_s'][name]:5.2f} s, "
            f"then {1e3 * runs['wall_time_s'][name]:6.1f} ms",
            flush=True,
        )
    return runs


def _no_closed_form(message: str) -> tuple[list[str], str]:
    """`exact_flow`'s error, which lists each closed form's failed condition on its own line, as
    that list and a short reason: the failed conditions of the forms of the right depth, each up
    to its colon ("not aligned", "not balanced")."""
    reasons = [line.strip(" -") for line in message.splitlines()[1:]] or [message]
    short = []
    for reason in reasons:
        condition = reason.split(": ", 1)[-1].split(":")[0]
        if not condition.startswith("needs depth") and condition not in short:
            short.append(condition)
    return reasons, "no closed form: " + ", ".join(short)


def _timed(fn):
    """`(seconds, result)` of calling `fn`, waiting for JAX to finish."""
    import jax

    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    return time.perf_counter() - start, result


def _network_summary(task, runs, prediction, analytic) -> dict:
    """Plain-JSON results of one network: per engine, between engines, against closed forms."""
    engines = [name for name in _ENGINE_NAMES if name in runs]
    strengths = {name: runs[name].mode_strengths(task) for name in engines}
    summary = {
        "depth": runs["gd"].depth,
        "engines": {
            name: {
                "final_loss": float(runs[name].loss(task)[-1]),
                "half_times": [
                    float(t) if np.isfinite(t) else None  # never learned within the run
                    for t in np.asarray(runs[name].learning_times(task)[..., 0])
                ],
                "wall_time_s": runs["wall_time_s"][name],
                "first_call_s": runs["first_call_s"][name],
            }
            for name in engines
        },
        "max_disagreement": {
            f"{a}_vs_{b}": {
                "product": _max_abs(runs[a].product(), runs[b].product()),
                "mode_strengths": _max_abs(strengths[a], strengths[b]),
            }
            for a, b in _PAIRS
            if a in runs and b in runs
        },
    }
    if "skipped" in runs:
        summary["engines"]["exact"] = runs["skipped"]
        summary["closed_form_reasons"] = runs["reasons"]
    if prediction is not None:
        formula, times = prediction
        summary["predicted_half_times"] = {"formula": formula, "values": _floats(times)}
    if analytic is not None:
        formula, values = analytic
        reference = "exact" if "exact" in strengths else "flow"
        summary["analytic_mode_strengths"] = {
            "formula": formula,
            f"max_abs_vs_{reference}": _max_abs(values, strengths[reference]),
        }
    return summary


def _write(out: Path, task, runs, analytic, summary) -> list[Path]:
    """Write `modes.png`, `loss.png` (one panel per network) and `summary.json`."""
    from matplotlib.figure import Figure

    from . import plot

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "modes.png", out / "loss.png", out / "summary.json"]
    modes_figure = Figure(figsize=(16, 6), layout="constrained")
    loss_figure = Figure(figsize=(16, 4.5), layout="constrained")
    modes_axes = modes_figure.subplots(1, len(_NETWORKS), sharey=True)
    loss_axes = loss_figure.subplots(1, len(_NETWORKS), sharey=True)
    for modes_ax, loss_ax, (name, (title, *_)) in zip(modes_axes, loss_axes, _NETWORKS.items()):
        trajectories = {
            label: runs[name][key] for key, label in _ENGINE_NAMES.items() if key in runs[name]
        }
        curves = (
            {analytic[name][0]: (runs[name]["gd"].ts, analytic[name][1])}
            if name in analytic
            else None
        )
        plot.mode_strengths(trajectories, task, analytic=curves, ax=modes_ax, title=title)
        plot.loss(trajectories, task, ax=loss_ax)
        loss_ax.set_title(title)
        for ax in (modes_ax, loss_ax):
            ax.set_xlabel(
                rf"time (gradient-descent steps; the flows use $\tau = 1/\eta = {_TAU:g}$)"
            )
            if ax not in (modes_axes[0], loss_axes[0]):
                ax.set_ylabel("")
    modes_figure.suptitle("Saxe et al. (2019) hierarchy: mode strengths")
    loss_figure.suptitle(
        "Saxe et al. (2019) hierarchy: loss (linear axis; dotted: plateaus of the deep network)"
    )
    modes_figure.savefig(paths[0], dpi=110)
    loss_figure.savefig(paths[1], dpi=110)
    paths[2].write_text(json.dumps(summary, indent=2) + "\n")
    return paths


def _table(summary) -> str:
    """One line per network and engine: final loss, half-learning times, wall times."""
    k = len(summary["task"]["singular_values"])
    header = (
        f"{'network':<13} {'engine':<10} {'final loss':>10}  {'t(u = s/2) per mode':<{8 * k}}"
        f"  {'1st call (s)':>12} {'run (ms)':>9}"
    )
    lines = [header, "-" * len(header)]
    for network, result in summary["networks"].items():
        for engine, row in result["engines"].items():
            if isinstance(row, str):
                lines.append(f"{network:<13} {engine:<10} {row}")
                continue
            times = "".join(
                f"{t:8.1f}" if t is not None else f"{'never':>8}" for t in row["half_times"]
            )
            lines.append(
                f"{network:<13} {engine:<10} {row['final_loss']:10.2e}  {times}"
                f"  {row['first_call_s']:12.2f} {1e3 * row['wall_time_s']:9.1f}"
            )
        if "predicted_half_times" in result:
            times = "".join(f"{t:8.1f}" for t in result["predicted_half_times"]["values"])
            lines.append(f"{network:<13} {'predicted':<10} {'':>10}  {times}")
    return "\n".join(lines)


def _floats(x) -> list[float]:
    """A JAX or NumPy array as a flat list of Python floats (for JSON)."""
    return [float(v) for v in np.asarray(x).ravel()]


def _max_abs(a, b) -> float:
    """Largest absolute difference over time, batch and entries."""
    import jax.numpy as jnp

    return float(jnp.max(jnp.abs(a - b)))
