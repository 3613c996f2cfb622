"""Optimisation runs: the evaluator, the optimiser, continuation, progress and the run directory.

:func:`optimize` is the library entry (returns a :class:`RunResult`), also behind
``python -m fem_eigopt PROBLEM.py``; :func:`resume` continues a stopped run in its own
directory (``python -m fem_eigopt --resume RUN_DIR``). A run directory holds

* ``summary.json`` — problem, status, objective, evaluations, ω and f before/after, volume
  fraction, wall time (the keys are a contract: tools read them);
* ``run.json`` — parameters, settings, versions, the options a resume needs (``run_options``),
  and one entry per resume (``resumes``); written when the run starts;
* ``history.csv`` — one row per evaluation (objective, max constraint, first eigenvalues, volume,
  design change, β, time and per-stage timings);
* ``design.npz`` — design variables, physical densities, final modes;
* ``design_best.npz`` — the best feasible design of the current continuation stage
  (:class:`_StageBest`), so that a stopped or killed run keeps it;
* ``checkpoint.pkl`` — everything :func:`resume` needs (:mod:`fem_eigopt.io.checkpoint`):
  written when the run starts, every :func:`checkpoint_every` evaluations and at every stop;
* ``design.png``, ``modes.png``, ``convergence.png``, ``mode1.gif``, ``design.gif``,
  ``shape.png`` (shape designs), ``design.vtu`` and ``design.vtu.series`` with ``snapshots/``
  (:func:`fem_eigopt.io.snapshots.write_run_pictures`, snapshots every
  :func:`~fem_eigopt.io.snapshots.snapshot_every` evaluations);
* ``run.log`` — the package's log records of the run (what the logging configuration lets
  through the ``fem_eigopt`` logger: INFO and above from the command line).

Every file is written atomically (``run.log`` excepted: it grows during the run).

Checkpoints and resuming
------------------------
A checkpoint is the state between two optimiser iterations (:class:`~fem_eigopt.optimize.driver.DriverState`:
history, best points, counters, our MMA's asymptotes and iterates) together with the state of
the run around the optimiser: the β continuation (:meth:`~fem_eigopt.design.projection.BetaContinuation.state`),
the stage and its best objective, and what the evaluator's next evaluation depends on besides
the design (the previous densities, to which the cluster alignment and the inexact-gradient
tolerance refer; the eigen solver's mode weights; the responses' own state, e.g. a tracked
mode's reference vectors). Written every :func:`checkpoint_every` evaluations, the cadence of the
snapshots (about 60 per run: a killed run loses at most that many evaluations, and each write
costs a file sync and the pickling of the history) and at every stop: the evaluation budget,
convergence, stagnation, Ctrl-C, SIGTERM, an error. A stop keeps the last state taken, so an
evaluation in progress at an interrupt is lost and done again on resume.

:func:`resume` rebuilds the problem from ``run.json`` (its file, parameters, backend and eigen
solver), the optimiser settings from the checkpoint, restores everything above and continues in
the same directory: the history, the snapshots and ``run.log`` go on. With our MMA
(``algorithm="MMA"``) the resumed run ends exactly where an uninterrupted one ends when the
eigen solver depends on the design alone (``"arpack"``, the choice of ``"auto"`` for small 2D
models); the warm-started iterative solvers (``"subspace"``, ``"amg"``) restart cold, so their
results agree to the solver's tolerance, not bitwise. NLopt's internal state is out of reach: a
resumed NLopt run starts a new NLopt run from the best design of the current stage (see
:mod:`fem_eigopt.optimize.driver`). A finished run (any stop but INTERRUPTED, ERROR and
FORCED_STOP) is not resumed. The run, and then each resume, holds the lock of its directory
(:class:`~fem_eigopt.io.rundir.DirectoryLock`): a ``--resume`` of a run still going (its status
is RUNNING until it stops) is refused with one line instead of writing there too.

Console and logging
-------------------
:func:`optimize` prints nothing: it logs through ``logging.getLogger(__name__)``, and only the
command line (:mod:`fem_eigopt.cli`) configures handlers. Each evaluation is one log record at
INFO (``progress=True``) or DEBUG (``progress=False``) whose message is a table row; the table
header is logged before the first row and again every :data:`HEADER_EVERY` rows. The records that
concern progress carry a dict under the attribute :data:`PROGRESS_ATTR` (``"event"``:
``"start"``, ``"header"``, ``"evaluation"`` or ``"end"`` and the numbers), from which the command
line draws its progress display; other handlers just see the text.

To run :func:`optimize` quietly (a sweep, a notebook): pass ``progress=False`` and leave the
``fem_eigopt`` logger at its default level (WARNING through the root logger) or capture it with a
handler of your own; nothing else reaches the console.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import pickle
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from fem_eigopt.design.density import solid_pieces
from fem_eigopt.design.projection import BetaContinuation
from fem_eigopt.errors import InputError
from fem_eigopt.fem.assembly import support_dofs
from fem_eigopt.io.checkpoint import (
    CHECKPOINT_NAME,
    object_state,
    read_checkpoint,
    restore_object_state,
    write_checkpoint,
)
from fem_eigopt.io.rundir import DirectoryLock, new_run_directory, save_npz, write_csv, write_json
from fem_eigopt.io.snapshots import SnapshotRecorder, snapshot_every, write_run_pictures
from fem_eigopt.optimize.driver import (
    DriverState,
    OptimizeResult,
    OptimizerSettings,
    Record,
    minimize,
)
from fem_eigopt.optimize.evaluator import DesignEvaluator
from fem_eigopt.optimize.shape_evaluator import (
    ShapeEvaluator,
    make_evaluator,
    shape_summary,
)
from fem_eigopt.problem.definition import DensityDesign, Problem
from fem_eigopt.responses.base import void_fraction

logger = logging.getLogger(__name__)

__all__ = ["RunResult", "optimize", "resume", "run_problem", "run_design", "read_design",
           "latest_design_file", "default_settings", "provenance", "checkpoint_every", "PROGRESS_ATTR",
           "HEADER_EVERY", "FAILED_STATUSES", "RESUMABLE_STATUSES"]

#: attribute of the progress log records holding their data (see the module docstring)
PROGRESS_ATTR = "fem_eigopt_progress"

#: the per-evaluation table header is repeated every this many rows
HEADER_EVERY = 25

#: optimiser stop reasons that are not a normal end (``summary.json``'s ``"success"`` is false);
#: every other status (convergence, stagnation, the evaluation budget) is a normal end
FAILED_STATUSES = ("INTERRUPTED", "ERROR", "FAILURE", "FORCED_STOP", "INVALID_ARGS", "OUT_OF_MEMORY",
                   "ROUNDOFF_LIMITED")

#: checkpoint statuses :func:`resume` continues from: a run still going (a killed run's last
#: checkpoint), or stopped before its end by Ctrl-C/SIGTERM, an error or the caller
RESUMABLE_STATUSES = ("RUNNING", "INTERRUPTED", "ERROR", "FORCED_STOP")

_PACKAGE_LOGGER = "fem_eigopt"

#: a point is feasible for ``design_best.npz`` when max g is below this or the settings' tolerance
_FEASIBLE_TOL = 1e-6

#: what writing a checkpoint may raise (a full disk, an object that cannot be pickled): logged,
#: the run goes on
_CHECKPOINT_ERRORS = (OSError, pickle.PicklingError, TypeError, AttributeError, RecursionError)


@dataclass
class RunResult:
    """What an optimisation run produced.

    Attributes
    ----------
    summary : dict
        The content of ``summary.json``.
    result : OptimizeResult
        The optimiser's result (status, history, best point).
    densities : ndarray (n_elem,)
        Physical densities of the final (best) design.
    run_dir : Path or None
        Where the files were written (None when ``out_dir`` was None).
    evaluator : DesignEvaluator
    history : list of dict
        The rows of ``history.csv``.
    """

    summary: dict
    result: OptimizeResult
    densities: np.ndarray
    run_dir: Path | None
    evaluator: DesignEvaluator
    history: list = field(default_factory=list)


def default_settings(problem: Problem) -> OptimizerSettings:
    """The problem's optimiser settings, or ``OptimizerSettings()`` when it gives none.

    Parameters
    ----------
    problem : Problem

    Returns
    -------
    OptimizerSettings
        ``problem.optimizer``, else the dataclass's defaults (the only definition of them).

    Raises
    ------
    InputError
        ``problem.optimizer`` is neither None nor an :class:`OptimizerSettings`.
    """
    if problem.optimizer is None:
        return OptimizerSettings()
    if not isinstance(problem.optimizer, OptimizerSettings):
        raise InputError(f"{problem.label}: optimizer = {problem.optimizer!r}; allowed: None or a "
                         "fem_eigopt.OptimizerSettings")
    return problem.optimizer


def checkpoint_every(max_eval: int) -> int:
    """Evaluations between two periodic checkpoints (and writes of ``design_best.npz``).

    The snapshot cadence (:func:`~fem_eigopt.io.snapshots.snapshot_every`): about 60 over the
    budget, every evaluation up to 60. A run killed without warning loses at most this many
    evaluations; every other stop writes its own checkpoint.
    """
    return snapshot_every(max_eval)


def void_modes(evaluator, solved: dict) -> list[int]:
    """Numbers (1-based) of the final modes that are local modes of the void: over half their
    kinetic energy in elements with ρ̄ < 0.1 (:func:`~fem_eigopt.responses.base.void_fraction`).
    A warning names those the objective or the constraints use: the optimiser then works on
    a mode that moves no structural material."""
    fractions = void_fraction(evaluator.model, solved["vectors"], solved["rho"], solved["s_M"])
    modes = [i + 1 for i in np.flatnonzero(fractions > 0.5)]
    used = max(r.max_mode for r in [evaluator.objective, *evaluator.constraints])
    if modes and modes[0] <= used:
        logger.warning("mode(s) %s: local modes of void elements (most of their kinetic energy where "
                       "ρ̄ < 0.1), among the modes the responses use (1-%d); the mass interpolation lets "
                       "light elements vibrate on their own (docs/guide/designs.md, interpolations)",
                       ", ".join(str(m) for m in modes if m <= used), used)
    return modes


#: Grey fraction above which a design is too grey for its solid part (ρ̄ > 0.5) to mean much
CRISP_ENOUGH = 0.1


def design_connectivity(model, densities: np.ndarray, volumes: np.ndarray, warn: bool = True) -> dict[str, Any]:
    """Whether the solid part of a density design (ρ̄ > 0.5) holds together between its supports.

    Returns
    -------
    dict
        ``solid_pieces``: the number of pieces the solid elements form, joined where they share a
        vertex (:func:`~fem_eigopt.design.density.solid_pieces`); ``supports_joined``: one piece
        touches every support (a support in void, or two supports on separate pieces, is False);
        ``floating_solid_fraction``: the share of the solid volume in pieces that touch no support.
        With ``warn``, a warning says when the supports are not joined or more than 1 % of the
        solid floats: the optimum of a frequency problem may well be such a design (two stubby
        cantilevers beat a long beam), and nothing but a look at it tells. The run warns only for
        designs at most :data:`CRISP_ENOUGH` grey; in a grey design the solid part is noise.
    """
    labels, n = solid_pieces(model.basis.mesh, densities)
    per_support = [set(labels[np.isin(model.element_dofs, dofs).any(axis=1) & (labels >= 0)].tolist())
                   for dofs in support_dofs(model.problem, model.basis, model.dof_component)]
    joined = bool(per_support) and bool(set.intersection(*per_support))
    held = set().union(*per_support) if per_support else set()
    solid = labels >= 0
    floating = solid & ~np.isin(labels, list(held))
    fraction = float(volumes[floating].sum() / volumes[solid].sum()) if solid.any() else 0.0
    if warn and per_support and not joined:
        logger.warning("the solid design (ρ̄ > 0.5, %d piece(s)) does not join the supports: no piece of solid "
                       "material touches all %d of them", n, len(per_support))
    if warn and fraction > 0.01:
        logger.warning("%.1f %% of the solid material (ρ̄ > 0.5) floats: pieces that touch no support", 100 * fraction)
    return {"solid_pieces": n, "supports_joined": joined, "floating_solid_fraction": fraction}


def grey_fraction(densities: np.ndarray, volumes: np.ndarray, low: float = 0.1, high: float = 0.9) -> float:
    """Volume fraction of the elements whose physical density lies strictly between ``low`` and ``high``.

    Parameters
    ----------
    densities : ndarray (n_elem,)
        Physical (filtered and projected) densities.
    volumes : ndarray (n_elem,)
        Element volumes (areas in 2D).

    Returns
    -------
    float
        0 for a black-and-white design; a crisp design has at most a few per cent (the
        elements along the solid–void interface).
    """
    grey = (densities > low) & (densities < high)
    return float(np.sum(volumes[grey]) / np.sum(volumes))


def time_to_final(history: Sequence, fraction: float = 0.95) -> dict[str, Any]:
    """Evaluations and seconds until the objective first came within ``1 − fraction`` of its final value.

    The objective is the optimiser's (minimised) one, judged as the driver judges points (a bound
    formulation by its eigenvalues, not by its lagging bound variable); "95 % of the final
    objective" for a maximised frequency ω1 means λ1/λ_ref within 5 % of the final one.

    Parameters
    ----------
    history : sequence of Record
    fraction : float

    Returns
    -------
    dict
        ``evaluations_to_95`` and ``time_to_95_s`` (keys named for the default fraction), None
        without history.
    """
    values = [_record_merit(r)[0] for r in history]
    if not values:
        return {"evaluations_to_95": None, "time_to_95_s": None}
    final = values[-1]
    target = final + (1.0 - fraction) * abs(final)
    first = next(i for i, v in enumerate(values) if v <= target)
    return {"evaluations_to_95": int(history[first].eval), "time_to_95_s": float(history[first].time)}


def _record_merit(record: Record) -> tuple[float, float]:
    """(f, max g) of ``record`` as the driver judges points (``info["merit"]`` when the evaluation
    gives one: a bound formulation by its eigenvalues, not by its lagging bound variable)."""
    merit = record.info.get("merit")
    return (float(merit[0]), float(merit[1])) if merit is not None else (float(record.f), float(record.max_g))


def _history_row(record, n_show: int, names: list[str]) -> dict[str, Any]:
    info = record.info
    row = {
        "eval": record.eval,
        "run": record.run,
        "f": record.f,
        "max_g": record.max_g,
        "change": record.change,
        "volume_fraction": info.get("volume_fraction"),
        "beta": info.get("beta"),
        "time_s": record.time,
    }
    for j, om in enumerate(np.asarray(info.get("omega", []))[:n_show]):
        row[f"omega{j + 1}"] = float(om)
    for k, v in info.get("timings", {}).items():
        row[f"t_{k}"] = v
    row["clusters"] = " ".join("-".join(str(i + 1) for i in c) for c in info.get("clusters", []))
    for name, value in zip(names, np.atleast_1d(record.g)):
        row[f"g_{name}"] = float(value)
    for t in info.get("tracked_modes", []):
        row["tracked_mode"] = t["mode"]
        row["tracked_mac"] = t["mac"]
        if t.get("mac_matrix") is not None:
            # diagonal of MAC(previous, current): 1 = the mode kept its shape and its place
            row["mac_diagonal"] = np.diag(np.asarray(t["mac_matrix"])).round(4).tolist()
    return row


# ----------------------------------------------------------------------------------------------
# entries


def optimize(problem: Problem, out_dir: str | Path | None = "results", max_eval: int | None = None,
             settings: OptimizerSettings | None = None, backend: str | None = None,
             progress: bool = True, command_line: Sequence[str] | None = None,
             run_log: bool = True, should_stop: Callable[[list], Any] | None = None) -> RunResult:
    """Optimise ``problem`` and (unless ``out_dir`` is None) write a run directory.

    Parameters
    ----------
    problem : Problem
        With a DensityDesign or a ShapeDesign, an objective and constraints.
    out_dir : str, Path or None
        Root of run directories (``out_dir/<problem>/<stamp>-<hash>/``, always a new one); None
        writes nothing.
    max_eval : int, optional
        Overrides the settings' evaluation budget.
    settings : OptimizerSettings, optional
        Overrides the problem's settings.
    backend : str, optional
        Factorisation backend.
    progress : bool
        Log the per-evaluation table (one row per evaluation, the header repeated) and the
        progress records at INFO level; False: at DEBUG, so that a caller whose logging stops at
        INFO (a sweep) sees only the run's start, end and warnings. See the module docstring.
    command_line : sequence of str, optional
        Recorded in ``run.json`` (default: ``sys.argv``).
    run_log : bool
        Write ``run.log`` into the run directory (the records reaching the ``fem_eigopt``
        logger during the run; its level is not changed).
    should_stop : callable, optional
        ``should_stop(history)`` after each evaluation (:func:`~fem_eigopt.optimize.driver.minimize`):
        ``"stop"`` or True ends the run with ``"FORCED_STOP"`` (resumable); a KeyboardInterrupt
        raised there stops it like Ctrl-C.

    Returns
    -------
    RunResult

    Raises
    ------
    InputError
        Bad problem settings, or ``max_eval < 1``.
    OSError
        The run directory cannot be created or written.
    """
    t_start = time.perf_counter()
    settings = settings or default_settings(problem)
    if max_eval is not None:
        if max_eval < 1:
            raise InputError(f"--max-eval {max_eval}; allowed: an integer >= 1")
        settings = replace(settings, max_eval=max_eval)
    with _run_log(run_log and out_dir is not None) as log_handler:
        session = _Session.fresh(problem, out_dir, settings, backend, progress, command_line, log_handler, t_start)
        with session.lock:
            return session.run(should_stop)


def resume(run_dir: str | Path, progress: bool = True, command_line: Sequence[str] | None = None,
           run_log: bool = True, should_stop: Callable[[list], Any] | None = None) -> RunResult:
    """Continue the stopped run of ``run_dir`` from its checkpoint, in the same directory.

    Parameters
    ----------
    run_dir : str or Path
        A run directory with ``run.json`` and ``checkpoint.pkl``.
    progress, command_line, run_log, should_stop
        As for :func:`optimize` (the command line is recorded under ``resumes`` in ``run.json``).

    Returns
    -------
    RunResult
        As :func:`optimize` returns it for the whole run (history and evaluations from the start).

    Raises
    ------
    InputError
        One line: ``run_dir`` is no run directory, its checkpoint is missing or damaged, the run
        is finished, or its problem file now gives another number of variables or constraints.
    """
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory; allowed: a run directory "
                         "(results/<problem>/<stamp>-<hash>) with a checkpoint.pkl")
    with DirectoryLock(run_dir, "run"):  # not while the run (or another resume) still writes there
        content = read_checkpoint(run_dir)
        _check_resumable(run_dir, content)
        with _run_log(run_log) as log_handler:
            session = _Session.resumed(run_dir, content, progress, command_line, log_handler, t_start)
            return session.run(should_stop)


def _check_resumable(run_dir: Path, content: dict) -> None:
    """Refuse a finished run (one line naming it, its status and what may be resumed)."""
    status = content.get("status")
    if status not in RESUMABLE_STATUSES:
        raise InputError(f"{run_dir}: the run is finished ({status} after {content.get('evaluations_done')} "
                         f"evaluations: {content.get('message')}); allowed: a run stopped before its end "
                         f"(status {', '.join(RESUMABLE_STATUSES[1:])}, or killed)")


def run_problem(run_dir: str | Path, overrides: Mapping[str, Any] | None = None) -> tuple[dict, Problem]:
    """The ``run.json`` of a run directory and its problem, rebuilt as the run used it.

    The problem file is the recorded ``source`` (relative paths are taken from the recorded
    working directory when they exist there), with the recorded parameters and the eigen solver
    of ``run_options`` (a ``--eigensolver`` given to the run). ``overrides`` (parameter values,
    strings as from ``--set``) replace recorded parameters: ``modal --design RUN_DIR --set
    element=quad2`` analyses the run's design with another element.

    Raises
    ------
    InputError
        One line: no such directory, no or an unreadable ``run.json``, no problem file named, or
        the problem file fails to load.
    """
    from fem_eigopt.problem.loading import load_problem

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        raise InputError(f"{run_dir}: not a run directory (no run.json)")
    try:
        info = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{run_json}: unreadable ({type(exc).__name__}: {exc})") from None
    if not info.get("source"):
        raise InputError(f"{run_json}: names no problem source file")
    problem = load_problem(_source_path(info), {**(info.get("parameters") or {}), **(overrides or {})})
    eigensolver = (info.get("run_options") or {}).get("eigensolver")
    if eigensolver and eigensolver != problem.analysis.eigensolver:
        problem = replace(problem, analysis=replace(problem.analysis, eigensolver=eigensolver))
    return info, replace(problem, source=str(info["source"]))


def read_design(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a saved design (``design.npz``, ``design_best.npz``).

    Raises
    ------
    InputError
        One line: unreadable, or a single array rather than an archive.
    """
    try:
        content = np.load(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({type(exc).__name__}: {exc}); allowed: a run directory's "
                         "design.npz") from None
    if not isinstance(content, np.lib.npyio.NpzFile):
        raise InputError(f"{path}: a single array, not a run's design archive; allowed: a run directory's "
                         "design.npz")
    with content:
        return {k: content[k] for k in content.files}


