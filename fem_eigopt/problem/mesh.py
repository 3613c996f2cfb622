"""Mesh builders: structured rectangles and boxes with named boundaries, file import, mapping.

All builders return scikit-fem meshes with the named boundaries ``left``/``right`` (x = min/max),
``bottom``/``top`` (y) and, in 3D, ``front``/``back`` (z). Like scikit-fem's own modifiers, every
function returns a new mesh and leaves its input alone.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable

import numpy as np
import skfem

from fem_eigopt.errors import InputError

__all__ = ["rectangle", "box", "from_file", "mapped", "model_memory_estimate", "check_model_size"]

#: bytes per element-matrix entry (n_cells × dofs_per_cell²) that a model and its optimisation
#: hold: the assembly pattern and operators, K and M, the factorisation and the eigen solver's
#: blocks. Measured as the peak resident memory of the first evaluation of problems/beam.py
#: (quad1, PARDISO, subspace solver): 117 bytes at 160 000 cells, 131 at 40 000; the value is
#: rounded down, so a model refused by :func:`check_model_size` certainly does not fit.
BYTES_PER_MATRIX_ENTRY = 100

#: displacement dofs per cell of the lowest-order element of each mesh kind (what a mesh builder
#: knows before the element is chosen)
_LINEAR_DOFS_PER_CELL = {"quad": 8, "tri": 6, "hex": 24, "tet": 12}


def model_memory_estimate(n_cells: int, dofs_per_cell: int) -> float:
    """Bytes a model of ``n_cells`` cells with ``dofs_per_cell`` displacement dofs per cell needs.

    Parameters
    ----------
    n_cells : int
        Number of cells (elements).
    dofs_per_cell : int
        Displacement degrees of freedom of one element (8 for a quad1 in 2D, 24 for a hex1).

    Returns
    -------
    float
        ``BYTES_PER_MATRIX_ENTRY · n_cells · dofs_per_cell²``: the element-matrix entries set the
        size of the assembly pattern, of K and M and (to first order, in 2D) of the factorisation.
    """
    return float(BYTES_PER_MATRIX_ENTRY) * float(n_cells) * float(dofs_per_cell) ** 2


def check_model_size(n_cells: int, dofs_per_cell: int, where: str) -> None:
    """Refuse a model whose memory estimate exceeds the memory available now (before allocating it).

    Parameters
    ----------
    n_cells : int
        Number of cells.
    dofs_per_cell : int
        Displacement dofs of one element.
    where : str
        What to name in the message (``"rectangle(nx=100000, ny=10000)"``).

    Raises
    ------
    InputError
        :func:`model_memory_estimate` is above the available memory (Linux ``MemAvailable``); no
        check where the available memory is unknown.
    """
    from fem_eigopt.linalg.factorization import available_memory

    available = available_memory()
    if available is None:
        return
    needed = model_memory_estimate(n_cells, dofs_per_cell)
    if needed > available:
        fits = int(available / (BYTES_PER_MATRIX_ENTRY * dofs_per_cell**2))
        raise InputError(
            f"{where}: {n_cells:,} cells need about {needed / 1e9:,.1f} GB "
            f"({BYTES_PER_MATRIX_ENTRY} bytes x {dofs_per_cell}^2 element-matrix entries per cell), "
            f"{available / 1e9:.1f} GB available; allowed: at most about {fits:,} cells")


def _check_divisions(**counts: int) -> None:
    for name, n in counts.items():
        if not (isinstance(n, (int, np.integer)) and n >= 1):
            raise InputError(f"{name} = {n!r}; allowed: an integer >= 1")


def _check_lengths(**lengths: float) -> None:
    for name, v in lengths.items():
        if not (np.isfinite(v) and v > 0):
            raise InputError(f"{name} = {v!r}; allowed: a length > 0")


def rectangle(
    lx: float, ly: float, nx: int, ny: int, *, kind: str = "quad", origin: tuple[float, float] = (0.0, 0.0)
) -> skfem.Mesh:
    """Structured mesh of ``[x0, x0+lx] × [y0, y0+ly]`` with ``nx × ny`` cells.

    Parameters
    ----------
    lx, ly : float
        Side lengths (m).
    nx, ny : int
        Number of cells along x and y.
    kind : {"quad", "tri"}
        Quadrilaterals, or triangles (each quad split in two).

    Raises
    ------
    InputError
        A length or count out of range, or a mesh whose model (linear elements) would not fit in
        the available memory (:func:`check_model_size`), refused before anything is allocated.
    """
    _check_lengths(lx=lx, ly=ly)
    _check_divisions(nx=nx, ny=ny)
    if kind in ("quad", "tri"):
        cells = nx * ny * (2 if kind == "tri" else 1)
        check_model_size(cells, _LINEAR_DOFS_PER_CELL[kind], f"rectangle(nx={nx}, ny={ny}, kind={kind!r})")
    x = origin[0] + np.linspace(0.0, lx, nx + 1)
    y = origin[1] + np.linspace(0.0, ly, ny + 1)
    if kind == "quad":
        mesh = skfem.MeshQuad.init_tensor(x, y)
    elif kind == "tri":
        mesh = skfem.MeshTri.init_tensor(x, y)
    else:
        raise InputError(f"rectangle kind = {kind!r}; allowed: 'quad', 'tri'")
    return mesh.with_defaults()


def box(
    lx: float, ly: float, lz: float, nx: int, ny: int, nz: int, *, kind: str = "hex",
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> skfem.Mesh:
    """Structured mesh of a box with ``nx × ny × nz`` cells (hexahedra, or tetrahedra: 6 per cell).

    Raises
    ------
    InputError
        As :func:`rectangle`.
    """
    _check_lengths(lx=lx, ly=ly, lz=lz)
    _check_divisions(nx=nx, ny=ny, nz=nz)
    if kind in ("hex", "tet"):
        cells = nx * ny * nz * (6 if kind == "tet" else 1)
        check_model_size(cells, _LINEAR_DOFS_PER_CELL[kind], f"box(nx={nx}, ny={ny}, nz={nz}, kind={kind!r})")
    x = origin[0] + np.linspace(0.0, lx, nx + 1)
    y = origin[1] + np.linspace(0.0, ly, ny + 1)
    z = origin[2] + np.linspace(0.0, lz, nz + 1)
    if kind == "hex":
        mesh = skfem.MeshHex.init_tensor(x, y, z)
    elif kind == "tet":
        mesh = skfem.MeshTet.init_tensor(x, y, z)
    else:
        raise InputError(f"box kind = {kind!r}; allowed: 'hex', 'tet'")
    return mesh.with_defaults()


def from_file(path: str | Path, *, default_boundaries: bool = True) -> skfem.Mesh:
    """Read any mesh meshio reads (Gmsh ``.msh``, ``.vtu``, ``.xdmf``, …).

    Named boundaries come from the file's physical groups / cell sets where present (scikit-fem's
    meshio bridge); with ``default_boundaries`` the axis-aligned ``left``/``right``/… sets of the
    bounding box are added where the file has none of those names.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such mesh file")
    # meshio reports an unreadable file by printing to stderr and calling sys.exit(1): catch the
    # SystemExit too and keep its message, so the user gets one InputError line (CLI exit code 2).
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            mesh = skfem.Mesh.load(str(path))
    except (Exception, SystemExit) as exc:
        detail = " ".join(printed.getvalue().split()) or f"{type(exc).__name__}: {exc}"
        raise InputError(f"{path}: could not read the mesh: {detail}") from exc
    if default_boundaries:
        mesh = _with_box_boundaries(mesh)
    return mesh


