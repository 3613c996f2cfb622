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
  for ParaView.

Every file is written atomically.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fem_eigopt.design.projection import BetaContinuation
from fem_eigopt.errors import InputError
from fem_eigopt.io.rundir import new_run_directory, save_npz, write_csv, write_json
from fem_eigopt.optimize.driver import OptimizeResult, OptimizerSettings, minimize
from fem_eigopt.optimize.evaluator import DesignEvaluator
from fem_eigopt.problem.definition import Problem

logger = logging.getLogger(__name__)

__all__ = ["RunResult", "optimize", "default_settings"]


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
             progress: bool = True) -> RunResult:
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
        Log one line per evaluation at INFO level (else DEBUG).

    Returns
    -------
    RunResult

    Raises
    ------
    InputError
        Bad problem settings, or ``max_eval < 1``.
    """
    t_start = time.perf_counter()
    settings = settings or default_settings(problem)
    if max_eval is not None:
        if max_eval < 1:
            raise InputError(f"--max-eval {max_eval}; allowed: an integer >= 1")
        settings = _replace_settings(settings, max_eval=max_eval)
    evaluator = DesignEvaluator(problem, backend=backend)
    x0, lower, upper = evaluator.start()
    initial = evaluator(x0)
    run_dir = None
    if out_dir is not None:
        run_dir = new_run_directory(out_dir, problem.name or "problem", problem.parameters)
        logger.info("run directory: %s", run_dir)
    design = problem.design
    continuation = None
    if design.projection_beta > 0 and design.beta_max > design.projection_beta:
        continuation = BetaContinuation(beta0=design.projection_beta, factor=design.beta_factor,
                                        beta_max=design.beta_max, every=int(design.beta_every))
    n_show = min(4, evaluator.n_modes)
    level = logging.INFO if progress else logging.DEBUG
    logger.log(level, "%d design variables, %d constraints, %d modes, filter radius %.4g, backend %s",
               x0.size, initial.g.size, evaluator.n_modes, evaluator.filter_radius, evaluator.solver.backend)
    header = f"{'eval':>5} {'objective':>12} {'max g':>10} " + " ".join(f"{'ω' + str(j + 1):>10}" for j in range(n_show)) \
        + f" {'volume':>7} {'change':>8} {'s/eval':>7}"
    logger.log(level, header)
    best_holder: dict[str, Any] = {"f": np.inf}
    last_time = [time.perf_counter()]

    def callback(record):
        info = record.info
        now = time.perf_counter()
        om = " ".join(f"{v:10.4f}" for v in np.asarray(info["omega"])[:n_show])
        logger.log(level, f"{record.eval:5d} {record.f:12.6g} {record.max_g:10.3g} {om} "
                          f"{info['volume_fraction']:7.4f} {record.change:8.4f} {now - last_time[0]:7.3f}")
        last_time[0] = now
        feasible = record.max_g <= max(settings.constraint_tol, 1e-6)
        if run_dir is not None and feasible and record.f < best_holder["f"] and record.eval % 10 == 0:
            best_holder["f"] = record.f
            _save_design(run_dir / "design_best.npz", evaluator, evaluator.last_analysis)
        if continuation is not None and continuation.step(record.change):
            evaluator.set_beta(continuation.beta)
            return "restart"
        return None

    # The optimiser's steps need gradients only as accurate as their size (SubspaceModalSolver's
    # tol_per_change); everything after the run (outputs, checks) gets the full accuracy.
    evaluator.inexact_gradients = True
    try:
        result = minimize(evaluator, x0, lower, upper, settings, n_constraints=initial.g.size, callback=callback,
                          on_restart=evaluator.restart_point,
                          initial_steps=evaluator.initial_steps)
    finally:
        evaluator.inexact_gradients = False
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
        "success": bool(result.success),
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
    history = [_history_row(r, evaluator.n_modes, evaluator.constraint_names) for r in result.history]
    if run_dir is not None:
        _write_run(run_dir, problem, evaluator, result, summary, history, solved, settings)
    logger.log(level, "%s after %d evaluations: ω = %s rad/s (initial %s), volume %.4f, %.1f s",
               result.status, result.nfev, np.array2string(np.asarray(final.info["omega"])[:n_show], precision=3),
               np.array2string(np.asarray(initial.info["omega"])[:n_show], precision=3),
               summary["volume_fraction"], wall)
    return RunResult(summary=summary, result=result, densities=solved["rho"], run_dir=run_dir,
                     evaluator=evaluator, history=history)


def _replace_settings(settings: OptimizerSettings, **changes) -> OptimizerSettings:
    from dataclasses import replace

    return replace(settings, **changes)


def _save_design(path: Path, evaluator: DesignEvaluator, solved: dict) -> None:
    save_npz(path, design=solved["z"], densities=solved["rho"], eigenvalues=solved["modes"].eigenvalues,
             beta=np.float64(evaluator.beta))


def _write_run(run_dir: Path, problem: Problem, evaluator: DesignEvaluator, result: OptimizeResult,
               summary: dict, history: list, solved: dict, settings: OptimizerSettings) -> None:
    import nlopt
    import scipy
    import skfem

    from fem_eigopt import __version__
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
        "versions": {"fem_eigopt": __version__, "python": platform.python_version(), "numpy": np.__version__,
                     "scipy": scipy.__version__, "scikit-fem": getattr(skfem, "__version__", "?"),
                     "nlopt": nlopt.__version__},
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
        save_vtu(run_dir / "design.vtu", evaluator.model, solved["rho"], modes)
    except Exception:  # pictures must never cost the user the numbers above
        logger.exception("writing pictures / VTU failed; the result files are complete")