def run_design(run_dir: str | Path, overrides: Mapping[str, Any] | None = None
               ) -> tuple[dict, Problem, str, dict[str, np.ndarray]]:
    """(``run.json``, problem, file name, arrays) of a run directory's latest design
    (:func:`latest_design_file`).

    ``overrides`` as in :func:`run_problem`. Raises :class:`InputError` (one line) when the run
    directory or its design cannot be read.
    """
    info, problem = run_problem(run_dir, overrides)
    path = latest_design_file(run_dir)
    if path is None:
        raise InputError(f"{run_dir}: neither design.npz nor design_best.npz (no design saved yet)")
    return info, problem, path.name, read_design(path)


def latest_design_file(run_dir: str | Path) -> Path | None:
    """``design.npz`` of a run directory, or ``design_best.npz`` for a run stopped before writing
    it; None when there is neither."""
    return next((Path(run_dir) / n for n in ("design.npz", "design_best.npz") if (Path(run_dir) / n).is_file()), None)


def _source_path(info: dict) -> Path:
    """The problem file of a ``run.json``: its ``source``, relative to the recorded working
    directory when it is relative and there."""
    path = Path(info["source"])
    if not path.is_absolute() and info.get("cwd") and (Path(info["cwd"]) / path).is_file():
        return Path(info["cwd"]) / path
    return path


