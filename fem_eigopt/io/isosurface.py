"""The 3D design as a surface: the ρ̄ = 0.5 isosurface of the physical densities.

Two ways, both headless (NumPy, SciPy, scikit-image; no OpenGL):

* structured box meshes (hexahedra whose centroids fill a regular grid, as ``fe.box`` makes):
  the element densities are the values at the cell centres of a regular grid, padded with one
  layer of void on every side so the surface closes on the domain boundary, and
  :func:`skimage.measure.marching_cubes` extracts the surface;
* any other 3D mesh (tetrahedra, unstructured or graded hexahedra): element densities averaged
  to the vertices, hexahedra split into tetrahedra, and marching tetrahedra (vectorised below).

Either way the surface vertices come with a sparse interpolation matrix ``W`` from the mesh
vertices, so a mode shape (vertex displacements) is carried onto the surface by ``W @ u``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)

__all__ = ["Surface", "density_isosurface", "nodal_average"]


@dataclass
class Surface:
    """A triangulated surface with its map from the mesh vertices.

    Attributes
    ----------
    vertices : ndarray (n_points, 3)
        Surface points (m).
    faces : ndarray (n_triangles, 3)
        Vertex indices of the triangles.
    weights : scipy.sparse.csr_matrix (n_points, n_mesh_vertices)
        Interpolation of vertex fields: ``weights @ u`` (u of shape (n_mesh_vertices, ...)) gives
        the field at the surface points.
    method : str
        ``"marching_cubes"`` (structured grid) or ``"marching_tetrahedra"``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    weights: sp.csr_matrix
    method: str

    @property
    def n_triangles(self) -> int:
        return int(self.faces.shape[0])

    def field(self, nodal: np.ndarray) -> np.ndarray:
        """A vertex field (n_mesh_vertices, ...) at the surface points (n_points, ...)."""
        return self.weights @ np.asarray(nodal)


def nodal_average(mesh, densities: np.ndarray) -> np.ndarray:
    """Element values averaged to the vertices (each element counts once), shape (n_vertices,)."""
    t = mesh.t
    rho = np.asarray(densities, dtype=float)
    n_v = mesh.p.shape[1]
    total = np.bincount(t.ravel(), weights=np.repeat(rho[None, :], t.shape[0], axis=0).ravel(), minlength=n_v)
    count = np.bincount(t.ravel(), minlength=n_v)
    return total / np.maximum(count, 1)


def _regular_axis(values: np.ndarray, rtol: float = 1e-6) -> np.ndarray | None:
    """Sorted unique coordinates if they are equally spaced, else None."""
    span = float(np.ptp(values)) or 1.0
    u = np.unique(np.round(values / (rtol * span)).astype(np.int64)) * (rtol * span)
    if u.size > 1:
        d = np.diff(u)
        if not np.allclose(d, d.mean(), rtol=1e-3, atol=0.0):
            return None
    return u


def _structured_grid(mesh, coordinates: np.ndarray):
    """(cell index (3, n_elem), cell centres per axis, vertex index grid) of a structured hex mesh, or None."""
    t = mesh.t
    if mesh.dim() != 3 or t.shape[0] != 8:
        return None
    p = coordinates
    c = p[:, t].mean(axis=1)
    axes = []
    for a in range(3):
        u = _regular_axis(c[a])
        if u is None:
            return None
        axes.append(u)
    shape = tuple(u.size for u in axes)
    if int(np.prod(shape)) != t.shape[1]:
        return None
    # cells and vertices on the grid spanned by the vertices' bounding box
    idx = np.empty((3, t.shape[1]), dtype=np.int64)
    vidx = np.empty((3, p.shape[1]), dtype=np.int64)
    vaxes = []
    for a in range(3):
        x0 = float(p[a].min())
        h = float(np.ptp(p[a])) / shape[a]
        if not h > 0:
            return None
        idx[a] = np.rint((c[a] - x0) / h - 0.5).astype(np.int64)
        vidx[a] = np.rint((p[a] - x0) / h).astype(np.int64)
        if np.any(np.abs(p[a] - (x0 + vidx[a] * h)) > 1e-4 * h):
            return None
        vaxes.append((x0, h))
    if any(np.any((idx[a] < 0) | (idx[a] >= shape[a])) for a in range(3)):
        return None
    flat = np.ravel_multi_index(idx, shape)
    if np.unique(flat).size != flat.size:
        return None
    vshape = tuple(s + 1 for s in shape)
    if np.any(vidx < 0) or any(np.any(vidx[a] >= vshape[a]) for a in range(3)):
        return None
    grid = np.full(vshape, -1, dtype=np.int64)
    grid[vidx[0], vidx[1], vidx[2]] = np.arange(p.shape[1])
    if np.any(grid < 0):
        return None
    return idx, shape, vaxes, grid


