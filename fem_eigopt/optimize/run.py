"""Topology optimisation runs: the evaluator, NLopt, continuation, progress and the run directory.

:func:`optimize` is the library entry (returns a :class:`RunResult`), also behind
``python -m fem_eigopt PROBLEM.py``. A run directory holds

* ``summary.json`` — problem, status, objective, evaluations, ω and f before/after, volume
  fraction, wall time (the keys are a contract: tools read them);
* ``run.json`` — parameters, settings, versions;
* ``history.csv`` — one row per evaluation (objective, max constraint, first eigenvalues, volume,
  design change, β, time and per-stage timings);
* ``design.npz`` — design variables, physical densities, final modes; ``design_best.npz`` is
  refreshed during the run so an interrupted run keeps its best design;
* ``design.png``, ``convergence.png`` — pictures; ``design.vtu`` — densities and mode shapes
  for ParaView;
* ``run.log`` — the package's log records of the run (what the logging configuration lets
  through the ``fem_eigopt`` logger: INFO and above from the command line).

Every file is written atomically (``run.log`` excepted: it grows during the run).

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

import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fem_eigopt.design.projection import BetaContinuation
from fem_eigopt.errors import InputError
from fem_eigopt.io.rundir import new_run_directory, save_npz, write_csv, write_json
from fem_eigopt.optimize.driver import OptimizeResult, OptimizerSettings, minimize
from fem_eigopt.optimize.evaluator import DesignEvaluator
from fem_eigopt.optimize.shape_evaluator import ShapeEvaluator, make_evaluator, shape_summary
from fem_eigopt.problem.definition import DensityDesign
from fem_eigopt.problem.definition import Problem

logger = logging.getLogger(__name__)

__all__ = ["RunResult", "optimize", "default_settings", "provenance", "PROGRESS_ATTR", "HEADER_EVERY",
           "FAILED_STATUSES"]

#: attribute of the progress log records holding their data (see the module docstring)
PROGRESS_ATTR = "fem_eigopt_progress"

#: the per-evaluation table header is repeated every this many rows
HEADER_EVERY = 25

#: optimiser stop reasons that are not a normal end (``summary.json``'s ``"success"`` is false);
#: every other status (convergence, stagnation, the evaluation budget) is a normal end
FAILED_STATUSES = ("INTERRUPTED", "ERROR", "FAILURE", "FORCED_STOP", "INVALID_ARGS", "OUT_OF_MEMORY",
                   "ROUNDOFF_LIMITED")

_PACKAGE_LOGGER = "fem_eigopt"


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
    values = [_merit(r) for r in history]
    if not values:
        return {"evaluations_to_95": None, "time_to_95_s": None}
    final = values[-1]
    target = final + (1.0 - fraction) * abs(final)
    first = next(i for i, v in enumerate(values) if v <= target)
    return {"evaluations_to_95": int(history[first].eval), "time_to_95_s": float(history[first].time)}


def _merit(record) -> float:
    merit = record.info.get("merit")
    return float(merit[0]) if merit is not None else float(record.f)


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


def optimize(problem: Problem, out_dir: str | Path | None = "results", max_eval: int | None = None,
             settings: OptimizerSettings | None = None, backend: str | None = None,
             progress: bool = True, command_line: Sequence[str] | None = None,
             run_log: bool = True) -> RunResult:
    """Optimise ``problem`` and (unless ``out_dir`` is None) write a run directory.

    Parameters
    ----------
    problem : Problem
        With a DensityDesign, an objective and constraints.
    out_dir : str, Path or None
        Root of run directories (``out_dir/<problem>/<stamp>-<hash>/``); None writes nothing.
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
        settings = _replace_settings(settings, max_eval=max_eval)
    log_handler = _RunLogHandler() if (run_log and out_dir is not None) else None
    package_logger = logging.getLogger(_PACKAGE_LOGGER)
    if log_handler is not None:
        package_logger.addHandler(log_handler)
    try:
        return _optimize(problem, out_dir, settings, backend, progress, command_line, log_handler, t_start)
    finally:
        if log_handler is not None:
            package_logger.removeHandler(log_handler)
            log_handler.close()


