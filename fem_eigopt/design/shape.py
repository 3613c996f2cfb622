"""Shape maps: a few parameters p → mesh vertex coordinates X(p), each with its transpose.

* :class:`LinearShapeMap` – X(p) = X0 + Σ_k p_k V_k with given vertex velocity fields V_k;
* :class:`BoundaryMotionMap` – the same for any mesh, with V_k computed once from a boundary
  velocity (:class:`BoundaryVelocity`) by a mesh-motion solve (:func:`extend_boundary_motion`);
* :class:`ProfileShapeMap` – the thickness profile h(x) of a bar;
* :func:`check_mesh_coordinates` – validity of moved vertices (no inverted element).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
import skfem
from scipy.interpolate import BSpline, make_interp_spline
from skfem.helpers import ddot, dot, grad, sym_grad, trace

from fem_eigopt.errors import InputError
from fem_eigopt.linalg.factorization import make_factorization

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# validity of moved vertices from the mesh alone

_LINEAR_MESHES = (skfem.MeshTri1, skfem.MeshQuad1, skfem.MeshTet1, skfem.MeshHex1)


def check_mesh_coordinates(mesh: skfem.Mesh, X: np.ndarray, params: np.ndarray | None = None) -> float:
    """Check that no element of ``mesh`` with its vertices at ``X`` is inverted or degenerate.

    The mesh-only form of :func:`fem_eigopt.fem.geometry.check_coordinates` (same test, same
    message), used when a problem is built: a :class:`~fem_eigopt.problem.definition.ShapeDesign`
    whose initial parameters invert an element is refused before any analysis. det J is evaluated
    at the reference corners, the centroid and, for quadrilaterals and hexahedra, the 2-point
    Gauss points per axis, and must keep the sign it has at the centroid of the unmoved element.

    Parameters
    ----------
    mesh : skfem.Mesh
        Reference mesh (MeshTri1, MeshQuad1, MeshTet1, MeshHex1).
    X : ndarray (dim, n_vertices)
        Moved vertex coordinates (m).
    params : ndarray, optional
        Shape parameters that produced ``X``, named in the error message.

    Returns
    -------
    float
        Smallest det J(X) / |det J(reference)| over elements and check points (> 0: valid).

    Raises
    ------
    InputError
        Wrong mesh type or shape of X, or an inverted or degenerate element.
    """
    if type(mesh) not in _LINEAR_MESHES:
        raise InputError(f"mesh = {type(mesh).__name__}; allowed for shape design: MeshTri1, MeshQuad1, MeshTet1, "
                         "MeshHex1 (linear geometry)")
    X = np.asarray(X, dtype=float)
    if X.shape != mesh.p.shape or not np.all(np.isfinite(X)):
        raise InputError(f"X has shape {X.shape}; allowed: {mesh.p.shape} finite coordinates")
    geom = mesh.elem()
    corners = np.asarray(geom.doflocs, dtype=float).T  # (dim, n_corners)
    centroid = corners.mean(axis=1, keepdims=True)
    points = [corners, centroid]
    if type(mesh) in (skfem.MeshQuad1, skfem.MeshHex1):
        g = 0.5 + np.array([-0.5, 0.5]) / np.sqrt(3.0)  # reference cell [0, 1]^dim
        points.append(np.array(np.meshgrid(*([g] * mesh.dim()), indexing="ij")).reshape(mesh.dim(), -1))

    def det(P: np.ndarray, pts: np.ndarray) -> np.ndarray:
        grads = np.array([geom.lbasis(pts, i)[1] for i in range(corners.shape[1])])  # (n_v, dim, n_pts)
        J = np.einsum("ive,vjq->eqij", P[:, mesh.t], grads)  # J[e, q] = ∂x/∂ξ, (n_elem, n_pts, dim, dim)
        return np.linalg.det(J)  # (n_elem, n_pts)

    return jacobian_ratio(det(mesh.p, centroid)[:, 0], det(X, np.hstack(points)), params)


def jacobian_ratio(det0: np.ndarray, dets: np.ndarray, params: np.ndarray | None = None) -> float:
    """Smallest det J / |det J of the reference| with the reference's orientation; InputError if ≤ 0.

    Parameters
    ----------
    det0 : ndarray (n_elem,)
        Jacobian determinants of the reference mesh (at the centroids).
    dets : ndarray (n_elem, n_points)
        Jacobian determinants of the moved mesh at the check points.
    params : ndarray, optional
        Shape parameters, named in the error message (else "vertex coordinates X").

    Returns
    -------
    float
        > 0 for a valid mesh, 1 for an unmoved one.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (dets * np.sign(det0)[:, None]).min(axis=1) / np.abs(det0)
    bad = np.flatnonzero(~(ratio > 1e-12))
    if bad.size:
        what = "vertex coordinates X" if params is None else \
            "shape parameters p = [" + ", ".join(f"{v:.6g}" for v in np.ravel(params)) + "]"
        listed = ", ".join(str(e) for e in bad[:5]) + (", …" if bad.size > 5 else "")
        raise InputError(
            f"{what} invert or degenerate {bad.size} element(s) ({listed}; det J ratio {ratio[bad[0]]:.3g}); "
            "allowed: values keeping every element's Jacobian determinant positive"
        )
    return float(ratio.min())