@contextlib.contextmanager
def _run_log(enabled: bool) -> Iterator[_RunLogHandler | None]:
    """A ``run.log`` handler on the package logger for the duration of a run (None if disabled)."""
    handler = _RunLogHandler() if enabled else None
    package_logger = logging.getLogger(_PACKAGE_LOGGER)
    if handler is not None:
        package_logger.addHandler(handler)
    try:
        yield handler
    finally:
        if handler is not None:
            package_logger.removeHandler(handler)
            handler.close()


# ----------------------------------------------------------------------------------------------
# one run in a run directory


class _Session:
    """One optimisation, fresh (:meth:`fresh`) or resumed (:meth:`resumed`), and its outputs.

    Holds what lives around the optimiser: the evaluator, the β continuation and its stage, the
    snapshot recorder, the stage's best design, the progress table and the last state a
    checkpoint can be made of (:attr:`last`: the driver's state with the run's at that moment).
    A fresh session holds the lock of its run directory (:attr:`lock`, released by ``with``).
    """

    def __init__(self, problem: Problem, settings: OptimizerSettings, evaluator, run_dir: Path | None,
                 backend: str | None, progress: bool, t_start: float) -> None:
        self.problem, self.settings, self.evaluator = problem, settings, evaluator
        self.run_dir, self.backend, self.t_start = run_dir, backend, t_start
        self.level = logging.INFO if progress else logging.DEBUG
        self.continuation = _continuation(problem)
        self.stage = 0  # β changes so far
        self.every = checkpoint_every(settings.max_eval)
        self.best = _StageBest(None if run_dir is None else run_dir / "design_best.npz",
                               max(settings.constraint_tol, _FEASIBLE_TOL))
        self.recorder = None if run_dir is None else SnapshotRecorder(
            run_dir, evaluator.model, every=snapshot_every(settings.max_eval), n_modes=4)
        self.last: dict | None = None  # {"driver": DriverState | None, "run": dict | None}
        self.resume_state: DriverState | None = None
        self.elapsed_before = 0.0
        self.written_at = 0  # evaluations in the last checkpoint written
        self.reported = 0  # evaluations whose table row is logged
        self.rows = 0  # table rows logged by this session (the header repeats)
        self.last_time = time.perf_counter()
        self.n_show = min(4, evaluator.n_modes)
        self.source_sha1 = _file_sha1(problem.source)  # a resume warns when the problem file changed
        self._warned: set[str] = set()
        self.lock: contextlib.AbstractContextManager = contextlib.nullcontext()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def fresh(cls, problem: Problem, out_dir: str | Path | None, settings: OptimizerSettings,
              backend: str | None, progress: bool, command_line: Sequence[str] | None,
              log_handler: _RunLogHandler | None, t_start: float) -> _Session:
        """A new run: a new run directory (unless ``out_dir`` is None), ``run.json`` and the first
        checkpoint (a resume from it starts afresh)."""
        evaluator = make_evaluator(problem, backend=backend)
        if settings.algorithm is None:
            # see OptimizerSettings.algorithm: our MMA for densities, NLopt's CCSA for shape parameters
            settings = replace(settings, algorithm="LD_MMA" if isinstance(evaluator, ShapeEvaluator) else "MMA")
        if out_dir is None:
            session = cls(problem, settings, evaluator, None, backend, progress, t_start)
            session.begin()
            return session
        run_dir = new_run_directory(out_dir, problem.name or "problem", problem.parameters)
        lock = DirectoryLock(run_dir, "run").acquire()
        try:
            if log_handler is not None:
                log_handler.open(run_dir / "run.log")
            logger.info("run directory: %s", run_dir)
            session = cls(problem, settings, evaluator, run_dir, backend, progress, t_start)
            session.lock = lock
            write_json(run_dir / "run.json", session.run_json(provenance(evaluator, command_line)))
            session.begin()
            session.write_checkpoint("RUNNING", "started")
        except BaseException:
            lock.release()
            raise
        return session

    @classmethod
    def resumed(cls, run_dir: Path, content: dict, progress: bool, command_line: Sequence[str] | None,
                log_handler: _RunLogHandler | None, t_start: float) -> _Session:
        """The run of ``run_dir`` continued from its checkpoint ``content``."""
        info, problem = run_problem(run_dir)
        backend = (info.get("run_options") or {}).get("backend")
        evaluator = make_evaluator(problem, backend=backend)
        if log_handler is not None:
            log_handler.open(run_dir / "run.log")
        logger.info("resuming %s after %d evaluations (checkpoint status %s)", run_dir, content["evaluations"],
                    content["status"])
        session = cls(problem, content["settings"], evaluator, run_dir, backend, progress, t_start)
        session.begin()
        session.restore(content, _file_sha1(_source_path(info)))
        info.setdefault("resumes", []).append(
            {"from_evaluation": content["evaluations"], "checkpoint_status": content["status"],
             "command_line": shlex.join(str(a) for a in (sys.argv if command_line is None else command_line))})
        write_json(run_dir / "run.json", info)
        return session

    def begin(self) -> None:
        """Prepare the evaluator at the starting design and log the start."""
        ev = self.evaluator
        self.x0, self.lower, self.upper = ev.start()
        self.initial = ev(self.x0)
        self.initial_coordinates = (ev.last_analysis or {}).get("X")
        logger.log(self.level, "%d design variables, %d constraints, %d modes, filter radius %.4g, eigen solver %s, "
                   "backend %s, at most %d evaluations",
                   self.x0.size, self.initial.g.size, ev.n_modes, ev.filter_radius, type(ev.solver).__name__,
                   ev.solver.backend, self.settings.max_eval,
                   extra={PROGRESS_ATTR: {"event": "start", "total": int(self.settings.max_eval),
                                          "problem": self.problem.name, "n_show": self.n_show}})

    def restore(self, content: dict, source_sha1: str | None) -> None:
        """Take over a checkpoint's state (nothing to take when it was made before the first state);
        ``source_sha1``: of the problem file as it is now (a warning when it changed)."""
        if (content.get("n_variables"), content.get("n_constraints")) != (self.x0.size, self.initial.g.size):
            raise InputError(f"{self.run_dir}: the checkpoint has {content.get('n_variables')} variables and "
                             f"{content.get('n_constraints')} constraints, the problem file {self.problem.source} "
                             f"now gives {self.x0.size} and {self.initial.g.size}; allowed: the problem file as "
                             "it was when the run started")
        self.source_sha1 = content.get("problem", {}).get("source_sha1")
        if self.source_sha1 is not None and source_sha1 != self.source_sha1:
            logger.warning("%s changed since the run started; the run continues with the file as it is now",
                           self.problem.source)
        self.written_at = self.reported = int(content["evaluations"])
        self.last = {"driver": content["driver"], "run": content["run"]}
        if content["driver"] is None:
            return  # stopped before its first state: the run starts again
        self.resume_state = content["driver"]
        state = content["run"]
        if self.continuation is not None and state["continuation"] is not None:
            self.continuation.set_state(state["continuation"])
        self.stage = int(state["stage"])
        self.best.f = float(state["best_f"])
        self.elapsed_before = float(state["elapsed"])
        _restore_evaluator(self.evaluator, state["evaluator"])

    def run_json(self, provenance_info: dict) -> dict:
        """The content of ``run.json``."""
        p = self.problem
        return {"problem": p.name, "source": p.source, "parameters": p.parameters, "description": p.description,
                "settings": self.settings.__dict__, "objective": repr(p.objective),
                "constraints": [repr(c) for c in p.constraints],
                "run_options": {"backend": self.backend, "eigensolver": p.analysis.eigensolver},
                **provenance_info}

    # -- the run ----------------------------------------------------------------------------------

    def run(self, should_stop: Callable[[list], Any] | None) -> RunResult:
        """Optimise, then write the results."""
        return self.finish(self.optimise(should_stop))

    def optimise(self, should_stop: Callable[[list], Any] | None) -> OptimizeResult:
        """:func:`~fem_eigopt.optimize.driver.minimize` with this session's hooks; a stop by an
        exception writes its checkpoint before the exception goes on."""
        ev = self.evaluator
        # The optimiser's steps need gradients only as accurate as their size (SubspaceModalSolver's
        # tol_per_change); everything after the run (outputs, checks) gets the full accuracy.
        ev.inexact_gradients = True
        try:
            return minimize(ev, self.x0, self.lower, self.upper, self.settings, n_constraints=self.initial.g.size,
                            callback=self.callback, should_stop=should_stop, on_restart=ev.restart_point,
                            initial_steps=ev.initial_steps, resume=self.resume_state,
                            move_limits=ev.move_limits if isinstance(ev, DesignEvaluator) else None,
                            checkpoint=None if self.run_dir is None else self.on_state)
        except BaseException as exc:
            self.write_checkpoint("INTERRUPTED" if isinstance(exc, KeyboardInterrupt) else "ERROR",
                                  f"{type(exc).__name__}: {exc}")
            raise
        finally:
            ev.inexact_gradients = False

    def callback(self, record: Record) -> str | None:
        """After each evaluation: its table row, the stage's best, a snapshot when due, and the β
        continuation (``"restart"`` when β changes)."""
        self.report(record)
        if self.run_dir is not None:
            analysis = self.evaluator.last_analysis
            self.best.offer(record, analysis, self.evaluator.beta, self.stage)
            if self.recorder.due(record.eval):
                self.recorder(record.eval, analysis["rho"], analysis["modes"], coordinates=analysis.get("X"),
                              beta=self.evaluator.beta)
        if self.continuation is None or not self.continuation.step(record.change):
            return None
        self.evaluator.set_beta(self.continuation.beta)
        self._guarded("design_best.npz", self.best.flush)  # the ending stage's best, then afresh
        self.best.f = math.inf
        self.stage += 1
        logger.info("β = %g from evaluation %d on (continuation stage %d)", self.continuation.beta, record.eval + 1,
                    self.stage + 1)
        return "restart"

    def report(self, record: Record) -> None:
        """Log the table row of ``record`` (and the header before it every HEADER_EVERY rows)."""
        info = record.info
        now = time.perf_counter()
        if self.rows % HEADER_EVERY == 0:
            logger.log(self.level, self._header(), extra={PROGRESS_ATTR: {"event": "header"}})
        self.rows += 1
        self.reported = record.eval
        omega = np.asarray(info["omega"])[: self.n_show]
        om = " ".join(f"{v:10.4f}" for v in omega)
        beta = info.get("beta", 0.0)
        logger.log(self.level, f"{record.eval:5d} {record.f:12.6g} {record.max_g:10.3g} {om} "
                               f"{info['volume_fraction']:7.4f} {record.change:8.4f} {beta:6.3g} "
                               f"{now - self.last_time:7.3f}",
                   extra={PROGRESS_ATTR: {
                       "event": "evaluation", "eval": record.eval, "total": int(self.settings.max_eval), "f": record.f,
                       "max_g": record.max_g, "omega": omega.tolist(),
                       "frequencies_hz": np.asarray(info["frequencies_hz"])[: self.n_show].tolist(),
                       "beta": beta, "stage": self.stage + 1, "time": record.time}})
        self.last_time = now

    def _header(self) -> str:
        return (f"{'eval':>5} {'objective':>12} {'max g':>10} "
                + " ".join(f"{'ω' + str(j + 1):>10}" for j in range(self.n_show))
                + f" {'volume':>7} {'change':>8} {'beta':>6} {'s/eval':>7}")

    # -- checkpoints ------------------------------------------------------------------------------

    def on_state(self, state: DriverState) -> None:
        """The driver's hook: keep the state (with the run's) and write it every ``every`` evaluations."""
        self.last = {"driver": state, "run": self._run_state()}
        if state.n_history - self.written_at >= self.every:
            self.write_checkpoint("RUNNING", f"running, {state.n_history} evaluations done")

    def _run_state(self) -> dict:
        return {"continuation": None if self.continuation is None else self.continuation.state(),
                "stage": self.stage, "best_f": self.best.f, "elapsed": self.elapsed(),
                "evaluator": _evaluator_state(self.evaluator)}

    def elapsed(self) -> float:
        """Seconds of the whole run so far, over every session."""
        return self.elapsed_before + time.perf_counter() - self.t_start

    def write_checkpoint(self, status: str, message: str, done: int | None = None) -> None:
        """Write ``checkpoint.pkl`` from :attr:`last` with ``status`` (and ``done`` evaluations, when
        more were done than the state holds), then ``design_best.npz`` and ``history.csv`` as far
        as they go; a failure is logged (once) and the run goes on."""
        if self.run_dir is None:
            return
        driver = None if self.last is None else self.last["driver"]
        self._guarded(CHECKPOINT_NAME, lambda: write_checkpoint(self.run_dir, self._checkpoint(status, message, done)))
        self.written_at = 0 if driver is None else driver.n_history
        self._guarded("design_best.npz", self.best.flush)
        if driver is not None:
            self._guarded("history.csv", lambda: write_csv(self.run_dir / "history.csv",
                                                           self.history_rows(driver.history[: driver.n_history])))

    def _guarded(self, name: str, write: Callable[[], Any]) -> None:
        """Run ``write``; a failure (a full disk, an object that cannot be pickled) is logged once
        per file and the run goes on."""
        try:
            write()
        except _CHECKPOINT_ERRORS as exc:
            if name not in self._warned:
                logger.warning("%s not written: %s: %s", name, type(exc).__name__, exc)
            self._warned.add(name)

    def _checkpoint(self, status: str, message: str, done: int | None) -> dict:
        last = self.last or {"driver": None, "run": None}
        p = self.problem
        evaluations = 0 if last["driver"] is None else last["driver"].n_history
        return {"status": status, "message": message, "finished": status not in RESUMABLE_STATUSES,
                "evaluations": evaluations, "evaluations_done": max(evaluations, done or 0),
                "settings": self.settings, "n_variables": self.x0.size, "n_constraints": self.initial.g.size,
                "problem": {"name": p.name, "source": p.source, "parameters": dict(p.parameters),
                            "source_sha1": self.source_sha1},
                "driver": last["driver"], "run": last["run"]}

    # -- the end ----------------------------------------------------------------------------------

    def history_rows(self, records: Sequence[Record]) -> list[dict]:
        """The ``history.csv`` rows of ``records``."""
        return [_history_row(r, self.evaluator.n_modes, self.evaluator.constraint_names) for r in records]

    def finish(self, result: OptimizeResult) -> RunResult:
        """The stop's checkpoint, the final analysis, ``summary.json`` and every output file."""
        # the driver stops (budget, stagnation, interrupt) before the callback sees the last
        # evaluation: its row is logged here
        for record in result.history[self.reported:]:
            self.report(record)
        self.write_checkpoint(result.status, result.message, result.nfev)
        ev = self.evaluator
        if ev.solver.last_tol > ev.solver.tol:
            # the best design may have been solved to a step's looser tolerance: the results written
            # below (frequencies, mode shapes) get the full accuracy
            ev.clear_cache()
        final = ev(result.best_x)
        solved = ev.analyse(result.best_x[: ev.n_design])
        if self.run_dir is not None and result.history and result.history[-1].info.get("beta", 0.0) == ev.beta:
            self.best.final(result, solved, ev.beta, self.stage)
            self._guarded("design_best.npz", self.best.flush)
        summary = self.summary(result, final, solved)
        history = self.history_rows(result.history)
        if self.run_dir is not None:
            self.write_outputs(result, summary, history, solved)
        logger.info("%s after %d evaluations: ω = %s rad/s (initial %s), volume %.4f, %.1f s",
                    result.status, result.nfev,
                    np.array2string(np.asarray(final.info["omega"])[: self.n_show], precision=3),
                    np.array2string(np.asarray(self.initial.info["omega"])[: self.n_show], precision=3),
                    summary["volume_fraction"], summary["wall_time_s"],
                    extra={PROGRESS_ATTR: {"event": "end", "status": result.status, "evaluations": result.nfev}})
        return RunResult(summary=summary, result=result, densities=solved["rho"], run_dir=self.run_dir,
                         evaluator=ev, history=history)

    def summary(self, result: OptimizeResult, final, solved: dict) -> dict:
        """The content of ``summary.json``."""
        ev, initial, p = self.evaluator, self.initial, self.problem
        summary = {
            "problem": p.name,
            "source": p.source,
            "parameters": dict(p.parameters),
            "status": result.status,
            "success": result.status not in FAILED_STATUSES,
            "converged": bool(result.success),
            "feasible": bool(result.best_feasible),
            "interrupted_by": result.interrupted_by,
            "message": result.message,
            "objective": float(final.f),
            "objective_name": ev.objective.name,
            "max_constraint": float(np.max(final.g)) if final.g.size else None,
            "evaluations": int(result.nfev),
            "omega_initial": initial.info["omega"],
            "omega_final": final.info["omega"],
            "frequencies_hz_initial": initial.info["frequencies_hz"],
            "frequencies_hz_final": final.info["frequencies_hz"],
            "eigenvalues_final": final.info["eigenvalues"],
            "clusters_final": final.info["clusters"],
            "volume_fraction": float(final.info["volume_fraction"]),
            "beta": ev.beta,
            "filter_radius": ev.filter_radius,
            "n_elements": ev.model.n_elements,
            "n_free_dofs": ev.model.n_free,
            "wall_time_s": self.elapsed(),
        }
        summary.update(time_to_final(result.history))
        if isinstance(ev, ShapeEvaluator):
            summary.update(shape_summary(ev, final, initial))
        else:
            summary["grey_fraction"] = grey_fraction(solved["rho"], ev.chain.volumes)
            if "eroded_omega" in final.info:
                summary["eroded_omega_final"] = final.info["eroded_omega"]
            summary["void_modes"] = void_modes(ev, solved)
            summary.update(design_connectivity(ev.model, solved["rho"], ev.chain.volumes,
                                               warn=summary["grey_fraction"] <= CRISP_ENOUGH))
        return summary

    def write_outputs(self, result: OptimizeResult, summary: dict, history: list, solved: dict) -> None:
        """The run directory's result files: numbers first, then the pictures and ParaView files
        (:func:`~fem_eigopt.io.snapshots.write_run_pictures`, which never raises)."""
        run_dir, ev = self.run_dir, self.evaluator
        write_json(run_dir / "summary.json", summary)
        write_csv(run_dir / "history.csv", history)
        modes = solved["modes"]
        extra = {} if solved.get("X") is None else {"coordinates": solved["X"]}
        if extra and self.initial_coordinates is not None:
            extra["initial_coordinates"] = self.initial_coordinates
        save_npz(run_dir / "design.npz", design=solved["z"], densities=solved["rho"], eigenvalues=modes.eigenvalues,
                 vectors=modes.vectors, beta=np.float64(ev.beta), **extra)
        write_run_pictures(run_dir, self.problem, ev.model, solved["rho"], modes, history,
                           evaluation=result.nfev, beta=ev.beta, recorder=self.recorder,
                           coordinates=solved.get("X"), initial_coordinates=self.initial_coordinates,
                           void_modes=summary.get("void_modes"))


