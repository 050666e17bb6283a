r"""Sweeps from a TOML file: many initialisations, in verified chunks, resumable, shared out.

`linflow run CONFIG.toml` reads a config such as

```toml
[task]
name = "saxe_hierarchy"        # | "semantic_hierarchy" | "binary_tree" | "random"

[network]
hidden = 16                    # or a list of widths, e.g. [16, 16] for three layers

[init]
schemes = ["balanced", "aligned"]
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
chunk = "auto"                 # initialisations per file (auto: the most that fit in memory)
save = ["loss", "mode_strengths", "learning_times"]
```

(every key, with its default: `linflow run --help`) and writes, for every combination of
scheme and scale, the batch in chunks `chunk-CCC-JJJJJ.npz` (combination `C`, chunk `J`)
next to `sweep.json` (the config, its hash and the chunk size). See `linflow._folder` for
the folder's lock and the chunk files' format and checks.

Initialisation $i$ of combination $c$ is drawn from `fold_in(fold_in(key(seed), c), b)`,
the key of its block $b = \lfloor i / \text{block} \rfloor$ of a size fixed by the network
(`_key_block`), so results depend on the config alone: not on the chunk size, the device
count, the number of processes or parts, or interruptions.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import tasks
from ._checks import available_memory
from ._config import MAX_CHUNKS, config_hash, load_config, validate_config
from ._descent import gradient_descent
from ._exact import exact_flow
from ._flow import gradient_flow
from ._folder import (
    BadChunk,
    FolderLock,
    is_temporary,
    make_folder,
    read_chunk,
    remove_dead_temporaries,
    write_atomic,
    write_chunk,
)
from ._init import init_weights
from ._progress import progress_bar

_MANIFEST_FORMAT = 1
_MANIFEST_BYTES = 1 << 20  # sweep.json holds a config and a few numbers
# Of the memory free when a sweep starts, the share one chunk may plan to use: the rest is
# for JAX's runtime, compilation, and the error of the estimate.
_MEMORY_SHARE = 0.5
# Initialisations done (the bar moves within a chunk by fractions of one) and per second.
_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} [{elapsed}<{remaining}, "
_BAR += "{rate_noinv_fmt}]"


def run_sweep(
    config,
    out,
    *,
    part=None,
    overwrite: bool = False,
    memory: int | None = None,
    progress: bool = True,
    on_chunk=None,
) -> dict:
    r"""Run a sweep: every (scheme, scale) of `config`, its batch in chunks, sharded over devices.

    Before starting, the folder is claimed: it must be new, empty, or hold the results of
    the same config (whose chunks are then checked, and only the missing or damaged ones are
    computed; a damaged one is named in a warning). Another run of a *different* config in
    the same folder fails at once. Each chunk is computed with its batch sharded over the
    local JAX devices and written atomically.

    **Sharing the work.** With `part=(K, N)` this run computes only chunks $i$ (in the order
    of the files) with $i \bmod N = K - 1$, so $N$ runs with $K = 1, \dots, N$, at the same
    time or not, on one machine or on $N$ sharing the folder, together write exactly the
    files of one run. Under `jax.distributed` (`jax.process_count() > 1`), each process
    likewise computes and writes its own share of the chunks (on its own devices, with no
    gathering), and `run_sweep` returns on every process once all are done.

    **Memory.** The memory one chunk needs is estimated from the config (the saved arrays,
    on the device and the host, and the engine's working set); `chunk = "auto"` picks the
    most initialisations that fit in half the free memory, and a larger explicit `chunk` is
    refused before anything runs, with the size that fits.

    **Arguments:**

    - `config`: a path to a TOML file, or a dict as returned by `load_config`.
    - `out`: the results folder (created if needed).
    - `part`: `(K, N)` with $1 \le K \le N$, this run's share of the chunks (default: all).
    - `overwrite`: delete the folder's results first if they belong to a different config
      (refused while another run works in the folder, and with `part`).
    - `memory`: bytes a chunk may use (default: half of what is free on the machine, or on
      an accelerator, when the sweep starts).
    - `progress`: show a progress bar over the initialisations, advancing within a chunk.
    - `on_chunk`: optional callback `on_chunk(job, path)` after each chunk is written.

    **Returns:** `{"computed": [...], "skipped": [...], "recomputed": {name: reason}}`, the
    chunk files of this run's share (`recomputed` lists the damaged ones among `computed`).

    **Raises:** `ConfigError` for a malformed config; `ValueError` if `out` holds another
    config's results or is in use by another config's run, if a chunk does not fit in
    memory, or if an initialisation or engine cannot handle the config; `OSError` if `out`
    cannot be created or written.

    **Example:**

    ```python
    linflow.run_sweep("sweep.toml", "results")
    linflow.run_sweep("sweep.toml", "/shared/results", part=(2, 3))  # job 2 of 3
    ```
    """
    where = "config" if isinstance(config, dict) else str(config)
    config = validate_config(config, where) if isinstance(config, dict) else load_config(config)
    share, shares = _share(part, overwrite)
    out = Path(out)
    devices = jax.local_devices()
    with jax.enable_x64(config["output"]["dtype"] == "float64"):
        task = _build_task(config)
        widths, k = _dims(config, task)
        _preflight(config, task, widths, where)
        chunk = _plan_chunk(config, widths, k, where, memory, len(devices), shares)
        make_folder(out)
        lock = FolderLock(out)
        try:
            chunk = _claim(out, lock, config, chunk, overwrite)
            if config["output"]["chunk"] == "auto":  # chosen by the run that started the folder
                _check_fits(config, widths, k, chunk, where, memory, len(devices), out)
            jobs = _layout(config, chunk)[share::shares]
            done = _compute(out, config, task, widths, k, jobs, devices, progress, on_chunk)
        finally:
            lock.release()
        if jax.process_count() > 1:
            # Every process returns once the whole sweep is written, not just its share.
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("linflow run_sweep")
    return done


def _share(part, overwrite: bool) -> tuple[int, int]:
    """This run's share `(index, count)` of the chunks, from `part` and the process index."""
    if part is None:
        k, n = 1, 1
    else:
        ok = (
            isinstance(part, tuple | list)
            and len(part) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in part)
            and 1 <= part[0] <= part[1]
        )
        if not ok:
            raise ValueError(f"run_sweep(..., part={part!r}) must be (K, N) with 1 <= K <= N.")
        k, n = part
    processes = jax.process_count()
    if overwrite and (n > 1 or processes > 1):
        raise ValueError(
            "run_sweep(..., overwrite=True) cannot be combined with part=... or several "
            "processes: the runs sharing a folder would delete each other's results."
        )
    return (k - 1) * processes + jax.process_index(), n * processes


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


