"""Shape sensitivities of modal responses: dλ/dX and d g(φ)/dX element by element, and the chain
p → X → λ.

Everything reduces to coordinate derivatives of element quadratic forms u_eᵀ K_e(X) v_e and
u_eᵀ M_e(X) v_e with the vectors held fixed (:func:`~fem_eigopt.fem.geometry.coordinate_gradient`):
no ∂K_e/∂X and no global matrix is formed.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from fem_eigopt.design.shape import ShapeMap
from fem_eigopt.fem.assembly import Model
from fem_eigopt.fem.geometry import coordinate_gradient
from fem_eigopt.linalg.factorization import Factorization
from fem_eigopt.sensitivity.eigenvectors import adjoint_vector
from fem_eigopt.solvers.modes import Modes

logger = logging.getLogger(__name__)

def eigenvalue_coordinate_gradients(
    model: Model,
    modes: Modes,
    s_K: np.ndarray | None = None,
    s_M: np.ndarray | None = None,
    X: np.ndarray | None = None,
) -> np.ndarray:
    """dλ_i/dX = φ_iᵀ(∂K/∂X − λ_i ∂M/∂X)φ_i for every mode (Fox & Kapoor 1968).

    Parameters
    ----------
    model : Model
        The model the modes belong to (at coordinates ``X``).
    modes : Modes
        M-normalised eigenpairs on the free dofs (``vectors`` (n_free, k)). Valid for simple
        eigenvalues; for a repeated one the result is one element of the non-smooth cluster
        derivative (a warning is logged).
    s_K, s_M : ndarray (n_elem,), optional
        Element scale factors with which K and M were assembled (default 1).
    X : ndarray (dim, n_vertices), optional
        Vertex coordinates of the analysed geometry (m); default the model's own.

    Returns
    -------
    ndarray (k, dim, n_vertices)
        Gradients of the eigenvalues ((rad/s)² per metre).
    """
    if modes.clusters:
        logger.warning("eigenvalue_coordinate_gradients: repeated eigenvalues %s are not differentiable; "
                       "the gradients of their members are not meaningful", modes.clusters)
    out = []
    for i, eigenvalue in enumerate(np.asarray(modes.eigenvalues, dtype=float)):
        phi_e = model.element_values(np.asarray(modes.vectors)[:, i:i + 1])
        out.append(coordinate_gradient(model, phi_e, phi_e, wK=[1.0], wM=[-eigenvalue], s_K=s_K, s_M=s_M, X=X))
    return np.stack(out) if out else np.empty((0,) + np.shape(X if X is not None else model.basis.mesh.p))


# ----------------------------------------------------------------------------------------------
# the chain p → X → λ


def eigenvalue_parameter_gradients(
    model0: Model,
    shape_map: ShapeMap,
    p: np.ndarray,
    modes_at_p: Modes,
    s_K: np.ndarray | None = None,
    s_M: np.ndarray | None = None,
) -> np.ndarray:
    """dλ_i/dp_j for the eigenpairs of the model at X(p).

    Parameters
    ----------
    model0 : Model
        The reference model (dofs, material, mesh topology); its own coordinates are not used.
    shape_map : ShapeMap
    p : ndarray (n_params,)
        Shape parameters at which ``modes_at_p`` were computed (from
        ``model_at_coordinates(model0, shape_map.coordinates(p))``).
    modes_at_p : Modes
        M-normalised, simple eigenpairs at p.
    s_K, s_M : ndarray (n_elem,), optional
        Element scale factors used in the assembly.

    Returns
    -------
    ndarray (k, n_params)
        Eigenvalue gradients ((rad/s)² per unit of p).
    """
    X = shape_map.coordinates(p)
    dX = eigenvalue_coordinate_gradients(model0, modes_at_p, s_K=s_K, s_M=s_M, X=X)
    return shape_map.vjp(p, dX)


# ----------------------------------------------------------------------------------------------
# eigenvector functionals


def eigenvector_coordinate_gradient(
    model: Model,
    K: sp.csr_matrix,
    M: sp.csr_matrix,
    modes: Modes,
    i: int,
    dg_dphi: np.ndarray,
    s_K: np.ndarray | None = None,
    s_M: np.ndarray | None = None,
    solver: str = "direct",
    factorization: Factorization | None = None,
) -> np.ndarray:
    """d g(φ_i)/dX for a functional of one M-normalised mode shape, by one adjoint solve.

    The adjoint of the bordered eigenproblem (Nelson 1976; Lee, Jung & Lee 1999; derived in
    :func:`~fem_eigopt.sensitivity.eigenvectors.eigenvector_adjoint`) holds for any design
    variable that K and M depend on, so with y the M-orthogonal solution of
    ``(K − λ_i M) y = g − (φ_iᵀg) Mφ_i`` (g = ∂g/∂φ_i) and c = φ_iᵀg::

        dg/dX = −yᵀ(∂K/∂X − λ_i ∂M/∂X)φ_i − ½ c φ_iᵀ(∂M/∂X)φ_i,

    the first term the adjoint contraction, the second the derivative of the normalisation
    φᵀMφ = 1. Both are element quadratic forms with fixed vectors, contracted element by element
    (:func:`~fem_eigopt.fem.geometry.coordinate_gradient`: the pairs (y, φ) with weights −1, λ_i and
    (φ, φ) with weights 0, −c/2). A functional with an explicit dependence on X (none of the
    shipped ones) must add its own ∂g/∂X.

    Parameters
    ----------
    model : Model
        The model at the analysed coordinates (``model_at_coordinates``).
    K, M : csr_matrix (n_free, n_free)
        The matrices ``modes`` were computed from.
    modes : Modes
        M-normalised eigenpairs; mode ``i`` must be simple (InputError otherwise).
    i : int
        0-based mode index.
    dg_dphi : ndarray (n_free,)
        ∂g/∂φ_i.
    s_K, s_M : ndarray (n_elem,), optional
        Element scale factors of the assembly (default 1).
    solver : {"direct", "minres"}
        Adjoint solver (:func:`~fem_eigopt.sensitivity.eigenvectors.adjoint_vector`).
    factorization : Factorization, optional
        For ``"minres"``: a factorisation of K − σM with σ < λ_1 (the modal solver's).

    Returns
    -------
    ndarray (dim, n_vertices)
        The gradient (units of g per metre).
    """
    y, c = adjoint_vector(K, M, modes, i, dg_dphi, solver=solver, factorization=factorization)
    phi = np.asarray(modes.vectors)[:, i]
    lam = float(modes.eigenvalues[i])
    U = model.element_values(np.column_stack([y, phi]))
    V = model.element_values(np.column_stack([phi, phi]))
    return coordinate_gradient(model, U, V, wK=[-1.0, 0.0], wM=[lam, -0.5 * c], s_K=s_K, s_M=s_M)