def _continuation(problem: Problem) -> BetaContinuation | None:
    """The problem's β schedule (None without projection or when β starts at its maximum)."""
    design = problem.design
    if isinstance(design, DensityDesign) and 0 < design.projection_beta < design.beta_max:
        return BetaContinuation(beta0=design.projection_beta, factor=design.beta_factor,
                                beta_max=design.beta_max, every=int(design.beta_every))
    return None


def _file_sha1(path: str | Path) -> str | None:
    """SHA-1 of a file's bytes (None when it cannot be read): tells whether a problem file changed."""
    try:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _is_response(value: Any) -> bool:
    """Objects whose state a checkpoint keeps: the responses and their helpers (tracked modes)."""
    return type(value).__module__.startswith("fem_eigopt.responses")


def _evaluator_state(evaluator) -> dict:
    """What the evaluator's next evaluation depends on besides the design.

    The previous densities: the cluster alignment rotates repeated modes for the change since
    the previous design, and the iterative eigen solvers' inexact-gradient tolerance follows
    that change (``DesignEvaluator._previous_rho``). The eigen solver's mode weights (set by the
    last gradients). The responses' attributes (a bound formulation's reference, a tracked mode's
    reference and previous vectors). The evaluation count and β. The same of the robust
    formulation's eroded realisation (``eroded``), if the design has one.
    """
    responses = [evaluator.objective, *evaluator.constraints]
    eroded = getattr(evaluator, "eroded", None)
    return {"beta": float(evaluator.beta), "n_evaluations": int(evaluator.n_evaluations),
            "previous_rho": getattr(evaluator, "_previous_rho", None),
            "mode_weights": evaluator.solver.mode_weights,
            "responses": [object_state(r, _is_response) for r in responses],
            "eroded": None if eroded is None else _evaluator_state(eroded)}


