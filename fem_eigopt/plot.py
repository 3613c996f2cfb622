"""Re-render the pictures of a run from its files: ``python -m fem_eigopt plot RUN_DIR``.

* :func:`plot_run` — the pictures of :func:`fem_eigopt.io.snapshots.write_run_pictures` (which
  the run loop calls at the end of every run; re-exported here) from ``run.json`` (the problem is
  rebuilt from its source file and parameters, :func:`fem_eigopt.optimize.run.run_problem`),
  ``design.npz`` or, for a run stopped before writing it, ``design_best.npz`` (modes recomputed),
  ``history.csv`` and ``snapshots/``.
* :func:`add_plot_parser`, :func:`plot_command` — the command's options and its work; the
  command line (:mod:`fem_eigopt.cli`) prints the files written. Nothing here writes to the
  console: messages go through ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from fem_eigopt.errors import InputError
from fem_eigopt.io.modes import ModeShapes
from fem_eigopt.io.snapshots import WHAT, write_run_pictures

logger = logging.getLogger(__name__)

__all__ = ["write_run_pictures", "plot_run", "add_plot_parser", "plot_command", "read_history", "WHAT"]


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``history.csv`` as dicts (strings; the picture functions convert)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _stored_modes(problem, arrays: dict, npz_name: str):
    """(model, ModeShapes or None) from the eigenvectors stored in ``design.npz``."""
    from fem_eigopt.fem.assembly import build_model

    model = build_model(problem)
    if "vectors" not in arrays or "eigenvalues" not in arrays:
        return model, None
    if arrays["vectors"].shape[0] != model.n_free:
        logger.warning("%s: vectors of %d dofs, the rebuilt model has %d free dofs; modes recomputed",
                       npz_name, arrays["vectors"].shape[0], model.n_free)
        return model, None
    return model, ModeShapes.from_vectors(model, arrays["eigenvalues"], arrays["vectors"])


def _recomputed_modes(problem, arrays: dict, npz_name: str, rho: np.ndarray, beta: float | None):
    """(model, ModeShapes or None, coordinates or None) by analysing the stored design again."""
    from fem_eigopt.optimize.shape_evaluator import make_evaluator

    evaluator = make_evaluator(problem)
    if beta is not None and np.isfinite(beta) and beta > 0 and evaluator.beta > 0:
        evaluator.set_beta(beta)
    solved = evaluator.analyse(np.asarray(arrays["design"], dtype=float))
    if not np.allclose(solved["rho"], rho, atol=1e-6):
        logger.warning("%s: the rebuilt problem gives other densities (max difference %.3g); modes not drawn",
                       npz_name, float(np.max(np.abs(solved["rho"] - rho))))
        return evaluator.model, None, None
    return evaluator.model, ModeShapes.from_modes(evaluator.model, solved["modes"]), solved.get("X")


def _history(run_dir: Path, what: list[str]) -> list[dict[str, Any]] | None:
    """``history.csv``'s rows when the history is drawn (None, logged, when there is none)."""
    if "history" not in what:
        return None
    path = run_dir / "history.csv"
    if not path.is_file():
        logger.warning("%s: no history.csv; convergence.png not drawn", run_dir)
        return None
    return read_history(path)


def plot_run(run_dir: str | Path, what: Iterable[str] = WHAT, n_modes: int = 4) -> dict[str, Path]:
    """Re-render the pictures of a finished or interrupted run from its files.

    Parameters
    ----------
    run_dir : str or Path
        A run directory (``run.json`` and ``design.npz`` or ``design_best.npz``).
    what : iterable of str
        Subset of :data:`WHAT`: ``design`` (design.png, design.vtu, shape.png), ``modes``
        (modes.png), ``history`` (convergence.png from history.csv), ``gif`` (mode1.gif,
        design.gif from snapshots/).
    n_modes : int
        Modes drawn.

    Returns
    -------
    dict of str to Path
        The files written.

    Raises
    ------
    InputError
        ``run_dir`` is not a run directory, its problem file cannot be rebuilt, or ``what`` has
        an unknown entry.
    """
    run_dir = Path(run_dir)
    what = list(what)
    bad = [w for w in what if w not in WHAT]
    if bad:
        raise InputError(f"--what {','.join(bad)}: allowed: {', '.join(WHAT)}")
    from fem_eigopt.optimize.run import run_design

    _, problem, npz_name, arrays = run_design(run_dir)
    rho = np.asarray(arrays["densities"], dtype=float)
    beta = float(arrays["beta"]) if "beta" in arrays else None
    coordinates = arrays.get("coordinates")
    model, modes = _stored_modes(problem, arrays, npz_name)
    if modes is None and set(what) & {"modes", "gif", "design"} and "design" in arrays and problem.design is not None:
        model, modes, recomputed = _recomputed_modes(problem, arrays, npz_name, rho, beta)
        coordinates = recomputed if coordinates is None else coordinates
    if rho.shape != (model.n_elements,):
        raise InputError(f"{run_dir / npz_name}: {rho.size} densities, the rebuilt problem has "
                         f"{model.n_elements} elements (problem file changed?)")
    history = _history(run_dir, what)
    evaluation = None
    if history:
        try:
            evaluation = int(float(history[-1]["eval"]))
        except (KeyError, TypeError, ValueError):
            evaluation = None
    logger.info("re-plotting %s from %s", run_dir, npz_name)
    return write_run_pictures(run_dir, problem, model, rho, modes, history, evaluation=evaluation, beta=beta,
                              coordinates=coordinates, initial_coordinates=arrays.get("initial_coordinates"),
                              n_modes=n_modes, what=what)


def add_plot_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``plot`` command to an argparse sub-parser set; returns its parser.

    ``python -m fem_eigopt plot RUN_DIR [--what design,modes,history,gif] [--modes N]``
    """
    p = subparsers.add_parser("plot", help="re-render the pictures of a finished or interrupted run")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (results/<problem>/<stamp>-<hash>)")
    p.add_argument("--what", default=",".join(WHAT),
                   help=f"comma-separated pictures to draw (default {','.join(WHAT)})")
    p.add_argument("--modes", dest="plot_modes", type=int, default=4, help="mode shapes drawn (default 4)")
    return p


def plot_command(args: argparse.Namespace) -> dict[str, Path]:
    """The ``plot`` command's work: check the options, re-render, return the files written.

    Raises
    ------
    InputError
        Bad RUN_DIR, ``--what`` or ``--modes`` (one line naming it).
    """
    what = [w.strip() for w in str(getattr(args, "what", ",".join(WHAT))).split(",") if w.strip()]
    n = getattr(args, "plot_modes", 4)
    if not isinstance(n, int) or n < 1:
        raise InputError(f"--modes {n}: allowed: an integer >= 1")
    return plot_run(args.run_dir, what, n_modes=n)
