"""Element-by-element sensitivities of eigenvalues, eigenvalue clusters and eigenvector functionals.

Everything here returns gradients with respect to the element **scale factors** ``s_K`` and ``s_M``
of the assembler (``K = Σ_e s_K,e K_e``, ``M = Σ_e s_M,e M_e + point masses``, see
:mod:`fem_eigopt.fem.assembly`); callers chain them through the material interpolation, projection and
filter. No global ∂K/∂s_e is ever formed: every derivative of a matrix ``A`` contracted with two
vectors is a per-element quadratic form ``a_eᵀ A_e b_e``, computed for all elements (and all vector
pairs) at once by :func:`element_quadratic_forms`, as in top88's ``sum((U(edofMat)*KE).*U(edofMat),2)``
(Andreassen et al. 2011).

Contents
--------
Simple eigenvalues
    :func:`eigenvalue_scale_gradients` — ``dλ_i/ds_K,e = φ_i,eᵀ K_e φ_i,e``,
    ``dλ_i/ds_M,e = −λ_i φ_i,eᵀ M_e φ_i,e`` for M-normalised φ_i (e.g. Haftka & Gürdal 1992).
Repeated eigenvalues (Seyranian, Lund & Olhoff 1994; Du & Olhoff 2007)
    :func:`cluster_scale_matrices`, :func:`cluster_directional_derivatives`,
    :func:`cluster_sum_gradient`, :func:`cluster_generalized_gradients`.
Eigenvector functionals (Nelson 1976; Lee, Jung & Lee 1999)
    :func:`eigenvector_adjoint` with a direct (Nelson-reduced sparse factorisation) or an iterative
    (MINRES, preconditioned by the modal solver's factorisation of K − σM, deflated by the computed
    modes) adjoint solve; example functionals :class:`ModalAmplitude`, :class:`QuadraticForm`,
    :class:`ModalAssurance`, :func:`mass_weighted_mac`.
General objectives g(λ_1..λ_k, φ_1..φ_k)
    :func:`scale_factor_gradient`.

References
----------
- R. B. Nelson, "Simplified calculation of eigenvector derivatives", AIAA J. 14(9):1201–1205, 1976.
- A. P. Seyranian, E. Lund, N. Olhoff, "Multiple eigenvalues in structural optimization problems",
  Struct. Optim. 8:207–227, 1994.
- T. H. Lee, K. H. Jung, I. W. Lee, "Numerical methods for eigenvector derivatives of eigenproblems"
  (algebraic method with the bordered matrix), Comput. Struct. 70:121–127, 1999.
- N. Du, N. Olhoff, "Topological design of freely vibrating continuum structures for maximum values
  of simple and multiple eigenfrequencies and frequency gaps", Struct. Multidisc. Optim.
  34:91–110, 2007.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from fem_eigopt.errors import InputError
from fem_eigopt.fem.assembly import Model, is_broadcast
from fem_eigopt.solvers.modes import Modes

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# The one contraction everything uses
# ---------------------------------------------------------------------------------------------

def element_quadratic_forms(A_e: np.ndarray, U: np.ndarray, V: np.ndarray | None = None) -> np.ndarray:
    """``u_eᵀ A_e v_e`` for every element and every vector pair at once.

    Parameters
    ----------
    A_e : ndarray (n_elem, n_edof, n_edof)
        Element matrices (e.g. ``model.Ke``, ``model.Me``).
    U : ndarray (n_elem, n_edof, k) or (n_elem, n_edof)
        Gathered element vectors (``model.element_values``), k of them.
    V : ndarray like ``U``, optional
        Second vectors of each pair; ``V = U`` when omitted.

    Returns
    -------
    ndarray (n_elem, k), or (n_elem,) for 2-D ``U``
        Units: those of ``A_e`` times those of ``u`` and ``v``.

    Notes
    -----
    Computed as a batched product ``W = A_e @ V`` (n_elem, n_edof, k) followed by one einsum
    ``Σ_a U[e,a,k] W[e,a,k]``: extra memory O(n_elem·n_edof·k), never (n_elem, n_edof, n_edof, k).
    A single three-operand einsum gives the same numbers but is slower, with or without
    ``optimize=True``: numpy's einsum does not reach the batched matmul kernel
    (``benchmarks/bench_adjoint.py`` measures this; see docs/performance.md).
    """
    A_e = np.asarray(A_e)
    U = np.asarray(U)
    flat = U.ndim == 2
    if flat:
        U = U[:, :, None]
    V = U if V is None else (np.asarray(V)[:, :, None] if flat else np.asarray(V))
    if A_e.ndim != 3 or U.shape[:2] != A_e.shape[:2] or V.shape != U.shape:
        raise ValueError(f"element_quadratic_forms: A_e {A_e.shape}, U {U.shape}, V {V.shape}; expected "
                         "(n_elem, n_edof, n_edof), (n_elem, n_edof, k), (n_elem, n_edof, k)")
    out = np.einsum("eak,eak->ek", U, A_e @ V)
    return out[:, 0] if flat else out


#: element-vector entries per block of :func:`element_energies`: a block's gathered vectors and
#: products stay in the core's cache (16 384 doubles, 128 KiB per vector)
ENERGY_BLOCK_ENTRIES = 16_384


def element_energies(model: Model, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``φ_eᵀ K_e φ_e`` and ``φ_eᵀ M_e φ_e`` for every element and every column φ of ``vectors``.

    The per-iteration kernel of every eigenvalue sensitivity (``dλ = φᵀ(dK − λ dM)φ`` element by
    element). Same numbers as :func:`element_quadratic_forms` on ``model.Ke`` and ``model.Me``,
    computed in the layout that is fast for it: vectors gathered as (k, n_elem, n_edof) with one
    ``np.take`` per vector (contiguous rows, not a fancy index over (n_dofs, k) rows), and, when
    every element is congruent (:func:`~fem_eigopt.fem.assembly.is_broadcast`), both forms from one
    GEMM ``P_i [K₀ M₀]`` per vector, (n_elem, n_edof) × (n_edof, 2 n_edof), instead of n_elem tiny
    batched products: one large GEMM runs at BLAS speed, where n_elem tiny products each pay a
    call's overhead (see docs/performance.md).

    The elements go through in blocks of :data:`ENERGY_BLOCK_ENTRIES` / n_edof (2 048 quad4,
    682 hex8), so that the gathered vectors and their products stay in cache; each element's
    numbers come from the same operations either way — bit for bit on distorted meshes, to
    rounding on congruent ones, where the BLAS may pick its GEMM kernel by the block's number of
    rows (OpenBLAS's small-matrix kernels on AVX-512 CPUs; tested). Blocking matters inside an
    optimisation loop, where the eigen solve has just filled the cache with other arrays: whole
    arrays (megabytes on a 200x100 quad4 mesh) leave the cache between the gather, the GEMM and
    the contraction, blocks of this size do not (see docs/performance.md).

    Parameters
    ----------
    model : Model
    vectors : ndarray (n_free,) or (n_free, k), or full length (n_dofs, ...)

    Returns
    -------
    eK, eM : ndarray (n_elem, k), or (n_elem,) for 1-D ``vectors``
        Units: those of K (M) times those of φ squared.
    """
    V = np.asarray(vectors, dtype=float)
    flat = V.ndim == 1
    V = V[:, None] if flat else V
    k = V.shape[1]
    VT, dofs = _vectors_by_row(model, V)
    n_elem, n_edof = dofs.shape
    eK = np.empty((n_elem, k))
    eM = np.empty((n_elem, k))
    congruent = is_broadcast(model.Ke) and is_broadcast(model.Me)
    KM = np.hstack([model.Ke[0], model.Me[0]]) if congruent else None
    block = max(ENERGY_BLOCK_ENTRIES // n_edof, 1)
    for first in range(0, n_elem, block):
        rows = slice(first, min(first + block, n_elem))
        P = np.take(VT, dofs[rows], axis=1)  # (k, rows, n_edof)
        if congruent:
            for i in range(k):  # per vector (not per element): the work array stays rows × 2 n_edof
                W = P[i] @ KM
                eK[rows, i] = np.einsum("ij,ij->i", P[i], W[:, :n_edof])
                eM[rows, i] = np.einsum("ij,ij->i", P[i], W[:, n_edof:])
        else:
            U = P.transpose(1, 2, 0)
            eK[rows] = element_quadratic_forms(model.Ke[rows], U)
            eM[rows] = element_quadratic_forms(model.Me[rows], U)
    return (eK[:, 0], eM[:, 0]) if flat else (eK, eM)


def _vectors_by_row(model: Model, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors V (n_free, k) or (n_dofs, k) as rows VT (k, n + 1 or n) and the element dof
    indices into them (n_elem, n_edof): free-length vectors get one zero column, which the fixed
    dofs of ``model.element_free_dofs`` point at, so that one ``np.take`` gathers element vectors."""
    if V.shape[0] == model.n_free and model.n_free != model.n_dofs:
        VT = np.zeros((V.shape[1], model.n_free + 1))
        VT[:, :-1] = V.T
        return VT, model.element_free_dofs
    return np.ascontiguousarray(V.T), model.element_dofs


def _gather(model: Model, vectors: np.ndarray) -> np.ndarray:
    """Free-dof vectors (n_free, k) → element vectors (n_elem, n_edof, k), zeros at fixed dofs."""
    return model.element_values(np.asarray(vectors, dtype=float))


# ---------------------------------------------------------------------------------------------
# Simple eigenvalues
# ---------------------------------------------------------------------------------------------

def eigenvalue_scale_gradients(model: Model, modes: Modes,
                               indices: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of simple eigenvalues with respect to the element scale factors.

    With ``K φ = λ M φ`` and ``φᵀ M φ = 1``, differentiating gives ``dλ = φᵀ(dK − λ dM)φ``, hence
    per element::

        dλ_i/ds_K,e = φ_i,eᵀ K_e φ_i,e,        dλ_i/ds_M,e = −λ_i φ_i,eᵀ M_e φ_i,e

    (the point masses do not depend on the design).

    Parameters
    ----------
    model : Model
    modes : Modes
        M-normalised eigenpairs of the current design.
    indices : sequence of int, optional
        Which modes (default: all k).

    Returns
    -------
    dK, dM : ndarray (n_elem, len(indices))
        Units (rad/s)² per unit scale factor.

    Notes
    -----
    A mode in a cluster of multiplicity > 1 has no individual gradient (the eigenvalue is only
    directionally differentiable); a warning is logged and the number returned is the diagonal
    entry of the cluster matrix for the basis the eigen solver happened to return. Symmetric
    functions of a whole cluster (the sum) are differentiable: their gradient is the sum of these
    columns (see :func:`cluster_sum_gradient`).
    """
    idx = np.arange(modes.eigenvalues.size) if indices is None else np.asarray(indices, dtype=int)
    _check_indices(idx, modes.eigenvalues.size)
    for i in idx:
        c = modes.cluster_of(int(i))
        if len(c) > 1:
            logger.warning("mode %d lies in the cluster %s of multiplicity %d: its individual gradient "
                           "does not exist (use the cluster functions of fem_eigopt.sensitivity.eigenvalues)", i, c, len(c))
    dK, dM = element_energies(model, modes.vectors[:, idx])
    return dK, -modes.eigenvalues[idx] * dM


def _check_indices(idx: np.ndarray, k: int) -> None:
    if idx.ndim != 1 or np.any(idx < 0) or np.any(idx >= k):
        raise InputError(f"mode indices = {idx.tolist()}; allowed: integers 0..{k - 1}")


# ---------------------------------------------------------------------------------------------
# Repeated eigenvalues
# ---------------------------------------------------------------------------------------------

def cluster_scale_matrices(model: Model, modes: Modes,
                           cluster: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-element cluster matrices of an m-fold eigenvalue (Seyranian, Lund & Olhoff 1994).

    Parameters
    ----------
    model : Model
    modes : Modes
    cluster : sequence of int, length m
        Indices of the (numerically) repeated eigenvalue, e.g. an entry of ``modes.clusters``.

    Returns
    -------
    GK, GM : ndarray (n_elem, m, m)
        ``GK[e, s, k] = φ_s,eᵀ K_e φ_k,e`` and ``GM[e, s, k] = φ_s,eᵀ M_e φ_k,e`` (symmetric in s, k).

    Notes
    -----
    For a design change given as scale-factor increments ``ΔsK, ΔsM`` the first-order increments
    of the m eigenvalues are the eigenvalues of the m × m matrix
    ``Σ_e F_e``, ``F_e = ΔsK_e GK[e] − λ̄ ΔsM_e GM[e]`` (λ̄ the cluster's mean eigenvalue); see
    :func:`cluster_directional_derivatives`. The matrices depend on which M-orthonormal basis of
    the eigenspace the solver returned, the increments do not.
    """
    c = np.asarray(cluster, dtype=int)
    _check_indices(c, modes.eigenvalues.size)
    phi = _gather(model, modes.vectors[:, c])  # (n_elem, n_edof, m)
    # (n_elem, n_edof, m) x (n_elem, n_edof, m) through the element matrix: O(n_elem·n_edof·m) extra
    GK = np.einsum("eas,eak->esk", phi, model.Ke @ phi)
    GM = np.einsum("eas,eak->esk", phi, model.Me @ phi)
    return GK, GM


def cluster_increment_matrix(model: Model, vectors: np.ndarray, dsK: np.ndarray, dsM: np.ndarray,
                             lam: float) -> np.ndarray:
    """``Φᵀ(ΔK − λ̄ ΔM)Φ`` for a design increment, element by element, no ΔK assembled.

    ``ΔK = Σ_e dsK_e K_e``, ``ΔM = Σ_e dsM_e M_e``; the result is ``Σ_e (dsK_e GK[e] − λ̄ dsM_e
    GM[e])`` of :func:`cluster_scale_matrices` without forming the (n_elem, m, m) arrays: per
    vector one gather and, on congruent meshes, one GEMM ``P_k [K₀ M₀]`` (n_elem, n_edof) ×
    (n_edof, 2 n_edof), then a weighted dot per pair. The eigenvectors of this matrix are the
    cluster's basis along the increment (Seyranian, Lund & Olhoff 1994). Cheaper than assembling
    ΔK and ΔM on the pattern and two sparse products: the element vectors are gathered once and
    contracted with the element matrices, no nnz-long arrays are formed (see
    docs/performance.md).

    Parameters
    ----------
    model : Model
    vectors : ndarray (n_free, m) or (n_dofs, m)
        The cluster's eigenvectors Φ.
    dsK, dsM : ndarray (n_elem,)
        Increments of the element scale factors of K and M.
    lam : float
        λ̄, the cluster's mean eigenvalue, (rad/s)².

    Returns
    -------
    ndarray (m, m)
        Symmetric; units those of K times those of φ squared.
    """
    V = np.asarray(vectors, dtype=float)
    m = V.shape[1]
    VT, dofs = _vectors_by_row(model, V)
    n_edof = dofs.shape[1]
    P = np.take(VT, dofs, axis=1)  # (m, n_elem, n_edof)
    wK = np.asarray(dsK, dtype=float)[:, None]
    wM = np.asarray(dsM, dtype=float)[:, None]
    congruent = is_broadcast(model.Ke) and is_broadcast(model.Me)
    KM = np.hstack([model.Ke[0], model.Me[0]]) if congruent else None
    F = np.empty((m, m))
    for k in range(m):
        if congruent:
            Y = P[k] @ KM
            YK, YM = Y[:, :n_edof], Y[:, n_edof:]
        else:
            YK = (model.Ke @ P[k][:, :, None])[:, :, 0]
            YM = (model.Me @ P[k][:, :, None])[:, :, 0]
        YK = wK * YK - lam * (wM * YM)  # (dsK_e K_e − λ̄ dsM_e M_e) φ_k,e
        for s in range(k + 1):
            F[s, k] = F[k, s] = np.dot(P[s].ravel(), YK.ravel())
    return F


def cluster_directional_derivatives(GK: np.ndarray, GM: np.ndarray, lam: float,
                                    dsK: np.ndarray, dsM: np.ndarray) -> np.ndarray:
    """One-sided directional derivatives of the m eigenvalues of a cluster.

    Seyranian, Lund & Olhoff (1994): along ``s(t) = s + t·(dsK, dsM)`` the eigenvalues of an m-fold
    cluster split as ``λ_j(t) = λ̄ + t μ_j + O(t²)`` where μ_j are the eigenvalues of
    ``Σ_e (dsK_e GK[e] − λ̄ dsM_e GM[e])``.

    Parameters
    ----------
    GK, GM : ndarray (n_elem, m, m)
        From :func:`cluster_scale_matrices`.
    lam : float
        λ̄, the cluster eigenvalue (rad/s)² (mean of its members).
    dsK, dsM : ndarray (n_elem,)
        Direction in scale-factor space (chain a density direction d through the interpolations:
        ``dsK = E'(x) d``, ``dsM = ρ'(x) d``).

    Returns
    -------
    ndarray (m,)
        μ_j in ascending order: ``λ_(j)(s + t ds) − λ_(j)(s) = t μ_j + O(t²)`` for t > 0, with the
        cluster members sorted ascending on both sides.
    """
    F = np.einsum("e,esk->sk", np.asarray(dsK, dtype=float), GK) - lam * np.einsum(
        "e,esk->sk", np.asarray(dsM, dtype=float), GM)
    return np.linalg.eigvalsh(0.5 * (F + F.T))


def cluster_sum_gradient(model: Model, modes: Modes, cluster: Sequence[int],
                         mean: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the sum (or mean) of a cluster's eigenvalues: exact, the sum is differentiable.

    ``Σ_j λ_j`` is the trace of the cluster matrix, invariant under the choice of eigenspace basis,
    hence differentiable even where the eigenvalues coincide; its derivative is the sum of the
    diagonal terms ``φ_jᵀ(dK − λ_j dM)φ_j``. Using each member's own λ_j (rather than λ̄) also makes
    it exact for a cluster that is only nearly repeated.

    Parameters
    ----------
    model : Model
    modes : Modes
        Eigenvalues ((rad/s)²) and M-normalised eigenvectors (n_free, n_modes).
    cluster : sequence of int
        Indices of the cluster's modes in ``modes``.
    mean : bool, default False
        Differentiate the mean instead of the sum.

    Returns
    -------
    gK, gM : ndarray (n_elem,)
        d(Σ λ_j)/ds_K and d(Σ λ_j)/ds_M (divided by m when ``mean``), (rad/s)² per unit scale.
    """
    c = np.asarray(cluster, dtype=int)
    _check_indices(c, modes.eigenvalues.size)
    phi = _gather(model, modes.vectors[:, c])
    gK = element_quadratic_forms(model.Ke, phi).sum(axis=1)
    gM = -(element_quadratic_forms(model.Me, phi) @ modes.eigenvalues[c])
    if mean:
        gK, gM = gK / c.size, gM / c.size
    return gK, gM


def cluster_generalized_gradients(GK: np.ndarray, GM: np.ndarray, lam: float,
                                  dsK_dx: np.ndarray | None = None,
                                  dsM_dx: np.ndarray | None = None) -> np.ndarray:
    """Generalised gradient vectors ``f_sk`` of the Du & Olhoff (2007) bound formulation.

    Du & Olhoff (2007, sec. 4, after Seyranian et al. 1994) maximise a bound β on the lowest
    eigenvalues, ``max β  s.t.  β − λ_j ≤ 0``. When λ̄ is N-fold, the constraints of its members are
    replaced in each linearised (MMA) sub-problem with design increment Δx by::

        β − (λ̄ + f_ssᵀ Δx) ≤ 0      s = 1..N          (each increment above the bound)
        f_skᵀ Δx = 0               1 ≤ s < k ≤ N     (the increment matrix stays diagonal)

    so that the eigenvalues of the increment matrix ``[f_skᵀ Δx]`` (which are the first-order
    increments of the N eigenvalues) all stay above β. With NLopt's MMA, which takes only
    inequality constraints, a caller passes the diagonal ones as constraints with value
    ``β − λ̄`` and gradient ``(−f_ss, ∂/∂β = 1)``, and each equality as the pair
    ``±f_skᵀ(x − x_k) ≤ ε`` (linear in x, a small tolerance ε), re-forming all of them at every
    iterate because the eigenvector basis, and even the multiplicity, changes with the design.

    Parameters
    ----------
    GK, GM : ndarray (n_elem, m, m)
        From :func:`cluster_scale_matrices`.
    lam : float
        λ̄ (rad/s)².
    dsK_dx, dsM_dx : ndarray (n_elem,), optional
        Element-wise derivatives of the interpolations (``SIMP(x)[1]``, ``mass(x)[1]``). When both
        are omitted the result is with respect to the scale factors themselves and has twice the
        columns: ``[∂/∂s_K | ∂/∂s_M]``.

    Returns
    -------
    f : ndarray (m, m, n_elem) or (m, m, 2·n_elem)
        ``f[s, k] = φ_sᵀ(∂K − λ̄ ∂M)φ_k`` per design variable, symmetric in (s, k). A filter or a
        projection before the interpolation is applied by its transpose to each ``f[s, k]``.
    """
    if (dsK_dx is None) != (dsM_dx is None):
        raise InputError("cluster_generalized_gradients: give both dsK_dx and dsM_dx, or neither")
    fK = np.moveaxis(GK, 0, -1)
    fM = -lam * np.moveaxis(GM, 0, -1)
    if dsK_dx is None:
        return np.concatenate([fK, fM], axis=-1)
    return fK * np.asarray(dsK_dx, dtype=float) + fM * np.asarray(dsM_dx, dtype=float)