def _trilinear_weights(points: np.ndarray, vaxes, grid: np.ndarray) -> sp.csr_matrix:
    """Weights of the 8 cell corners for points (n, 3) in the structured vertex grid."""
    n = points.shape[0]
    cols, vals = [], []
    base, frac = [], []
    for a in range(3):
        x0, h = vaxes[a]
        s = (points[:, a] - x0) / h
        i = np.clip(np.floor(s).astype(np.int64), 0, grid.shape[a] - 2)
        base.append(i)
        frac.append(np.clip(s - i, 0.0, 1.0))
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                w = ((frac[0] if di else 1 - frac[0]) * (frac[1] if dj else 1 - frac[1])
                     * (frac[2] if dk else 1 - frac[2]))
                cols.append(grid[base[0] + di, base[1] + dj, base[2] + dk])
                vals.append(w)
    rows = np.tile(np.arange(n), 8)
    return sp.csr_matrix((np.concatenate(vals), (rows, np.concatenate(cols))), shape=(n, grid.size))


def _marching_cubes(rho: np.ndarray, structured, level: float, max_triangles: int) -> Surface:
    from skimage.measure import marching_cubes

    idx, shape, vaxes, grid = structured
    vol = np.zeros(tuple(s + 2 for s in shape))
    vol[idx[0] + 1, idx[1] + 1, idx[2] + 1] = rho
    spacing = tuple(h for _, h in vaxes)
    # padded cell centre 0 sits at x0 - h/2 (x0: the first vertex plane)
    origin = np.array([x0 - 0.5 * h for x0, h in vaxes])
    step = 1
    while True:
        verts, faces, _, _ = marching_cubes(vol, level=level, spacing=spacing, step_size=step,
                                            allow_degenerate=False)
        if faces.shape[0] <= max_triangles or step >= 8:
            break
        step += 1
    verts = verts + origin
    W = _trilinear_weights(verts, vaxes, grid)
    return Surface(verts, faces.astype(np.int64), W, "marching_cubes")


def _tetrahedra(mesh) -> np.ndarray:
    """Tetrahedra (4, n_tet) on the mesh's own vertices (hexahedra split into six)."""
    t = mesh.t
    if t.shape[0] == 4:
        return t
    if t.shape[0] == 8:
        tets = mesh.to_meshtet()
        if tets.p.shape[1] != mesh.p.shape[1] or not np.allclose(tets.p, mesh.p):
            raise ValueError("hexahedra split into tetrahedra with new vertices; not supported")
        return tets.t
    raise ValueError(f"3D cells with {t.shape[0]} vertices; supported: tetrahedra (4) and hexahedra (8)")