# ----------------------------------------------------------------------------------------------
# shape parameters → vertex coordinates


class ShapeMap(ABC):
    """A map from shape parameters p (n_params,) to vertex coordinates X (dim, n_vertices).

    Subclasses implement :meth:`coordinates` and :meth:`vjp` (the transpose of the Jacobian
    dX/dp applied to a coordinate gradient); :meth:`jvp` is the Jacobian applied to a parameter
    direction.
    """

    n_params: int

    @abstractmethod
    def coordinates(self, p: np.ndarray) -> np.ndarray:
        """Vertex coordinates X(p), shape (dim, n_vertices) (m)."""

    @abstractmethod
    def vjp(self, p: np.ndarray, dX: np.ndarray) -> np.ndarray:
        """(dX/dp)ᵀ dX: ``dX`` of shape (..., dim, n_vertices) → (..., n_params)."""

    @abstractmethod
    def jvp(self, p: np.ndarray, dp: np.ndarray) -> np.ndarray:
        """(dX/dp) dp: ``dp`` (n_params,) → (dim, n_vertices)."""

    def _check_params(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if p.shape != (self.n_params,) or not np.all(np.isfinite(p)):
            raise InputError(f"shape parameters p = {p!r}; allowed: {self.n_params} finite numbers")
        return p


class LinearShapeMap(ShapeMap):
    """X(p) = X0 + Σ_j p_j V_j with fixed velocity fields V_j.

    Parameters
    ----------
    X0 : ndarray (dim, n_vertices)
        Coordinates at p = 0 (m).
    velocities : ndarray (n_params, dim, n_vertices)
        Vertex velocity of each parameter (m per unit of p_j).
    """

    def __init__(self, X0: np.ndarray, velocities: np.ndarray) -> None:
        X0 = np.asarray(X0, dtype=float)
        V = np.asarray(velocities, dtype=float)
        if X0.ndim != 2 or not np.all(np.isfinite(X0)):
            raise InputError(f"X0 has shape {X0.shape}; allowed: (dim, n_vertices) finite coordinates")
        if V.ndim != 3 or V.shape[1:] != X0.shape or not np.all(np.isfinite(V)):
            raise InputError(f"velocities have shape {V.shape}; allowed: (n_params, {X0.shape[0]}, {X0.shape[1]}) "
                             "finite values")
        self.X0, self.velocities, self.n_params = X0, V, V.shape[0]

    def coordinates(self, p: np.ndarray) -> np.ndarray:
        return self.X0 + self.jvp(p, p)

    def jvp(self, p: np.ndarray, dp: np.ndarray) -> np.ndarray:
        return np.einsum("j,jdn->dn", self._check_params(dp), self.velocities)

    def vjp(self, p: np.ndarray, dX: np.ndarray) -> np.ndarray:
        self._check_params(p)
        return np.einsum("jdn,...dn->...j", self.velocities, np.asarray(dX, dtype=float))


# ----------------------------------------------------------------------------------------------
# any mesh: boundary velocities extended into the mesh once (a linear map of p)

#: the first-order (vertex) scalar element of each linear-geometry mesh, the mesh-motion basis
_VERTEX_ELEMENTS = {skfem.MeshTri1: skfem.ElementTriP1, skfem.MeshQuad1: skfem.ElementQuad1,
                    skfem.MeshTet1: skfem.ElementTetP1, skfem.MeshHex1: skfem.ElementHex1}

#: mesh-motion extensions of :func:`extend_boundary_motion`
EXTENSIONS = ("elastic", "laplace")


@dataclass(frozen=True)
class BoundaryVelocity:
    """How one shape parameter moves a part of the boundary (m of motion per unit of the parameter).

    Give either ``velocity`` or ``normal``.

    Parameters
    ----------
    where : str, sequence of str, callable, array of int or None
        The moving part of the boundary: a named boundary of the mesh (a key of
        ``mesh.boundaries``, e.g. a Gmsh physical group read by :func:`fem_eigopt.from_file`) or
        several (their union), a
        predicate on the midpoints ``x`` (dim, n_facets) of the boundary facets returning a boolean
        mask (n_facets,) as in ``skfem.Mesh.facets_satisfying``, boundary facet indices, or None
        for the whole boundary. The vertices of these facets move; all other boundary vertices
        stay where they are.
    velocity : callable or array_like (dim,), optional
        Vertex velocity (m per unit of p): ``velocity(x)`` of the vertex coordinates ``x``
        (dim, n) returning (dim, n), or one vector for all vertices (a translation).
    normal : callable or float, optional
        Speed along the outward unit normal of the body instead (m per unit of p): a number, or
        ``normal(x)`` of the vertex coordinates (dim, n) returning (n,). Positive moves the
        boundary away from the material, so the body grows: an outer edge moves out, a hole
        shrinks. The vertex normal is the normalised ∫ φ_a n ds over the selected facets (φ_a the
        vertex's hat function), so at a corner of the selection it is the average direction.
    name : str, optional
        Name of the parameter (history, messages); used by :class:`~fem_eigopt.problem.definition.ShapeDesign`
        when it is given no ``names``.

    Examples
    --------
    A hole of radius r around ``c`` growing (radius + p) and moving along x (+ p):

    >>> radial = lambda x: (x - c[:, None]) / np.linalg.norm(x - c[:, None], axis=0)
    >>> on_hole = lambda x: np.linalg.norm(x - c[:, None], axis=0) < 1.01 * r
    >>> motions = [fe.BoundaryVelocity(on_hole, velocity=radial, name="dr"),
    ...            fe.BoundaryVelocity(on_hole, velocity=(1.0, 0.0), name="dx")]
    """

    where: Any = None
    velocity: Any = None
    normal: Any = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.velocity is None) == (self.normal is None):
            raise InputError(f"BoundaryVelocity(where={self.where!r}) has velocity={self.velocity!r} and "
                             f"normal={self.normal!r}; allowed: exactly one of them")
        if self.normal is not None and not callable(self.normal) and not (
                isinstance(self.normal, (int, float, np.number)) and np.isfinite(self.normal)):
            raise InputError(f"BoundaryVelocity normal = {self.normal!r}; allowed: a number or a callable")

    def facets(self, mesh: skfem.Mesh) -> np.ndarray:
        """Indices of the selected boundary facets of ``mesh`` (sorted, unique).

        Raises
        ------
        InputError
            An unknown name, a predicate of the wrong shape, interior facets, or nothing selected.
        """
        boundary = mesh.boundary_facets()
        facets = np.unique(_selected_facets(mesh, self.where, boundary))
        if facets.size == 0:
            raise InputError(f"BoundaryVelocity where = {self._label()} selects no boundary facet; allowed: a "
                             "selection of at least one boundary facet")
        if not np.all(np.isin(facets, boundary)):
            raise InputError(f"BoundaryVelocity where = {self._label()} selects interior facets; allowed: boundary "
                             "facets only")
        return facets

    def vertex_velocities(self, mesh: skfem.Mesh) -> np.ndarray:
        """The velocity of every vertex of ``mesh`` due to this motion: zero off the selection.

        Returns
        -------
        ndarray (dim, n_vertices)
            m per unit of the parameter.
        """
        facets = self.facets(mesh)
        vertices = np.unique(mesh.facets[:, facets])
        x = mesh.p[:, vertices]
        v = self._velocity(x) if self.velocity is not None else \
            self._normal_speed(x)[None, :] * vertex_normals(mesh, facets)[:, vertices]
        if v.shape != x.shape or not np.all(np.isfinite(v)):
            raise InputError(f"BoundaryVelocity velocity at {self._label()} has shape {v.shape}; allowed: "
                             f"{x.shape} finite values (dim, n_vertices)")
        out = np.zeros_like(mesh.p, dtype=float)
        out[:, vertices] = v
        return out

    def _velocity(self, x: np.ndarray) -> np.ndarray:
        """``velocity`` at the vertices x (dim, n): called, or one vector repeated."""
        if callable(self.velocity):
            return np.asarray(self.velocity(x.copy()), dtype=float)
        return np.repeat(np.asarray(self.velocity, dtype=float).reshape(-1, 1), x.shape[1], axis=1)

    def _normal_speed(self, x: np.ndarray) -> np.ndarray:
        """``normal`` at the vertices x (dim, n), shape (n,)."""
        speed = np.asarray(self.normal(x.copy()) if callable(self.normal) else np.full(x.shape[1], self.normal),
                           dtype=float)
        if speed.shape != (x.shape[1],):
            raise InputError(f"BoundaryVelocity normal(x) returned shape {speed.shape}; allowed: "
                             f"({x.shape[1]},), one speed per vertex")
        return speed

    def _label(self) -> str:
        return repr(self.where) if isinstance(self.where, str) or self.where is None else \
            (self.name or type(self.where).__name__)


