r"""Sweeps from a TOML file: many initialisations, written in chunks, resumable, sharded.

`linflow run CONFIG.toml` reads a config such as

```toml
[task]
name = "saxe_hierarchy"        # | "semantic_hierarchy" | "binary_tree" | "random"

[network]
hidden = 16                    # or a list of widths, e.g. [16, 16] for three layers

[init]
schemes = ["balanced", "gaussian"]
scales = [1e-3, 1e-2]
batch = 10000                  # initialisations per (scheme, scale)
seed = 0

[engine]
name = "gradient_flow"         # | "gradient_descent" | "exact_flow"
tau = 1.0

[times]
t1 = 12.0
num = 121

[output]
chunk = 1000                   # initialisations per file
save = ["loss", "mode_strengths", "learning_times"]
```

and writes, for every combination of scheme and scale, the batch in chunks
`chunk-CCC-JJJJJ.npz` (combination `C`, chunk `J`) next to `sweep.json` (the config and
layout). Each chunk file is written to a temporary file and renamed, so a file that exists is
complete: an interrupted sweep restarted with the same config skips the finished chunks.
Each chunk's batch axis is sharded over all JAX devices.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import tasks
from ._descent import gradient_descent
from ._exact import exact_flow
from ._flow import gradient_flow
from ._init import SCHEMES, init_weights
from ._progress import progress_bar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_REQUIRED = object()
_NUMBER = (int, float)
# section -> key -> (accepted types, default)
_SCHEMA = {
    "task": {
        "name": (str, _REQUIRED),
        "depth": (int, 3),
        "noise": (_NUMBER, 0.0),
        "singular_values": (list, None),
        "output_dim": (int, None),
        "input_dim": (int, None),
        "seed": (int, 0),
    },
    "network": {"hidden": ((int, list), _REQUIRED)},
    "init": {
        "schemes": (list, _REQUIRED),
        "scales": (list, _REQUIRED),
        "lam": (_NUMBER, 0.0),
        "batch": (int, _REQUIRED),
        "seed": (int, 0),
    },
    "engine": {
        "name": (str, _REQUIRED),
        "lr": (_NUMBER, None),
        "steps": (int, None),
        "save_every": (int, 1),
        "tau": (_NUMBER, 1.0),
        "rtol": (_NUMBER, 1e-6),
        "atol": (_NUMBER, 1e-8),
    },
    "times": {"t1": (_NUMBER, None), "num": (int, 101)},
    "output": {
        "chunk": (int, 1000),
        "save": (list, ["loss", "mode_strengths", "learning_times"]),
        "dtype": (str, "float64"),
    },
}
_TASKS = ("saxe_hierarchy", "semantic_hierarchy", "binary_tree", "random")
_ENGINES = ("gradient_descent", "gradient_flow", "exact_flow")
_OUTPUTS = ("loss", "mode_strengths", "singular_values", "learning_times", "weights")
_DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """A malformed sweep config; the message names the offending key."""


def load_config(path) -> dict:
    r"""Read and validate a sweep config (TOML), filling in defaults.

    **Arguments:** `path` of the TOML file.

    **Returns:** a dict of sections (`task`, `network`, `init`, `engine`, `times`, `output`),
    each a dict with every key present.

    **Raises:** `ConfigError` (a `ValueError`) naming the key that is missing, unknown, of the
    wrong type or out of range, e.g. `config.toml: [init] scales must be a non-empty list of
    positive numbers`.

    **Example:**

    ```python
    config = linflow.load_config("sweep.toml")
    ```
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return validate_config(raw, where=str(path))