def _marching_tetrahedra(tets: np.ndarray, points: np.ndarray, values: np.ndarray, level: float) -> Surface:
    """Isosurface ``values = level`` of a vertex field linear on each tetrahedron."""
    n_v = points.shape[1]
    inside = values[tets] > level  # (4, n_tet)
    count = inside.sum(axis=0)
    edges_a, edges_b = [], []  # per triangle: 3 edges (a, b)

    # one vertex alone on its side (count 1 or 3): one triangle around it
    for lone_inside, cnt in ((True, 1), (False, 3)):
        sel = np.flatnonzero(count == cnt)
        if sel.size == 0:
            continue
        lone_mask = inside[:, sel] if lone_inside else ~inside[:, sel]
        lone = np.argmax(lone_mask, axis=0)
        others = np.array([[j for j in range(4) if j != k] for k in range(4)])[lone]  # (n, 3)
        a = tets[lone, sel]
        b = tets[others.T, sel]  # (3, n)
        edges_a.append(np.repeat(a[:, None], 3, axis=1))
        edges_b.append(b.T)
    # two and two: a quadrilateral, two triangles
    sel = np.flatnonzero(count == 2)
    if sel.size:
        order = np.argsort(~inside[:, sel], axis=0, kind="stable")  # inside vertices first
        i0, i1, o0, o1 = (tets[order[k], sel] for k in range(4))
        # quad i0-o0, i0-o1, i1-o1, i1-o0
        q = [(i0, o0), (i0, o1), (i1, o1), (i1, o0)]
        for tri in ((0, 1, 2), (0, 2, 3)):
            edges_a.append(np.stack([q[k][0] for k in tri], axis=1))
            edges_b.append(np.stack([q[k][1] for k in tri], axis=1))
    if not edges_a:
        return Surface(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), sp.csr_matrix((0, n_v)),
                       "marching_tetrahedra")
    ea = np.concatenate(edges_a).ravel()
    eb = np.concatenate(edges_b).ravel()
    lo, hi = np.minimum(ea, eb), np.maximum(ea, eb)
    keys, inverse = np.unique(lo.astype(np.int64) * n_v + hi, return_inverse=True)
    ka, kb = keys // n_v, keys % n_v
    va, vb = values[ka], values[kb]
    s = np.clip((level - va) / np.where(vb != va, vb - va, 1.0), 0.0, 1.0)
    verts = (points[:, ka] * (1 - s) + points[:, kb] * s).T
    faces = inverse.reshape(-1, 3)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    m = keys.size
    W = sp.csr_matrix((np.concatenate([1 - s, s]), (np.tile(np.arange(m), 2), np.concatenate([ka, kb]))),
                      shape=(m, n_v))
    return Surface(verts, faces, W, "marching_tetrahedra")


def density_isosurface(mesh, densities: np.ndarray, level: float = 0.5, coordinates: np.ndarray | None = None,
                       max_triangles: int = 80_000) -> Surface:
    """The surface ρ̄ = ``level`` of a 3D design.

    Parameters
    ----------
    mesh : skfem.Mesh
        A 3D mesh (hexahedra or tetrahedra).
    densities : ndarray (n_elem,)
        Physical densities ρ̄ in [0, 1].
    level : float
        Iso value (0.5: solid is ρ̄ > 0.5).
    coordinates : ndarray (3, n_vertices), optional
        Vertex coordinates (m) replacing ``mesh.p`` (moved meshes of shape designs).
    max_triangles : int
        On structured meshes the marching-cubes step grows until the surface has at most this
        many triangles (a picture, not an analysis; matplotlib slows down beyond).

    Returns
    -------
    Surface
        Empty (``n_triangles == 0``) when no density exceeds ``level``.
    """
    rho = np.asarray(densities, dtype=float)
    p = mesh.p if coordinates is None else np.asarray(coordinates, dtype=float)
    n_v = p.shape[1]
    if rho.size == 0 or not np.any(rho > level):
        return Surface(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), sp.csr_matrix((0, n_v)), "none")
    structured = _structured_grid(mesh, p)
    if structured is not None:
        try:
            return _marching_cubes(rho, structured, level, max_triangles)
        except ImportError:
            logger.info("scikit-image is not installed: marching tetrahedra instead of marching cubes")
    values = nodal_average(mesh, rho)
    return _marching_tetrahedra(_tetrahedra(mesh), p, values, level)


def boundary_surface(mesh, coordinates: np.ndarray | None = None) -> Surface:
    """The boundary of a 3D mesh as triangles (quadrilateral faces split in two), on its own vertices.

    Parameters
    ----------
    mesh : skfem.Mesh
        3D mesh.
    coordinates : ndarray (3, n_vertices), optional
        Moved vertex coordinates (m).

    Returns
    -------
    Surface
        ``weights`` is the identity (the surface points are the mesh vertices).
    """
    p = mesh.p if coordinates is None else np.asarray(coordinates, dtype=float)
    f = mesh.facets[:, mesh.boundary_facets()]
    if f.shape[0] == 4:  # quadrilateral faces in cyclic order
        tri = np.concatenate([f[[0, 1, 2]].T, f[[0, 2, 3]].T])
    else:
        tri = f[:3].T
    n_v = p.shape[1]
    return Surface(p.T.copy(), tri.astype(np.int64), sp.identity(n_v, format="csr"), "boundary")