def _optimize(problem: Problem, out_dir: str | Path | None, settings: OptimizerSettings, backend: str | None,
              progress: bool, command_line: Sequence[str] | None, log_handler: _RunLogHandler | None,
              t_start: float) -> RunResult:
    evaluator = make_evaluator(problem, backend=backend)
    if settings.algorithm is None:
        # see OptimizerSettings.algorithm: our MMA for densities, NLopt's CCSA for shape parameters
        settings = _replace_settings(settings, algorithm="LD_MMA" if isinstance(evaluator, ShapeEvaluator) else "MMA")
    run_dir = None
    if out_dir is not None:
        run_dir = new_run_directory(out_dir, problem.name or "problem", problem.parameters)
        if log_handler is not None:
            log_handler.open(run_dir / "run.log")
        logger.info("run directory: %s", run_dir)
    x0, lower, upper = evaluator.start()
    initial = evaluator(x0)
    design = problem.design
    continuation = None
    if isinstance(design, DensityDesign) and 0 < design.projection_beta < design.beta_max:
        continuation = BetaContinuation(beta0=design.projection_beta, factor=design.beta_factor,
                                        beta_max=design.beta_max, every=int(design.beta_every))
    n_show = min(4, evaluator.n_modes)
    level = logging.INFO if progress else logging.DEBUG
    total = int(settings.max_eval)
    logger.log(level, "%d design variables, %d constraints, %d modes, filter radius %.4g, eigen solver %s, "
               "backend %s, at most %d evaluations",
               x0.size, initial.g.size, evaluator.n_modes, evaluator.filter_radius, type(evaluator.solver).__name__,
               evaluator.solver.backend, total,
               extra={PROGRESS_ATTR: {"event": "start", "total": total, "problem": problem.name,
                                      "n_show": n_show}})
    header = f"{'eval':>5} {'objective':>12} {'max g':>10} " + " ".join(f"{'ω' + str(j + 1):>10}" for j in range(n_show)) \
        + f" {'volume':>7} {'change':>8} {'beta':>6} {'s/eval':>7}"
    best_holder: dict[str, Any] = {"f": np.inf}
    last_time = [time.perf_counter()]
    rows = [0]

    def report(record) -> None:
        """Log the table row of ``record`` (and the header before it every HEADER_EVERY rows)."""
        info = record.info
        now = time.perf_counter()
        if rows[0] % HEADER_EVERY == 0:
            logger.log(level, header, extra={PROGRESS_ATTR: {"event": "header"}})
        rows[0] += 1
        omega = np.asarray(info["omega"])[:n_show]
        om = " ".join(f"{v:10.4f}" for v in omega)
        beta = info.get("beta", 0.0)
        logger.log(level, f"{record.eval:5d} {record.f:12.6g} {record.max_g:10.3g} {om} "
                          f"{info['volume_fraction']:7.4f} {record.change:8.4f} {beta:6.3g} {now - last_time[0]:7.3f}",
                   extra={PROGRESS_ATTR: {
                       "event": "evaluation", "eval": record.eval, "total": total, "f": record.f,
                       "max_g": record.max_g, "omega": omega.tolist(),
                       "frequencies_hz": np.asarray(info["frequencies_hz"])[:n_show].tolist(),
                       "beta": beta, "stage": record.run + 1, "time": record.time}})
        last_time[0] = now

    def callback(record):
        report(record)
        feasible = record.max_g <= max(settings.constraint_tol, 1e-6)
        if run_dir is not None and feasible and record.f < best_holder["f"] and record.eval % 10 == 0:
            best_holder["f"] = record.f
            _save_design(run_dir / "design_best.npz", evaluator, evaluator.last_analysis)
        if continuation is not None and continuation.step(record.change):
            evaluator.set_beta(continuation.beta)
            logger.info("β = %g from evaluation %d on (continuation stage %d)", continuation.beta, record.eval + 1,
                        record.run + 2)
            return "restart"
        return None

    # The optimiser's steps need gradients only as accurate as their size (SubspaceModalSolver's
    # tol_per_change); everything after the run (outputs, checks) gets the full accuracy.
    evaluator.inexact_gradients = True
    try:
        result = minimize(evaluator, x0, lower, upper, settings, n_constraints=initial.g.size, callback=callback,
                          on_restart=evaluator.restart_point,
                          initial_steps=evaluator.initial_steps,
                          move_limits=evaluator.move_limits if isinstance(evaluator, DesignEvaluator) else None)
    finally:
        evaluator.inexact_gradients = False
    # the driver stops (budget, stagnation, interrupt) before the callback sees the last
    # evaluation: its row is printed here
    for record in result.history[rows[0]:]:
        report(record)
    if evaluator.solver.last_tol > evaluator.solver.tol:
        # the best design may have been solved to a step's looser tolerance: the results written
        # below (frequencies, mode shapes) get the full accuracy
        evaluator.clear_cache()
    final = evaluator(result.best_x)
    solved = evaluator.analyse(result.best_x[: evaluator.n_design])
    wall = time.perf_counter() - t_start
    summary = {
        "problem": problem.name,
        "source": problem.source,
        "parameters": {k: v for k, v in problem.parameters.items()},
        "status": result.status,
        "success": result.status not in FAILED_STATUSES,
        "converged": bool(result.success),
        "feasible": bool(result.best_feasible),
        "interrupted_by": result.interrupted_by,
        "message": result.message,
        "objective": float(final.f),
        "objective_name": evaluator.objective.name,
        "max_constraint": float(np.max(final.g)) if final.g.size else None,
        "evaluations": int(result.nfev),
        "omega_initial": initial.info["omega"],
        "omega_final": final.info["omega"],
        "frequencies_hz_initial": initial.info["frequencies_hz"],
        "frequencies_hz_final": final.info["frequencies_hz"],
        "eigenvalues_final": final.info["eigenvalues"],
        "clusters_final": final.info["clusters"],
        "volume_fraction": float(final.info["volume_fraction"]),
        "beta": evaluator.beta,
        "filter_radius": evaluator.filter_radius,
        "n_elements": evaluator.model.n_elements,
        "n_free_dofs": evaluator.model.n_free,
        "wall_time_s": wall,
    }
    summary.update(time_to_final(result.history))
    if isinstance(evaluator, ShapeEvaluator):
        summary.update(shape_summary(evaluator, final, initial))
    else:
        summary["grey_fraction"] = grey_fraction(solved["rho"], evaluator.chain.volumes)
    history = [_history_row(r, evaluator.n_modes, evaluator.constraint_names) for r in result.history]
    if run_dir is not None:
        _write_run(run_dir, problem, evaluator, result, summary, history, solved, settings,
                   provenance(evaluator, command_line))
    logger.info("%s after %d evaluations: ω = %s rad/s (initial %s), volume %.4f, %.1f s",
                result.status, result.nfev, np.array2string(np.asarray(final.info["omega"])[:n_show], precision=3),
                np.array2string(np.asarray(initial.info["omega"])[:n_show], precision=3),
                summary["volume_fraction"], wall,
                extra={PROGRESS_ATTR: {"event": "end", "status": result.status, "evaluations": result.nfev}})
    return RunResult(summary=summary, result=result, densities=solved["rho"], run_dir=run_dir,
                     evaluator=evaluator, history=history)


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