def _with_box_boundaries(mesh: skfem.Mesh) -> skfem.Mesh:
    """Add ``left``/``right``/``bottom``/``top``/``front``/``back`` facet sets of the bounding box."""
    names = [("left", "right"), ("bottom", "top"), ("front", "back")][: mesh.dim()]
    lo, hi = mesh.p.min(axis=1), mesh.p.max(axis=1)
    tol = 1e-9 * max(float(np.max(hi - lo)), 1.0)
    existing = dict(mesh.boundaries or {})
    new = {}
    for axis, (low_name, high_name) in enumerate(names):
        for name, value in ((low_name, lo[axis]), (high_name, hi[axis])):
            if name not in existing:
                new[name] = mesh.facets_satisfying(
                    lambda x, a=axis, v=value: np.abs(x[a] - v) <= tol, boundaries_only=True
                )
    return mesh.with_boundaries(new) if new else mesh


def mapped(mesh: skfem.Mesh, mapping: Callable[[np.ndarray], np.ndarray]) -> skfem.Mesh:
    """A copy of ``mesh`` with vertex coordinates ``mapping(p)``, ``p`` of shape (dim, n_vertices).

    Use it for mapped geometry (a trapezoid from a rectangle, a curved beam). Named boundaries keep
    their facets. Quadratic elements use the vertex positions through the isoparametric map of the
    mesh, so curved edges are represented to the accuracy of the mesh's own (linear) geometry.
    """
    p = np.asarray(mapping(mesh.p.copy()), dtype=float)
    if p.shape != mesh.p.shape:
        raise InputError(f"mapping returned shape {p.shape}; allowed: {mesh.p.shape}")
    return type(mesh)(p, mesh.t.copy(), _boundaries=mesh.boundaries, _subdomains=mesh.subdomains)
