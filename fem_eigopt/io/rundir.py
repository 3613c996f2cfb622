"""Run directories and atomic result files.

Every file of a run directory is written atomically: to a temporary file in the same directory,
flushed and fsynced, then moved over the target with :func:`os.replace`, so a crash or Ctrl-C
never leaves a half-written file behind (a reader sees the old version or the new one). The files
get the permissions the user's umask gives new files (``0o666 & ~umask``, e.g. 0644), not the
0600 of :func:`tempfile.mkstemp`.
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

logger = logging.getLogger(__name__)

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_json", "write_csv", "save_npz",
           "new_run_directory", "to_jsonable", "current_umask"]


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
