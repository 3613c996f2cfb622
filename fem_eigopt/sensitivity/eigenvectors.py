"""Eigenvector sensitivities: the adjoint of eigenvector functionals (Nelson 1976), direct or
iterative, contracted element by element.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from fem_eigopt.errors import InputError
from fem_eigopt.fem.assembly import Model
from fem_eigopt.linalg.factorization import Factorization, make_factorization
from fem_eigopt.sensitivity.eigenvalues import (
    _check_indices,
    _gather,
    element_energies,
    element_quadratic_forms,
)
from fem_eigopt.solvers.modes import Modes, shifted_matrix

logger = logging.getLogger(__name__)

_SOLVERS = ("direct", "minres")


# ---------------------------------------------------------------------------------------------
# Eigenvector functionals: the adjoint of the bordered eigenproblem
# ---------------------------------------------------------------------------------------------

def adjoint_vector(K: sp.csr_matrix, M: sp.csr_matrix, modes: Modes, i: int, dg_dphi: np.ndarray, *,
                   solver: str = "direct", factorization: Factorization | None = None,
                   tol: float = 1e-10, direct_factorization: Factorization | None = None,
                   maxiter: int | None = None) -> tuple[np.ndarray, float]:
    """Solve the adjoint system of mode i: ``(K − λM) y = g − (φᵀg) Mφ``, ``φᵀ M y = 0``.

    See :func:`eigenvector_adjoint` for the derivation and the parameters.

    Returns
    -------
    y : ndarray (n_free,)
        The adjoint vector (M-orthogonal to φ_i).
    c : float
        ``φ_iᵀ g`` (the multiplier of the normalisation constraint, up to sign).
    """
    lam_all = modes.eigenvalues
    i = int(i)
    _check_indices(np.array([i]), lam_all.size)
    if len(modes.cluster_of(i)) > 1:
        raise InputError(f"mode {i} lies in the cluster {modes.cluster_of(i)} of repeated eigenvalues; "
                         "allowed: a simple eigenvalue (an eigenvector of a repeated eigenvalue is not "
                         "differentiable)")
    if solver not in _SOLVERS:
        raise InputError(f"adjoint solver = {solver!r}; allowed: {', '.join(_SOLVERS)}")
    n = K.shape[0]
    g = np.asarray(dg_dphi, dtype=float)
    if g.shape != (n,):
        raise InputError(f"dg_dphi has shape {g.shape}; allowed: ({n},) (one entry per free dof)")
    phi = modes.vectors[:, i]
    lam = float(lam_all[i])
    Mphi = M @ phi
    c = float(phi @ g)
    r = g - c * Mphi  # ⊥ φ: the consistent right-hand side of the singular (K − λM) y = r
    if solver == "direct":
        y = _nelson_solve(K, M, lam, phi, r, direct_factorization)
    else:
        y = _deflated_minres(K, M, modes, i, r, factorization, tol, maxiter)
    y -= (Mphi @ y) * phi  # exact M-orthogonality (removes round-off drift along φ)
    return y, c


def eigenvector_adjoint(model: Model, K: sp.csr_matrix, M: sp.csr_matrix, modes: Modes, i: int,
                        dg_dphi: np.ndarray, *, solver: str = "direct",
                        factorization: Factorization | None = None, tol: float = 1e-10,
                        direct_factorization: Factorization | None = None,
                        maxiter: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of a functional g(φ_i) with respect to the element scale factors, by an adjoint solve.

    Derivation (after Nelson 1976 and the bordered "algebraic" form of Lee, Jung & Lee 1999).
    A simple eigenpair (φ, λ) of mode i is the solution of the residual equations::

        R(φ, λ; s) = [ (K − λM) φ ;  −½ (φᵀ M φ − 1) ] = 0.

    Their Jacobian with respect to (φ, λ) is the symmetric bordered matrix::

        J = [ K − λM   −Mφ ]
            [ −φᵀM      0  ]

    (non-singular exactly when λ is simple). Differentiating ``R = 0`` along a design change ``ds``
    gives ``J [dφ; dλ] = −∂R/∂s ds`` with ``∂R/∂s = [(∂K − λ∂M) φ ; −½ φᵀ ∂M φ]``, so for
    ``g(φ)`` with ``ĝ = [∂g/∂φ; 0]``::

        dg = ĝᵀ [dφ; dλ] = −zᵀ (∂R/∂s) ds,        J z = ĝ   (J symmetric: the adjoint system).

    Writing ``z = [y; μ]``: the second row gives ``φᵀMy = 0``; multiplying the first row
    ``(K − λM) y − μ Mφ = g`` by φᵀ gives ``μ = −φᵀg``, so ``y`` is the M-orthogonal solution of
    the consistent singular system ``(K − λM) y = g − (φᵀg) Mφ``. Then::

        dg/ds_K,e = −y_eᵀ K_e φ_e
        dg/ds_M,e =  λ y_eᵀ M_e φ_e − ½ (φᵀg) φ_eᵀ M_e φ_e      (the last term: normalisation)

    Check: expanding ``y = Σ_{j≠i} φ_j (φ_jᵀg)/(λ_j − λ)`` reproduces the modal-expansion
    derivative ``dφ = Σ_{j≠i} φ_j φ_jᵀ(dK − λdM)φ/(λ − λ_j) − ½ φ φᵀ dM φ``.

    Solvers
    -------
    ``"direct"`` — Nelson's reduction: the component ``y_j`` at the dof ``j`` of largest ``|φ_j|`` is
    fixed to zero (row and column j of ``K − λM`` replaced by a diagonal entry); the reduced
    matrix is non-singular, sparse, symmetric and *has the model's CSR pattern*, so a PARDISO
    factorisation reuses its symbolic analysis between designs (the bordered matrix would add a
    dense row and column). The j-th equation holds automatically because the right-hand side is
    orthogonal to φ; the M-orthogonal solution is then ``ŷ − (φᵀMŷ) φ``. Two steps of iterative
    refinement guard against PARDISO's pivot perturbation on this indefinite matrix.

    ``"minres"`` — no new factorisation: the components along the computed modes are known in
    closed form, ``φ_jᵀ M y = φ_jᵀg/(λ_j − λ)`` (j ≠ i), and the rest ``y_⊥`` (M-orthogonal to all
    k computed modes) solves the deflated system ``Qᵀ(K − λM)Q y_⊥ = Qᵀ r``, ``Q = I − ΦΦᵀM``,
    by MINRES preconditioned with ``Q (K − σM)⁻¹ Qᵀ`` (the modal solver's cached factorisation,
    σ < λ_1). On that subspace the preconditioned operator is positive definite with spectrum in
    ``[(λ_{k+1} − λ)/(λ_{k+1} − σ), 1)``, so a few tens of iterations suffice unless λ_{k+1} is
    very close to λ_i.

    Parameters
    ----------
    model : Model
    K, M : csr_matrix (n_free, n_free)
        The matrices ``modes`` were computed from.
    modes : Modes
        M-normalised eigenpairs (computed accurately: the adjoint assumes ``Kφ = λMφ``).
    i : int
        The mode; its eigenvalue must be simple (InputError otherwise).
    dg_dphi : ndarray (n_free,)
        ∂g/∂φ_i at the current φ_i.
    solver : {"direct", "minres"}
    factorization : Factorization, optional
        For ``"minres"``: a factorisation of ``K − σM`` with σ = ``modes.shift`` < λ_1 (the modal
        solver's ``solver.factorization``); one is computed when omitted.
    tol : float
        Relative residual tolerance of MINRES.
    direct_factorization : Factorization, optional
        For ``"direct"``: a factorisation object to (re)use for the reduced matrix (pass the same
        one every design so PARDISO keeps its symbolic analysis); a new one when omitted.
    maxiter : int, optional
        MINRES iteration limit (default 20·k + 500).

    Returns
    -------
    gK, gM : ndarray (n_elem,)
        dg/ds_K and dg/ds_M (units of g per unit scale factor).
    """
    y, c = adjoint_vector(K, M, modes, i, dg_dphi, solver=solver, factorization=factorization, tol=tol,
                          direct_factorization=direct_factorization, maxiter=maxiter)
    return _contract_adjoint(model, modes, np.array([i]), y[:, None], np.array([c]))