def _dims(config: dict, task) -> tuple[tuple[int, ...], int]:
    """Layer widths $(d, h_1, \\dots, m)$ and the number of modes $k = \\min(m, d)$."""
    hidden = config["network"]["hidden"]
    hidden = [hidden] if isinstance(hidden, int) else hidden
    return (task.input_dim, *hidden, task.output_dim), min(task.input_dim, task.output_dim)


def _saves(config: dict) -> int:
    """Number of saved times $T$ (including $t = 0$)."""
    engine = config["engine"]
    if engine["name"] == "gradient_descent":
        return engine["steps"] // engine["save_every"] + 1
    return config["times"]["num"]


def _expected(config: dict, widths, k: int, size: int) -> dict:
    """Name -> (shape, dtype) of every array of a chunk of `size` initialisations."""
    T, dtype = _saves(config), np.dtype(config["output"]["dtype"])
    shapes = {"ts": (T,)}
    save = config["output"]["save"]
    if "loss" in save:
        shapes["loss"] = (T, size)
    if "mode_strengths" in save:
        shapes["mode_strengths"] = (T, size, k)
    if "singular_values" in save:
        shapes["singular_values"] = (T, size, k)
    if "learning_times" in save:
        shapes["learning_times"] = (size, k)
    if "weights" in save:
        for l in range(1, len(widths)):
            shapes[f"W{l}"] = (T, size, widths[l], widths[l - 1])
    return {name: (shape, dtype) for name, shape in shapes.items()}


