"""Run directories and atomic result files.

Every file of a run directory is written atomically: to a temporary file in the same directory,
flushed and fsynced, then moved over the target with :func:`os.replace`, so a crash or Ctrl-C
never leaves a half-written file behind (a reader sees the old version or the new one). The files
get the permissions the user's umask gives new files (``0o666 & ~umask``, e.g. 0644), not the
0600 of :func:`tempfile.mkstemp`.

One process writes a run (or sweep) directory at a time: :class:`DirectoryLock` holds the
operating system's lock on the directory's ``.lock`` file while a run, a resume or a sweep writes
there, so that a second ``--resume`` of a directory still in use is refused instead of two
processes interleaving their checkpoints. The operating system drops the lock when its process
ends, however it ends (a killed run leaves no stale lock behind).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from fem_eigopt.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_json", "write_csv", "save_npz",
           "new_run_directory", "to_jsonable", "current_umask", "DirectoryLock", "LOCK_NAME"]

#: the lock file of a run or sweep directory (:class:`DirectoryLock`)
LOCK_NAME = ".lock"


def current_umask() -> int:
    """The process's umask (read from ``/proc/self/status`` where Linux has it, else set and reset)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no way to read it without setting it; restored at once
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    The file gets the mode a plain ``open(path, "w")`` would give it (``0o666 & ~umask``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Numpy scalars/arrays and paths to plain JSON types; NaN/inf to None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if np.isfinite(v) else None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, str)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def write_json(path: str | Path, obj: Any) -> Path:
    """JSON (indented, NaN → null) written atomically."""
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2) + "\n")


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None) -> Path:
    """A CSV table from dict rows (union of keys in first-seen order unless ``columns`` given)."""
    rows = list(rows)
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_cell(r.get(k)) for k in columns})
    return atomic_write_text(path, buf.getvalue())


def _csv_cell(v: Any) -> Any:
    if isinstance(v, (list, tuple, np.ndarray)):
        return " ".join(f"{float(x):.10g}" for x in np.ravel(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.10g}"
    return v


def save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """``numpy.savez_compressed`` written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def new_run_directory(root: str | Path, problem_name: str, parameters: Mapping[str, Any]) -> Path:
    """``root/<problem>/<YYYYmmdd-HHMMSS>-<hash>/``: the hash is of the parameters (8 hex digits),
    so runs of the same settings sort together and different settings never collide."""
    digest = hashlib.sha1(json.dumps(to_jsonable(parameters), sort_keys=True).encode()).hexdigest()[:8]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / problem_name
    path = base / f"{stamp}-{digest}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"{stamp}-{digest}-{n}"
    path.mkdir(parents=True)
    return path


class DirectoryLock:
    """The lock of a run or sweep directory: held by the one process that writes there.

    :meth:`acquire` does not wait: when another process holds the lock it raises an
    :class:`InputError` naming the directory. Used as a context manager it is acquired on entry
    (unless held already) and released on exit. The lock is the operating system's (``flock`` on
    POSIX, via the ``filelock`` package), so it ends with its process, however that ends. On a
    file system without locks the directory is used unlocked, with a warning.

    Parameters
    ----------
    directory : str or Path
        An existing run or sweep directory.
    what : str
        What the directory holds ("run", "sweep"), for the message.
    """

    def __init__(self, directory: str | Path, what: str) -> None:
        from filelock import FileLock

        self.directory, self.what = Path(directory), what
        self._lock = FileLock(self.directory / LOCK_NAME, timeout=0)
        self.held = False

    def acquire(self) -> DirectoryLock:
        """Take the lock now (a no-op when this object holds it already)."""
        from filelock import Timeout

        if self.held:
            return self
        try:
            self._lock.acquire()
        except Timeout:
            raise InputError(f"{self.directory}: in use by another process (it holds {LOCK_NAME} there); "
                             f"allowed: one process at a time per {self.what} directory: let that {self.what} "
                             "end, or stop it, then resume") from None
        except (OSError, NotImplementedError) as exc:
            logger.warning("%s: cannot lock %s (%s); nothing stops a second process from writing there",
                           self.directory, LOCK_NAME, exc)
            return self
        self.held = True
        return self

    def release(self) -> None:
        """Let the lock go (a no-op when it is not held)."""
        if self.held:
            self._lock.release()
            self.held = False

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