def _contract_adjoint(model: Model, modes: Modes, idx: np.ndarray, Y: np.ndarray,
                      c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Σ over modes of the element contributions −yᵀ(∂K − λ∂M)φ − ½ c φᵀ∂Mφ (see eigenvector_adjoint)."""
    phi = _gather(model, modes.vectors[:, idx])
    Ye = _gather(model, Y)
    lam = modes.eigenvalues[idx]
    gK = -element_quadratic_forms(model.Ke, Ye, phi).sum(axis=1)
    # one batched product M_e φ_e serves both mass terms
    Mphi = model.Me @ phi
    gM = np.einsum("eak,eak->ek", Ye, Mphi) @ lam - 0.5 * (np.einsum("eak,eak->ek", phi, Mphi) @ c)
    return gK, gM


def _nelson_solve(K: sp.csr_matrix, M: sp.csr_matrix, lam: float, phi: np.ndarray, r: np.ndarray,
                  fact: Factorization | None) -> np.ndarray:
    """A solution of the singular ``(K − λM) y = r`` (r ⊥ φ) by Nelson's (1976) reduction."""
    # K − λM on K's pattern (a new data array: edited in place below)
    Ar = shifted_matrix(K, M, lam)
    j = int(np.argmax(np.abs(phi)))
    row = slice(Ar.indptr[j], Ar.indptr[j + 1])
    diag = Ar.indptr[j] + int(np.flatnonzero(Ar.indices[row] == j)[0])
    pivot = abs(float(K[j, j]))
    Ar.data[Ar.indices == j] = 0.0  # column j
    Ar.data[row] = 0.0  # row j
    # any non-zero pivot works since ŷ_j = 0; |K_jj| keeps the scaling of the other rows
    Ar.data[diag] = pivot if pivot != 0.0 else 1.0
    fact = make_factorization("auto") if fact is None else fact
    fact.factor(Ar, positive_definite=False)
    b = r.copy()
    b[j] = 0.0  # the dropped equation (satisfied by the solution since r ⊥ φ)
    y = fact.solve(b)
    norm_b = np.linalg.norm(b)
    for _ in range(2):  # iterative refinement (indefinite matrix, possibly perturbed pivots)
        res = b - Ar @ y
        if np.linalg.norm(res) <= 1e-15 * norm_b:
            break
        y = y + fact.solve(res)
    y[j] = 0.0
    return y


def _deflated_minres(K: sp.csr_matrix, M: sp.csr_matrix, modes: Modes, i: int, r: np.ndarray,
                     fact: Factorization | None, tol: float, maxiter: int | None) -> np.ndarray:
    """M-orthogonal solution of ``(K − λ_i M) y = r`` by deflated, preconditioned MINRES."""
    lam_all = modes.eigenvalues
    lam = float(lam_all[i])
    Phi = modes.vectors
    MPhi = M @ Phi
    n, k = Phi.shape
    sigma = float(modes.shift)
    if fact is None:
        if not sigma < lam_all[0]:
            raise InputError(f"modes.shift = {sigma}; the minres adjoint needs a shift below λ_1 = {lam_all[0]} "
                             "(pass a factorisation of K − σM with σ < λ_1)")
        fact = make_factorization("auto")
        fact.factor(shifted_matrix(K, M, sigma), positive_definite=sigma < 0)
    # components along the computed modes, in closed form (j ≠ i; the i-th is zero by the constraint)
    coef = Phi.T @ r
    others = np.arange(k) != i
    y_known = Phi[:, others] @ (coef[others] / (lam_all[others] - lam))

    def project_t(v):  # Qᵀ v = v − MΦ Φᵀ v
        return v - MPhi @ (Phi.T @ v)

    def project(v):  # Q v = v − Φ (MΦ)ᵀ v
        return v - Phi @ (MPhi.T @ v)

    def apply(v):  # (K − λM) v without forming K − λM
        w = project(v)
        return project_t(K @ w - lam * (M @ w))

    op = spla.LinearOperator((n, n), matvec=apply, dtype=float)
    prec = spla.LinearOperator((n, n), matvec=lambda v: project(fact.solve(project_t(v))), dtype=float)
    b = project_t(r)
    if np.linalg.norm(b) == 0.0:
        return y_known
    n_iter = [0]

    def count(_):
        n_iter[0] += 1

    y_perp, info = spla.minres(op, b, M=prec, rtol=tol, maxiter=maxiter or 20 * k + 500, callback=count)
    if info != 0:
        logger.warning("minres adjoint of mode %d stopped after %d iterations without reaching rtol=%g "
                       "(info %d)", i, n_iter[0], tol, info)
    logger.debug("minres adjoint of mode %d: %d iterations", i, n_iter[0])
    return project(y_perp) + y_known


# ---------------------------------------------------------------------------------------------
# A general objective g(λ_1..λ_k, φ_1..φ_k)
# ---------------------------------------------------------------------------------------------

def scale_factor_gradient(model: Model, K: sp.csr_matrix, M: sp.csr_matrix, modes: Modes,
                          dg_dlam: np.ndarray, dg_dphi: np.ndarray | None = None, *,
                          solver: str = "direct", factorization: Factorization | None = None,
                          tol: float = 1e-10, direct_factorization: Factorization | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of ``g(λ_1..λ_k, φ_1..φ_k)`` with respect to the element scale factors.

    ``dg/ds = Σ_i (∂g/∂λ_i) dλ_i/ds + Σ_i (adjoint term of ∂g/∂φ_i)``; one adjoint solve per mode
    whose ``∂g/∂φ_i`` is non-zero, then a single contraction for all of them.

    Parameters
    ----------
    model : Model
    K, M : csr_matrix (n_free, n_free)
    modes : Modes
    dg_dlam : ndarray (k,)
        ∂g/∂λ_i (units of g per (rad/s)²). Within a cluster the entries must be equal (g symmetric
        in the cluster's eigenvalues, e.g. their sum): otherwise g is not differentiable, a warning
        is logged and the result is only the derivative for the solver's basis.
    dg_dphi : ndarray (n_free, k), optional
        ∂g/∂φ_i per column; columns of repeated eigenvalues must be zero (InputError otherwise).
    solver, factorization, tol, direct_factorization
        See :func:`eigenvector_adjoint`.

    Returns
    -------
    gK, gM : ndarray (n_elem,)
    """
    k = modes.eigenvalues.size
    dg_dlam = np.asarray(dg_dlam, dtype=float)
    if dg_dlam.shape != (k,):
        raise InputError(f"dg_dlam has shape {dg_dlam.shape}; allowed: ({k},)")
    for c in modes.clusters:
        vals = dg_dlam[list(c)]
        if np.ptp(vals) > 1e-12 * max(np.max(np.abs(vals)), 1e-300):
            logger.warning("dg/dλ differs inside the cluster %s (%s): the objective is not differentiable "
                           "there; use the cluster functions of fem_eigopt.sensitivity.eigenvalues", c, vals)
    used = np.flatnonzero(dg_dlam)
    eK, eM = element_energies(model, modes.vectors[:, used])
    gK = eK @ dg_dlam[used]
    gM = -eM @ (modes.eigenvalues[used] * dg_dlam[used])
    if dg_dphi is None:
        return gK, gM
    dg_dphi = np.asarray(dg_dphi, dtype=float)
    if dg_dphi.shape != modes.vectors.shape:
        raise InputError(f"dg_dphi has shape {dg_dphi.shape}; allowed: {modes.vectors.shape} (n_free, k)")
    active = np.flatnonzero(np.any(dg_dphi != 0.0, axis=0))
    if active.size == 0:
        return gK, gM
    Y = np.empty((modes.vectors.shape[0], active.size))
    cs = np.empty(active.size)
    for col, i in enumerate(active):  # one adjoint solve per mode (a loop over modes, not elements)
        Y[:, col], cs[col] = adjoint_vector(K, M, modes, int(i), dg_dphi[:, i], solver=solver,
                                            factorization=factorization, tol=tol,
                                            direct_factorization=direct_factorization)
    vK, vM = _contract_adjoint(model, modes, active, Y, cs)
    return gK + vK, gM + vM