def _selected_facets(mesh: skfem.Mesh, where: Any, boundary: np.ndarray) -> np.ndarray:
    """The facets ``where`` names (see :class:`BoundaryVelocity`), not yet checked."""
    if where is None:
        return boundary
    if isinstance(where, str) or (isinstance(where, (list, tuple)) and where
                                  and all(isinstance(w, str) for w in where)):
        names = [where] if isinstance(where, str) else list(where)
        unknown = [n for n in names if not mesh.boundaries or n not in mesh.boundaries]
        if unknown:
            known = ", ".join(sorted(mesh.boundaries or {})) or "none"
            raise InputError(f"BoundaryVelocity where = {unknown[0]!r}; allowed: a named boundary of the mesh "
                             f"({known}), a predicate on facet midpoints, facet indices or None")
        return np.concatenate([np.asarray(mesh.boundaries[n], dtype=int) for n in names])
    if callable(where):
        mask = np.asarray(where(mesh.p[:, mesh.facets[:, boundary]].mean(axis=1)))
        if mask.shape != boundary.shape:
            raise InputError(f"BoundaryVelocity where: the predicate returned shape {mask.shape}; allowed: "
                             f"{boundary.shape}, one boolean per boundary facet midpoint")
        return boundary[mask.astype(bool)]
    facets = np.asarray(where)
    if facets.ndim != 1 or facets.dtype.kind not in "iu":
        raise InputError(f"BoundaryVelocity where = {where!r}; allowed: a name, a predicate, facet indices or None")
    return facets


