r"""The sweep config: TOML schema, validation with size bounds, and its hash.

Pure Python (no JAX), so that `linflow run --help` can list the keys without importing JAX,
and so that `load_sweep` can check a results folder's `sweep.json` before building anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_REQUIRED = object()
_NUMBER = (int, float)
# Bounds that keep a config (or a crafted sweep.json) from asking for more than a machine can
# build: a task dimension of 4096 is a 134 MB float64 matrix; larger sweeps need more chunks,
# not larger ones.
MAX_DIM = 4096
MAX_WIDTH = 65536
MAX_LAYERS = 64
MAX_SCALES = 1000
MAX_SAVES = 1_000_000
MAX_STEPS = 10**9
MAX_BATCH = 10**12
MAX_CHUNKS = 100_000
MAX_SEED = 2**32
_TASKS = ("saxe_hierarchy", "semantic_hierarchy", "binary_tree", "random")
_ENGINES = ("gradient_descent", "gradient_flow", "exact_flow")
_OUTPUTS = ("loss", "mode_strengths", "singular_values", "learning_times", "weights")
_DTYPES = ("float32", "float64")
# Kept here (not imported from linflow._init, which needs JAX); a test checks they agree.
_SCHEMES = ("gaussian", "aligned", "balanced", "lambda_balanced")

# section -> key -> (accepted types, default, description for `linflow run --help`)
SCHEMA = {
    "task": {
        "name": (str, _REQUIRED, " | ".join(_TASKS)),
        "depth": (int, 3, f"binary_tree: depth D, 2**D items (1 to {int(math.log2(MAX_DIM)) - 1})"),
        "noise": (_NUMBER, 0.0, "binary_tree: probability of flipping each target, in [0, 1)"),
        "singular_values": (list, None, "random: the task's singular values"),
        "output_dim": (int, None, f"random: m (at most {MAX_DIM})"),
        "input_dim": (int, None, f"random: d (at most {MAX_DIM})"),
        "seed": (int, 0, "random, binary_tree: seed of the task"),
    },
    "network": {
        "hidden": ((int, list), _REQUIRED, "hidden width, or a list of widths ([] = one layer)")
    },
    "init": {
        "schemes": (list, _REQUIRED, "any of " + ", ".join(_SCHEMES)),
        "scales": (list, _REQUIRED, "positive init scales; every scheme runs at every scale"),
        "lam": (_NUMBER, 0.0, "lambda of lambda_balanced (and of aligned)"),
        "batch": (int, _REQUIRED, "initialisations per (scheme, scale)"),
        "seed": (int, 0, "seed of the initialisations"),
    },
    "engine": {
        "name": (str, _REQUIRED, " | ".join(_ENGINES)),
        "lr": (_NUMBER, None, "gradient_descent: learning rate"),
        "steps": (int, None, "gradient_descent: number of steps"),
        "save_every": (int, 1, "gradient_descent: steps between saves (divides steps)"),
        "tau": (_NUMBER, 1.0, "flows: time constant tau"),
        "rtol": (_NUMBER, 1e-6, "gradient_flow: relative tolerance"),
        "atol": (_NUMBER, 1e-8, "gradient_flow: absolute tolerance"),
    },
    "times": {
        "t1": (_NUMBER, None, "flows: final time"),
        "num": (int, 101, "flows: number of save times from 0 to t1"),
    },
    "output": {
        "chunk": ((int, str), "auto", "initialisations per file, or auto (the most that fit)"),
        "save": (
            list,
            ["loss", "mode_strengths", "learning_times"],
            "any of " + ", ".join(_OUTPUTS),
        ),
        "dtype": (str, "float64", " | ".join(_DTYPES)),
    },
}


class ConfigError(ValueError):
    """A malformed sweep config; the message names the file and the offending key."""


def load_config(path) -> dict:
    r"""Read and validate a sweep config (TOML), filling in defaults.

    **Arguments:** `path` of the TOML file.

    **Returns:** a dict of sections (`task`, `network`, `init`, `engine`, `times`, `output`),
    each a dict with every key present (`None` for an unset optional key).

    **Raises:** `ConfigError` (a `ValueError`) naming the file and the key that is missing,
    unknown, of the wrong type or out of range, e.g. `config.toml: [init] scales must be a
    non-empty list of positive numbers`; `OSError` if the file cannot be read.

    **Example:**

    ```python
    config = linflow.load_config("sweep.toml")
    ```
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a TOML config")
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected a TOML config)") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return validate_config(raw, where=str(path))