def _restore_evaluator(evaluator, state: dict) -> None:
    """Put :func:`_evaluator_state` back (after ``start()`` and the initial evaluation)."""
    if state["beta"] != evaluator.beta:
        evaluator.set_beta(state["beta"])
    evaluator.clear_cache()
    evaluator.n_evaluations = state["n_evaluations"]
    if hasattr(evaluator, "_previous_rho"):
        evaluator._previous_rho = state["previous_rho"]
    evaluator.solver.mode_weights = state["mode_weights"]
    for response, saved in zip([evaluator.objective, *evaluator.constraints], state["responses"]):
        restore_object_state(response, saved)
    eroded = getattr(evaluator, "eroded", None)
    if eroded is not None and state.get("eroded") is not None:
        _restore_evaluator(eroded, state["eroded"])


class _StageBest:
    """``design_best.npz``: the best feasible evaluation of the current continuation stage.

    Objectives of different stages (different β) are not comparable, so the best is reset when
    the stage changes (the run loop writes the ending stage's best and sets :attr:`f` to inf); until the new stage has a feasible evaluation the file
    keeps the previous stage's best, labelled by its ``stage`` and ``beta``. An improvement is
    kept in memory and written, atomically, with the next checkpoint, at a stage change and at
    every stop (:meth:`flush`): a write costs a file sync, of the order of a small model's
    evaluation, so writing every improvement would slow small runs measurably.

    The file holds ``design`` (z), ``densities``, ``eigenvalues``, ``beta``, ``evaluation``,
    ``stage`` (0-based), ``objective``, ``max_constraint`` and, for shape designs, ``coordinates``.
    """

    def __init__(self, path: Path | None, tol: float) -> None:
        self.path, self.tol = path, tol
        self.f = math.inf
        self.pending: dict | None = None

    def offer(self, record: Record, analysis: dict, beta: float, stage: int) -> None:
        """Keep ``record``'s design (analysed in ``analysis``) if feasible and the stage's best."""
        f, max_g = _record_merit(record)
        if not (max_g <= self.tol and f < self.f):
            return
        self.f = f
        self.pending = {"design": np.array(analysis["z"]), "densities": np.array(analysis["rho"]),
                        "eigenvalues": np.array(analysis["modes"].eigenvalues), "beta": np.float64(beta),
                        "evaluation": np.int64(record.eval), "stage": np.int64(stage),
                        "objective": np.float64(record.f), "max_constraint": np.float64(record.max_g)}
        if analysis.get("X") is not None:
            self.pending["coordinates"] = np.array(analysis["X"])

    def final(self, result: OptimizeResult, solved: dict, beta: float, stage: int) -> None:
        """Offer the driver's best point of the stage (analysed in ``solved``; the callbacks do not
        see the evaluation that ends a run)."""
        record = next((r for r in reversed(result.history) if r.f == result.best_fun), None)
        if record is not None:
            self.offer(record, solved, beta, stage)

    def flush(self) -> None:
        """Write the kept best, if it changed since the last write."""
        if self.pending is not None and self.path is not None:
            save_npz(self.path, **self.pending)
        self.pending = None