def _user_mode(path: Path) -> Path:
    """Give ``path`` the mode the user's umask gives new files (writers using ``mkstemp`` make 0600)."""
    from fem_eigopt.io.rundir import current_umask

    os.chmod(path, 0o666 & ~current_umask())
    return path


def _write_run(run_dir: Path, problem: Problem, evaluator: DesignEvaluator, result: OptimizeResult,
               summary: dict, history: list, solved: dict, settings: OptimizerSettings,
               provenance_info: dict | None = None) -> None:
    """Write the run directory's files: numbers first, then pictures and ParaView files.

    The pictures block at the end is where further pictures go (each guarded: a picture must
    never cost the user the result files).
    """
    from fem_eigopt.io.paraview import save_vtu
    from fem_eigopt.io.pictures import (
        convergence_figure,
        save_design_png,
        save_figure_png,
    )

    write_json(run_dir / "summary.json", summary)
    write_json(run_dir / "run.json", {
        "problem": problem.name, "source": problem.source, "parameters": problem.parameters,
        "description": problem.description, "settings": settings.__dict__,
        "objective": repr(problem.objective), "constraints": [repr(c) for c in problem.constraints],
        **(provenance_info if provenance_info is not None else provenance(evaluator)),
    })
    write_csv(run_dir / "history.csv", history)
    modes = solved["modes"]
    save_npz(run_dir / "design.npz", design=solved["z"], densities=solved["rho"], eigenvalues=modes.eigenvalues,
             vectors=modes.vectors, beta=np.float64(evaluator.beta))
    try:
        save_design_png(problem.mesh, solved["rho"], run_dir / "design.png",
                        title=f"{problem.name}: ω1 = {summary['omega_final'][0]:.2f} rad/s, "
                              f"volume {summary['volume_fraction']:.3f}")
        save_figure_png(convergence_figure([{"eval": r.eval, "f": r.f, "max_g": r.max_g,
                                             "omega": r.info["omega"]} for r in result.history]),
                        run_dir / "convergence.png")
        _user_mode(save_vtu(run_dir / "design.vtu", evaluator.model, solved["rho"], modes))
    except Exception:  # pictures must never cost the user the numbers above
        logger.exception("writing pictures / VTU failed; the result files are complete")