def vertex_normals(mesh: skfem.Mesh, facets: np.ndarray) -> np.ndarray:
    """Outward unit vertex normals of a set of boundary facets: ∫_Γ φ_a n ds, normalised.

    Parameters
    ----------
    mesh : skfem.Mesh
        Linear-geometry mesh (MeshTri1, MeshQuad1, MeshTet1, MeshHex1).
    facets : ndarray of int (n_facets,)
        Boundary facets.

    Returns
    -------
    ndarray (dim, n_vertices)
        Unit vectors at the vertices of the facets (area-weighted average of the facet normals
        there), zero elsewhere.
    """
    element = _vertex_element(mesh)
    fb = skfem.FacetBasis(mesh, element, facets=np.asarray(facets, dtype=int))
    n = np.array([skfem.LinearForm(lambda v, w, i=i: v * w.n[i]).assemble(fb) for i in range(mesh.dim())])
    n = n[:, fb.nodal_dofs[0]]  # dof order → vertex order
    norm = np.linalg.norm(n, axis=0)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


def _vertex_element(mesh: skfem.Mesh) -> skfem.Element:
    try:
        return _VERTEX_ELEMENTS[type(mesh)]()
    except KeyError:
        raise InputError(f"mesh = {type(mesh).__name__}; allowed for shape design: MeshTri1, MeshQuad1, MeshTet1, "
                         "MeshHex1 (linear geometry)") from None


def _stiffening_weights(basis: skfem.Basis, chi: float) -> np.ndarray:
    """(v̄ / v_e)^χ per element and quadrature point, shape (n_elem, n_qp): small elements stiffer."""
    volumes = basis.dx.sum(axis=1)
    k = (volumes.mean() / volumes) ** chi
    return np.repeat(k[:, None], basis.dx.shape[1], axis=1)


@skfem.BilinearForm
def _laplace(u, v, w):
    return w.k * dot(grad(u), grad(v))


@skfem.BilinearForm
def _elastic(u, v, w):
    eu, ev = sym_grad(u), sym_grad(v)
    return w.k * (2.0 * w.mu * ddot(eu, ev) + w.lam * trace(eu) * trace(ev))


def extend_boundary_motion(mesh: skfem.Mesh, boundary_values: np.ndarray, extension: str = "elastic",
                           stiffening: float = 1.0, poisson: float = 0.3) -> np.ndarray:
    """Extend vertex displacements given on the boundary into the mesh (a mesh-motion solve).

    Every boundary vertex is a Dirichlet vertex (its value is kept); the interior vertices solve,
    on the reference mesh with its own first-order basis,

    * ``"laplace"``: ∇·(k ∇u_i) = 0 for each component i (the harmonic extension used for ALE
      mesh velocities, e.g. Löhner & Yang, *Commun. Numer. Meth. Engng* 12 (1996) 599–608);
    * ``"elastic"``: ∇·(k σ(u)) = 0 with σ = 2μ ε(u) + λ tr ε(u) I of a pseudo-solid with E = 1
      and Poisson ratio ``poisson`` (plane strain in 2D) — linear-elastic mesh moving (Johnson &
      Tezduyar, *Comput. Methods Appl. Mech. Engrg* 119 (1994) 73–94).

    k = (v̄ / v_e)^χ is the Jacobian-based stiffening of Stein, Tezduyar & Benney (*J. Appl. Mech.*
    70 (2003) 58–63): small elements (near a curved boundary, where a graded mesh is fine) are
    stiffer and move more rigidly, large ones absorb the deformation; χ = 0 is no stiffening.
    Both problems are linear with one matrix for all right-hand sides: it is factorised once.

    Parameters
    ----------
    mesh : skfem.Mesh
        Reference mesh (MeshTri1, MeshQuad1, MeshTet1, MeshHex1).
    boundary_values : ndarray (n, dim, n_vertices)
        n displacement fields (m); only their boundary-vertex values are used.
    extension : {"elastic", "laplace"}
    stiffening : float
        χ ≥ 0.
    poisson : float
        ν of the pseudo-solid, −1 < ν < 0.5 (elastic only).

    Returns
    -------
    ndarray (n, dim, n_vertices)
        The extended fields: equal to ``boundary_values`` on the boundary.
    """
    _check_extension(extension, stiffening, poisson)
    data = np.asarray(boundary_values, dtype=float)
    dim, n_vertices = mesh.p.shape
    if data.ndim != 3 or data.shape[1:] != (dim, n_vertices) or not np.all(np.isfinite(data)):
        raise InputError(f"boundary_values have shape {data.shape}; allowed: (n, {dim}, {n_vertices}) finite values")
    boundary = mesh.boundary_nodes()
    interior = np.setdiff1d(np.arange(n_vertices), boundary)
    out = np.zeros_like(data)
    out[:, :, boundary] = data[:, :, boundary]
    if interior.size and data.shape[0]:
        solve = _laplace_extension if extension == "laplace" else _elastic_extension
        out[:, :, interior] = solve(mesh, data, boundary, interior, stiffening, poisson)
    return out