def _combinations(config: dict) -> list[tuple[str, float]]:
    init = config["init"]
    return [(scheme, scale) for scheme in init["schemes"] for scale in init["scales"]]


def _layout(config: dict, chunk: int) -> list[dict]:
    """Every chunk of the sweep, in file order: its combination, index, first initialisation
    and size (the last chunk of a combination holds the rest of the batch, unpadded)."""
    batch = config["init"]["batch"]
    return [
        {
            "combo": c,
            "chunk": j,
            "scheme": scheme,
            "scale": scale,
            "start": start,
            "size": min(chunk, batch - start),
        }
        for c, (scheme, scale) in enumerate(_combinations(config))
        for j, start in enumerate(range(0, batch, chunk))
    ]


def _chunk_path(out: Path, job: dict) -> Path:
    return out / f"chunk-{job['combo']:03d}-{job['chunk']:05d}.npz"


def _chunk_meta(config: dict, job: dict) -> dict:
    return {"config_hash": config_hash(config), "combo": job["combo"], "chunk": job["chunk"]}


# --------------------------------------------------------------------------------------
# Before running: checks, memory, the folder


def _preflight(config: dict, task, widths, where: str) -> None:
    """Draw one initialisation of every combination (and for `exact_flow`, find its closed
    form), so that a setting the engine cannot handle fails before any chunk runs."""
    init = config["init"]
    for scheme, scale in _combinations(config):
        try:
            weights0 = init_weights(
                jax.random.key(0),
                task,
                tuple(widths[1:-1]),
                scheme=scheme,
                scale=scale,
                batch=(1,),
                lam=init["lam"] if scheme in ("lambda_balanced", "aligned") else 0.0,
            )
            if config["engine"]["name"] == "exact_flow":
                ts = jnp.asarray([0.0, config["times"]["t1"]], weights0[0].dtype)
                exact_flow(task, weights0, ts, tau=config["engine"]["tau"])
        except ValueError as error:
            reason = "; ".join(
                line.strip().removeprefix("- ") for line in str(error).splitlines() if line.strip()
            )
            raise ValueError(f"{where}: scheme {scheme!r} at scale {scale:g}: {reason}") from None


