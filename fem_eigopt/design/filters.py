"""The density design chain: passive regions, filters, projection, volume fraction.

Every stage is a pair of a forward map and its transpose, the vector–Jacobian product (VJP)::

    forward(x) -> y            vjp(x, dy) -> dx = (∂y/∂x)ᵀ dy

so the caller composes the chain forwards and pulls gradients back through it in reverse order::

    z (n_active,) ─► DesignMap ─► x (n_elem,) ─► filter ─► x̃ ─► projection ─► x̄ ─► floor ─► ρ̄
                    passive solid = 1             DensityFilter    HeavisideProjection   ρ̄ = f + (1-f) x̄
                    passive void  = x_min         HelmholtzFilter  (β-continuation)      then passive
                                                                                         values again

:class:`DensityChain` composes the stages and adds the element-volume weighted volume fraction,
the volume constraint of topology optimisation. All per-iteration work is sparse mat-vecs,
element-wise NumPy and (for the Helmholtz filter) one solve with a factorisation computed once in
the constructor; nothing loops over elements in Python.

References
----------
- T. E. Bruns, D. A. Tortorelli (2001), Topology optimization of non-linear elastic structures and
  compliant mechanisms, Comput. Methods Appl. Mech. Engrg. 190:3443–3459 (density filter).
- B. Bourdin (2001), Filters in topology optimization, Int. J. Numer. Meth. Engng 50:2143–2158.
- B. S. Lazarov, O. Sigmund (2011), Filters in topology optimization based on Helmholtz-type
  differential equations, Int. J. Numer. Meth. Engng 86:765–781 (PDE filter, r_H = r / (2√3)).
- F. Wang, B. S. Lazarov, O. Sigmund (2011), On projection methods, convergence and robust
  formulations in topology optimization, Struct. Multidisc. Optim. 43:767–784, eq. (8) (tanh
  projection).
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol

import numpy as np
import scipy.sparse as sp
import skfem
from scipy.spatial import cKDTree
from skfem.helpers import dot, grad

from fem_eigopt.errors import InputError
from fem_eigopt.linalg.factorization import make_factorization

logger = logging.getLogger(__name__)

#: A predicate on element centroids: ``c`` of shape (dim, n_elem) -> bool mask of shape (n_elem,).
Predicate = Callable[[np.ndarray], np.ndarray]

# The scalar first-order element of each reference cell (the Helmholtz filter's field ψ).
_P1_ELEMENTS = {
    skfem.refdom.RefLine: skfem.ElementLineP1,
    skfem.refdom.RefTri: skfem.ElementTriP1,
    skfem.refdom.RefQuad: skfem.ElementQuad1,
    skfem.refdom.RefTet: skfem.ElementTetP1,
    skfem.refdom.RefHex: skfem.ElementHex1,
    skfem.refdom.RefWedge: skfem.ElementWedge1,
}


class LinearStage(Protocol):
    """What the chain needs from a filter: ``forward(x)``, ``jvp(x, dx)`` and the transpose ``vjp(x, dy)``."""

    n_elem: int

    def forward(self, x: np.ndarray) -> np.ndarray: ...

    def jvp(self, x: np.ndarray, dx: np.ndarray) -> np.ndarray: ...

    def vjp(self, x: np.ndarray, dy: np.ndarray) -> np.ndarray: ...


# --------------------------------------------------------------------------------------------- #
# mesh helpers


def _check_mesh(mesh: object, where: str) -> skfem.Mesh:
    if not isinstance(mesh, skfem.Mesh):
        raise InputError(f"{where} mesh = {type(mesh).__name__}; allowed: a scikit-fem Mesh")
    return mesh


def _check_radius(radius: float, where: str) -> float:
    try:
        r = float(radius)
    except (TypeError, ValueError):
        r = float("nan")
    if not (np.isfinite(r) and r >= 0.0):
        raise InputError(f"{where} radius = {radius!r}; allowed: a length >= 0 (0 switches the filter off)")
    return r


def _scalar_p1_basis(mesh: skfem.Mesh) -> skfem.CellBasis:
    """The scalar first-order basis of the mesh's own cell type (P1 on simplices, Q1 on quads/hexes)."""
    try:
        element = _P1_ELEMENTS[mesh.refdom]()
    except KeyError:
        raise InputError(
            f"mesh type = {type(mesh).__name__}; allowed: meshes of lines, triangles, quadrilaterals, "
            "tetrahedra, hexahedra or wedges"
        ) from None
    return skfem.CellBasis(mesh, element)


