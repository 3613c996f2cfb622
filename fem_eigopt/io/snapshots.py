"""Snapshots of the design kept during a run, and every picture of a run made at its end.

:class:`SnapshotRecorder` is called by the run loop after each evaluation; every ``every``
evaluations (and when forced, e.g. for the final design) it writes, atomically,

* ``snapshots/NNNNN.npz`` — ``evaluation``, ``densities`` (n_elem,) float32, ``eigenvalues``
  (k,) (rad/s)², ``displacements`` (k, n_vertices, dim) float32 vertex mode shapes, ``beta``, and
  ``coordinates`` (dim, n_vertices) for moved meshes;
* ``snapshots/NNNNN.vtu`` — the same for ParaView (:func:`fem_eigopt.io.paraview.vtu_mesh`);
* ``design.vtu.series`` — rewritten from the snapshot VTU files on disk, so a resumed run or a
  re-plot continues the same series.

NNNNN is the evaluation number (5 digits, more when needed).

:func:`write_run_pictures` — called by the run loop (:mod:`fem_eigopt.optimize.run`) at the end
of every run, and by ``python -m fem_eigopt plot`` (:mod:`fem_eigopt.plot`): ``design.png``,
``modes.png``, ``convergence.png``, ``mode1.gif``, ``design.gif`` (+ ``design.mp4`` with ffmpeg)
from the snapshots, ``design.vtu`` and the final entry of ``design.vtu.series``; ``shape.png``
(initial and final outlines) for moved meshes. It lives here, below the run loop, because the
run loop may only import the rooms below it. Every item is guarded: a failure is logged as one
warning line and the others still get written; nothing is raised.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from fem_eigopt.io.modes import ModeShapes
from fem_eigopt.io.paraview import vtu_mesh, write_vtu, write_vtu_series
from fem_eigopt.io.rundir import save_npz

logger = logging.getLogger(__name__)

__all__ = ["SnapshotRecorder", "load_snapshots", "snapshot_every", "write_run_pictures", "SERIES_NAME",
           "SNAPSHOT_DIR", "WHAT"]

SERIES_NAME = "design.vtu.series"
SNAPSHOT_DIR = "snapshots"

#: picture groups of :func:`write_run_pictures` (and of ``plot --what``)
WHAT = ("design", "modes", "history", "gif")


def snapshot_every(max_eval: int, target: int = 60) -> int:
    """Snapshot cadence for about ``target`` snapshots over ``max_eval`` evaluations (≥ 1)."""
    return max(1, int(np.ceil(max(1, int(max_eval)) / max(1, target))))


class SnapshotRecorder:
    """Keeps snapshots of the design every ``every`` evaluations.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (``snapshots/`` and ``design.vtu.series`` go there).
    model : Model
        Maps eigenvectors on the free dofs to vertex displacements; its mesh is written.
    every : int
        Cadence in evaluations (:func:`snapshot_every` gives one for a budget).
    n_modes : int
        Modes kept per snapshot.
    vtu : bool
        Also write a VTU per snapshot and the series file.

    Notes
    -----
    Call it after every evaluation; it does nothing unless the evaluation is due::

        recorder(evaluation, densities, modes)            # modes: Modes or None
        recorder.record(final_eval, densities, modes, force=True)

    A failure is logged (one warning) and never raised: snapshots must not stop a run.
    """

    def __init__(self, run_dir: str | Path, model, every: int = 10, n_modes: int = 4, vtu: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.model = model
        self.every = max(1, int(every))
        self.n_modes = int(n_modes)
        self.vtu = bool(vtu)
        self.recorded: list[int] = []
        self._failed = False

    @property
    def folder(self) -> Path:
        return self.run_dir / SNAPSHOT_DIR

    def due(self, evaluation: int) -> bool:
        """Whether ``evaluation`` (1-based) gets a snapshot: the first one and every ``every``-th."""
        return evaluation == 1 or evaluation % self.every == 0

    def __call__(self, evaluation: int, densities: np.ndarray, modes=None, coordinates: np.ndarray | None = None,
                 beta: float | None = None) -> Path | None:
        """Record when due (see :meth:`due`); returns the npz path or None."""
        if not self.due(evaluation):
            return None
        return self.record(evaluation, densities, modes, coordinates, beta)

    def record(self, evaluation: int, densities: np.ndarray, modes=None, coordinates: np.ndarray | None = None,
               beta: float | None = None, force: bool = True) -> Path | None:
        """Write the snapshot of ``evaluation`` now.

        Parameters
        ----------
        evaluation : int
            Evaluation number (the series' time).
        densities : ndarray (n_elem,)
            Physical densities ρ̄.
        modes : Modes or ModeShapes, optional
            The design's modes (vectors on the free dofs for ``Modes``).
        coordinates : ndarray (dim, n_vertices), optional
            Vertex coordinates (m) of a moved mesh.
        beta : float, optional
            Projection sharpness at this evaluation.
        force : bool
            Kept for symmetry with ``__call__`` (``record`` always writes).

        Returns
        -------
        Path or None
            The npz written, None when writing failed (logged).
        """
        try:
            shapes = None
            if modes is not None:
                shapes = (modes.first(self.n_modes) if isinstance(modes, ModeShapes)
                          else ModeShapes.from_modes(self.model, modes, self.n_modes))
            arrays = {"evaluation": np.int64(evaluation),
                      "densities": np.asarray(densities, dtype=np.float32),
                      "beta": np.float64(np.nan if beta is None else beta)}
            if shapes is not None:
                arrays["eigenvalues"] = shapes.eigenvalues
                arrays["displacements"] = shapes.displacements.astype(np.float32)
            if coordinates is not None:
                arrays["coordinates"] = np.asarray(coordinates, dtype=float)
            stem = f"{int(evaluation):05d}"
            path = save_npz(self.folder / f"{stem}.npz", **arrays)
            if self.vtu:
                write_vtu(self.folder / f"{stem}.vtu",
                          vtu_mesh(self.model.basis.mesh, densities, shapes, coordinates, evaluation, np.float32))
                write_series(self.run_dir)
            if evaluation not in self.recorded:
                self.recorded.append(int(evaluation))
            return path
        except Exception as exc:  # never stop a run for a snapshot
            if not self._failed:
                logger.warning("snapshot of evaluation %d not written: %s: %s", evaluation, type(exc).__name__, exc)
                logger.debug("snapshot failure", exc_info=True)
            self._failed = True
            return None


def write_series(run_dir: str | Path) -> Path | None:
    """(Re)write ``run_dir/design.vtu.series`` from the snapshot VTU files on disk (None when there are none)."""
    run_dir = Path(run_dir)
    files = sorted((run_dir / SNAPSHOT_DIR).glob("*.vtu"))
    entries = []
    for f in files:
        try:
            entries.append((f"{SNAPSHOT_DIR}/{f.name}", int(f.stem)))
        except ValueError:
            continue
    if not entries:
        return None
    return write_vtu_series(run_dir / SERIES_NAME, entries)


def load_snapshots(run_dir: str | Path) -> list[dict]:
    """The snapshots of a run directory, ascending in evaluation.

    Returns
    -------
    list of dict
        ``evaluation`` (int), ``densities`` (n_elem,), ``beta`` (float, NaN if unknown) and, when
        stored, ``shapes`` (:class:`ModeShapes`) and ``coordinates`` (dim, n_vertices).
    """
    out = []
    for f in sorted((Path(run_dir) / SNAPSHOT_DIR).glob("*.npz")):
        try:
            with np.load(f) as z:
                snap = {"evaluation": int(z["evaluation"]), "densities": np.asarray(z["densities"], dtype=float),
                        "beta": float(z["beta"]) if "beta" in z else np.nan}
                if "displacements" in z:
                    snap["shapes"] = ModeShapes(z["eigenvalues"], z["displacements"])
                if "coordinates" in z:
                    snap["coordinates"] = np.asarray(z["coordinates"])
        except Exception as exc:
            logger.warning("%s: unreadable snapshot skipped (%s)", f, exc)
            continue
        out.append(snap)
    out.sort(key=lambda s: s["evaluation"])
    return out


# ----------------------------------------------------------------------------------------------
# the pictures of a run


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


def _shapes(model, modes) -> ModeShapes | None:
    """``modes`` (Modes or ModeShapes) as vertex mode shapes; None (logged) when impossible."""
    if modes is None:
        return None
    try:
        return modes if isinstance(modes, ModeShapes) else ModeShapes.from_modes(model, modes)
    except Exception as exc:
        logger.warning("mode shapes unavailable: %s: %s", type(exc).__name__, exc)
        return None


def _last_evaluation(history: Sequence[Mapping[str, Any]] | None) -> int | None:
    """The ``eval`` of the last history row (None without one)."""
    if not history:
        return None
    try:
        return int(float(history[-1].get("eval")))
    except (TypeError, ValueError):
        return None


def write_run_pictures(run_dir: str | Path, problem, model, densities: np.ndarray, modes=None,
                       history: Sequence[Mapping[str, Any]] | None = None, *, evaluation: int | None = None,
                       beta: float | None = None, recorder: SnapshotRecorder | None = None,
                       coordinates: np.ndarray | None = None, initial_coordinates: np.ndarray | None = None,
                       n_modes: int = 4, what: Iterable[str] = WHAT, vtu: bool = True,
                       void_modes: Iterable[int] | None = None) -> dict[str, Path]:
    """Write every picture of a finished (or stopped) run into ``run_dir``.

    A structure without supports has rigid-body modes (λ ≈ 0) first: ``modes.png`` and
    ``mode1.gif`` then show the elastic modes after them, numbered as computed.

    Parameters
    ----------
    run_dir : str or Path
    problem : Problem
        For names, supports drawn from ``model``, point masses, the objective and targets.
    model : Model
        The model of the final design (maps eigenvectors to vertices).
    densities : ndarray (n_elem,)
        Final physical densities ρ̄ (ones for a shape design).
    modes : Modes or ModeShapes, optional
        Final modes (:class:`~fem_eigopt.solvers.modes.Modes` with vectors (n_free, k)).
    history : sequence of dict, optional
        The rows of ``history.csv``; None skips ``convergence.png``.
    evaluation : int, optional
        Final evaluation number (the series' last time; default: the last history row's).
    beta : float, optional
        Final projection β (recorded in the final snapshot).
    recorder : SnapshotRecorder, optional
        The run's recorder: the final design becomes its last snapshot, then the GIF is made from
        ``run_dir/snapshots``.
    coordinates, initial_coordinates : ndarray (dim, n_vertices), optional
        Shape designs: final and initial vertex coordinates (m). The design and the mode shapes
        are drawn on the final shape; both outlines overlaid go to ``shape.png``.
    n_modes : int
        Modes drawn in ``modes.png`` (at most the number computed; ``design.vtu`` gets all).
    what : iterable of str
        Subset of :data:`WHAT`; ``"design"`` includes ``design.vtu`` and ``shape.png``.
    vtu : bool
        Write ``design.vtu``.
    void_modes : iterable of int, optional
        1-based numbers of the local modes of the void, as the run's summary lists them; None:
        found here from ``modes``.

    Returns
    -------
    dict of str to Path
        The files written, by name. Failures are logged (one warning each), never raised.
    """
    run_dir = Path(run_dir)
    what = set(what)
    rho = np.asarray(densities, dtype=float)
    shapes = _shapes(model, modes)
    if evaluation is None:
        evaluation = _last_evaluation(history)
    written: dict[str, Path] = {}
    surface = _isosurface(model.basis.mesh, rho, coordinates) if what & {"design", "modes"} else None
    if "design" in what:
        _design_pictures(written, run_dir, problem, model, rho, shapes, evaluation, surface, coordinates,
                         initial_coordinates, vtu)
    if "modes" in what and shapes is not None and shapes.n:
        void = _void_modes(problem, model, rho, modes) if void_modes is None else set(void_modes)
        _guard(written, "modes.png", lambda: _modes_png(run_dir / "modes.png", problem, model, rho, shapes,
                                                        n_modes, coordinates, surface, void))
    if "history" in what and history:
        from fem_eigopt.io import pictures as P

        _guard(written, "convergence.png", lambda: P.save_figure_png(
            P.convergence_figure(list(history), n_omega=n_modes, problem=problem), run_dir / "convergence.png"))
    if recorder is not None and evaluation is not None:
        if recorder.record(evaluation, rho, shapes, coordinates, beta) is not None:
            written[SERIES_NAME] = run_dir / SERIES_NAME
    if "gif" in what:
        _animations(written, run_dir, problem, model, rho, shapes, coordinates)
    return written


def _rigid_modes(shapes: ModeShapes) -> int:
    """Leading rigid-body modes of ``shapes`` to leave out of the mode pictures (0 when all are)."""
    from fem_eigopt.responses.base import rigid_body_count

    k = rigid_body_count(shapes.eigenvalues)
    return k if k < shapes.n else 0


def _void_modes(problem, model, rho: np.ndarray, modes) -> set[int]:
    """1-based numbers of the local modes of void elements among ``modes`` (a density design's
    modes with vectors; empty otherwise)."""
    from fem_eigopt.problem.definition import DensityDesign
    from fem_eigopt.responses.base import void_fraction

    vectors = getattr(modes, "vectors", None)
    if not isinstance(getattr(problem, "design", None), DensityDesign) or vectors is None:
        return set()
    fractions = void_fraction(model, vectors, rho, problem.design.mass(rho)[0])
    return {int(i) + 1 for i in np.flatnonzero(fractions > 0.5)}


def _modes_png(path: Path, problem, model, rho: np.ndarray, shapes: ModeShapes, n_modes: int,
               coordinates: np.ndarray | None, surface, void: set[int] = frozenset()) -> Path:
    """``modes.png``: the first ``n_modes`` elastic modes, titled with their numbers as computed;
    local modes of the void (``void``, 1-based) say so in their title."""
    import re

    from fem_eigopt.io import pictures as P

    k = _rigid_modes(shapes)
    elastic = ModeShapes(shapes.eigenvalues[k:], shapes.displacements[k:])
    fig = P.mode_shapes_figure(model.basis.mesh, elastic, rho, n_modes, getattr(problem, "name", ""),
                               coordinates=coordinates, model=model, problem=problem, surface=surface)
    for ax in fig.axes:
        title = ax.get_title()
        found = re.match(r"mode (\d+):", title)
        if found:
            number = int(found.group(1)) + k
            note = " — a local mode of the void elements" if number in void else ""
            ax.set_title(f"mode {number}:{title[found.end():]}{note}", fontsize=10)
    if k:
        n = min(n_modes, elastic.n)
        fig.suptitle(fig.get_suptitle().replace(f"first {n} mode shapes",
                                                f"mode shapes {k + 1}–{k + n} ({k} rigid-body modes left out)"),
                     fontsize=11)
    return P.save_figure_png(fig, path)


def _isosurface(mesh, rho: np.ndarray, coordinates: np.ndarray | None):
    """The ρ̄ = 0.5 isosurface of a 3D design (None in 2D or when it fails, logged)."""
    if mesh.dim() != 3:
        return None
    from fem_eigopt.io.isosurface import density_isosurface

    try:
        return density_isosurface(mesh, rho, coordinates=coordinates)
    except Exception as exc:
        logger.warning("isosurface failed: %s: %s", type(exc).__name__, exc)
        return None


def _design_pictures(written: dict[str, Path], run_dir: Path, problem, model, rho: np.ndarray,
                     shapes: ModeShapes | None, evaluation: int | None, surface, coordinates: np.ndarray | None,
                     initial_coordinates: np.ndarray | None, vtu: bool) -> None:
    """``design.png``, ``shape.png`` (moved meshes with their start) and ``design.vtu``."""
    from fem_eigopt.io import pictures as P

    mesh = model.basis.mesh
    title = _title(problem, shapes, rho, evaluation)
    _guard(written, "design.png", lambda: P.save_figure_png(
        P.design_figure(mesh, rho, title, model=model, problem=problem, coordinates=coordinates, surface=surface),
        run_dir / "design.png"))
    if coordinates is not None and initial_coordinates is not None:
        _guard(written, "shape.png", lambda: P.save_figure_png(
            P.shape_outline_figure(mesh, initial_coordinates, coordinates, getattr(problem, "name", ""),
                                   model=model, problem=problem), run_dir / "shape.png"))
    if vtu:
        from fem_eigopt.io.paraview import save_vtu

        _guard(written, "design.vtu", lambda: save_vtu(run_dir / "design.vtu", model, rho, shapes,
                                                       n_modes=shapes.n if shapes is not None else 0,
                                                       coordinates=coordinates, evaluation=evaluation))


def _animations(written: dict[str, Path], run_dir: Path, problem, model, rho: np.ndarray,
                shapes: ModeShapes | None, coordinates: np.ndarray | None) -> None:
    """``mode1.gif`` (the first elastic mode swinging) and ``design.gif`` (the snapshots, at least two)."""
    from fem_eigopt.io.animation import design_animation, mode_animation

    mesh = model.basis.mesh
    name = getattr(problem, "name", "")
    if shapes is not None and shapes.n:
        first = _rigid_modes(shapes)  # the first elastic mode
        _guard(written, "mode1.gif", lambda: mode_animation(mesh, shapes, run_dir / "mode1.gif", rho, first,
                                                            coordinates=coordinates, title=name))
    snaps = load_snapshots(run_dir)
    if len(snaps) >= 2:
        _guard(written, "design.gif", lambda: design_animation(mesh, snaps, run_dir / "design.gif", title=name))
    else:
        logger.info("design.gif: %d snapshot(s) in %s, need 2", len(snaps), run_dir / SNAPSHOT_DIR)
