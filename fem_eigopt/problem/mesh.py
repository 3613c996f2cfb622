"""Mesh builders: structured rectangles and boxes, a plate with a hole, file import, mapping.

All builders return scikit-fem meshes with the named boundaries ``left``/``right`` (x = min/max),
``bottom``/``top`` (y) and, in 3D, ``front``/``back`` (z); :func:`plate_with_hole` adds ``hole``.
Like scikit-fem's own modifiers, every function returns a new mesh and leaves its input alone.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable

import numpy as np
import skfem

from fem_eigopt.errors import InputError

__all__ = ["rectangle", "box", "plate_with_hole", "from_file", "mapped", "model_memory_estimate",
           "check_model_size"]

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


def plate_with_hole(length: float, height: float, radius: float, *, center_x: float | None = None,
                    n_side: int = 8, n_radial: int = 4, kind: str = "quad", grading: float = 1.0) -> skfem.Mesh:
    """Structured mesh of the plate ``[0, length] × [0, height]`` with a circular hole.

    The hole (centre ``(center_x, height/2)``, radius ``radius``) sits in a square block of side
    ``height`` meshed as an O-grid: ``4 n_side`` vertices equally spaced in angle on the circle, the
    same number equally spaced along the square's sides (the corners at ±45°, ±135°), joined by
    straight lines divided into ``n_radial`` cells. Rectangular blocks of square-ish cells (size
    ``height / n_side``) fill the plate on the left and right. Vertices on the block interfaces are
    shared.

    Parameters
    ----------
    length, height : float
        Plate size (m); ``length >= height``.
    radius : float
        Hole radius (m), ``0 < radius < height/2``.
    center_x : float, optional
        x of the hole centre (m), with ``height/2 <= center_x <= length − height/2``; default mid-length.
    n_side : int
        Cells along each side of the hole's square block (and across the plate), ≥ 1.
    n_radial : int
        Cells between the hole and the square, ≥ 1.
    kind : {"quad", "tri"}
        Quadrilaterals, or triangles (each quadrilateral split in two).
    grading : float
        Radial spacing exponent: the k-th ring of vertices is at fraction (k / n_radial)^grading
        of the way from the circle to the square (> 1: finer near the hole).

    Returns
    -------
    skfem.Mesh
        MeshQuad1 or MeshTri1 with the named boundaries ``hole`` and ``left``/``right``/``bottom``/``top``.
    """
    _check_lengths(length=length, height=height, radius=radius)
    _check_divisions(n_side=n_side, n_radial=n_radial)
    if kind not in ("quad", "tri"):
        raise InputError(f"plate_with_hole kind = {kind!r}; allowed: 'quad', 'tri'")
    cx = 0.5 * length if center_x is None else float(center_x)
    if not (length >= height and 0.5 * height <= cx <= length - 0.5 * height and radius < 0.5 * height):
        raise InputError(f"plate_with_hole(length={length!r}, height={height!r}, radius={radius!r}, center_x={center_x!r}); "
                         "allowed: length >= height, radius < height/2, height/2 <= center_x <= length - height/2")
    if not (np.isfinite(grading) and grading > 0):
        raise InputError(f"plate_with_hole grading = {grading!r}; allowed: a number > 0")
    points, quads = _o_grid(cx, 0.5 * height, 0.5 * height, radius, n_side, n_radial, grading)
    size = height / n_side
    for x0, x1 in ((0.0, cx - 0.5 * height), (cx + 0.5 * height, length)):
        nx = int(round((x1 - x0) / size))
        if nx >= 1:
            block_points, block_quads = _grid_block(x0, x1, height, nx, n_side)
            quads.append(block_quads + sum(len(p) for p in points))
            points.append(block_points)
    p, t = _merge(np.vstack(points), np.vstack(quads), tol=1e-9 * length)
    check_model_size(t.shape[0] * (2 if kind == "tri" else 1), _LINEAR_DOFS_PER_CELL[kind],
                     f"plate_with_hole(n_side={n_side}, n_radial={n_radial}, kind={kind!r})")
    if kind == "quad":
        mesh = skfem.MeshQuad1(p.T.copy(), t.T.copy())
    else:  # split along the diagonal 0–2 of each counter-clockwise quadrilateral
        mesh = skfem.MeshTri1(p.T.copy(), np.vstack([t[:, [0, 1, 2]], t[:, [0, 2, 3]]]).T.copy())
    tol = 1e-6 * radius
    mesh = mesh.with_boundaries({"hole": lambda x: np.hypot(x[0] - cx, x[1] - 0.5 * height) <= radius + tol})
    return _with_box_boundaries(mesh)


def _o_grid(cx: float, cy: float, half: float, radius: float, n_side: int, n_radial: int,
            grading: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Points (n, 2) and counter-clockwise quadrilaterals (m, 4) between a circle and its square."""
    n = 4 * n_side
    s = np.arange(n_side) / n_side
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=float)
    outer = np.vstack([corners[k] + s[:, None] * (corners[k + 1] - corners[k]) for k in range(4)])
    angle = -0.75 * np.pi + 2.0 * np.pi * np.arange(n) / n
    inner = radius * np.column_stack([np.cos(angle), np.sin(angle)])
    frac = (np.arange(n_radial + 1) / n_radial) ** grading
    ring = (1.0 - frac)[:, None, None] * inner[None] + frac[:, None, None] * (half * outer)[None]
    points = (ring + np.array([cx, cy])).reshape(-1, 2)  # index j·n + i: ring j, angle i
    i, j = np.meshgrid(np.arange(n), np.arange(n_radial), indexing="ij")
    i, j = i.ravel(), j.ravel()
    i1 = (i + 1) % n
    # i runs counter-clockwise and j outward, a clockwise frame: (i, j), (i, j+1), (i1, j+1), (i1, j)
    # is counter-clockwise
    quads = np.column_stack([j * n + i, (j + 1) * n + i, (j + 1) * n + i1, j * n + i1])
    return [points], [quads]


def _grid_block(x0: float, x1: float, height: float, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """Points and counter-clockwise quadrilaterals of a structured ``nx × ny`` block."""
    x, y = np.meshgrid(np.linspace(x0, x1, nx + 1), np.linspace(0.0, height, ny + 1), indexing="ij")
    points = np.column_stack([x.ravel(), y.ravel()])  # index a·(ny+1) + b
    a, b = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    a, b = a.ravel(), b.ravel()
    v = a * (ny + 1) + b
    return points, np.column_stack([v, v + ny + 1, v + ny + 2, v + 1])


def _merge(points: np.ndarray, cells: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge coincident points (within ``tol``) and renumber the cells."""
    keys = np.round(points / tol).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return points[first], inverse.reshape(-1)[cells]
