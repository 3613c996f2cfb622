"""The checkpoint file of a run directory: what a stopped run needs to continue.

A checkpoint is one file, ``checkpoint.pkl``, written atomically (a temporary file in the run
directory, flushed and fsynced, then moved over the old one with :func:`os.replace`), so a crash
during the write leaves the previous checkpoint. Its content is a dict assembled by
:mod:`fem_eigopt.optimize.run` (optimiser state, continuation, history, …); this module only
writes and reads it, and checks that it is one:

* :func:`write_checkpoint` / :func:`read_checkpoint` — the file, with a format tag and version;
  a missing or damaged file is an :class:`~fem_eigopt.errors.InputError` of one line naming it;
* :func:`object_state` / :func:`restore_object_state` — the plain-data attributes of an object
  (numbers, strings, arrays, containers of them, and nested objects of chosen modules), for
  objects such as responses whose state grows during a run (a tracked mode's reference vector).

The file is a Python pickle (exact floats, NumPy arrays and the optimiser's records as they are).
Reading a pickle can run code, like importing a problem file: resume only run directories you
trust.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fem_eigopt.errors import InputError
from fem_eigopt.io.rundir import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_NAME", "FORMAT", "VERSION", "write_checkpoint", "read_checkpoint", "object_state",
           "restore_object_state"]

#: the checkpoint's file name in a run directory
CHECKPOINT_NAME = "checkpoint.pkl"
#: format tag and version stored in every checkpoint (a reader refuses others)
FORMAT = "fem_eigopt checkpoint"
VERSION = 1

#: types kept as they are by :func:`object_state`
_SCALARS = (bool, int, float, complex, str, bytes, type(None), np.integer, np.floating, np.bool_)
#: nesting depth up to which :func:`object_state` descends into nested objects
_MAX_DEPTH = 4


def write_checkpoint(run_dir: str | Path, content: dict) -> Path:
    """Write ``content`` to ``run_dir/checkpoint.pkl`` atomically.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.
    content : dict
        Anything picklable; ``format`` and ``version`` are added.

    Returns
    -------
    Path
        The checkpoint file.
    """
    data = pickle.dumps({"format": FORMAT, "version": VERSION, **content}, protocol=pickle.HIGHEST_PROTOCOL)
    return atomic_write_bytes(Path(run_dir) / CHECKPOINT_NAME, data)


def read_checkpoint(run_dir: str | Path) -> dict:
    """The content of ``run_dir/checkpoint.pkl``.

    Raises
    ------
    InputError
        One line naming the file: it is missing, cannot be read or unpickled, or is not a
        fem_eigopt checkpoint of this version.
    """
    path = Path(run_dir) / CHECKPOINT_NAME
    allowed = "allowed: the checkpoint.pkl that fem_eigopt writes into every run directory"
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint; {allowed} (runs of earlier versions have none)")
    try:
        content = pickle.loads(path.read_bytes())
    except Exception as exc:  # damaged or foreign pickles raise almost anything
        raise InputError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc}); {allowed}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise InputError(f"{path}: not a fem_eigopt checkpoint; {allowed}")
    if content.get("version") != VERSION:
        raise InputError(f"{path}: checkpoint version {content.get('version')!r}; allowed: version {VERSION} "
                         "(written by another fem_eigopt version)")
    return content


class _Nested:
    """The :func:`object_state` of a nested object (restored into the object in place)."""

    def __init__(self, state: dict) -> None:
        self.state = state


class _Items:
    """A list or tuple holding nested objects: the state of each item."""

    def __init__(self, items: list) -> None:
        self.items = items


_SKIP = object()


def object_state(obj: Any, descend: Callable[[Any], bool], depth: int = 0) -> dict:
    """The plain-data attributes of ``obj``, for :func:`restore_object_state`.

    Parameters
    ----------
    obj : object
        An object with a ``__dict__``.
    descend : callable
        ``descend(value)``: whether a nested object's own attributes are captured (e.g. the
        objects of one package); other objects are left out, like functions, models and meshes.
    depth : int
        Current nesting (objects deeper than a few levels are left out).

    Returns
    -------
    dict
        Attribute name to value: scalars and strings as they are, arrays copied, lists, tuples and
        dicts of those, nested states for the objects ``descend`` accepts.
    """
    out = {}
    for name, value in vars(obj).items():
        kept = _plain(value, descend, depth)
        if kept is not _SKIP:
            out[name] = kept
    return out


def _plain(value: Any, descend: Callable[[Any], bool], depth: int) -> Any:
    """``value`` as :func:`object_state` keeps it, or ``_SKIP``."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, np.ndarray):
        return _SKIP if value.dtype == object else value.copy()
    if isinstance(value, (list, tuple)):
        items = [_plain(v, descend, depth) for v in value]
        if any(i is _SKIP for i in items):
            return _SKIP
        if any(isinstance(i, (_Nested, _Items)) for i in items):
            return _Items(items)
        return type(value)(items) if type(value) in (list, tuple) else _SKIP
    if isinstance(value, dict):
        items = {k: _plain(v, descend, depth) for k, v in value.items()}
        ok = all(isinstance(k, _SCALARS) and v is not _SKIP and not isinstance(v, (_Nested, _Items))
                 for k, v in items.items())
        return items if ok and type(value) is dict else _SKIP
    if depth < _MAX_DEPTH and hasattr(value, "__dict__") and descend(value):
        return _Nested(object_state(value, descend, depth + 1))
    return _SKIP


def restore_object_state(obj: Any, state: dict) -> None:
    """Set the attributes of ``obj`` from :func:`object_state` (nested objects in place).

    Attributes the state does not name keep their values; nested objects that are missing now
    (or a list of another length) are skipped.
    """
    for name, saved in state.items():
        current = getattr(obj, name, None)
        if isinstance(saved, _Nested):
            if current is not None:
                restore_object_state(current, saved.state)
        elif isinstance(saved, _Items):
            _restore_items(current, saved)
        else:
            object.__setattr__(obj, name, saved)


def _restore_items(current: Any, saved: _Items) -> None:
    """Restore the items of a list or tuple holding nested objects: those in place, plain items
    of a list by assignment (a tuple's plain items cannot change and are kept)."""
    if not isinstance(current, (list, tuple)) or len(current) != len(saved.items):
        logger.debug("checkpoint: a list of nested objects changed length; its state is not restored")
        return
    for i, (item, state) in enumerate(zip(current, saved.items)):
        if isinstance(state, _Nested):
            restore_object_state(item, state.state)
        elif isinstance(state, _Items):
            _restore_items(item, state)
        elif isinstance(current, list):
            current[i] = state