def _check_extension(extension: str, stiffening: float, poisson: float) -> None:
    if extension not in EXTENSIONS:
        raise InputError(f"mesh-motion extension = {extension!r}; allowed: {', '.join(map(repr, EXTENSIONS))}")
    if not (isinstance(stiffening, (int, float)) and np.isfinite(stiffening) and stiffening >= 0):
        raise InputError(f"mesh-motion stiffening = {stiffening!r}; allowed: a number >= 0")
    if not (isinstance(poisson, (int, float)) and -1.0 < poisson < 0.5):
        raise InputError(f"mesh-motion poisson = {poisson!r}; allowed: -1 < poisson < 0.5")


def _laplace_extension(mesh: skfem.Mesh, data: np.ndarray, boundary: np.ndarray, interior: np.ndarray,
                       stiffening: float, poisson: float) -> np.ndarray:
    """Interior values (n, dim, n_interior): one scalar matrix for all n·dim components."""
    basis = skfem.Basis(mesh, _vertex_element(mesh))
    A = _laplace.assemble(basis, k=_stiffening_weights(basis, stiffening))
    dof = basis.nodal_dofs[0]  # dof of each vertex
    columns = data.reshape(-1, data.shape[2])  # (n·dim, n_vertices)
    solved = _dirichlet_solve(A, dof[interior], dof[boundary], columns[:, boundary].T)  # (n_interior, n·dim)
    return solved.T.reshape(data.shape[0], data.shape[1], interior.size)


def _elastic_extension(mesh: skfem.Mesh, data: np.ndarray, boundary: np.ndarray, interior: np.ndarray,
                       stiffening: float, poisson: float) -> np.ndarray:
    """Interior values (n, dim, n_interior) of the pseudo-solid (E = 1, ν = poisson)."""
    basis = skfem.Basis(mesh, skfem.ElementVector(_vertex_element(mesh)))
    lam, mu = poisson / ((1 + poisson) * (1 - 2 * poisson)), 0.5 / (1 + poisson)
    A = _elastic.assemble(basis, k=_stiffening_weights(basis, stiffening), lam=lam, mu=mu)
    dofs = basis.nodal_dofs  # (dim, n_vertices); rows below in (component, vertex) order
    fixed = data[:, :, boundary].reshape(data.shape[0], -1).T
    solved = _dirichlet_solve(A, dofs[:, interior].ravel(), dofs[:, boundary].ravel(), fixed)
    return solved.T.reshape(data.shape[0], data.shape[1], interior.size)


def _dirichlet_solve(A: sp.spmatrix, free: np.ndarray, fixed: np.ndarray, values: np.ndarray) -> np.ndarray:
    """u_free of A u = 0 with u_fixed = values: A_ff u_f = −A_fd values, all columns at once (one factorisation)."""
    A = sp.csr_matrix(A)
    rhs = -(A[free][:, fixed] @ values)
    fact = make_factorization("auto")
    fact.factor(sp.csr_matrix(A[free][:, free]), positive_definite=True)
    try:
        return np.asarray(fact.solve(np.ascontiguousarray(rhs))).reshape(rhs.shape)
    finally:
        fact.release()