def validate_config(raw: dict, where: str = "config") -> dict:
    """`load_config` for an already parsed dict."""

    def fail(message):
        raise ConfigError(f"{where}: {message}")

    for section in raw:
        if section not in _SCHEMA:
            fail(f"unknown section [{section}] (expected one of {', '.join(_SCHEMA)})")
    config = {}
    for section, keys in _SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            fail(f"[{section}] must be a table")
        for key in given:
            if key not in keys:
                fail(f"unknown key [{section}] {key} (expected one of {', '.join(keys)})")
        config[section] = {}
        for key, (types, default) in keys.items():
            if key not in given:
                if default is _REQUIRED:
                    fail(f"missing key [{section}] {key}")
                config[section][key] = list(default) if isinstance(default, list) else default
                continue
            value = given[key]
            if isinstance(value, bool) or not isinstance(value, types):
                names = (
                    types.__name__
                    if isinstance(types, type)
                    else " or ".join(t.__name__ for t in types)
                )
                fail(f"[{section}] {key} must be {names}, got {value!r}")
            config[section][key] = value

    def check(ok, section, key, what):
        if not ok:
            fail(f"[{section}] {key} {what}, got {config[section][key]!r}")

    task, init, engine, times, output = (
        config[s] for s in ("task", "init", "engine", "times", "output")
    )
    check(task["name"] in _TASKS, "task", "name", f"must be one of {_TASKS}")
    if task["name"] == "random":
        for key in ("singular_values", "output_dim", "input_dim"):
            check(task[key] is not None, "task", key, "is needed for name = 'random'")
    check(task["depth"] >= 1, "task", "depth", "must be >= 1")
    check(0 <= task["noise"] < 1, "task", "noise", "must lie in [0, 1)")
    hidden = config["network"]["hidden"]
    widths = [hidden] if isinstance(hidden, int) else hidden
    check(
        all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in widths),
        "network",
        "hidden",
        "must be a positive int or a list of them",
    )
    check(
        len(init["schemes"]) > 0 and all(s in SCHEMES for s in init["schemes"]),
        "init",
        "schemes",
        f"must be a non-empty list of {SCHEMES}",
    )
    check(
        len(init["scales"]) > 0
        and all(
            isinstance(s, _NUMBER) and not isinstance(s, bool) and s > 0 for s in init["scales"]
        ),
        "init",
        "scales",
        "must be a non-empty list of positive numbers",
    )
    check(init["batch"] >= 1, "init", "batch", "must be >= 1")
    check(engine["name"] in _ENGINES, "engine", "name", f"must be one of {_ENGINES}")
    if engine["name"] == "gradient_descent":
        check(engine["lr"] is not None and engine["lr"] > 0, "engine", "lr", "must be > 0")
        check(
            engine["steps"] is not None and engine["steps"] >= 1, "engine", "steps", "must be >= 1"
        )
        check(
            engine["save_every"] >= 1 and engine["steps"] % engine["save_every"] == 0,
            "engine",
            "save_every",
            "must be >= 1 and divide steps",
        )
    else:
        check(times["t1"] is not None and times["t1"] > 0, "times", "t1", "must be > 0")
        check(times["num"] >= 2, "times", "num", "must be >= 2")
    check(engine["tau"] > 0, "engine", "tau", "must be > 0")
    check(output["chunk"] >= 1, "output", "chunk", "must be >= 1")
    check(
        all(s in _OUTPUTS for s in output["save"]),
        "output",
        "save",
        f"must list some of {_OUTPUTS}",
    )
    check(output["dtype"] in _DTYPES, "output", "dtype", f"must be one of {_DTYPES}")
    return config


def _build_task(config: dict):
    spec = config["task"]
    dtype = jnp.dtype(config["output"]["dtype"])
    name = spec["name"]
    if name == "saxe_hierarchy":
        return tasks.saxe_hierarchy(dtype)[0]
    if name == "semantic_hierarchy":
        return tasks.semantic_hierarchy(dtype)[0]
    if name == "binary_tree":
        key = jax.random.key(spec["seed"])
        return tasks.binary_tree(spec["depth"], noise=spec["noise"], key=key, dtype=dtype)[0]
    return tasks.random_task(
        jax.random.key(spec["seed"]),
        spec["singular_values"],
        spec["output_dim"],
        spec["input_dim"],
        dtype,
    )


