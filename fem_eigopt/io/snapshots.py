"""Snapshots of the design kept during a run: for the evolution animation and ParaView's time series.

:class:`SnapshotRecorder` is called by the run loop after each evaluation; every ``every``
evaluations (and when forced, e.g. for the final design) it writes, atomically,

* ``snapshots/NNNNN.npz`` — ``evaluation``, ``densities`` (n_elem,) float32, ``eigenvalues``
  (k,) (rad/s)², ``displacements`` (k, n_vertices, dim) float32 vertex mode shapes, ``beta``, and
  ``coordinates`` (dim, n_vertices) for moved meshes;
* ``snapshots/NNNNN.vtu`` — the same for ParaView (:func:`fem_eigopt.io.paraview.vtu_mesh`);
* ``design.vtu.series`` — rewritten from the snapshot VTU files on disk, so a resumed run or a
  re-plot continues the same series.

NNNNN is the evaluation number (5 digits, more when needed).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fem_eigopt.io.modes import ModeShapes
from fem_eigopt.io.paraview import vtu_mesh, write_vtu, write_vtu_series
from fem_eigopt.io.rundir import save_npz

logger = logging.getLogger(__name__)

__all__ = ["SnapshotRecorder", "load_snapshots", "snapshot_every", "SERIES_NAME", "SNAPSHOT_DIR"]

SERIES_NAME = "design.vtu.series"
SNAPSHOT_DIR = "snapshots"


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
