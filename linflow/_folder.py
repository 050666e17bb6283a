r"""A sweep's results folder: its lock, atomic files, and self-checking chunk files.

- **Lock.** `.linflow.lock` is held *shared* by every run working in the folder, for as long
  as it runs; `.linflow-setup.lock` is held *exclusively* while a run sets the folder up.
  A run that finds no other run in the folder (it gets the first lock exclusively) may
  create, replace or clear `sweep.json`; one that finds others may only join them, with the
  same config. Both are advisory `flock` locks of the operating system, released by the
  kernel when a process dies, so a killed run never leaves the folder locked.
- **Atomic files.** Every file is written to `.linflow+HOST+PID+TOKEN+NAME.tmp` beside it,
  flushed to disk and renamed over its name, so a file is complete or absent; files get
  the permissions of the user's umask (0644 under umask 022).
- **Chunk files** are `.npz` archives holding the result arrays and `linflow_chunk`, a JSON
  record of the config's hash, the combination and chunk index, and a SHA-256 checksum of
  the arrays. `read_chunk` checks all of it, and every array's shape and dtype before
  reading its data, so a damaged or foreign file is reported, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
import time
import zipfile
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock
    fcntl = None

META = "linflow_chunk"
FORMAT = 1
_META_BYTES = 1 << 16
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"


class BadChunk(Exception):
    """A chunk file that cannot be used; the message says why."""


class FolderLock:
    """The two `flock` locks of a results folder (see the module docstring)."""

    def __init__(self, out: Path):
        self.out = out
        self._fds = {}

    def _fd(self, name: str) -> int:
        if name not in self._fds:
            self._fds[name] = os.open(self.out / name, os.O_RDWR | os.O_CREAT, 0o666)
        return self._fds[name]

    def _flock(self, name: str, how: int, timeout: float) -> bool:
        """Take lock `name` (`fcntl.LOCK_SH` or `LOCK_EX`), waiting up to `timeout` seconds."""
        if fcntl is None:  # pragma: no cover
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._fd(name), how | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)

    def setup(self, timeout: float = 120.0) -> None:
        """Wait for other runs to finish setting up (they hold the setup lock briefly)."""
        if not self._flock(".linflow-setup.lock", fcntl.LOCK_EX if fcntl else 0, timeout):
            raise TimeoutError(
                f"{self.out}: another run has been setting this folder up for {timeout:g} s; "
                f"if none is running, delete {self.out / '.linflow-setup.lock'}"
            )

    def alone(self) -> bool:
        """Whether no other run works in the folder; if so, this run now holds it exclusively."""
        return self._flock(".linflow.lock", fcntl.LOCK_EX if fcntl else 0, 0.0)

    def share(self) -> None:
        """Hold the folder shared (joined by other runs of the same config) until `release`."""
        if fcntl is not None:
            # Under the setup lock, no other run can take the folder exclusively meanwhile.
            fcntl.flock(self._fd(".linflow.lock"), fcntl.LOCK_SH)

    def end_setup(self) -> None:
        fd = self._fds.pop(".linflow-setup.lock", None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases its lock

    def release(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def make_folder(out: Path) -> None:
    """Create the folder `out` if needed; `ValueError` naming it if it is a file, lies under a
    file, or cannot be created or written."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"{out}: a part of this path is a file, not a folder") from None
    except PermissionError:
        raise ValueError(f"{out}: no permission to create this folder") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"{out}: no permission to write in this folder")


def write_atomic(path: Path, write) -> None:
    """Write through `write(file)` to a temporary file beside `path`, then rename it over `path`.

    The file is created with mode 0666 minus the umask (as `open` would), flushed to disk
    before the rename, and the folder is synced after it, so `path` is complete or absent.
    """
    tmp = path.parent / f".linflow+{_HOST}+{os.getpid()}+{secrets.token_hex(4)}+{path.name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # not every file system can sync a folder
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def is_temporary(path: Path) -> bool:
    """Whether `path` is a temporary file of `write_atomic`."""
    return path.name.startswith(".linflow+") and path.name.endswith(".tmp")


