"""ParaView output: densities and mode shapes on the mesh as VTU, snapshots as a ``.vtu.series``.

* :func:`save_vtu` — one design: cell data ``density`` (physical density ρ̄), point data
  ``mode_<i>`` (stable names, for Warp By Vector across time steps) and the same vectors named
  with their frequency, ``"mode 1 (27.73 Hz)"``; field data ``omega`` (rad/s),
  ``frequencies_hz`` and ``evaluation``. 2D meshes get z = 0 and 3-component vectors. Moved
  meshes (shape designs) are written at their moved coordinates.
* :func:`write_vtu_series` — ParaView's time-series file::

      {"file-series-version": "1.0",
       "files": [{"name": "snapshots/00010.vtu", "time": 10}, ...]}

  (names relative to the series file, times = evaluation numbers). ParaView opens
  ``design.vtu.series`` as one source with a time slider.

Every file is written atomically (:mod:`fem_eigopt.io.rundir`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from fem_eigopt.io.modes import ModeShapes
from fem_eigopt.io.rundir import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["save_vtu", "vtu_mesh", "write_vtu", "write_vtu_series", "read_vtu_series"]


def vtu_mesh(mesh, densities: np.ndarray | None = None, shapes: ModeShapes | None = None,
             coordinates: np.ndarray | None = None, evaluation: int | None = None, dtype=np.float64):
    """A :class:`meshio.Mesh` of the design.

    Parameters
    ----------
    mesh : skfem.Mesh
    densities : ndarray (n_elem,), optional
        Physical densities → cell data ``density``.
    shapes : ModeShapes, optional
        Mode shapes → point data ``mode_<i>`` and ``"mode <i> (<f> Hz)"`` (3 components, m per
        M-normalised unit), field data ``omega`` (rad/s) and ``frequencies_hz``.
    coordinates : ndarray (dim, n_vertices), optional
        Moved vertex coordinates (m).
    evaluation : int, optional
        Field data ``evaluation``.
    dtype : numpy dtype
        Of the point and cell data (float32 halves snapshot files).
    """
    from skfem.io.meshio import to_meshio

    point_data: dict[str, np.ndarray] = {}
    if shapes is not None:
        for i, name in enumerate(shapes.names()):
            u = np.asarray(shapes.displacements[i], dtype=dtype)
            if u.shape[1] == 2:
                u = np.column_stack([u, np.zeros(u.shape[0], dtype=dtype)])
            point_data[f"mode_{i + 1}"] = u
            point_data[name] = u
    cell_data = {} if densities is None else {"density": [np.asarray(densities, dtype=dtype)]}
    mio = to_meshio(mesh, point_data=point_data, cell_data=cell_data, encode_cell_data=False)
    if coordinates is not None:
        mio.points = np.asarray(coordinates, dtype=float).T.copy()
    if mio.points.shape[1] == 2:
        mio.points = np.column_stack([mio.points, np.zeros(len(mio.points))])
    field = {}
    if shapes is not None:
        field["omega"] = np.asarray(shapes.omega)
        field["frequencies_hz"] = np.asarray(shapes.frequencies_hz)
    if evaluation is not None:
        field["evaluation"] = np.array([int(evaluation)])
    mio.field_data = field
    return mio


def write_vtu(path: str | Path, mio) -> Path:
    """Write a meshio mesh as ``.vtu`` atomically (meshio writes to a temporary file first)."""
    import meshio

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".vtu-") as tmp:
        name = os.path.join(tmp, "mesh.vtu")
        meshio.write(name, mio, file_format="vtu")
        data = Path(name).read_bytes()
    return atomic_write_bytes(path, data)


def save_vtu(path: str | Path, model, densities: np.ndarray | None = None, modes=None, n_modes: int = 6,
             coordinates: np.ndarray | None = None, evaluation: int | None = None) -> Path:
    """Write the mesh with element densities and mode shapes to a ``.vtu`` file for ParaView.

    Parameters
    ----------
    path : str or Path
    model : Model
        Its mesh; it also maps ``modes`` (vectors on the free dofs) to the vertices.
    densities : ndarray (n_elem,), optional
        Physical densities.
    modes : Modes or ModeShapes, optional
        :class:`~fem_eigopt.solvers.modes.Modes` (eigenvalues, vectors (n_free, k)) or
        :class:`~fem_eigopt.io.modes.ModeShapes`.
    n_modes : int
        Modes written (at most).
    coordinates : ndarray (dim, n_vertices), optional
        Moved vertex coordinates (m).
    evaluation : int, optional

    Returns
    -------
    Path
    """
    shapes = None
    if modes is not None:
        shapes = modes.first(n_modes) if isinstance(modes, ModeShapes) else ModeShapes.from_modes(model, modes, n_modes)
    return write_vtu(path, vtu_mesh(model.basis.mesh, densities, shapes, coordinates, evaluation))


def write_vtu_series(path: str | Path, files: Iterable[tuple[str, float]]) -> Path:
    """Write ParaView's ``.vtu.series`` JSON.

    Parameters
    ----------
    path : str or Path
        The series file, e.g. ``run_dir/design.vtu.series``.
    files : iterable of (name, time)
        VTU file names relative to the series file's folder and their times (evaluation
        numbers), written in ascending time.

    Returns
    -------
    Path
    """
    entries = sorted(((str(n), float(t)) for n, t in files), key=lambda e: e[1])
    doc = {"file-series-version": "1.0",
           "files": [{"name": n, "time": int(t) if float(t).is_integer() else t} for n, t in entries]}
    return atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def read_vtu_series(path: str | Path) -> list[tuple[Path, float]]:
    """The (absolute VTU path, time) entries of a ``.vtu.series`` file, in file order."""
    path = Path(path)
    doc = json.loads(path.read_text())
    return [(path.parent / e["name"], float(e["time"])) for e in doc["files"]]