def _layout(config: dict) -> list[dict]:
    """Every chunk of the sweep: its combination of scheme and scale, and its size."""
    init, chunk = config["init"], config["output"]["chunk"]
    rest = init["batch"] % chunk
    sizes = [chunk] * (init["batch"] // chunk) + ([rest] if rest else [])
    jobs = []
    combos = [(scheme, scale) for scheme in init["schemes"] for scale in init["scales"]]
    for c, (scheme, scale) in enumerate(combos):
        for j, size in enumerate(sizes):
            jobs.append({"combo": c, "chunk": j, "scheme": scheme, "scale": scale, "size": size})
    return jobs


def _chunk_path(out: Path, job: dict) -> Path:
    return out / f"chunk-{job['combo']:03d}-{job['chunk']:05d}.npz"


def _write_atomic(path: Path, write) -> None:
    """Write through `write(file)` to a temporary file beside `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _shard(weights, padded: int):
    """Pad the batch to `padded` initialisations and shard it over a 1-D mesh of all devices."""
    size = weights[0].shape[0]
    # Padding repeats real initialisations, so no extra trajectory changes a shared step size.
    index = np.arange(padded) % size
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    host = [np.asarray(w)[index] for w in weights]
    # make_array_from_callback builds global arrays on one host or many (jax.distributed).
    return tuple(jax.make_array_from_callback(w.shape, sharding, lambda i, w=w: w[i]) for w in host)


def _to_host(x) -> np.ndarray:
    if jax.process_count() > 1:  # pragma: no cover - needs several hosts
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _run_chunk(config: dict, task, job: dict) -> dict:
    init, engine = config["init"], config["engine"]
    key = jax.random.fold_in(
        jax.random.fold_in(jax.random.key(init["seed"]), job["combo"]), job["chunk"]
    )
    lam = init["lam"] if job["scheme"] in ("lambda_balanced", "aligned") else 0.0
    weights0 = init_weights(
        key,
        task,
        tuple(np.atleast_1d(config["network"]["hidden"])),
        scheme=job["scheme"],
        scale=job["scale"],
        batch=(job["size"],),
        lam=lam,
    )
    # Every chunk is padded to the same size, a multiple of the device count: one compilation.
    n_devices = jax.device_count()
    weights0 = _shard(weights0, -(-config["output"]["chunk"] // n_devices) * n_devices)
    name = engine["name"]
    if name == "gradient_descent":
        traj = gradient_descent(
            task, weights0, steps=engine["steps"], lr=engine["lr"], save_every=engine["save_every"]
        )
    else:
        times = config["times"]
        ts = jnp.linspace(0.0, times["t1"], times["num"], dtype=weights0[0].dtype)
        if name == "gradient_flow":
            traj = gradient_flow(
                task, weights0, ts, tau=engine["tau"], rtol=engine["rtol"], atol=engine["atol"]
            )
        else:
            traj = exact_flow(task, weights0, ts, tau=engine["tau"])
    size = job["size"]
    arrays = {"ts": _to_host(traj.ts)}
    save = config["output"]["save"]
    if "loss" in save:
        arrays["loss"] = _to_host(traj.loss(task))[:, :size]
    if "mode_strengths" in save:
        arrays["mode_strengths"] = _to_host(traj.mode_strengths(task))[:, :size]
    if "singular_values" in save:
        arrays["singular_values"] = _to_host(traj.singular_values(task))[:, :size]
    if "learning_times" in save:
        arrays["learning_times"] = _to_host(traj.learning_times(task)[..., 0])[:size]
    if "weights" in save:
        for l, w in enumerate(traj.weights, start=1):
            arrays[f"W{l}"] = _to_host(w)[:, :size]
    return arrays


def run_sweep(config, out, *, progress: bool = True, on_chunk=None) -> dict:
    r"""Run a sweep: every (scheme, scale) of `config`, its batch in chunks, sharded over devices.

    Chunks already in `out` (from an interrupted run of the same config) are skipped; new
    ones are written atomically (temporary file, then `os.replace`). The initialisations of
    chunk $j$ of combination $c$ come from `fold_in(fold_in(key(seed), c), j)`, so results
    depend on the config alone, not on the device count or on interruptions.

    For several hosts, call `jax.distributed.initialize()` first (see the README): every
    process runs the same sweep over the global devices, and process 0 writes the files.

    **Arguments:**

    - `config`: a path to a TOML file, or a dict as returned by `load_config`.
    - `out`: the results folder (created if needed).
    - `progress`: show a progress bar over the chunks.
    - `on_chunk`: optional callback `on_chunk(job, path)` after each chunk is written.

    **Returns:** `{"computed": [...], "skipped": [...]}`, the chunk files of this run.

    **Raises:** `ConfigError` for a malformed config, `ValueError` if `out` holds the results
    of a different config.

    **Example:**

    ```python
    linflow.run_sweep("sweep.toml", "results")
    ```
    """
    if not isinstance(config, dict):
        config = load_config(config)
    out = Path(out)
    writer = jax.process_index() == 0
    with jax.enable_x64(config["output"]["dtype"] == "float64"):
        task = _build_task(config)
        jobs = _layout(config)
        manifest = {"config": config, "chunks": jobs}
        path = out / "sweep.json"
        same = path.exists() and json.loads(path.read_text())["config"] == json.loads(
            json.dumps(config)
        )
        if not same and any(out.glob("chunk-*.npz")):
            raise ValueError(
                f"run_sweep: {out} holds the results of a different config; "
                "use another output folder."
            )
        if not same and writer:
            out.mkdir(parents=True, exist_ok=True)
            text = json.dumps(manifest, indent=2) + "\n"
            _write_atomic(path, lambda f: f.write(text.encode()))
        done = {"computed": [], "skipped": []}
        with progress_bar(progress, len(jobs), "linflow run") as bar:
            for job in jobs:
                chunk_path = _chunk_path(out, job)
                if chunk_path.exists():
                    done["skipped"].append(chunk_path.name)
                    bar.update(1)
                    continue
                arrays = _run_chunk(config, task, job)
                if writer:
                    _write_atomic(chunk_path, lambda f: np.savez(f, **arrays))
                done["computed"].append(chunk_path.name)
                bar.update(1)
                if on_chunk is not None:
                    on_chunk(job, chunk_path)
    if writer:  # only the writer's temporary files: another host may still be writing one
        for stale in out.glob("*.tmp"):  # left by a run killed while writing
            stale.unlink(missing_ok=True)
    return done


def load_sweep(out) -> list[dict]:
    r"""Read the results of a sweep, one entry per (scheme, scale), chunks joined along the batch.

    **Arguments:** `out`, the results folder of `run_sweep` / `linflow run`.

    **Returns:** a list of dicts with `scheme`, `scale`, `complete` (whether every chunk is
    there), `singular_values` of the task (`(k,)`), and the saved arrays: `ts` `(T,)`,
    `loss` `(T, B)`, `mode_strengths` and `singular_values_t` `(T, B, k)`,
    `learning_times` `(B, k)`, `W1`, ... `(T, B, rows, cols)`.

    **Raises:** `ValueError` if `out` holds no sweep.

    **Example:**

    ```python
    for result in linflow.load_sweep("results"):
        print(result["scheme"], result["scale"], np.median(result["learning_times"], 0))
    ```
    """
    out = Path(out)
    path = out / "sweep.json"
    if not path.exists():
        raise ValueError(f"load_sweep({str(out)!r}): no sweep.json there; is it a results folder?")
    manifest = json.loads(path.read_text())
    config = manifest["config"]
    with jax.enable_x64(config["output"]["dtype"] == "float64"):
        s = np.asarray(_build_task(config).modes()[1])
    by_combo = {}
    for job in manifest["chunks"]:
        by_combo.setdefault(job["combo"], []).append(job)
    results = []
    for jobs in by_combo.values():
        files = [_chunk_path(out, job) for job in jobs]
        present = [_read_npz(f) for f in files if f.exists()]
        result = {
            "scheme": jobs[0]["scheme"],
            "scale": jobs[0]["scale"],
            "complete": len(present) == len(files),
            "singular_values": s,
        }
        if present:
            result["ts"] = present[0]["ts"]
            for name in present[0]:
                if name == "ts":
                    continue
                axis = 0 if name == "learning_times" else 1
                key = "singular_values_t" if name == "singular_values" else name
                result[key] = np.concatenate([p[name] for p in present], axis=axis)
        results.append(result)
    return results


def _read_npz(path: Path) -> dict:
    with np.load(path) as data:
        return dict(data)
