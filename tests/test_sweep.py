"""`linflow.run_sweep` / `load_sweep`: verified chunks, one config per folder, resuming,
sharing the work (devices, `--part`, `jax.distributed`), memory planning."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
import tomllib

import linflow
import linflow.cli
from linflow._config import ConfigError, config_hash, validate_config
from linflow._folder import _HOST, META, read_chunk, write_chunk
from linflow._sweep import _build_task, _dims, _expected, chunk_memory

CONFIG = """
[task]
name = "saxe_hierarchy"

[network]
hidden = 4

[init]
schemes = ["gaussian"]
scales = [0.1]
batch = 12
seed = 3

[engine]
name = "gradient_descent"
lr = 0.05
steps = 200
save_every = 25

[output]
chunk = 4
save = ["loss", "mode_strengths", "learning_times", "weights"]
"""
ROOT = Path(linflow.__file__).resolve().parents[1]
NAMES = [f"chunk-000-0000{j}.npz" for j in range(3)]


def _raw() -> dict:
    return tomllib.loads(CONFIG)


def _config(**sections) -> dict:
    """The test config with some keys of some sections changed, validated."""
    raw = _raw()
    for section, change in sections.items():
        raw[section] = {**raw.get(section, {}), **change}
    return validate_config(raw)


def _python(code: str, **env) -> subprocess.Popen:
    """Start `code` in a fresh Python that imports this checkout of linflow."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 240) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _chunks(out: Path) -> dict:
    """Every chunk file's arrays (without its record)."""
    result = {}
    for path in sorted(out.glob("chunk-*.npz")):
        with np.load(path) as data:
            result[path.name] = {k: data[k] for k in data.files if k != META}
    return result


def _assert_same_results(out: Path, reference: Path, exact: bool = True) -> None:
    ours, theirs = linflow.load_sweep(out), linflow.load_sweep(reference)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a["complete"] and b["complete"]
        assert a.keys() == b.keys()
        for key, value in b.items():
            if isinstance(value, np.ndarray):
                if exact:
                    np.testing.assert_array_equal(a[key], value, err_msg=key)
                else:
                    np.testing.assert_allclose(a[key], value, rtol=1e-12, atol=1e-14, err_msg=key)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "sweep.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(config_path, tmp_path_factory):
    """An uninterrupted run on one device, through the command line, under umask 022."""
    out = tmp_path_factory.mktemp("reference") / "results"
    umask = os.umask(0o022)
    try:
        assert linflow.cli.main(["run", str(config_path), "--out", str(out), "--no-progress"]) == 0
    finally:
        os.umask(umask)
    return out