class BoundaryMotionMap(LinearShapeMap):
    """X(p) = X0 + Σ_k p_k V_k on any mesh: each parameter moves a part of the boundary, the
    interior vertices follow a mesh-motion solve computed once.

    The boundary velocity of parameter k is given by a :class:`BoundaryVelocity` (a velocity
    field or a normal speed on a named or selected facet set; every other boundary vertex is
    fixed). Its extension into the mesh, V_k, is computed once on the reference mesh by
    :func:`extend_boundary_motion` (elastic by default, Jacobian-stiffened). The map is linear in p,
    so the coordinates, the Jacobian-vector and the vector-Jacobian products are exact and cost
    one small tensor contraction (:class:`LinearShapeMap`).

    Default: the elastic extension with χ = 1 and ν = 0.3 kept the elements valid for the largest
    motions in the measurements of ``docs/guide/designs.md`` (a hole moved or grown in a plate).
    A linear map is a first-order model of the motion: large parameter values eventually invert
    elements, which :func:`check_mesh_coordinates` (``quality``) refuses with an
    :class:`~fem_eigopt.errors.InputError` naming the parameter values; choose the bounds so that
    the whole box stays valid.

    Parameters
    ----------
    mesh : skfem.Mesh
        The problem's reference mesh (MeshTri1, MeshQuad1, MeshTet1, MeshHex1; 2D or 3D, e.g. from
        :func:`fem_eigopt.from_file`).
    motions : sequence of BoundaryVelocity (n_params,)
        One per parameter.
    extension : {"elastic", "laplace"}
    stiffening : float
        Exponent χ ≥ 0 of the Jacobian-based stiffening.
    poisson : float
        Poisson ratio of the elastic pseudo-solid, −1 < ν < 0.5.

    Attributes
    ----------
    boundary_velocities : ndarray (n_params, dim, n_vertices)
        The prescribed boundary data (m per unit of p), zero at interior vertices.
    velocities : ndarray (n_params, dim, n_vertices)
        The extended fields V_k (m per unit of p).
    names : list of str or None
        Parameter names from the motions (None unless every motion has a name).
    """

    def __init__(self, mesh: skfem.Mesh, motions: Sequence[BoundaryVelocity], extension: str = "elastic",
                 stiffening: float = 1.0, poisson: float = 0.3) -> None:
        _vertex_element(mesh)
        motions = list(motions) if not isinstance(motions, BoundaryVelocity) else [motions]
        if not motions or not all(isinstance(m, BoundaryVelocity) for m in motions):
            raise InputError(f"motions = {motions!r}; allowed: a non-empty list of fem_eigopt.BoundaryVelocity")
        data = np.stack([m.vertex_velocities(mesh) for m in motions])
        velocities = extend_boundary_motion(mesh, data, extension, stiffening, poisson)
        super().__init__(mesh.p, velocities)
        self.mesh, self.motions, self.boundary_velocities = mesh, motions, data
        self.extension, self.stiffening, self.poisson = extension, float(stiffening), float(poisson)
        names = [m.name for m in motions]
        self.names = names if all(isinstance(n, str) and n for n in names) else None
        logger.debug("boundary motion map: %d parameters, %s extension, χ = %g", self.n_params, extension, stiffening)

    def reference_parameters(self) -> np.ndarray:
        """p = 0: the reference mesh, shape (n_params,)."""
        return np.zeros(self.n_params)

    def quality(self, p: np.ndarray) -> float:
        """Smallest det J(X(p)) / |det J(X0)| over elements and check points (1 unmoved, > 0 valid).

        Raises
        ------
        InputError
            X(p) inverts or degenerates an element (the message names p).
        """
        p = self._check_params(p)
        return check_mesh_coordinates(self.mesh, self.coordinates(p), params=p)

    def on_mesh(self, mesh: skfem.Mesh) -> "BoundaryMotionMap":
        """The same motions on another mesh of the same body (e.g. refined): velocities re-evaluated
        at its boundary vertices and extended again."""
        return BoundaryMotionMap(mesh, self.motions, self.extension, self.stiffening, self.poisson)