class _RunLogHandler(logging.Handler):
    """``run.log``: keeps the records until the run directory exists, then writes them to the file."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        self._pending: list[logging.LogRecord] = []
        self._stream = None

    def open(self, path: Path) -> None:
        """Start writing to ``path``; the records kept so far are written first."""
        self._stream = open(path, "a", encoding="utf-8")
        for record in self._pending:
            self._write(record)
        self._pending.clear()

    def _write(self, record: logging.LogRecord) -> None:
        self._stream.write(self.format(record) + "\n")
        self._stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._stream is None:
                self._pending.append(record)
            else:
                self._write(record)
        except Exception:  # a log file must never end the run
            self.handleError(record)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()


def _replace_settings(settings: OptimizerSettings, **changes) -> OptimizerSettings:
    from dataclasses import replace

    return replace(settings, **changes)


def _save_design(path: Path, evaluator: DesignEvaluator, solved: dict) -> None:
    save_npz(path, design=solved["z"], densities=solved["rho"], eigenvalues=solved["modes"].eigenvalues,
             beta=np.float64(evaluator.beta))



def provenance(evaluator: DesignEvaluator | None = None, command_line: Sequence[str] | None = None) -> dict:
    """What the results depend on besides the problem: for ``run.json``.

    Parameters
    ----------
    evaluator : DesignEvaluator, optional
        Gives the eigen solver and factorisation backend actually used.
    command_line : sequence of str, optional
        Default ``sys.argv``.

    Returns
    -------
    dict
        ``command_line`` (a shell-quoted string) and ``argv``, ``cwd``, ``solver`` (eigen solver
        class, factorisation backend, the requested settings), ``threads`` (threadpoolctl's view
        of each BLAS/OpenMP library, ``OMP/MKL/OPENBLAS_NUM_THREADS``), ``versions`` (Python,
        NumPy, SciPy, scikit-fem, NLopt, MKL, fem_eigopt), ``git`` (commit and whether the work
        tree has changes, when the package runs from a checkout) and ``machine`` (CPU model, cores,
        platform). Anything unknown is None.
    """
    from fem_eigopt import __version__

    argv = [str(a) for a in (sys.argv if command_line is None else command_line)]
    out: dict[str, Any] = {"command_line": shlex.join(argv), "argv": argv, "cwd": os.getcwd()}
    if evaluator is not None:
        a = evaluator.problem.analysis
        out["solver"] = {"eigensolver": type(evaluator.solver).__name__,
                         "backend": evaluator.solver.backend,
                         "requested_eigensolver": a.eigensolver, "requested_backend": a.backend}
    versions: dict[str, Any] = {"fem_eigopt": __version__, "python": platform.python_version(),
                                "numpy": np.__version__}
    for name, module in (("scipy", "scipy"), ("scikit-fem", "skfem"), ("nlopt", "nlopt")):
        try:
            versions[name] = getattr(__import__(module), "__version__", None)
        except ImportError:
            versions[name] = None
    threads: list[dict] = []
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            threads.append({"api": lib.get("internal_api"), "prefix": lib.get("prefix"),
                            "version": lib.get("version"), "threads": lib.get("num_threads"),
                            "threading_layer": lib.get("threading_layer")})
    except Exception:  # threadpoolctl missing or failing: provenance must not end a run
        pass
    versions["mkl"] = next((t["version"] for t in threads if t["api"] == "mkl"), None)
    if versions["mkl"] is None:
        versions["mkl"] = _mkl_version()
    out["versions"] = versions
    out["threads"] = {"libraries": threads,
                      "environment": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                                      "OPENBLAS_NUM_THREADS")}}
    out["machine"] = {"cpu": _cpu_model(), "cores": os.cpu_count(),
                      "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                      "platform": platform.platform()}
    out["git"] = _git_state()
    return out


def _mkl_version() -> str | None:
    try:
        import ctypes

        from fem_eigopt.linalg import mkl

        mkl.load_pardiso()
        get = mkl._mkl_library.MKL_Get_Version_String
        get.argtypes = [ctypes.c_char_p, ctypes.c_int]
        get.restype = None
        buf = ctypes.create_string_buffer(256)
        get(buf, 256)
        return buf.value.decode(errors="replace").strip() or None
    except Exception:  # MKL not there
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_state() -> dict | None:
    """Commit and dirtiness of the checkout the package runs from (None when not a checkout)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "modified": bool(changes), "root": str(root)}
