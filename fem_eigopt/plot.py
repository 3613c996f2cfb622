"""Every picture of a run: written at the end of a run, or re-rendered later from its files.

* :func:`write_run_pictures` — called by the run loop at the end (the lead wires it into
  :mod:`fem_eigopt.optimize.run`): ``design.png``, ``modes.png``, ``convergence.png``,
  ``mode1.gif``, ``design.gif`` (+ ``design.mp4`` with ffmpeg) from the snapshots,
  ``design.vtu`` and the final entry of ``design.vtu.series``; ``shape.png`` for moved meshes.
  Every item is guarded: a failure is logged as one warning line and the others still get
  written; nothing is raised.
* :func:`plot_run` — ``python -m fem_eigopt plot RUN_DIR [--what design,modes,history,gif]``:
  the same pictures from ``run.json`` (the problem is rebuilt from its source file and
  parameters), ``design.npz`` or, for an interrupted run, ``design_best.npz`` (modes recomputed),
  ``history.csv`` and ``snapshots/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from fem_eigopt.errors import InputError
from fem_eigopt.io.modes import ModeShapes

logger = logging.getLogger(__name__)

__all__ = ["write_run_pictures", "plot_run", "add_plot_parser", "cmd_plot", "read_history", "WHAT"]

#: picture groups of ``plot --what``
WHAT = ("design", "modes", "history", "gif")


def _guard(written: dict[str, Path], name: str, make: Callable[[], Any]) -> None:
    """Run ``make``; record its path(s) under ``name``; log one warning line on failure."""
    try:
        out = make()
    except Exception as exc:  # a picture must never cost the numbers
        logger.warning("%s not written: %s: %s", name, type(exc).__name__, exc)
        logger.debug("%s failure", name, exc_info=True)
        return
    if out is None:
        return
    if isinstance(out, (list, tuple)):
        for p in out:
            written[Path(p).name] = Path(p)
    else:
        written[name] = Path(out)


def _title(problem, shapes: ModeShapes | None, densities: np.ndarray, evaluation: int | None) -> str:
    parts = [getattr(problem, "name", "") or "design"]
    if shapes is not None and shapes.n:
        parts.append(f"f1 = {shapes.frequencies_hz[0]:.4g} Hz (ω1 = {shapes.omega[0]:.4g} rad/s)")
    parts.append(f"mean density {float(np.mean(densities)):.3f}")
    if evaluation is not None:
        parts.append(f"evaluation {evaluation}")
    return " · ".join(parts)


def write_run_pictures(run_dir: str | Path, problem, model, densities: np.ndarray, modes=None,
                       history: Sequence[Mapping[str, Any]] | None = None, *, evaluation: int | None = None,
                       beta: float | None = None, recorder=None, coordinates: np.ndarray | None = None,
                       initial_coordinates: np.ndarray | None = None, n_modes: int = 4,
                       what: Iterable[str] = WHAT, vtu: bool = True) -> dict[str, Path]:
    """Write every picture of a finished (or stopped) run into ``run_dir``.

    Parameters
    ----------
    run_dir : str or Path
    problem : Problem
        For names, supports drawn from ``model``, point masses, the objective and targets.
    model : Model
        The model of the final design (maps eigenvectors to vertices).
    densities : ndarray (n_elem,)
        Final physical densities ρ̄.
    modes : Modes or ModeShapes, optional
        Final modes (:class:`~fem_eigopt.solvers.modes.Modes` with vectors (n_free, k)).
    history : sequence of dict, optional
        The rows of ``history.csv`` (``_history_row`` dicts); None skips ``convergence.png``.
    evaluation : int, optional
        Final evaluation number (the series' last time; default: the last history row's).
    beta : float, optional
        Final projection β (recorded in the final snapshot).
    recorder : SnapshotRecorder, optional
        The run's recorder: the final design becomes its last snapshot, then the GIF is made from
        ``run_dir/snapshots``.
    coordinates, initial_coordinates : ndarray (dim, n_vertices), optional
        Shape designs: final and initial vertex coordinates (m); adds ``shape.png``.
    n_modes : int
        Modes drawn in ``modes.png`` and written to VTU (at most the number computed).
    what : iterable of str
        Subset of :data:`WHAT`; ``"design"`` includes ``design.vtu``.
    vtu : bool
        Write ``design.vtu``.

    Returns
    -------
    dict of str to Path
        The files written, by name. Failures are logged (one warning each), never raised.
    """
    from fem_eigopt.io import pictures as P

    run_dir = Path(run_dir)
    what = set(what)
    mesh = model.basis.mesh
    rho = np.asarray(densities, dtype=float)
    shapes = None
    if modes is not None:
        try:
            shapes = modes if isinstance(modes, ModeShapes) else ModeShapes.from_modes(model, modes)
        except Exception as exc:
            logger.warning("mode shapes unavailable: %s: %s", type(exc).__name__, exc)
    if evaluation is None and history:
        try:
            evaluation = int(float(history[-1].get("eval")))
        except (TypeError, ValueError):
            evaluation = None
    written: dict[str, Path] = {}
    title = _title(problem, shapes, rho, evaluation)
    surface = None
    if mesh.dim() == 3 and what & {"design", "modes"}:
        from fem_eigopt.io.isosurface import density_isosurface

        try:
            surface = density_isosurface(mesh, rho, coordinates=coordinates)
        except Exception as exc:
            logger.warning("isosurface failed: %s: %s", type(exc).__name__, exc)

    if "design" in what:
        _guard(written, "design.png", lambda: P.save_figure_png(
            P.design_figure(mesh, rho, title, model=model, problem=problem, coordinates=coordinates,
                            surface=surface), run_dir / "design.png"))
        if coordinates is not None and initial_coordinates is not None:
            _guard(written, "shape.png", lambda: P.save_figure_png(
                P.shape_outline_figure(mesh, initial_coordinates, coordinates, getattr(problem, "name", ""),
                                       model=model, problem=problem), run_dir / "shape.png"))
        if vtu:
            from fem_eigopt.io.paraview import save_vtu

            _guard(written, "design.vtu", lambda: save_vtu(run_dir / "design.vtu", model, rho, shapes,
                                                           n_modes=shapes.n if shapes is not None else 0,
                                                           coordinates=coordinates, evaluation=evaluation))
    if "modes" in what and shapes is not None and shapes.n:
        _guard(written, "modes.png", lambda: P.save_figure_png(
            P.mode_shapes_figure(mesh, shapes, rho, n_modes, getattr(problem, "name", ""), coordinates=coordinates,
                                 model=model, problem=problem, surface=surface), run_dir / "modes.png"))
    if "history" in what and history:
        _guard(written, "convergence.png", lambda: P.save_figure_png(
            P.convergence_figure(list(history), n_omega=n_modes, problem=problem), run_dir / "convergence.png"))
    if recorder is not None and evaluation is not None:
        path = recorder.record(evaluation, rho, shapes, coordinates, beta)
        if path is not None:
            from fem_eigopt.io.snapshots import SERIES_NAME

            written["design.vtu.series"] = run_dir / SERIES_NAME
    if "gif" in what:
        from fem_eigopt.io.animation import design_animation, mode_animation
        from fem_eigopt.io.snapshots import load_snapshots

        if shapes is not None and shapes.n:
            _guard(written, "mode1.gif", lambda: mode_animation(mesh, shapes, run_dir / "mode1.gif", rho, 0,
                                                                coordinates=coordinates,
                                                                title=getattr(problem, "name", "")))
        snaps = load_snapshots(run_dir)
        if len(snaps) >= 2:
            _guard(written, "design.gif", lambda: design_animation(mesh, snaps, run_dir / "design.gif",
                                                                   title=getattr(problem, "name", "")))
        else:
            logger.info("design.gif: %d snapshot(s) in %s, need 2", len(snaps), run_dir / "snapshots")
    return written


# ----------------------------------------------------------------------------------------------
# re-plotting a run directory


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """Rows of ``history.csv`` as dicts (strings; the picture functions convert)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _load_run(run_dir: Path):
    """(run.json, problem, npz name, npz arrays) of a run directory; InputError with one line otherwise."""
    from fem_eigopt.problem.loading import load_problem

    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        raise InputError(f"{run_dir}: not a run directory (no run.json)")
    try:
        run = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{run_json}: unreadable ({type(exc).__name__}: {exc})") from None
    source = run.get("source")
    if not source:
        raise InputError(f"{run_json}: names no problem source file")
    params = {k: v for k, v in (run.get("parameters") or {}).items()}
    problem = load_problem(source, params)
    for name in ("design.npz", "design_best.npz"):
        path = run_dir / name
        if path.is_file():
            try:
                with np.load(path) as z:
                    arrays = {k: z[k] for k in z.files}
            except Exception as exc:
                raise InputError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
            return run, problem, name, arrays
    raise InputError(f"{run_dir}: neither design.npz nor design_best.npz (no design saved yet)")