def element_centroids(mesh: skfem.Mesh) -> np.ndarray:
    """Vertex centroids of the cells, shape (dim, n_elem), in the mesh's length unit.

    The vertex average is the centroid for simplices and parallelograms; for distorted cells it is
    close enough for neighbour searches and region predicates.
    """
    return mesh.p[:, mesh.t].mean(axis=1)


def element_volumes(mesh: skfem.Mesh) -> np.ndarray:
    """Cell volumes (areas in 2D, lengths in 1D), shape (n_elem,), by the mesh's quadrature.

    Σ_q w_q |det J(ξ_q)| with the quadrature a scalar first-order basis would use (exact for
    affine and multilinear cells). No basis is built: its per-element tables (every basis
    function's values and gradients at every quadrature point) take gigabytes at a million dofs,
    for numbers that need only the Jacobian determinants.

    Parameters
    ----------
    mesh : skfem.Mesh

    Returns
    -------
    ndarray (n_elem,)
        Volumes in the mesh's length unit cubed (squared in 2D).
    """
    try:
        element = _P1_ELEMENTS[mesh.refdom]()
    except KeyError:
        _scalar_p1_basis(mesh)  # raises the InputError naming the mesh type
        raise
    points, weights = skfem.quadrature.get_quadrature(mesh.refdom, 2 * element.maxdeg)
    return (np.abs(mesh._mapping().detDF(points)) * weights).sum(axis=1)


