"""Shape sensitivities: eigenvalues as functions of the mesh's vertex coordinates.

Shape design moves the vertices ``X`` (shape (dim, n_vertices), metres) of a mesh with linear
(vertex-based) geometry; the displacement dofs, their numbering, the supports and the sparse
pattern stay the same. This module provides

* :func:`model_at_coordinates` – the :class:`~fem_eigopt.fem.assembly.Model` at moved vertices
  (element matrices recomputed by scikit-fem, assembly refilled on the fixed pattern);
* :func:`coordinate_gradient` – d/dX of element quadratic forms ``Σ_e s_e u_eᵀ K_e(X) v_e`` (and
  the same for M) with the element vectors held fixed;
* :func:`eigenvalue_coordinate_gradients` – dλ_i/dX = φ_iᵀ(∂K/∂X − λ_i ∂M/∂X)φ_i for simple,
  M-normalised eigenpairs (Fox & Kapoor 1968, AIAA J. 6(12) 2426);
* the maps from a few parameters p to X, each with its exact vector–Jacobian product, are in
  :mod:`fem_eigopt.design.shape` (:class:`~fem_eigopt.design.shape.LinearShapeMap`,
  :class:`~fem_eigopt.design.shape.ProfileShapeMap` and, for any mesh,
  :class:`~fem_eigopt.design.shape.BoundaryMotionMap`);
* :func:`check_coordinates` – moved-mesh validity (every Jacobian determinant keeps its sign);
* :func:`eigenvalue_parameter_gradients` – the chain p → X → λ.

Method: analytic derivative of the isoparametric map
-----------------------------------------------------
With the geometric element's reference gradients Γ_a(ξ) (scikit-fem's ``mesh.elem().lbasis``) the
Jacobian at a quadrature point is ``J = Σ_a X_a ⊗ Γ_a`` (``J_ij = ∂x_i/∂ξ_j``), and it is linear in
X. The field's reference gradients ``∂u/∂ξ = H_u`` do not depend on X, so with ``A = H_u J⁻¹``
(= ∇_x u), ``B = H_v J⁻¹``, ``σ_B = μ(B + Bᵀ) + λ tr(B) I`` and ``W = A : σ_B``::

    u_eᵀ K_e v_e = t Σ_q w_q |det J_q| W_q,          u_eᵀ M_e v_e = t ρ Σ_q w_q |det J_q| u_q·v_q.

Using ∂(J⁻¹) = −J⁻¹ ∂J J⁻¹ and ∂|det J| = |det J| tr(J⁻¹ ∂J) (Magnus & Neudecker, *Matrix
Differential Calculus*, 1999, ch. 8)::

    ∂(u_eᵀ K_e v_e)/∂J_q = t w_q |det J_q| (W I − Aᵀσ_B − Bᵀσ_A) J_q⁻ᵀ
    ∂(u_eᵀ M_e v_e)/∂J_q = t ρ w_q |det J_q| (u_q·v_q) J_q⁻ᵀ

(the bracket is Eshelby's energy–momentum tensor, the integrand of the continuum shape derivative;
Choi & Kim, *Structural Sensitivity Analysis and Optimization 1*, 2005, §6), and
``∂/∂X_a = Σ_q (∂/∂J_q) Γ_a(ξ_q)``, scattered to the vertices with one ``np.bincount``.

Why this and not the complex step at the element level: the analytic form is exact to round-off
(the complex step is too, but needs its own complex element-matrix code, since scikit-fem's forms
are real), costs about one element-matrix evaluation contracted with the vectors – the complex
step needs one element evaluation per element coordinate (8 for a quad, 24 for a hexahedron) – and
never forms ∂K_e: the working memory is a few arrays of n_elem · n_qp · dim² floats per mode,
independent of n_edof. It also works unchanged for every Lagrange element (P1/P2, Q1/Q2, S2),
because only the reference basis tables differ.

Scope: meshes with linear geometry (MeshTri1, MeshQuad1, MeshTet1, MeshHex1); quadrature and basis
tables are those of the model's own basis, so the forms agree with scikit-fem's element matrices to
round-off. Point masses are attached to dofs and do not depend on X. The plane-stress thickness is
a constant factor of K and M.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import skfem

from fem_eigopt.design.shape import jacobian_ratio
from fem_eigopt.errors import InputError
from fem_eigopt.fem.assembly import Model, element_matrices

# Meshes whose geometry is given by the vertices alone (the shape variables).
_LINEAR_MESHES = (skfem.MeshTri1, skfem.MeshQuad1, skfem.MeshTet1, skfem.MeshHex1)


# ----------------------------------------------------------------------------------------------
# reference tables and geometry


@dataclass(frozen=True)
class _Reference:
    """Reference-element tables of a model (no dependence on X).

    Attributes
    ----------
    weights : ndarray (n_qp,)
        Quadrature weights on the reference element (those of the model's basis).
    values : ndarray (n_sb, n_qp)
        Scalar field basis functions at the quadrature points.
    grads : ndarray (n_sb, dim, n_qp)
        Their reference gradients ∂φ/∂ξ.
    geom_grads : ndarray (n_gv, dim, n_qp)
        Reference gradients of the geometric (vertex) basis at the quadrature points.
    check_grads : ndarray (n_gv, dim, n_check)
        The same at the reference corners and the quadrature points (validity check).
    centroid_grads : ndarray (n_gv, dim, 1)
        The same at the reference centroid (orientation of an element).
    """

    weights: np.ndarray
    values: np.ndarray
    grads: np.ndarray
    geom_grads: np.ndarray
    check_grads: np.ndarray
    centroid_grads: np.ndarray


def _tables(element: skfem.Element, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values (n_b, n_pts) and reference gradients (n_b, dim, n_pts) of all local basis functions."""
    pairs = [element.lbasis(points, i) for i in range(element.doflocs.shape[0])]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _reference(model: Model) -> _Reference:
    mesh = model.basis.mesh
    if type(mesh) not in _LINEAR_MESHES:
        raise InputError(
            f"mesh = {type(mesh).__name__}; allowed for shape design: MeshTri1, MeshQuad1, MeshTet1, "
            "MeshHex1 (linear geometry)"
        )
    vector = model.basis.elem
    scalar = vector.elem if isinstance(vector, skfem.ElementVector) else vector
    points, weights = model.basis.quadrature
    values, grads = _tables(scalar, points)
    geom = mesh.elem()
    _, geom_grads = _tables(geom, points)
    corners = geom.doflocs.T  # (dim, n_gv) reference vertices
    _, check_grads = _tables(geom, np.hstack([corners, points]))
    _, centroid_grads = _tables(geom, corners.mean(axis=1, keepdims=True))
    return _Reference(np.asarray(weights, dtype=float), values, grads, geom_grads, check_grads, centroid_grads)


def _coordinates(model: Model, X: np.ndarray | None, name: str = "X") -> np.ndarray:
    """``X`` checked against the model's mesh (default: the model's own vertices)."""
    p = model.basis.mesh.p
    if X is None:
        return p
    X = np.asarray(X, dtype=float)
    if X.shape != p.shape:
        raise InputError(f"{name} has shape {X.shape}; allowed: {p.shape} (dim, n_vertices)")
    if not np.all(np.isfinite(X)):
        raise InputError(f"{name} has non-finite entries; allowed: finite coordinates")
    return X


def _jacobians(X: np.ndarray, t: np.ndarray, geom_grads: np.ndarray) -> np.ndarray:
    """J[i, j, e, q] = ∂x_i/∂ξ_j = Σ_a X[i, t[a, e]] Γ[a, j, q]; shape (dim, dim, n_elem, n_q)."""
    return np.ascontiguousarray(np.tensordot(X[:, t], geom_grads, axes=([1], [0])).transpose(0, 2, 1, 3))


def _det_inv(J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """det J (n_elem, n_q) and J⁻¹ (dim, dim, n_elem, n_q) by cofactors (dim 2 or 3).

    Closed forms on contiguous (n_elem, n_q) planes: no per-matrix LAPACK call.
    """
    dim = J.shape[0]
    if dim == 2:
        det = J[0, 0] * J[1, 1] - J[0, 1] * J[1, 0]
        adj = np.array([[J[1, 1], -J[0, 1]], [-J[1, 0], J[0, 0]]])
    else:
        # cofactor C_ij = J_{i+1,j+1} J_{i+2,j+2} − J_{i+1,j+2} J_{i+2,j+1} (indices mod 3); adj = Cᵀ
        cof = np.array([[J[(i + 1) % 3, (j + 1) % 3] * J[(i + 2) % 3, (j + 2) % 3]
                         - J[(i + 1) % 3, (j + 2) % 3] * J[(i + 2) % 3, (j + 1) % 3] for j in range(3)]
                        for i in range(3)])
        det = J[0, 0] * cof[0, 0] + J[0, 1] * cof[0, 1] + J[0, 2] * cof[0, 2]
        adj = cof.transpose(1, 0, 2, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        return det, adj / det


def _material(model: Model) -> tuple[float, float, float, float]:
    """(λ, μ, ρ, thickness) as :func:`~fem_eigopt.fem.assembly.build_model` uses them."""
    material = model.problem.material
    lam, mu = material.lame()
    thickness = material.thickness if model.dim == 2 else 1.0
    return lam, mu, material.density, thickness


def _scale(s: np.ndarray | None, n_elem: int, name: str) -> np.ndarray:
    if s is None:
        return np.ones(n_elem)
    s = np.asarray(s, dtype=float)
    if s.shape != (n_elem,):
        raise InputError(f"{name} has shape {s.shape}; allowed: ({n_elem},) element factors")
    return s


def _element_vectors(model: Model, U: np.ndarray, name: str) -> np.ndarray:
    """Gathered element vectors (n_elem, n_edof[, k]) → (n_elem, n_sb, dim, k)."""
    U = np.asarray(U, dtype=float)
    n_elem, n_edof = model.element_dofs.shape
    if U.ndim == 2:
        U = U[:, :, None]
    if U.ndim != 3 or U.shape[:2] != (n_elem, n_edof):
        raise InputError(f"{name} has shape {U.shape}; allowed: ({n_elem}, {n_edof}, k) element vectors")
    # local dof i of ElementVector is component i % dim of scalar basis function i // dim
    return U.reshape(n_elem, n_edof // model.dim, model.dim, U.shape[2])


class _Geometry:
    """J⁻¹ (dim, dim, n_elem, n_q) and w |det J| (n_elem, n_q) for vertex coordinates X."""

    def __init__(self, ref: _Reference, t: np.ndarray, X: np.ndarray) -> None:
        det, self.inv = _det_inv(_jacobians(X, t, ref.geom_grads))
        self.dx = np.abs(det) * ref.weights  # w_q |det J_q|, as scikit-fem's basis.dx


# Quadrature-point fields are stored component-first, (dim, dim, n_elem, n_q) as in scikit-fem, so
# that every small-matrix operation is a handful of operations on contiguous (n_elem, n_q) planes
# (NumPy's batched ``@`` on (..., 3, 3) stacks loops over the tiny matrices and is much slower).


def _mm(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Product of fields of small matrices: A (m, n, ...) and B (n, p, ...) → (m, p, ...)."""
    out = A[:, 0, None] * B[None, 0]
    for j in range(1, A.shape[1]):
        out += A[:, j, None] * B[None, j]
    return out


def _tr(A: np.ndarray) -> np.ndarray:
    """Transpose of a field of small matrices (view)."""
    return A.swapaxes(0, 1)


def _gradients(ref: _Reference, geo: _Geometry, Ue: np.ndarray) -> np.ndarray:
    """∇_x u at the quadrature points, A[c, i, e, q] = ∂u_c/∂x_i, from Ue (n_elem, n_sb, dim)."""
    H = np.tensordot(Ue, ref.grads, axes=([1], [0])).transpose(1, 2, 0, 3)  # ∂u_c/∂ξ_j (c, j, e, q)
    return _mm(np.ascontiguousarray(H), geo.inv)


def _values(ref: _Reference, Ue: np.ndarray) -> np.ndarray:
    """u at the quadrature points, (dim, n_elem, n_q)."""
    return np.tensordot(Ue, ref.values, axes=([1], [0])).transpose(1, 0, 2)


def _stress(A: np.ndarray, lam: float, mu: float) -> np.ndarray:
    """σ = μ(A + Aᵀ) + λ tr(A) I for displacement gradients A (dim, dim, ...)."""
    sigma = mu * (A + _tr(A))
    tr = sum(A[i, i] for i in range(A.shape[0]))
    for i in range(A.shape[0]):
        sigma[i, i] += lam * tr
    return sigma


def _contract(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A : B over the two matrix axes, (n_elem, n_q)."""
    return np.einsum("ij...,ij...->...", A, B)


# ----------------------------------------------------------------------------------------------
# element matrices and forms at moved vertices


def model_at_coordinates(model: Model, X: np.ndarray) -> Model:
    """The model with its mesh vertices at ``X``: same dofs, supports, point masses and pattern.

    Parameters
    ----------
    model : Model
        The reference model (from :func:`~fem_eigopt.fem.assembly.build_model`).
    X : ndarray (dim, n_vertices)
        New vertex coordinates (m).

    Returns
    -------
    Model
        New mesh (the mesh type's constructor with the same ``t`` and named boundaries), new basis
        with the model's quadrature rule, ``Ke``/``Me`` recomputed by
        :func:`~fem_eigopt.fem.assembly.element_matrices`, the assembly refilled by
        :meth:`~fem_eigopt.fem.assembly.Model.with_element_matrices`; ``problem.mesh`` is the new mesh.
    """
    _reference(model)  # checks the mesh type
    X = _coordinates(model, X)
    mesh0 = model.basis.mesh
    mesh = type(mesh0)(X.copy(), mesh0.t.copy(), _boundaries=mesh0.boundaries, _subdomains=mesh0.subdomains)
    basis = skfem.Basis(mesh, model.basis.elem, quadrature=model.basis.quadrature)
    if not np.array_equal(basis.element_dofs.T, model.element_dofs):
        # the mesh constructor reordered elements or vertices: the dofs would no longer match
        raise RuntimeError("the moved mesh numbers its degrees of freedom differently from the model")
    lam, mu, density, thickness = _material(model)
    Ke, Me = element_matrices(basis, lam, mu, density, thickness)
    moved = model.with_element_matrices(Ke, Me, basis)
    return replace(moved, problem=replace(model.problem, mesh=mesh))


def element_forms(model: Model, U: np.ndarray, V: np.ndarray, X: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Element quadratic forms ``u_eᵀ K_e(X) v_e`` and ``u_eᵀ M_e(X) v_e`` without forming K_e, M_e.

    Evaluated with this module's own geometry (the path the gradients differentiate), so comparing
    it with scikit-fem's element matrices checks the reference tables and the map.

    Parameters
    ----------
    model : Model
    U, V : ndarray (n_elem, n_edof, k) or (n_elem, n_edof)
        Gathered element vectors (``model.element_values``).
    X : ndarray (dim, n_vertices), optional
        Vertex coordinates (m); default the model's.

    Returns
    -------
    uKv, uMv : ndarray (n_elem, k)
        Unit-scale (s = 1) forms; units of K·u·v and M·u·v.
    """
    ref = _reference(model)
    geo = _Geometry(ref, model.basis.mesh.t, _coordinates(model, X))
    Ue, Ve = _element_vectors(model, U, "U"), _element_vectors(model, V, "V")
    if Ue.shape != Ve.shape:
        raise InputError(f"U has shape {U.shape} and V {V.shape}; allowed: equal shapes")
    lam, mu, density, thickness = _material(model)
    k = Ue.shape[3]
    uKv = np.empty((Ue.shape[0], k))
    uMv = np.empty((Ue.shape[0], k))
    for j in range(k):  # loop over vectors (modes), not elements
        A, B = _gradients(ref, geo, Ue[..., j]), _gradients(ref, geo, Ve[..., j])
        W = _contract(A, _stress(B, lam, mu))  # 2μ ε(u):ε(v) + λ div u div v
        uv = _contract(_values(ref, Ue[..., j])[:, None], _values(ref, Ve[..., j])[:, None])
        uKv[:, j] = thickness * np.einsum("eq,eq->e", geo.dx, W)
        uMv[:, j] = thickness * density * np.einsum("eq,eq->e", geo.dx, uv)
    return uKv, uMv


# ----------------------------------------------------------------------------------------------
# coordinate gradients


def _momentum(ref: _Reference, geo: _Geometry, Ue: np.ndarray, Ve: np.ndarray | None, aK: np.ndarray,
              aM: np.ndarray, lam: float, mu: float) -> np.ndarray:
    """Σ-able ∂f/∂J integrand (without w|det J| J⁻ᵀ) for one vector pair: (dim, dim, n_elem, n_q).

    ``aK``, ``aM`` (n_elem,) are the per-element factors of the stiffness and mass forms (they
    include thickness and density). ``Ve = None`` means ``Ve = Ue`` (half the work).
    """
    A = _gradients(ref, geo, Ue)
    sA = _stress(A, lam, mu)
    u = _values(ref, Ue)[:, None]
    if Ve is None:
        W = _contract(A, sA)
        uv = _contract(u, u)
        E = _mm(_tr(A), sA)
        E *= 2.0
    else:
        B = _gradients(ref, geo, Ve)
        sB = _stress(B, lam, mu)
        W = _contract(A, sB)
        uv = _contract(u, _values(ref, Ve)[:, None])
        E = _mm(_tr(A), sB)
        E += _mm(_tr(B), sA)
    # Eshelby tensor W I − Aᵀσ_B − Bᵀσ_A for K; (u·v) I for M
    E *= -aK[:, None]
    diag = aK[:, None] * W + aM[:, None] * uv
    for i in range(E.shape[0]):
        E[i, i] += diag
    return E


def _to_vertices(ref: _Reference, geo: _Geometry, t: np.ndarray, E: np.ndarray, n_vertices: int) -> np.ndarray:
    """∂f/∂X (dim, n_vertices) from the integrands E (dim, dim, n_elem, n_q)."""
    dJ = _mm(E, _tr(geo.inv))  # ∂f/∂J_q = w_q |det J_q| E J_q⁻ᵀ
    dJ *= geo.dx
    dXe = np.tensordot(dJ, ref.geom_grads, axes=([1, 3], [1, 2]))  # Σ_j,q: (dim, n_elem, n_gv)
    vertex = t.T.ravel()
    return np.stack([np.bincount(vertex, weights=dXe[i].ravel(), minlength=n_vertices)
                     for i in range(dXe.shape[0])])


def coordinate_gradient(
    model: Model,
    U: np.ndarray,
    V: np.ndarray,
    wK: Sequence[float] | np.ndarray,
    wM: Sequence[float] | np.ndarray,
    s_K: np.ndarray | None = None,
    s_M: np.ndarray | None = None,
    X: np.ndarray | None = None,
) -> np.ndarray:
    """d/dX of ``Σ_e [s_K,e Σ_k wK_k u_k,eᵀ K_e(X) v_k,e + s_M,e Σ_k wM_k u_k,eᵀ M_e(X) v_k,e]``.

    The element vectors are held fixed; no element matrix, no ∂K_e and no global matrix is formed.

    Parameters
    ----------
    model : Model
        Supplies the dofs, the material and the reference mesh (mesh type, ``t``).
    U, V : ndarray (n_elem, n_edof, k) or (n_elem, n_edof)
        Gathered element vectors (``model.element_values``).
    wK, wM : array_like (k,)
        Weights of the stiffness and mass forms of each vector pair.
    s_K, s_M : ndarray (n_elem,), optional
        Element scale factors of K and M (default 1).
    X : ndarray (dim, n_vertices), optional
        Vertex coordinates at which to differentiate (m); default the model's own.

    Returns
    -------
    ndarray (dim, n_vertices)
        The gradient (units of the form per metre).
    """
    ref = _reference(model)
    mesh = model.basis.mesh
    X = _coordinates(model, X)
    symmetric = U is V
    Ue, Ve = _element_vectors(model, U, "U"), _element_vectors(model, V, "V")
    if Ue.shape != Ve.shape:
        raise InputError(f"U has shape {np.shape(U)} and V {np.shape(V)}; allowed: equal shapes")
    k = Ue.shape[3]
    wK, wM = np.asarray(wK, dtype=float).reshape(-1), np.asarray(wM, dtype=float).reshape(-1)
    if wK.shape != (k,) or wM.shape != (k,):
        raise InputError(f"wK, wM have shapes {wK.shape}, {wM.shape}; allowed: ({k},), one weight per vector")
    n_elem = Ue.shape[0]
    s_K, s_M = _scale(s_K, n_elem, "s_K"), _scale(s_M, n_elem, "s_M")
    lam, mu, density, thickness = _material(model)
    geo = _Geometry(ref, mesh.t, X)
    E = np.zeros_like(geo.inv)
    for j in range(k):  # loop over vector pairs (modes), each vectorised over elements
        E += _momentum(ref, geo, Ue[..., j], None if symmetric else Ve[..., j], thickness * wK[j] * s_K,
                       thickness * density * wM[j] * s_M, lam, mu)
    return _to_vertices(ref, geo, mesh.t, E, X.shape[1])


# ----------------------------------------------------------------------------------------------
# validity of a moved mesh


def check_coordinates(model: Model, X: np.ndarray, params: np.ndarray | None = None) -> float:
    """Check that no element of the mesh at ``X`` is inverted or degenerate.

    An element is valid when its Jacobian determinant, at every reference corner and quadrature
    point, has the sign it has at the centroid of the same element in the model's own mesh
    (scikit-fem's structured meshes mix orientations, so "positive" means "as in the reference").
    For simplices det J is constant; for bilinear quadrilaterals it is linear in each reference
    coordinate, so the corners decide; for hexahedra the corners and quadrature points are the
    usual practical test.

    Parameters
    ----------
    model : Model
        Reference model (mesh topology and orientation).
    X : ndarray (dim, n_vertices)
        Moved vertex coordinates (m).
    params : ndarray, optional
        Shape parameters that produced ``X``, named in the error message.

    Returns
    -------
    float
        The smallest ratio det J(X) / |det J(reference)| over all elements and check points
        (> 0 for a valid mesh; 1 for an unmoved one).

    Raises
    ------
    InputError
        If some element is inverted or degenerate; names the parameter values and the elements.
    """
    ref = _reference(model)
    return _check_jacobians(model.basis.mesh, _coordinates(model, X), ref.check_grads, ref.centroid_grads, params)


def _check_jacobians(mesh: skfem.Mesh, X: np.ndarray, check_grads: np.ndarray, centroid_grads: np.ndarray,
                     params: np.ndarray | None) -> float:
    """Smallest det J(X) / |det J(mesh)| ratio with the reference orientation; InputError if ≤ 0."""
    det0 = _det_inv(_jacobians(mesh.p, mesh.t, centroid_grads))[0][:, 0]  # (n_elem,)
    det = _det_inv(_jacobians(X, mesh.t, check_grads))[0]  # (n_elem, n_check)
    return jacobian_ratio(det0, det, params)


# ----------------------------------------------------------------------------------------------
# element volumes and their coordinate gradient (volume and mass constraints of shape designs)


def element_volumes_at(model: Model, X: np.ndarray | None = None) -> np.ndarray:
    """Element volumes ``v_e = t Σ_q w_q |det J_q|`` of the mesh at vertex coordinates ``X``.

    Parameters
    ----------
    model : Model
        Reference model (mesh topology, quadrature, plane-stress thickness ``t``; 1 in 3D).
    X : ndarray (dim, n_vertices), optional
        Vertex coordinates (m); default the model's own.

    Returns
    -------
    ndarray (n_elem,)
        Volumes (m³; in 2D the area times the thickness). The quadrature of the model's basis
        integrates |det J| exactly for linear geometry (det J is a polynomial of degree ≤ dim − 1 in
        each reference coordinate).
    """
    ref = _reference(model)
    geo = _Geometry(ref, model.basis.mesh.t, _coordinates(model, X))
    thickness = _material(model)[3]
    return thickness * geo.dx.sum(axis=1)


def volume_coordinate_gradient(model: Model, weights: np.ndarray, X: np.ndarray | None = None) -> np.ndarray:
    """d/dX of ``Σ_e w_e v_e(X)``, the weighted sum of element volumes (exact).

    With ``∂|det J|/∂J = |det J| J⁻ᵀ`` (Magnus & Neudecker 1999, ch. 8) the integrand of the
    derivative is the identity in the module's momentum form (the mass form with ``u·v = 1``).

    Parameters
    ----------
    model : Model
    weights : ndarray (n_elem,)
        Weight of each element's volume (e.g. density ρ_e for a mass, 1/V_ref for a ratio).
    X : ndarray (dim, n_vertices), optional
        Vertex coordinates (m); default the model's own.

    Returns
    -------
    ndarray (dim, n_vertices)
        Gradient (units of w·m³ per metre).
    """
    ref = _reference(model)
    mesh = model.basis.mesh
    X = _coordinates(model, X)
    w = _scale(weights, mesh.t.shape[1], "weights")
    geo = _Geometry(ref, mesh.t, X)
    thickness = _material(model)[3]
    dim = X.shape[0]
    E = np.zeros((dim, dim) + geo.dx.shape)
    for i in range(dim):
        E[i, i] = thickness * w[:, None]
    return _to_vertices(ref, geo, mesh.t, E, X.shape[1])