def plot_run(run_dir: str | Path, what: Iterable[str] = WHAT, n_modes: int = 4) -> dict[str, Path]:
    """Re-render the pictures of a finished or interrupted run from its files.

    Parameters
    ----------
    run_dir : str or Path
        A run directory (``run.json`` and ``design.npz`` or ``design_best.npz``).
    what : iterable of str
        Subset of :data:`WHAT`: ``design`` (design.png, design.vtu), ``modes`` (modes.png),
        ``history`` (convergence.png from history.csv), ``gif`` (mode1.gif, design.gif from
        snapshots/).
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
    run, problem, npz_name, arrays = _load_run(run_dir)
    rho = np.asarray(arrays["densities"], dtype=float)
    beta = float(arrays["beta"]) if "beta" in arrays else None
    coordinates = arrays.get("coordinates")
    initial = arrays.get("initial_coordinates")
    modes = None
    model = None
    need_modes = bool(set(what) & {"modes", "gif", "design"})
    if "vectors" in arrays and "eigenvalues" in arrays:
        from fem_eigopt.fem.assembly import build_model

        model = build_model(problem)
        if arrays["vectors"].shape[0] == model.n_free:
            modes = ModeShapes.from_vectors(model, arrays["eigenvalues"], arrays["vectors"])
        else:
            logger.warning("%s: vectors of %d dofs, the rebuilt model has %d free dofs; modes recomputed",
                           npz_name, arrays["vectors"].shape[0], model.n_free)
    if modes is None and need_modes and "design" in arrays and problem.design is not None:
        from fem_eigopt.optimize.evaluator import DesignEvaluator

        evaluator = DesignEvaluator(problem)
        if beta is not None and np.isfinite(beta) and beta > 0 and evaluator.beta > 0:
            evaluator.set_beta(beta)
        solved = evaluator.analyse(np.asarray(arrays["design"], dtype=float))
        model = evaluator.model
        if np.allclose(solved["rho"], rho, atol=1e-6):
            modes = ModeShapes.from_modes(model, solved["modes"])
        else:
            logger.warning("%s: the rebuilt problem gives other densities (max difference %.3g); modes not drawn",
                           npz_name, float(np.max(np.abs(solved["rho"] - rho))))
    if model is None:
        from fem_eigopt.fem.assembly import build_model

        model = build_model(problem)
    if rho.shape != (model.n_elements,):
        raise InputError(f"{run_dir / npz_name}: {rho.size} densities, the rebuilt problem has "
                         f"{model.n_elements} elements (problem file changed?)")
    history = None
    hist_path = run_dir / "history.csv"
    if "history" in what:
        if hist_path.is_file():
            history = read_history(hist_path)
        else:
            logger.warning("%s: no history.csv; convergence.png not drawn", run_dir)
    evaluation = None
    if history:
        try:
            evaluation = int(float(history[-1]["eval"]))
        except (KeyError, TypeError, ValueError):
            evaluation = None
    logger.info("re-plotting %s from %s", run_dir, npz_name)
    return write_run_pictures(run_dir, problem, model, rho, modes, history, evaluation=evaluation, beta=beta,
                              coordinates=coordinates, initial_coordinates=initial, n_modes=n_modes, what=what)


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


def cmd_plot(args: argparse.Namespace) -> int:
    """Run the ``plot`` command: print the files written (stdout), return the exit code 0.

    Raises
    ------
    InputError
        Bad RUN_DIR or ``--what`` (one line naming it).
    """
    what = [w.strip() for w in str(getattr(args, "what", ",".join(WHAT))).split(",") if w.strip()]
    n = getattr(args, "plot_modes", 4)
    if not isinstance(n, int) or n < 1:
        raise InputError(f"--modes {n}: allowed: an integer >= 1")
    written = plot_run(args.run_dir, what, n_modes=n)
    for name in sorted(written):
        print(written[name])
    return 0