def _finite(x) -> bool:
    return isinstance(x, _NUMBER) and not isinstance(x, bool) and math.isfinite(x)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate_config(raw: dict, where: str = "config") -> dict:
    """`load_config` for an already parsed dict (from TOML, or the `config` of a `sweep.json`)."""

    def fail(message):
        raise ConfigError(f"{where}: {message}")

    if not isinstance(raw, dict):
        fail("must be a table of sections")
    for section in raw:
        if section not in SCHEMA:
            fail(f"unknown section [{section}] (expected one of {', '.join(SCHEMA)})")
    config = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            fail(f"[{section}] must be a table")
        for key in given:
            if key not in keys:
                fail(f"unknown key [{section}] {key} (expected one of {', '.join(keys)})")
        config[section] = {}
        for key, (types, default, _) in keys.items():
            value = given.get(key)
            if value is None:  # absent (TOML has no null; JSON's null is an unset key)
                if default is _REQUIRED:
                    fail(f"missing key [{section}] {key}")
                config[section][key] = list(default) if isinstance(default, list) else default
                continue
            if isinstance(value, bool) or not isinstance(value, types):
                names = (
                    types.__name__
                    if isinstance(types, type)
                    else " or ".join(t.__name__ for t in types)
                )
                fail(f"[{section}] {key} must be {names}, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                fail(f"[{section}] {key} must be finite, got {value!r}")
            config[section][key] = value

    def check(ok, section, key, what):
        if not ok:
            fail(f"[{section}] {key} {what}, got {config[section][key]!r}")

    task, init, engine, times, output = (
        config[s] for s in ("task", "init", "engine", "times", "output")
    )
    check(task["name"] in _TASKS, "task", "name", f"must be one of {_TASKS}")
    max_depth = int(math.log2(MAX_DIM)) - 1  # m = 2**(D+1) - 1 properties
    check(1 <= task["depth"] <= max_depth, "task", "depth", f"must lie in [1, {max_depth}]")
    check(0 <= task["noise"] < 1, "task", "noise", "must lie in [0, 1)")
    check(0 <= task["seed"] < MAX_SEED, "task", "seed", "must lie in [0, 2**32)")
    if task["name"] == "random":
        for key in ("output_dim", "input_dim"):
            check(task[key] is not None, "task", key, "is needed for name = 'random'")
            check(1 <= task[key] <= MAX_DIM, "task", key, f"must lie in [1, {MAX_DIM}]")
        check(task["singular_values"] is not None, "task", "singular_values", "is needed")
        values = task["singular_values"]
        check(
            0 < len(values) <= min(task["output_dim"], task["input_dim"])
            and all(_finite(s) and s >= 0 for s in values),
            "task",
            "singular_values",
            "must list 1 to min(output_dim, input_dim) finite numbers >= 0",
        )
    hidden = config["network"]["hidden"]
    widths = [hidden] if isinstance(hidden, int) else hidden
    check(
        len(widths) < MAX_LAYERS and all(_int(h) and 1 <= h <= MAX_WIDTH for h in widths),
        "network",
        "hidden",
        f"must be a width in [1, {MAX_WIDTH}] or a list of fewer than {MAX_LAYERS} of them",
    )
    schemes, scales = init["schemes"], init["scales"]
    check(
        0 < len(schemes) == len(set(map(str, schemes))) and all(s in _SCHEMES for s in schemes),
        "init",
        "schemes",
        f"must be a non-empty list of distinct names from {_SCHEMES}",
    )
    check(
        0 < len(scales) <= MAX_SCALES
        and all(_finite(s) and s > 0 for s in scales)
        and len(set(scales)) == len(scales),
        "init",
        "scales",
        f"must be a non-empty list of at most {MAX_SCALES} distinct positive numbers",
    )
    check(_finite(init["lam"]), "init", "lam", "must be a finite number")
    check(1 <= init["batch"] <= MAX_BATCH, "init", "batch", f"must lie in [1, {MAX_BATCH}]")
    check(0 <= init["seed"] < MAX_SEED, "init", "seed", "must lie in [0, 2**32)")
    check(engine["name"] in _ENGINES, "engine", "name", f"must be one of {_ENGINES}")
    if engine["name"] == "gradient_descent":
        check(engine["lr"] is not None and engine["lr"] > 0, "engine", "lr", "must be > 0")
        check(
            engine["steps"] is not None and 1 <= engine["steps"] <= MAX_STEPS,
            "engine",
            "steps",
            f"must lie in [1, {MAX_STEPS}]",
        )
        check(
            engine["save_every"] >= 1
            and engine["steps"] % engine["save_every"] == 0
            and engine["steps"] // engine["save_every"] < MAX_SAVES,
            "engine",
            "save_every",
            f"must be >= 1, divide steps and give fewer than {MAX_SAVES} saves",
        )
    else:
        check(times["t1"] is not None and times["t1"] > 0, "times", "t1", "must be > 0")
        check(2 <= times["num"] <= MAX_SAVES, "times", "num", f"must lie in [2, {MAX_SAVES}]")
    for key in ("tau", "rtol", "atol"):
        check(engine[key] > 0, "engine", key, "must be > 0")
    if engine["name"] == "exact_flow" and len(widths) >= 1 and "gaussian" in schemes:
        check(
            False,
            "init",
            "schemes",
            "cannot include 'gaussian' with [engine] name = 'exact_flow': no closed form "
            "applies to a random Gaussian start of a network with hidden layers (use "
            "gradient_flow, or the aligned/balanced/lambda_balanced schemes)",
        )
    chunk = output["chunk"]
    check(
        chunk == "auto" or (_int(chunk) and 1 <= chunk <= MAX_BATCH),
        "output",
        "chunk",
        "must be 'auto' or a positive int",
    )
    check(
        0 < len(output["save"]) == len(set(map(str, output["save"])))
        and all(s in _OUTPUTS for s in output["save"]),
        "output",
        "save",
        f"must list distinct names from {_OUTPUTS}",
    )
    if chunk != "auto":
        combos = len(schemes) * len(scales)
        check(
            combos * -(-init["batch"] // chunk) <= MAX_CHUNKS,
            "output",
            "chunk",
            f"gives more than {MAX_CHUNKS} chunk files; use larger chunks",
        )
    check(output["dtype"] in _DTYPES, "output", "dtype", f"must be one of {_DTYPES}")
    return config


def config_hash(config: dict) -> str:
    """SHA-256 of a validated config in canonical JSON: what every chunk file records."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def schema_help() -> str:
    """The config's sections and keys with their defaults, for `linflow run --help`."""
    lines = ["config sections and keys (required ones marked *, else [default]):"]
    for section, keys in SCHEMA.items():
        lines.append(f"  [{section}]")
        for key, (_, default, text) in keys.items():
            mark = "*" if default is _REQUIRED else f"[{_toml(default)}]"
            if len(mark) < 18:
                lines.append(f"    {key:<16}{mark:<18}{text}")
            else:
                lines.append(f"    {key:<16}{mark}\n    {'':<34}{text}")
    return "\n".join(lines)


def _toml(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