def remove_dead_temporaries(out: Path) -> list[Path]:
    """Remove the temporary files left in `out` by linflow processes of this host that are no
    longer running (killed while writing); another run's files, and other hosts', stay."""
    removed = []
    for path in out.glob(".linflow+*.tmp"):
        parts = path.name.split("+")
        if len(parts) < 5 or parts[1] != _HOST or not parts[2].isdigit():
            continue
        pid = int(parts[2])
        if pid != os.getpid() and not _alive(pid):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def checksum(arrays: dict) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()


def write_chunk(path: Path, arrays: dict, meta: dict) -> None:
    """Write a chunk file: `arrays` and the JSON record `meta` plus the arrays' checksum."""
    record = json.dumps({"format": FORMAT, **meta, "checksum": checksum(arrays)})
    write_atomic(path, lambda f: np.savez(f, **arrays, **{META: np.array(record)}))


def read_chunk(path: Path, expected: dict, meta: dict) -> dict:
    """Read and check a chunk file.

    **Arguments:** `path`; `expected`, name -> `(shape, dtype)` of every array it must hold
    (and nothing else); `meta`, the fields its record must have (config hash, indices).

    **Returns:** name -> array.

    **Raises:** `BadChunk` saying what is wrong: unreadable, truncated, not a chunk, made by
    another config or for another place, arrays missing, extra or of the wrong shape or
    dtype, or a checksum that does not match.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            names = {f"{name}.npy" for name in expected} | {f"{META}.npy"}
            if set(members) != names:
                found = sorted(m.removesuffix(".npy") for m in members)
                raise BadChunk(f"holds {found}, expected {sorted(expected)} and {META}")
            record = _member(archive, members[f"{META}.npy"], None, None)
            try:
                record = json.loads(str(record))
            except ValueError:
                raise BadChunk(f"its {META} record is not JSON") from None
            if not isinstance(record, dict) or record.get("format") != FORMAT:
                raise BadChunk(f"its {META} record is not a linflow chunk record (format 1)")
            for key, value in meta.items():
                if record.get(key) != value:
                    raise BadChunk(
                        f"it was made for {key} = {record.get(key)!r}, not {value!r}"
                        + (" (by a different config)" if key == "config_hash" else "")
                    )
            arrays = {
                name: _member(archive, members[f"{name}.npy"], shape, dtype)
                for name, (shape, dtype) in expected.items()
            }
    except BadChunk:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as error:
        raise BadChunk(f"unreadable ({type(error).__name__}: {error})") from None
    if checksum(arrays) != record.get("checksum"):
        raise BadChunk("its checksum does not match its data")
    return arrays


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shape, dtype) -> np.ndarray:
    """One `.npy` member, its header checked before its data is read (memory stays bounded).

    `shape=None` reads the unicode scalar of the record (at most 64 KiB).
    """
    name = info.filename.removesuffix(".npy")
    nbytes = _META_BYTES if shape is None else int(np.prod(shape)) * np.dtype(dtype).itemsize
    if info.file_size > nbytes + 4096:  # an .npy header is well under 4 KiB
        raise BadChunk(f"{name} is {info.file_size} bytes, expected about {nbytes}")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            found_shape, fortran, found_dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            found_shape, fortran, found_dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise BadChunk(f"{name} has an unsupported .npy version {version}")
        if shape is None:
            if found_shape != () or found_dtype.kind != "U":
                raise BadChunk(f"{name} is not a text record")
        elif found_shape != tuple(shape) or found_dtype != np.dtype(dtype) or fortran:
            raise BadChunk(
                f"{name} has shape {found_shape} and dtype {found_dtype}, "
                f"expected {tuple(shape)} and {np.dtype(dtype)}"
            )
        data = f.read()  # reading to the end makes zipfile check the member's CRC-32
    count = int(np.prod(found_shape))
    if len(data) != count * found_dtype.itemsize:
        raise BadChunk(f"{name} is truncated")
    array = np.frombuffer(data, found_dtype, count).reshape(found_shape)
    return array[()] if shape is None else array