def _as_vector(x: np.ndarray, n: int, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.shape != (n,):
        raise InputError(f"{name} has shape {x.shape}; allowed: ({n},)")
    return x


# --------------------------------------------------------------------------------------------- #
# filters


class DensityFilter:
    """Linear "hat" density filter on element centroids (Bruns & Tortorelli 2001; Bourdin 2001).

    With weights ``w_ij = max(0, r - |c_i - c_j|)`` between element centroids ``c`` and element
    volumes ``v``, the filtered density is::

        x̃_i = Σ_j w_ij v_j x_j / Σ_j w_ij v_j        (volume_weighted=True)
        x̃_i = Σ_j w_ij x_j / Σ_j w_ij                (volume_weighted=False, top88's form)

    i.e. ``x̃ = H̃ x`` with the normalised filter matrix ``H̃`` (rows sum to 1) stored once as CSR.
    Volume weighting makes the filter a weighted mean over *material volume*, which is what keeps
    it consistent on non-uniform or unstructured meshes; on a uniform mesh both forms agree.

    Parameters
    ----------
    mesh : skfem.Mesh
        Any scikit-fem mesh (1D/2D/3D, any cell type, structured or not).
    radius : float
        Filter radius ``r`` in the mesh's length unit. ``0`` switches the filter off; a radius
        smaller than the distance to the nearest neighbouring centroid gives the identity too
        (logged as a warning, since it usually means a unit mistake).
    volume_weighted : bool
        Weight by element volumes (default) or not.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n_elem, n_elem)
        ``H̃``.
    is_identity : bool
        Whether no element has a neighbour within the radius.
    """

    def __init__(self, mesh: skfem.Mesh, radius: float, volume_weighted: bool = True) -> None:
        mesh = _check_mesh(mesh, "DensityFilter")
        self.radius = _check_radius(radius, "DensityFilter")
        self.volume_weighted = bool(volume_weighted)
        self.n_elem = mesh.nelements
        self._transpose: sp.csr_matrix | None = None  # H̃ᵀ for vjp, made at its first call
        if self.radius == 0.0:
            logger.info("DensityFilter: radius 0, the filter is the identity")
            self.matrix = sp.identity(self.n_elem, format="csr")
            self.is_identity = True
            return

        centroids = element_centroids(mesh).T
        tree = cKDTree(centroids)
        # All pairs closer than r, self pairs included (distance 0, weight r).
        pairs = tree.sparse_distance_matrix(tree, self.radius, output_type="ndarray")
        w = self.radius - pairs["v"]
        keep = w > 0.0
        i, j, w = pairs["i"][keep], pairs["j"][keep], w[keep]
        if self.volume_weighted:
            w = w * element_volumes(mesh)[j]
        W = sp.csr_matrix((w, (i, j)), shape=(self.n_elem, self.n_elem))
        W.sum_duplicates()
        self.matrix = sp.diags(1.0 / np.asarray(W.sum(axis=1)).ravel()) @ W
        self.matrix = sp.csr_matrix(self.matrix)
        self.is_identity = self.matrix.nnz == self.n_elem
        if self.is_identity:
            logger.warning(
                "DensityFilter: radius %.3g is below the element size, no element has a neighbour "
                "within it; the filter is the identity", self.radius,
            )
        else:
            logger.debug("DensityFilter: r = %.3g, %.1f neighbours per element on average",
                         self.radius, self.matrix.nnz / self.n_elem)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Filtered densities ``H̃ x``, shape (n_elem,), from densities ``x`` (n_elem,)."""
        return self.matrix @ _as_vector(x, self.n_elem, "DensityFilter input")

    def jvp(self, x: np.ndarray | None, dx: np.ndarray) -> np.ndarray:
        """Jacobian-vector product ``H̃ dx`` (the filter is linear, so ``x`` is unused)."""
        return self.forward(dx)

    def vjp(self, x: np.ndarray | None, dy: np.ndarray) -> np.ndarray:
        """Transpose product ``H̃ᵀ dy``, shape (n_elem,); the filter is linear, so ``x`` is unused.

        ``H̃ᵀ`` is kept as its own CSR matrix (made at the first call): a row-wise gather instead
        of ``matrix.T``'s column-wise scatter, bitwise the same sums in the same order (tested);
        the gather writes each result entry once, in order, where the scatter updates result
        entries in the pattern's order, so the gather is the faster product (see
        docs/performance.md)."""
        if self._transpose is None:
            self._transpose = sp.csr_matrix(self.matrix.T)
            self._transpose.sort_indices()
        return self._transpose @ _as_vector(dy, self.n_elem, "DensityFilter cotangent")


class HelmholtzFilter:
    """PDE ("Helmholtz") filter of Lazarov & Sigmund (2011).

    The filtered field ψ on the scalar first-order basis of the mesh's own cell type
    (``ElementTriP1``, ``ElementQuad1``, ``ElementTetP1``, ``ElementHex1``, …) solves::

        (r_H² K_f + M_f) ψ = T x,     r_H = r / (2√3)

    with ``K_f = ∫ ∇N_a·∇N_b``, ``M_f = ∫ N_a N_b``, ``T[a, e] = ∫_e N_a`` (element densities as
    nodal loads; homogeneous Neumann boundary conditions), and the filtered element density is the
    element average ``x̃_e = (1/v_e) ∫_e ψ``, i.e. ``x̃ = V⁻¹ Tᵀ ψ``. Together::

        x̃ = F x,   F = V⁻¹ Tᵀ A⁻¹ T,   Fᵀ = Tᵀ A⁻¹ T V⁻¹   (A symmetric)

    ``r_H = r/(2√3)`` gives the kernel the second moment of the hat kernel of radius r in 1D
    (Lazarov & Sigmund 2011, eq. 20), so ``radius`` means the same length as in
    :class:`DensityFilter`. A uniform field is reproduced exactly (``A 1 = M_f 1 = T 1``).

    Parameters
    ----------
    mesh : skfem.Mesh
        Any scikit-fem mesh of lines, triangles, quadrilaterals, tetrahedra, hexahedra or wedges.
    radius : float
        Filter radius ``r`` in the mesh's length unit; ``0`` switches the filter off (exact
        identity). Note that even a tiny positive radius smooths over about one element, because
        element densities pass through the nodal field ψ (an L² projection onto P1 and back).
    backend : str
        Factorisation backend for :func:`fem_eigopt.linalg.factorization.make_factorization` (``"auto"``,
        ``"superlu"``, ``"pardiso"``, …). The factorisation of ``A`` is done once, here.
    """

    def __init__(self, mesh: skfem.Mesh, radius: float, backend: str = "auto") -> None:
        mesh = _check_mesh(mesh, "HelmholtzFilter")
        self.radius = _check_radius(radius, "HelmholtzFilter")
        self.n_elem = mesh.nelements
        self.is_identity = self.radius == 0.0
        if self.is_identity:
            logger.info("HelmholtzFilter: radius 0, the filter is the identity")
            return

        basis = _scalar_p1_basis(mesh)
        self.length = self.radius / (2.0 * np.sqrt(3.0))  # r_H, Lazarov & Sigmund (2011) eq. 20
        r2 = self.length**2

        @skfem.BilinearForm
        def helmholtz(u, v, w):
            return r2 * dot(grad(u), grad(v)) + u * v

        @skfem.LinearForm
        def shape_integral(v, w):
            return v

        A = helmholtz.assemble(basis).tocsr()
        h = float(np.mean(basis.dx.sum(axis=1))) ** (1.0 / mesh.dim())
        if self.radius < h:
            logger.info("HelmholtzFilter: radius %.3g is below the mean element size %.3g; the filter "
                        "still smooths over about one element", self.radius, h)
        # T[a, e] = ∫_e N_a: per-element integrals (tolocal gives (n_elem, n_local)) scattered to
        # the nodes of each element.
        local = shape_integral.elemental(basis).tolocal().T
        cols = np.broadcast_to(np.arange(self.n_elem), local.shape)
        T = sp.csr_matrix((local.ravel(), (basis.element_dofs.ravel(), cols.ravel())),
                          shape=(basis.N, self.n_elem))
        self.volumes = np.asarray(T.sum(axis=0)).ravel()  # Σ_a ∫_e N_a = v_e (partition of unity)
        self._T = T
        self._average = sp.csr_matrix(sp.diags(1.0 / self.volumes) @ T.T)  # V⁻¹ Tᵀ
        self._average_T = sp.csr_matrix(self._average.T)
        self._solver = make_factorization(backend)
        self._solver.factor(A, positive_definite=True)
        logger.debug("HelmholtzFilter: r = %.3g (r_H = %.3g), %d nodes, backend %s",
                     self.radius, self.length, basis.N, self._solver.name)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Filtered element densities ``F x``, shape (n_elem,), from densities ``x`` (n_elem,)."""
        x = _as_vector(x, self.n_elem, "HelmholtzFilter input")
        if self.is_identity:
            return x.copy()
        psi = self._solver.solve(self._T @ x)
        return self._average @ psi

    def jvp(self, x: np.ndarray | None, dx: np.ndarray) -> np.ndarray:
        """Jacobian-vector product ``F dx`` (the filter is linear, so ``x`` is unused)."""
        return self.forward(dx)

    def vjp(self, x: np.ndarray | None, dy: np.ndarray) -> np.ndarray:
        """Transpose product ``Fᵀ dy = Tᵀ A⁻¹ (V⁻¹ Tᵀ)ᵀ dy``, shape (n_elem,); ``x`` is unused."""
        dy = _as_vector(dy, self.n_elem, "HelmholtzFilter cotangent")
        if self.is_identity:
            return dy.copy()
        return self._T.T @ self._solver.solve(self._average_T @ dy)
