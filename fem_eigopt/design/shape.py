"""Shape maps: a few parameters p → mesh vertex coordinates X(p), each with its transpose.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
import skfem
from scipy.interpolate import make_interp_spline

from fem_eigopt.errors import InputError

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
    fixed side ``y_f`` (``y_min`` for ``fixed="bottom"``, ``y_max`` for ``"top"``) a vertex at
    ``(x, y_ref)`` moves to::

        y = y_f + (y_ref − y_f) / H0 · h(x),     h(x) = Σ_j p_j B_j(x),

    so the free side follows ``y_f ± h(x)`` and the other coordinates stay. ``h`` interpolates the
    control values ``p`` at the control abscissae ``x_controls``: piecewise linear (``"linear"``) or
    a natural cubic spline (``"cubic"``, zero curvature at both ends; de Boor, *A Practical Guide
    to Splines*, 1978, ch. IV). Both are linear in p, so the cardinal functions B_j are computed
    once (spline of the identity matrix) and the map and its vjp are exact. ``fixed="top"`` gives
    an underside profile (a marimba bar with a flat top). The controls must cover the bar's x-range
    (no extrapolation); ``p = H0`` everywhere reproduces the reference mesh.

    Parameters
    ----------
    mesh : skfem.Mesh
        Reference mesh (any dimension; other coordinates than ``across`` are kept).
    x_controls : array_like (n_params,)
        Strictly increasing control abscissae (m).
    kind : {"linear", "cubic"}
    along, across : int
        Axis of x and of the thickness direction.
    fixed : {"bottom", "top"}
        The side that stays put.
    """

    def __init__(self, mesh: skfem.Mesh, x_controls: Sequence[float], kind: str = "cubic", along: int = 0,
                 across: int = 1, fixed: str = "bottom") -> None:
        dim = mesh.p.shape[0]
        if along == across or not (0 <= along < dim and 0 <= across < dim):
            raise InputError(f"profile axes along = {along!r}, across = {across!r}; allowed: two different axes "
                             f"in 0..{dim - 1}")
        if kind not in ("linear", "cubic"):
            raise InputError(f"profile kind = {kind!r}; allowed: 'linear', 'cubic'")
        if fixed not in ("bottom", "top"):
            raise InputError(f"profile fixed = {fixed!r}; allowed: 'bottom', 'top'")
        xc = np.asarray(x_controls, dtype=float)
        n_min = 2 if kind == "linear" else 3
        if xc.ndim != 1 or xc.size < n_min or not np.all(np.isfinite(xc)) or not np.all(np.diff(xc) > 0):
            raise InputError(f"x_controls = {x_controls!r}; allowed: >= {n_min} strictly increasing numbers")
        x, y = mesh.p[along], mesh.p[across]
        span = float(x.max() - x.min()) or 1.0
        if xc[0] > x.min() + 1e-9 * span or xc[-1] < x.max() - 1e-9 * span:
            raise InputError(f"x_controls span [{xc[0]:g}, {xc[-1]:g}]; allowed: covering the bar's "
                             f"[{x.min():g}, {x.max():g}]")
        self.height = float(y.max() - y.min())
        if not self.height > 0:
            raise InputError("profile mesh has zero thickness; allowed: a mesh with extent across > 0")
        y_fixed = float(y.min() if fixed == "bottom" else y.max())
        spline = make_interp_spline(xc, np.eye(xc.size), k=1 if kind == "linear" else 3, axis=0,
                                    bc_type=None if kind == "linear" else "natural")
        self.basis = spline(np.clip(x, xc[0], xc[-1]))  # (n_vertices, n_params): B_j(x_n)
        self.fraction = (y - y_fixed) / self.height  # (n_vertices,), in [0, 1] or [-1, 0]
        self.base = mesh.p.astype(float).copy()
        self.base[across] = y_fixed
        self.x_controls, self.kind, self.across, self.n_params = xc, kind, across, xc.size

    def reference_parameters(self) -> np.ndarray:
        """p giving back the reference mesh: h = H0 at every control point."""
        return np.full(self.n_params, self.height)

    def profile(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        """h(x) for parameters p at abscissae x (m), by the same interpolation."""
        p = self._check_params(p)
        spline = make_interp_spline(self.x_controls, p, k=1 if self.kind == "linear" else 3,
                                    bc_type=None if self.kind == "linear" else "natural")
        return spline(np.asarray(x, dtype=float))

    def coordinates(self, p: np.ndarray) -> np.ndarray:
        X = self.base.copy()
        X[self.across] += self.fraction * (self.basis @ self._check_params(p))
        return X

    def jvp(self, p: np.ndarray, dp: np.ndarray) -> np.ndarray:
        dX = np.zeros_like(self.base)
        dX[self.across] = self.fraction * (self.basis @ self._check_params(dp))
        return dX

    def vjp(self, p: np.ndarray, dX: np.ndarray) -> np.ndarray:
        self._check_params(p)
        dX = np.asarray(dX, dtype=float)
        return (dX[..., self.across, :] * self.fraction) @ self.basis
