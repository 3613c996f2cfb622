"""Shape maps: a few parameters p → mesh vertex coordinates X(p), each with its transpose.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence

import numpy as np
import skfem
from scipy.interpolate import BSpline, make_interp_spline

from fem_eigopt.errors import InputError

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

    det0 = det(mesh.p, centroid)[:, 0]
    dets = det(X, np.hstack(points))
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