def chunk_memory(config: dict, widths, k: int, size: int, devices: int = 1) -> int:
    r"""Estimated peak memory, in bytes, of computing and writing one chunk.

    With $B$ initialisations (padded to a multiple of the device count), $T$ saves,
    $P = \sum_l h_l h_{l-1}$ weights per network, $Q = m d$ entries of the product and $b$
    bytes per number, the engine's peak is about $1.3\,T B P b$ for gradient descent (the
    trajectory, written in place), $T B P b + 14 B P b$ for gradient flow (the trajectory
    and the Tsit5 stages) and $3 T B \max(P, Q) b$ for the closed forms; the outputs need
    the end-to-end product and its modes ($2 T B Q b$); the saved arrays are held twice (on
    the device and on the host); and the initialisations are drawn in blocks of
    `_key_block` networks. Measured against peak RSS by `benchmarks/sweep_memory.py`.
    """
    b = np.dtype(config["output"]["dtype"]).itemsize
    T = _saves(config)
    B = -(-size // devices) * devices
    P = sum(widths[l] * widths[l - 1] for l in range(1, len(widths)))
    Q = widths[0] * widths[-1]
    engine = config["engine"]["name"]
    trajectory = T * B * P * b
    if engine == "gradient_descent":
        working = 1.3 * trajectory + 6 * B * P * b
    elif engine == "gradient_flow":
        working = trajectory + 14 * B * P * b
    else:
        working = 3 * T * B * max(P, Q) * b
    outputs = 2 * T * B * Q * b
    saved = sum(math.prod(shape) * b for shape, _ in _expected(config, widths, k, B).values())
    initial = 2 * _key_block(widths) * P * b + B * P * b
    return int(working + outputs + 2 * saved + initial)


def _available_memory() -> int:
    """Bytes free for one chunk: the least of the machine's available memory, the job's
    cgroup limit (batch schedulers), and an accelerator's free memory."""
    free = [n for n in (available_memory(),) if n is not None]
    for limit, usage in (
        ("memory.max", "memory.current"),  # cgroup v2
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),  # cgroup v1
    ):
        try:
            text = Path("/sys/fs/cgroup", limit).read_text().strip()
            if text != "max" and int(text) < 1 << 60:  # v1 writes "no limit" as ~2**63
                free.append(int(text) - int(Path("/sys/fs/cgroup", usage).read_text()))
        except (OSError, ValueError):
            pass
    devices = jax.local_devices()
    if devices[0].platform != "cpu":
        stats = devices[0].memory_stats() or {}
        if "bytes_limit" in stats:
            free.append(len(devices) * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    return max(0, min(free)) if free else 1 << 34


def _largest_fitting(config, widths, k, budget: int, devices: int) -> int:
    """The most initialisations per chunk whose estimate fits in `budget` (0 if none)."""
    low, high = 0, config["init"]["batch"]
    while low < high:  # the estimate grows with the size
        mid = (low + high + 1) // 2
        if chunk_memory(config, widths, k, mid, devices) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def _budget(memory) -> int:
    if memory is None:
        return int(_MEMORY_SHARE * _available_memory())
    if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
        raise ValueError(f"run_sweep(..., memory={memory!r}) must be a positive int (bytes).")
    return memory


def _plan_chunk(config, widths, k, where, memory, devices: int, shares: int) -> int:
    """The chunk size to run: the config's, checked against memory, or the one `auto` picks."""
    budget = _budget(memory)
    batch, combos = config["init"]["batch"], len(_combinations(config))
    fits = _largest_fitting(config, widths, k, budget, devices)
    if fits == 0:
        need = chunk_memory(config, widths, k, 1, devices)
        raise ValueError(
            f"{where}: one initialisation needs about {_bytes(need)}, more than the "
            f"{_bytes(budget)} available for a chunk; use smaller networks or fewer saves."
        )
    chunk = config["output"]["chunk"]
    if chunk != "auto":
        _check_fits(config, widths, k, chunk, where, memory, devices, None, budget)
        return chunk
    # As many as fit, in whole device multiples, with at least one chunk per share of the work.
    chunk = min(fits, batch, -(-batch // -(-shares // combos)))
    if chunk >= devices:
        chunk -= chunk % devices
    return max(chunk, -(-batch // (MAX_CHUNKS // combos)))


def _check_fits(config, widths, k, chunk, where, memory, devices, out, budget=None) -> None:
    budget = _budget(memory) if budget is None else budget
    need = chunk_memory(config, widths, k, chunk, devices)
    if need > budget:
        fits = _largest_fitting(config, widths, k, budget, devices)
        origin = f"the folder {out} uses chunk = {chunk}" if out else f"[output] chunk = {chunk}"
        raise ValueError(
            f"{where}: {origin} needs about {_bytes(need)} per chunk but {_bytes(budget)} is "
            f"available (half the free memory); chunk = {fits} fits"
            + ("" if out else ' (or set chunk = "auto")')
        )


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _manifest(config: dict, chunk: int) -> dict:
    from importlib.metadata import version

    return {
        "linflow": version("linflow"),
        "format": _MANIFEST_FORMAT,
        "config_hash": config_hash(config),
        "chunk": chunk,
        "combinations": [list(c) for c in _combinations(config)],
        "config": config,
    }


def _read_manifest(out: Path) -> dict:
    """`sweep.json`, checked with the schema and bounds of `run_sweep` before anything is built.

    **Raises:** `ValueError` naming the file.
    """
    path = out / "sweep.json"
    size = path.stat().st_size
    if size > _MANIFEST_BYTES:
        raise ValueError(f"{path}: {size} bytes is too large for a sweep manifest")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path}: not a valid sweep manifest ({error})") from None
    keys = {"linflow", "format", "config_hash", "chunk", "combinations", "config"}
    if not isinstance(manifest, dict) or set(manifest) != keys:
        found = sorted(manifest) if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path}: not a sweep manifest of this linflow (keys {found})")
    if manifest["format"] != _MANIFEST_FORMAT:
        raise ValueError(f"{path}: manifest format {manifest['format']!r}, expected 1")
    config = validate_config(manifest["config"], where=str(path))
    if manifest["config_hash"] != config_hash(config):
        raise ValueError(f"{path}: config_hash does not match its config")
    chunk, batch = manifest["chunk"], config["init"]["batch"]
    combos = _combinations(config)
    if (
        not isinstance(chunk, int)
        or isinstance(chunk, bool)
        or not 1 <= chunk
        or config["output"]["chunk"] not in ("auto", chunk)
        or len(combos) * -(-batch // chunk) > MAX_CHUNKS
    ):
        raise ValueError(f"{path}: chunk = {chunk!r} does not fit its config")
    if manifest["combinations"] != [list(c) for c in combos]:
        raise ValueError(f"{path}: combinations do not match its config")
    return {**manifest, "config": config}


def _claim(out: Path, lock: FolderLock, config: dict, chunk: int, overwrite: bool) -> int:
    """Claim `out` for `config` (see `linflow._folder`); returns the chunk size of the folder."""
    path = out / "sweep.json"
    digest = config_hash(config)
    lock.setup()
    try:
        if not lock.alone():  # other runs work here: join them if they run this config
            lock.share()
            manifest = _read_manifest(out) if path.exists() else None
            if manifest is None or manifest["config_hash"] != digest:
                raise ValueError(
                    f"{out} is in use by a run of a different config"
                    + (f" (hash {manifest['config_hash'][:12]})" if manifest else "")
                    + "; use another folder"
                )
            return manifest["chunk"]
        remove_dead_temporaries(out)
        chunks = sorted(out.glob("chunk-*.npz"))
        try:
            manifest = _read_manifest(out) if path.exists() else None
        except ValueError:
            if not overwrite:
                raise
            manifest = None
        if manifest is not None and manifest["config_hash"] == digest:
            lock.share()
            return manifest["chunk"]
        if overwrite:
            for stale in chunks + [path]:
                stale.unlink(missing_ok=True)
        elif chunks:
            what = (
                f"a different config (hash {manifest['config_hash'][:12]})"
                if manifest
                else "no sweep.json"
            )
            raise ValueError(
                f"{out} holds the results of {what}; use another folder or overwrite=True "
                "(linflow run --overwrite)"
            )
        elif manifest is None:
            others = [
                p.name
                for p in out.iterdir()
                if not p.name.startswith(".linflow") and not is_temporary(p)
            ]
            if others:
                raise ValueError(
                    f"{out} is not empty ({', '.join(sorted(others)[:3])}, ...) and holds no "
                    "sweep.json; use a new or empty folder"
                )
        # No results here (or overwriting them): the folder is this config's.
        text = json.dumps(_manifest(config, chunk), indent=2) + "\n"
        write_atomic(path, lambda f: f.write(text.encode()))
        lock.share()
        return chunk
    finally:
        lock.end_setup()


# --------------------------------------------------------------------------------------
# Running


def _compute(out, config, task, widths, k, jobs, devices, progress, on_chunk) -> dict:
    """Check this run's existing chunks, then compute the missing and damaged ones."""
    done = {"computed": [], "skipped": [], "recomputed": {}}
    todo = []
    for job in jobs:
        path = _chunk_path(out, job)
        if not path.exists():
            todo.append(job)
            continue
        try:
            read_chunk(path, _expected(config, widths, k, job["size"]), _chunk_meta(config, job))
            done["skipped"].append(path.name)
        except BadChunk as error:
            warnings.warn(f"{path} is damaged ({error}); computing it again", stacklevel=3)
            done["recomputed"][path.name] = str(error)
            todo.append(job)
    total = sum(job["size"] for job in todo)
    progress = progress and total > 0
    with progress_bar(progress, total, "linflow run", unit="init", bar_format=_BAR) as bar:
        chunk_progress = _ChunkProgress(bar)
        for job in todo:
            chunk_progress.start(job["size"])
            arrays = _run_chunk(
                config, task, widths, job, devices, chunk_progress.engine if progress else False
            )
            path = _chunk_path(out, job)
            write_chunk(path, arrays, _chunk_meta(config, job))
            chunk_progress.report(1.0)
            done["computed"].append(path.name)
            if on_chunk is not None:
                on_chunk(job, path)
    return done


class _ChunkProgress:
    """Moves the sweep's bar (in initialisations) through the current chunk: the engine's
    `progress` callback covers the first 90 % (the outputs and the file take the rest)."""

    def __init__(self, bar):
        self.bar, self.size, self.done = bar, 0, 0.0

    def start(self, size: int) -> None:
        self.size, self.done = size, 0.0

    def engine(self, fraction) -> None:
        self.report(0.9 * float(np.max(fraction)))

    def report(self, fraction: float) -> None:
        now = self.size * fraction
        if now > self.done:
            self.bar.update(now - self.done)
            self.done = now


def _key_block(widths) -> int:
    """Initialisations drawn from one key: a fixed number per network (so results do not
    depend on the chunk size), small enough that a block stays near 4 M numbers."""
    P = sum(widths[l] * widths[l - 1] for l in range(1, len(widths)))
    return int(min(1024, max(1, (1 << 22) // P)))


def _initial_weights(config: dict, task, widths, job: dict) -> tuple[np.ndarray, ...]:
    """Initialisations `start, ..., start + size - 1` of the job's combination, on the host."""
    init, block = config["init"], _key_block(widths)
    key = jax.random.fold_in(jax.random.key(init["seed"]), job["combo"])
    first, last = job["start"] // block, (job["start"] + job["size"] - 1) // block
    blocks = [
        init_weights(
            jax.random.fold_in(key, b),
            task,
            tuple(widths[1:-1]),
            scheme=job["scheme"],
            scale=job["scale"],
            batch=(block,),
            lam=init["lam"] if job["scheme"] in ("lambda_balanced", "aligned") else 0.0,
        )
        for b in range(first, last + 1)
    ]
    offset = job["start"] - first * block
    return tuple(
        np.concatenate([np.asarray(w[l]) for w in blocks])[offset : offset + job["size"]]
        for l in range(len(widths) - 1)
    )


def _shard(weights, devices):
    """Shard the batch over a 1-D mesh of `devices`, padded to a multiple of their number."""
    size = weights[0].shape[0]
    padded = -(-size // len(devices)) * len(devices)
    # Padding repeats real initialisations, so no extra trajectory changes a shared step size.
    index = np.arange(padded) % size
    mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    return tuple(jax.device_put(np.asarray(w)[index], sharding) for w in weights)


@eqx.filter_jit
def _outputs(traj, task, save: tuple[str, ...]) -> dict:
    """The saved arrays of a trajectory but `learning_times`, in one compiled call."""
    arrays = {"ts": traj.ts}
    if "loss" in save:
        arrays["loss"] = traj.loss(task)
    if "mode_strengths" in save:
        arrays["mode_strengths"] = traj.mode_strengths(task)
    if "singular_values" in save:
        arrays["singular_values"] = traj.singular_values(task)
    if "weights" in save:
        for l, w in enumerate(traj.weights, start=1):
            arrays[f"W{l}"] = w
    return arrays


def _run_chunk(config: dict, task, widths, job: dict, devices, progress) -> dict:
    engine = config["engine"]
    weights0 = _shard(_initial_weights(config, task, widths, job), devices)
    name = engine["name"]
    if name == "gradient_descent":
        traj = gradient_descent(
            task,
            weights0,
            steps=engine["steps"],
            lr=engine["lr"],
            save_every=engine["save_every"],
            progress=progress,
        )
    else:
        times = config["times"]
        ts = jnp.linspace(0.0, times["t1"], times["num"], dtype=weights0[0].dtype)
        if name == "gradient_flow":
            traj = gradient_flow(
                task,
                weights0,
                ts,
                tau=engine["tau"],
                rtol=engine["rtol"],
                atol=engine["atol"],
                progress=progress,
            )
        else:
            traj = exact_flow(task, weights0, ts, tau=engine["tau"])
    size = job["size"]
    save = config["output"]["save"]
    outputs = _outputs(traj, task, tuple(save))
    if "learning_times" in save:
        outputs["learning_times"] = traj.learning_times(task)[..., 0]
    arrays = {}
    for name, value in outputs.items():
        value = np.asarray(value)
        batch_axis = {"ts": None, "learning_times": 0}.get(name, 1)
        if batch_axis is not None:
            value = value[:size] if batch_axis == 0 else value[:, :size]
        arrays[name] = np.ascontiguousarray(value)
    return arrays


# --------------------------------------------------------------------------------------
# Reading


def load_sweep(out) -> list[dict]:
    r"""Read the results of a sweep, one entry per (scheme, scale), chunks joined along the batch.

    `sweep.json` is checked against the schema and size bounds of `run_sweep` before
    anything is built, and every chunk file against it (arrays, shapes, dtype, the config's
    hash, its checksum). Missing chunks (a sweep still running, or a part not yet run) leave
    a shorter batch and `complete = False`.

    **Arguments:** `out`, the results folder of `run_sweep` / `linflow run`.

    **Returns:** a list of dicts with `scheme`, `scale`, `complete` (whether every chunk is
    there), `chunks` (how many chunk files were read), `missing` (the names of absent ones),
    `singular_values` of the task
    (`(k,)`), and the saved arrays of the $B$ initialisations present: `ts` `(T,)`,
    `loss` `(T, B)`, `mode_strengths` and `singular_values_t` `(T, B, k)`,
    `learning_times` `(B, k)`, `W1`, ... `(T, B, rows, cols)`.

    **Raises:** `ValueError` if `out` holds no sweep, if `sweep.json` is malformed, or naming
    the first damaged or foreign chunk file.

    **Example:**

    ```python
    for result in linflow.load_sweep("results"):
        print(result["scheme"], result["scale"], np.median(result["learning_times"], 0))
    ```
    """
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"load_sweep({str(out)!r}): no such folder")
    if not (out / "sweep.json").is_file():
        raise ValueError(f"load_sweep({str(out)!r}): no sweep.json there; is it a results folder?")
    manifest = _read_manifest(out)
    config = manifest["config"]
    with jax.enable_x64(config["output"]["dtype"] == "float64"):
        task = _build_task(config)
        s = np.asarray(task.modes()[1])
        widths, k = _dims(config, task)
    by_combo = {}
    for job in _layout(config, manifest["chunk"]):
        by_combo.setdefault(job["combo"], []).append(job)
    results = []
    for combo, (scheme, scale) in enumerate(_combinations(config)):
        mine = by_combo[combo]
        exists = [_chunk_path(out, job).exists() for job in mine]
        present = [job for job, there in zip(mine, exists) if there]
        result = {
            "scheme": scheme,
            "scale": scale,
            "complete": all(exists),
            "missing": [_chunk_path(out, j).name for j, there in zip(mine, exists) if not there],
            "chunks": len(present),
            "singular_values": s,
        }
        B = sum(job["size"] for job in present)
        joined = {
            ("singular_values_t" if name == "singular_values" else name): np.empty(shape, dtype)
            for name, (shape, dtype) in _expected(config, widths, k, B).items()
        }
        offset = 0
        for job in present:
            path = _chunk_path(out, job)
            try:
                arrays = read_chunk(
                    path, _expected(config, widths, k, job["size"]), _chunk_meta(config, job)
                )
            except BadChunk as error:
                raise ValueError(
                    f"load_sweep: {path} is damaged ({error}); run the sweep again to recompute it"
                ) from None
            except FileNotFoundError:  # deleted since it was listed
                raise ValueError(f"load_sweep: {path} disappeared while reading") from None
            rows = slice(offset, offset + job["size"])
            for name, value in arrays.items():
                key = "singular_values_t" if name == "singular_values" else name
                if name == "ts":
                    joined[key][...] = value
                elif name == "learning_times":
                    joined[key][rows] = value
                else:
                    joined[key][:, rows] = value
            offset += job["size"]
        if present:
            result.update(joined)
        results.append(result)
    return results