class ProfileShapeMap(ShapeMap):
    """Thickness profile h(x) of a bar: vertices move proportionally across the bar.

    The reference mesh spans ``[y_min, y_min + H0]`` across (``across`` axis, default y). With the
    fixed line ``y_f`` (``y_min`` for ``fixed="bottom"``, ``y_max`` for ``"top"``, the mid-line for ``"middle"``) a vertex at
    ``(x, y_ref)`` moves to::

        y = y_f + (y_ref − y_f) / H0 · h(x),     h(x) = Σ_j c_j B_j(x),   c = S p,

    so the free side follows ``y_f ± h(x)`` and the other coordinates stay. The profile kinds:

    * ``"linear"``: ``h`` interpolates the control values at the abscissae ``x_controls``,
      piecewise linearly;
    * ``"cubic"``: the same with a natural cubic spline (zero curvature at both ends; de Boor,
      *A Practical Guide to Splines*, 1978, ch. IV);
    * ``"bspline"``: a clamped cubic B-spline with breakpoints ``x_controls`` and
      ``len(x_controls) + 2`` coefficients c_j (de Boor 1978, ch. IX). The B-splines are
      non-negative and sum to one, so ``min_j c_j ≤ h(x) ≤ max_j c_j`` everywhere (the convex-hull
      property): bounds on the coefficients bound the whole profile.

    With ``symmetric=True`` (breakpoints mirror-symmetric about mid-span) the parameters are the
    coefficients of the first half including the middle one, and ``S`` mirrors them: p has
    ``ceil(n_coefficients / 2)`` entries. Everything is linear in p, so the cardinal functions B_j
    are computed once (spline of the identity matrix) and the map and its vjp are exact. The
    controls must cover the bar's x-range (no extrapolation); ``p = H0`` everywhere reproduces the
    reference mesh (all three kinds reproduce constants).

    Mesh validity: every element of a structured bar mesh is a trapezoid (prism in 3D) between
    two abscissae whose across-extent is a fixed fraction of h there, so the moved mesh is valid
    exactly when ``h > 0`` at every vertex abscissa. For ``"linear"`` and ``"bspline"`` a lower
    bound ``p ≥ h_min > 0`` guarantees it (h lies between its control values / coefficients);
    the natural cubic spline can undershoot between its controls, and a design where it does is
    refused by :func:`fem_eigopt.fem.geometry.check_coordinates`.

    Parameters
    ----------
    mesh : skfem.Mesh
        Reference mesh (any dimension; other coordinates than ``across`` are kept).
    x_controls : array_like (n,)
        Strictly increasing control abscissae (``"linear"``, ``"cubic"``) or breakpoints
        (``"bspline"``) (m).
    kind : {"linear", "cubic", "bspline"}
    along, across : int
        Axis of x and of the thickness direction.
    fixed : {"bottom", "top", "middle"}
        What stays put: a side (``"top"``: an underside profile, e.g. a marimba bar's undercut) or
        the mid-line (``"middle"``: a profile symmetric about it, y = y_mid ± h(x)/2).
    symmetric : bool
        Mirror the coefficients about mid-span of ``x_controls``.
    fixed_ends : int
        Number of coefficients at each end held at the reference thickness H0 (not parameters):
        ``h(x) = Σ_j (S p + c0)_j B_j(x)``, affine in p. For a B-spline, ``fixed_ends = k`` keeps
        the profile at H0 on the first and last ``k − 1`` knot intervals and tapering in the
        ``k``-th (a marimba bar's full-thickness ends).
    """

    def __init__(self, mesh: skfem.Mesh, x_controls: Sequence[float], kind: str = "cubic", along: int = 0,
                 across: int = 1, fixed: str = "bottom", symmetric: bool = False, fixed_ends: int = 0) -> None:
        dim = mesh.p.shape[0]
        if along == across or not (0 <= along < dim and 0 <= across < dim):
            raise InputError(f"profile axes along = {along!r}, across = {across!r}; allowed: two different axes "
                             f"in 0..{dim - 1}")
        if kind not in ("linear", "cubic", "bspline"):
            raise InputError(f"profile kind = {kind!r}; allowed: 'linear', 'cubic', 'bspline'")
        if fixed not in ("bottom", "top", "middle"):
            raise InputError(f"profile fixed = {fixed!r}; allowed: 'bottom', 'top', 'middle'")
        xc = np.asarray(x_controls, dtype=float)
        n_min = {"linear": 2, "cubic": 3, "bspline": 2}[kind]
        if xc.ndim != 1 or xc.size < n_min or not np.all(np.isfinite(xc)) or not np.all(np.diff(xc) > 0):
            raise InputError(f"x_controls = {x_controls!r}; allowed: >= {n_min} strictly increasing numbers")
        x, y = mesh.p[along], mesh.p[across]
        span = float(x.max() - x.min()) or 1.0
        if xc[0] > x.min() + 1e-9 * span or xc[-1] < x.max() - 1e-9 * span:
            raise InputError(f"x_controls span [{xc[0]:g}, {xc[-1]:g}]; allowed: covering the bar's "
                             f"[{x.min():g}, {x.max():g}]")
        if symmetric and not np.allclose(xc + xc[::-1], xc[0] + xc[-1], rtol=0, atol=1e-9 * span):
            raise InputError(f"x_controls = {x_controls!r} with symmetric=True; allowed: abscissae mirror-"
                             "symmetric about their mid-point")
        self.height = float(y.max() - y.min())
        if not self.height > 0:
            raise InputError("profile mesh has zero thickness; allowed: a mesh with extent across > 0")
        y_fixed = float({"bottom": y.min(), "top": y.max(), "middle": 0.5 * (y.min() + y.max())}[fixed])
        if kind == "bspline":
            knots = np.concatenate([[xc[0]] * 3, xc, [xc[-1]] * 3])
            n_coef = xc.size + 2
            self.cardinal = BSpline(knots, np.eye(n_coef), 3, extrapolate=False)
        else:
            self.cardinal = make_interp_spline(xc, np.eye(xc.size), k=1 if kind == "linear" else 3, axis=0,
                                               bc_type=None if kind == "linear" else "natural")
            n_coef = xc.size
        if not (isinstance(fixed_ends, (int, np.integer)) and 0 <= fixed_ends and 2 * fixed_ends < n_coef):
            raise InputError(f"fixed_ends = {fixed_ends!r}; allowed: an integer >= 0 leaving at least one of the "
                             f"{n_coef} coefficients free")
        # c = S p + c0: S (n_coef, n_params) maps the parameters (mirrored for a symmetric profile),
        # c0 holds the coefficients fixed at the reference thickness
        free = np.arange(fixed_ends, n_coef - fixed_ends)
        n_free = free.size
        n_params = (n_free + 1) // 2 if symmetric else n_free
        S = np.zeros((n_coef, n_params))
        for k, j in enumerate(free):
            S[j, min(k, n_free - 1 - k) if symmetric else k] = 1.0
        c0 = np.zeros(n_coef)
        c0[:fixed_ends] = self.height
        c0[n_coef - fixed_ends:] = self.height
        self.symmetry, self.fixed_coefficients, self.x_controls = S, c0, xc
        cardinal = self._cardinal_at(x)
        self.basis = cardinal @ S  # (n_vertices, n_params): dh(x_n)/dp_j
        self.offset = cardinal @ c0  # (n_vertices,): the fixed coefficients' part of h(x_n)
        self.fraction = (y - y_fixed) / self.height  # (n_vertices,), in [0, 1], [-1, 0] or [-1/2, 1/2]
        self.base = mesh.p.astype(float).copy()
        self.base[across] = y_fixed
        self.kind, self.across, self.along = kind, across, along
        self.fixed, self.symmetric, self.n_params = fixed, bool(symmetric), n_params
        self.fixed_ends = int(fixed_ends)

    def _cardinal_at(self, x: np.ndarray) -> np.ndarray:
        """B_j(x) for all coefficients, shape (n_x, n_coef)."""
        xc = self.x_controls
        return np.nan_to_num(self.cardinal(np.clip(np.asarray(x, dtype=float), xc[0], xc[-1])))

    def on_mesh(self, mesh: skfem.Mesh) -> "ProfileShapeMap":
        """The same profile parametrisation on another reference mesh of the same bar (e.g. refined).

        Parameters
        ----------
        mesh : skfem.Mesh
            A mesh of the same reference bar (same x-range and thickness).

        Returns
        -------
        ProfileShapeMap
            Equal parameters give the same profile h(x); only the vertices differ.
        """
        return ProfileShapeMap(mesh, self.x_controls, kind=self.kind, along=self.along, across=self.across,
                               fixed=self.fixed, symmetric=self.symmetric, fixed_ends=self.fixed_ends)

    def fit_parameters(self, thickness: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Parameters whose profile best fits ``thickness(x)`` (least squares at the vertex abscissae).

        Parameters
        ----------
        thickness : callable
            h(x) (m) of abscissae x (m), vectorised.

        Returns
        -------
        ndarray (n_params,)
            Parameters (m); a starting design for an optimisation, e.g. a first rough undercut.
        """
        x, first = np.unique(self.base[self.along], return_index=True)
        A = self.basis[first]
        rhs = np.asarray(thickness(x), dtype=float) - self.offset[first]
        return np.linalg.lstsq(A, rhs, rcond=None)[0]

    def reference_parameters(self) -> np.ndarray:
        """p giving back the reference mesh: h = H0 everywhere."""
        return np.full(self.n_params, self.height)

    def profile_jacobian(self, x: np.ndarray) -> np.ndarray:
        """dh(x_k)/dp_j, shape (n_x, n_params) (dimensionless; h is affine in p)."""
        return self._cardinal_at(np.atleast_1d(x)) @ self.symmetry

    def profile(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        """h(x) for parameters p at abscissae x (m), by the same interpolation; shape of ``x``."""
        p = self._check_params(p)
        x = np.asarray(x, dtype=float)
        B = self._cardinal_at(x.ravel())
        return (B @ (self.symmetry @ p + self.fixed_coefficients)).reshape(x.shape)

    def coordinates(self, p: np.ndarray) -> np.ndarray:
        X = self.base.copy()
        X[self.across] += self.fraction * (self.basis @ self._check_params(p) + self.offset)
        return X

    def jvp(self, p: np.ndarray, dp: np.ndarray) -> np.ndarray:
        dX = np.zeros_like(self.base)
        dX[self.across] = self.fraction * (self.basis @ self._check_params(dp))
        return dX

    def vjp(self, p: np.ndarray, dX: np.ndarray) -> np.ndarray:
        self._check_params(p)
        dX = np.asarray(dX, dtype=float)
        return (dX[..., self.across, :] * self.fraction) @ self.basis