def _copy(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    return out


# --------------------------------------------------------------------------------------
# What a run writes


def test_run_writes_every_chunk(reference):
    chunks = _chunks(reference)
    assert sorted(chunks) == NAMES
    first = chunks[NAMES[0]]
    assert first["loss"].shape == (9, 4) and first["mode_strengths"].shape == (9, 4, 4)
    assert first["W1"].shape == (9, 4, 4, 4) and first["learning_times"].shape == (4, 4)
    # Different chunks hold different initialisations, and every network learns the task.
    assert not np.allclose(first["W1"][0], chunks[NAMES[1]]["W1"][0])
    (result,) = linflow.load_sweep(reference)
    assert result["complete"] and result["missing"] == [] and result["chunks"] == 3
    assert result["loss"].shape == (9, 12)
    assert np.all(result["loss"][-1] < 0.05 * result["loss"][0])
    np.testing.assert_allclose(result["singular_values"], [7**0.5, 3**0.5, 1, 1])
    assert not [p for p in reference.iterdir() if p.name.endswith(".tmp")]


def test_chunks_record_config_hash_combination_and_index(reference):
    manifest = json.loads((reference / "sweep.json").read_text())
    assert manifest["config_hash"] == config_hash(_config())
    for j, name in enumerate(NAMES):
        with np.load(reference / name) as data:
            record = json.loads(str(data[META]))
        assert record["config_hash"] == manifest["config_hash"]
        assert (record["combo"], record["chunk"]) == (0, j)
        assert len(record["checksum"]) == 64


def test_files_are_readable_by_others(reference):
    """Written under umask 022: 0644, like any file the user creates (mkstemp gave 0600)."""
    for path in reference.iterdir():
        if path.is_file() and not path.name.startswith(".linflow"):
            assert path.stat().st_mode & 0o777 == 0o644, path.name


def test_results_do_not_depend_on_the_chunk_size(reference, tmp_path):
    """chunk = "auto" (with a memory budget that fits 5 initialisations) lays the batch out in
    chunks of 5, 5, 2 and gives the same initialisations and results."""
    config = _config(output={"chunk": "auto"})
    budget = chunk_memory(config, (4, 4, 7), 4, 5)
    done = linflow.run_sweep(config, tmp_path, progress=False, memory=budget)
    assert done["computed"] == NAMES
    assert json.loads((tmp_path / "sweep.json").read_text())["chunk"] == 5
    assert [c["loss"].shape[1] for c in _chunks(tmp_path).values()] == [5, 5, 2]  # no padding
    # The same initialisations; XLA may round differently for another batch size.
    np.testing.assert_array_equal(
        linflow.load_sweep(tmp_path)[0]["W1"][0], linflow.load_sweep(reference)[0]["W1"][0]
    )
    _assert_same_results(tmp_path, reference, exact=False)


def test_sharded_over_four_devices_equals_one_device(config_path, reference, tmp_path):
    out = tmp_path / "sharded"
    sharded = _finish(
        _python(
            f"""
            import jax, numpy as np
            from linflow._sweep import _shard, run_sweep
            assert jax.device_count() == 4, jax.devices()
            weights = _shard((np.ones((3, 2, 2)),), jax.devices())
            assert len(weights[0].sharding.device_set) == 4 and weights[0].shape == (4, 2, 2)
            run_sweep({str(config_path)!r}, {str(out)!r}, progress=False)
            """,
            XLA_FLAGS="--xla_force_host_platform_device_count=4",
        )
    )
    assert sharded.returncode == 0, sharded.stderr
    _assert_same_results(out, reference, exact=False)


# --------------------------------------------------------------------------------------
# Resuming, damaged and missing chunks


def test_killed_sweep_resumes_to_the_same_result(config_path, reference, tmp_path):
    out = tmp_path / "killed"
    # The sweep kills itself (SIGKILL: no cleanup at all) right after its first chunk.
    killed = _finish(
        _python(
            f"""
            import os, signal
            from linflow._sweep import run_sweep
            run_sweep({str(config_path)!r}, {str(out)!r}, progress=False,
                      on_chunk=lambda job, path: os.kill(os.getpid(), signal.SIGKILL))
            """
        )
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sorted(_chunks(out)) == NAMES[:1]
    first = out / NAMES[0]
    written = first.stat().st_mtime_ns
    dead = out / f".linflow+{_HOST}+{_dead_pid()}+ab12+{NAMES[1]}.tmp"
    dead.write_bytes(b"half a file")  # as if killed mid-write
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        alive = out / f".linflow+{_HOST}+{sleeper.pid}+cd34+{NAMES[2]}.tmp"
        alive.write_bytes(b"another run is writing this")
        (out / "notes.tmp").write_text("the user's own file")
        done = linflow.run_sweep(config_path, out, progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert done == {"computed": NAMES[1:], "skipped": NAMES[:1], "recomputed": {}}
    assert first.stat().st_mtime_ns == written  # not recomputed
    # Only the dead process's temporary file is gone.
    assert not dead.exists() and alive.exists() and (out / "notes.tmp").exists()
    _assert_same_results(out, reference)


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("W1.npy")
    data[info.header_offset + 200 + info.file_size // 2] ^= 0x10  # inside W1's data
    path.write_bytes(bytes(data))


def _tamper(path: Path) -> None:
    """Change a value and rewrite the archive with the old record: the zip is consistent, so
    only the checksum can tell."""
    with np.load(path) as data:
        arrays = {k: data[k].copy() for k in data.files}
    arrays["loss"][0, 0] += 1.0
    np.savez(path, **arrays)


DAMAGE = {
    "truncated": (_truncate, "unreadable"),
    "zero-length": (_empty, "unreadable"),
    "bit-flipped": (_flip_bit, "unreadable"),
    "tampered": (_tamper, "checksum does not match"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_load_sweep_names_a_damaged_chunk(reference, tmp_path, kind):
    out = _copy(reference, tmp_path)
    damage, reason = DAMAGE[kind]
    damage(out / NAMES[1])
    with pytest.raises(ValueError, match=rf"{NAMES[1]} is damaged \(.*{reason}"):
        linflow.load_sweep(out)


def test_resume_recomputes_damaged_chunks(reference, tmp_path):
    """A truncated, a zero-length and a bit-flipped chunk are each named and computed again."""
    out = _copy(reference, tmp_path)
    for name, kind in zip(NAMES, ("truncated", "zero-length", "bit-flipped")):
        DAMAGE[kind][0](out / name)
    with pytest.warns(UserWarning) as warned:
        done = linflow.run_sweep(tomllib.loads(CONFIG), out, progress=False)
    assert done["computed"] == NAMES and sorted(done["recomputed"]) == NAMES
    messages = " ".join(str(w.message) for w in warned)
    for name in NAMES:
        assert f"{name} is damaged" in messages
    _assert_same_results(out, reference)


def test_chunk_of_another_config_is_refused_and_recomputed(reference, tmp_path):
    """A chunk file made by another config (here: seed 4) is named, never mixed in."""
    out = _copy(reference, tmp_path)
    other = _config(init={"seed": 4})
    with np.load(out / NAMES[2]) as data:
        arrays = {k: data[k] for k in data.files if k != META}
    write_chunk(out / NAMES[2], arrays, {"config_hash": config_hash(other), "combo": 0, "chunk": 2})
    with pytest.raises(ValueError, match=rf"{NAMES[2]} is damaged.*different config"):
        linflow.load_sweep(out)
    with pytest.warns(UserWarning, match="different config"):
        done = linflow.run_sweep(_config(), out, progress=False)
    assert list(done["recomputed"]) == [NAMES[2]]
    _assert_same_results(out, reference)


def test_read_chunk_checks_shapes_before_reading(reference):
    config = _config()
    meta = {"config_hash": config_hash(config), "combo": 0, "chunk": 0}
    expected = _expected(config, (4, 4, 7), 4, 4)
    assert read_chunk(reference / NAMES[0], expected, meta)["loss"].shape == (9, 4)
    wrong = {**expected, "loss": ((9, 5), np.float64)}
    with pytest.raises(Exception, match=r"loss has shape \(9, 4\).*expected \(9, 5\)"):
        read_chunk(reference / NAMES[0], wrong, meta)
    with pytest.raises(Exception, match="holds"):
        read_chunk(reference / NAMES[0], {"ts": expected["ts"]}, meta)
    with pytest.raises(Exception, match="chunk = 0, not 1"):
        read_chunk(reference / NAMES[0], expected, {**meta, "chunk": 1})


def test_missing_chunk_makes_the_sweep_incomplete(reference, tmp_path, capsys):
    out = _copy(reference, tmp_path)
    (out / NAMES[1]).unlink()
    (result,) = linflow.load_sweep(out)
    assert not result["complete"] and result["missing"] == [NAMES[1]]
    assert result["chunks"] == 2 and result["loss"].shape == (9, 8)
    from matplotlib.figure import Figure

    ax = linflow.plot.sweep_loss([result], ax=Figure().subplots())
    assert any("incomplete: 1 chunk file(s) missing" in t.get_text() for t in ax.texts)
    assert "(incomplete)" in ax.get_legend().get_texts()[0].get_text()
    assert linflow.cli.main(["plot", str(out), "--out", str(tmp_path / "figures")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 chunk file(s) missing (e.g. chunk-000-00001.npz)" in err


def test_plot_writes_figures(reference, tmp_path):
    assert linflow.cli.main(["plot", str(reference), "--out", str(tmp_path)]) == 0
    for name in ("loss.png", "modes.png", "learning_times.png"):
        assert (tmp_path / name).stat().st_size > 0


# --------------------------------------------------------------------------------------
# One config per folder


def test_other_config_in_same_folder_is_refused(reference):
    with pytest.raises(ValueError, match="holds the results of a different config"):
        linflow.run_sweep(_config(init={"seed": 4}), reference, progress=False)
    _assert_same_results(reference, reference)  # untouched, still loads


def test_overwrite_replaces_another_configs_results(reference, tmp_path):
    out = _copy(reference, tmp_path)
    other = _config(init={"batch": 4})
    done = linflow.run_sweep(other, out, progress=False, overwrite=True)
    assert done["computed"] == NAMES[:1]
    assert sorted(p.name for p in out.glob("chunk-*")) == NAMES[:1]
    assert json.loads((out / "sweep.json").read_text())["config_hash"] == config_hash(other)
    with pytest.raises(ValueError, match="cannot be combined with part"):
        linflow.run_sweep(other, out, progress=False, overwrite=True, part=(1, 2))


def test_second_config_fails_at_once_while_first_runs(config_path, reference, tmp_path):
    """A run holds its folder: another config fails at once (also before the first chunk is
    written), and the first run's results are intact."""
    out, go = tmp_path / "shared", tmp_path / "go"
    first = _python(
        f"""
        import pathlib, time
        import linflow._sweep as sweep
        run_chunk = sweep._run_chunk
        def waiting(*args):
            while not pathlib.Path({str(go)!r}).exists():  # hold the folder, no chunk yet
                time.sleep(0.05)
            return run_chunk(*args)
        sweep._run_chunk = waiting
        sweep.run_sweep({str(config_path)!r}, {str(out)!r}, progress=False)
        """
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "sweep.json").exists():
            if first.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the first run did not start: {_finish(first).stderr}")
            time.sleep(0.05)
        assert not list(out.glob("chunk-*"))
        for other in (_config(init={"seed": 4}), _config(output={"chunk": 6})):
            with pytest.raises(ValueError, match="is in use by a run of a different config"):
                linflow.run_sweep(other, out, progress=False)
            with pytest.raises(ValueError, match="is in use by a run of a different config"):
                linflow.run_sweep(other, out, progress=False, overwrite=True)
        go.touch()
        assert _finish(first).returncode == 0
    finally:
        first.kill()
    _assert_same_results(out, reference)


def test_non_results_folder_is_not_used(tmp_path):
    (tmp_path / "thesis.tex").write_text("...")
    with pytest.raises(ValueError, match=r"is not empty \(thesis.tex, ...\) and holds no sweep"):
        linflow.run_sweep(_config(), tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "thesis.tex"
    ]


# --------------------------------------------------------------------------------------
# Crafted manifests


def _manifest(reference: Path) -> dict:
    return json.loads((reference / "sweep.json").read_text())


def _rehash(manifest: dict) -> dict:
    manifest["config_hash"] = config_hash(validate_config(manifest["config"]))
    return manifest


def _crafted(reference):
    """name -> (change of sweep.json's text, what the error says)."""
    m = _manifest(reference)

    def config(section, **change):
        new = json.loads(json.dumps(m))
        new["config"][section].update(change)
        return json.dumps(new)

    return {
        "deep binary tree": (config("task", name="binary_tree", depth=24), r"\[task\] depth"),
        "huge random task": (
            config("task", name="random", output_dim=40000, input_dim=40000, singular_values=[1]),
            r"\[task\] output_dim must lie in \[1, 4096\]",
        ),
        "repeated chunk list": (
            json.dumps({**m, "chunks": [{"combo": 0, "chunk": 0}] * 200_000}),
            "too large for a sweep manifest",
        ),
        "extra key": (json.dumps({**m, "chunks": []}), "not a sweep manifest"),
        "mathtext scheme": (config("init", schemes=["$\\frac{1}{0}$"]), r"\[init\] schemes"),
        "hash": (config("init", seed=5), "config_hash does not match"),
        "chunk": (json.dumps({**m, "chunk": 0}), "chunk = 0 does not fit"),
        "nan scale": (config("init", scales=[float("nan")]), r"\[init\] scales"),
        "not json": ("{", "not a valid sweep manifest"),
        "binary": ("\udcff", "not a valid sweep manifest"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "deep binary tree",
        "huge random task",
        "repeated chunk list",
        "extra key",
        "mathtext scheme",
        "hash",
        "chunk",
        "nan scale",
        "not json",
        "binary",
    ],
)
def test_crafted_manifest_is_refused(reference, tmp_path, case, capsys):
    out = _copy(reference, tmp_path)
    text, message = _crafted(reference)[case]
    (out / "sweep.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match=message) as error:
        linflow.load_sweep(out)
    assert str(out / "sweep.json") in str(error.value)
    # The command line says the same in one line, and a run refuses the folder too.
    assert linflow.cli.main(["plot", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sweep.json" in err
    with pytest.raises(ValueError, match="sweep.json"):
        linflow.run_sweep(_config(), out, progress=False)


# --------------------------------------------------------------------------------------
# Sharing the work: --part and jax.distributed


@pytest.mark.slow
def test_three_parts_run_concurrently_equal_one_run(config_path, reference, tmp_path):
    out = tmp_path / "parts"
    command = [sys.executable, "-m", "linflow", "run", str(config_path), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    jobs = [
        subprocess.Popen(
            [*command, "--part", f"{k}/3", "--no-progress"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in (1, 2, 3)
    ]
    results = [_finish(job) for job in jobs]
    for k, result in enumerate(results, start=1):
        assert result.returncode == 0, result.stderr
        assert f"1 chunks computed, 0 already done (part {k}/3)" in result.stdout
    _assert_same_results(out, reference)
    # A part run again has nothing to do; a plain run finds everything done.
    assert linflow.run_sweep(config_path, out, part=(2, 3), progress=False)["skipped"] == [NAMES[1]]
    assert linflow.run_sweep(config_path, out, progress=False)["skipped"] == NAMES


def test_parts_are_disjoint_and_cover_every_chunk(tmp_path):
    config = _config(init={"batch": 40, "schemes": ["gaussian", "balanced"]})
    from linflow._sweep import _layout

    jobs = _layout(config, 4)
    shares = [jobs[k::3] for k in range(3)]
    names = [(j["combo"], j["chunk"]) for share in shares for j in share]
    assert len(names) == len(set(names)) == len(jobs) == 20
    with pytest.raises(ValueError, match=r"part=\(0, 3\)\) must be \(K, N\)"):
        linflow.run_sweep(config, tmp_path, part=(0, 3))


def test_part_from_slurm_array(monkeypatch):
    from linflow.cli import _part

    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert _part(None) is None
    assert _part("2/3") == (2, 3)
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "5"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _part(None) == (3, 3)
    assert _part("1/2") == (1, 2)  # --part wins
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "9")
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_ID=9 is not one of 3"):
        _part(None)
    for bad in ("0/3", "4/3", "a/b", "3"):
        with pytest.raises(ValueError, match=f"--part {bad}: must be K/N"):
            _part(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_distributed_processes_equal_one_run(config_path, reference, tmp_path):
    """Two `jax.distributed` processes on localhost (gloo CPU collectives): each writes its
    own share of the chunks, and both return once all are written."""
    out, port = tmp_path / "distributed", _free_port()
    code = """
        import json, sys, jax
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address="127.0.0.1:{port}", num_processes=2, process_id={i}
        )
        import linflow
        done = linflow.run_sweep({config!r}, {out!r}, progress=False)
        (result,) = linflow.load_sweep({out!r})  # every chunk is there on both processes
        print(json.dumps([jax.process_index(), done["computed"], result["complete"]]))
    """
    processes = [
        _python(code.format(port=port, i=i, config=str(config_path), out=str(out))) for i in (0, 1)
    ]
    results = [_finish(p) for p in processes]
    reports = []
    for result in results:
        assert result.returncode == 0, result.stderr
        reports.append(json.loads(result.stdout.splitlines()[-1]))
    assert reports == [[0, [NAMES[0], NAMES[2]], True], [1, [NAMES[1]], True]]
    _assert_same_results(out, reference)


# --------------------------------------------------------------------------------------
# Memory planning


def test_too_large_chunk_is_refused_before_starting(tmp_path):
    config = _config()
    need = chunk_memory(config, (4, 4, 7), 4, 4)
    budget = chunk_memory(config, (4, 4, 7), 4, 3)
    with pytest.raises(ValueError, match=r"\[output\] chunk = 4 needs about .* chunk = 3 fits"):
        linflow.run_sweep(config, tmp_path / "out", progress=False, memory=need - 1)
    assert not (tmp_path / "out").exists()  # nothing started
    done = linflow.run_sweep(
        _config(output={"chunk": "auto"}), tmp_path / "out", progress=False, memory=budget
    )
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["chunk"] == 3
    assert len(done["computed"]) == 4
    # Resuming on a machine with less memory: the folder's chunk size no longer fits.
    with pytest.raises(ValueError, match="uses chunk = 3 needs about"):
        linflow.run_sweep(
            _config(output={"chunk": "auto"}),
            tmp_path / "out",
            progress=False,
            memory=chunk_memory(config, (4, 4, 7), 4, 2),
        )


def test_chunk_memory_grows_with_the_chunk_and_the_saved_arrays():
    config = _config()
    widths, k = (4, 4, 7), 4
    small, large = (chunk_memory(config, widths, k, b) for b in (10_000, 20_000))
    assert 1.9 < large / small <= 2.0
    lean = _config(output={"save": ["loss"]})
    assert chunk_memory(lean, widths, k, 10_000) < small
    # The saved weights, on the device and the host: 2 T B P * 8 bytes, T = 9, P = 4 * 4 + 7 * 4.
    assert small > 2 * 9 * 10_000 * 44 * 8


def test_default_chunk_fits_the_machine():
    config = _config(output={"chunk": "auto"}, init={"batch": 10**9})
    from linflow._sweep import _available_memory, _plan_chunk

    with jax.enable_x64(True):
        widths, k = _dims(config, _build_task(config))
    chunk = _plan_chunk(config, widths, k, "config", None, 1, 1)
    assert 1 <= chunk < 10**9
    assert chunk_memory(config, widths, k, chunk) <= 0.5 * _available_memory()


# --------------------------------------------------------------------------------------
# Config validation


@pytest.mark.parametrize(
    "section, change, message",
    [
        ("init", {"scales": None}, r"missing key \[init\] scales"),
        ("init", {"scale": [0.1]}, r"unknown key \[init\] scale "),
        ("init", {"batch": "12"}, r"\[init\] batch must be int, got '12'"),
        ("init", {"scales": [0.1, -1.0]}, r"\[init\] scales must be a non-empty list of"),
        ("init", {"scales": [0.1, 0.1]}, r"\[init\] scales must be a non-empty list of"),
        ("init", {"scales": [float("inf")]}, r"\[init\] scales must be a non-empty list of"),
        ("init", {"schemes": ["orthogonal"]}, r"\[init\] schemes must be a non-empty list of"),
        ("init", {"seed": -1}, r"\[init\] seed must lie in"),
        ("engine", {"name": "adam"}, r"\[engine\] name must be one of"),
        ("engine", {"lr": None}, r"\[engine\] lr must be > 0"),
        ("engine", {"lr": float("nan")}, r"\[engine\] lr must be finite"),
        ("engine", {"name": "exact_flow"}, r"\[times\] t1 must be > 0"),
        ("output", {"save": ["loss", "hessian"]}, r"\[output\] save must list distinct names"),
        ("output", {"save": []}, r"\[output\] save must list distinct names"),
        ("output", {"chunk": "big"}, r"\[output\] chunk must be 'auto' or a positive int"),
        ("output", {"chunk": 0}, r"\[output\] chunk must be 'auto' or a positive int"),
        ("network", {"hidden": [4, 0]}, r"\[network\] hidden must be a width in"),
        ("network", {"hidden": 10**6}, r"\[network\] hidden must be a width in"),
        ("task", {"name": "random"}, r"\[task\] output_dim is needed"),
        ("task", {"name": "binary_tree", "depth": 12}, r"\[task\] depth must lie in \[1, 11\]"),
        ("colour", {}, r"unknown section \[colour\]"),
    ],
)
def test_config_errors_name_the_key(section, change, message):
    raw = _raw()
    table = {k: v for k, v in {**raw.get(section, {}), **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        validate_config({**raw, section: table}, where="sweep.toml")


def test_exact_flow_with_gaussian_start_is_refused():
    raw = _raw()
    raw["engine"] = {"name": "exact_flow"}
    raw["times"] = {"t1": 5.0}
    with pytest.raises(ConfigError, match=r"\[init\] schemes cannot include 'gaussian' with"):
        validate_config(raw, where="sweep.toml")
    raw["network"]["hidden"] = []  # one layer: a closed form for any start
    assert validate_config(raw)["network"]["hidden"] == []
    raw["network"]["hidden"] = 4
    raw["init"]["schemes"] = ["aligned"]
    assert validate_config(raw)["init"]["schemes"] == ["aligned"]


def test_scheme_names_match_the_package():
    assert linflow._config._SCHEMES == linflow.SCHEMES


def test_cli_reports_a_bad_config(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(CONFIG.replace("batch = 12", "batch = 12\nbatchsize = 3"))
    assert linflow.cli.main(["run", str(path)]) == 2
    error = capsys.readouterr().err
    assert "bad.toml: unknown key [init] batchsize" in error and error.count("\n") == 1
    # A setting the schema accepts but the network cannot carry (h = 8 > m = 7) fails before
    # any chunk, naming the combination.
    path.write_text(
        CONFIG.replace('"gaussian"', '"lambda_balanced"')
        .replace("hidden = 4", "hidden = 8")
        .replace("seed = 3", "seed = 3\nlam = 1.0")
    )
    assert linflow.cli.main(["run", str(path), "--out", str(tmp_path / "lam")]) == 2
    error = capsys.readouterr().err
    assert "bad.toml: scheme 'lambda_balanced' at scale 0.1: init_weights(..., lam=1.0)" in error
    assert not (tmp_path / "lam").exists()
    path.write_text("[task\nname = 1")
    assert linflow.cli.main(["run", str(path)]) == 2
    assert "bad.toml: not valid TOML" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# Progress


def test_progress_bar_counts_initialisations_within_a_chunk(config_path, tmp_path, capsys):
    linflow.run_sweep(config_path, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "12/12" in err and "init/s" in err


def test_engines_report_progress_to_a_callback():
    task = linflow.tasks.saxe_hierarchy()[0]
    weights0 = linflow.init_weights(jax.random.key(0), task, 4, scale=0.1, batch=(3,))
    seen = []
    linflow.gradient_descent(task, weights0, steps=100, lr=0.05, save_every=5, progress=seen.append)
    assert len(seen) > 5 and np.all(np.diff(seen) > 0) and seen[-1] == 1.0
    seen.clear()
    ts = np.linspace(0.0, 10.0, 11)
    flow = linflow.gradient_flow(task, weights0, ts, progress=lambda f: seen.append(float(f)))
    jax.effects_barrier()
    assert len(seen) >= 2 and max(seen) == 1.0 and 0.0 <= min(seen) < 1.0
    plain = linflow.gradient_flow(task, weights0, ts)
    np.testing.assert_array_equal(flow.weights[0], plain.weights[0])


@pytest.mark.slow
def test_memory_benchmark_quick(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "sweep_memory", ROOT / "benchmarks" / "sweep_memory.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    payload = module.main(["--quick", "--out", str(tmp_path)])
    assert [row["chunk"] for row in payload["rows"]] == [400]
    assert all(row["predicted_MiB"] > 0 and row["peak_rss_MiB"] > 0 for row in payload["rows"])
    assert (tmp_path / "sweep_memory_quick.json").exists()
