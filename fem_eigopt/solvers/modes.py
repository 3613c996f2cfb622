"""Modal analysis: the leading eigenpairs of K x = λ M x on the free dofs.

Shift-invert Lanczos (ARPACK through SciPy's ``eigsh``) with the factorisation of ``K - σM`` from
:mod:`fem_eigopt.linalg.kernels`, kept between designs so the symbolic analysis is reused. The default
shift is slightly *negative*, so ``K - σM`` is positive definite even when the structure is free or
partly free, and the modes nearest σ are exactly the lowest ones, rigid-body modes included (unlike
scikit-fem's ``solver_eigen_scipy_sym`` default σ = 10, which loses modes below it).

Eigenvectors are M-normalised (xᵀMx = 1) and signed so that their largest-magnitude entry is
positive; the Lanczos start vector is deterministic (or built from previous modes for a warm
start), so runs repeat exactly. Clusters of (nearly) repeated eigenvalues are reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from fem_eigopt.linalg.kernels import dense_matmul, sparse_matmul

logger = logging.getLogger(__name__)

@dataclass
class Modes:
    """Eigenpairs of one design.

    Attributes
    ----------
    eigenvalues : ndarray (k,)
        λ = ω² in (rad/s)², ascending.
    vectors : ndarray (n_free, k)
        M-normalised mode shapes on the free dofs.
    clusters : list of tuple of int
        Groups of indices whose eigenvalues agree within the relative cluster tolerance (only
        groups of two or more).
    shift : float
        The σ used.
    next_eigenvalue : float
        λ_{k+1}, computed to know whether the last cluster is complete.
    cut_cluster : bool
        The last mode's cluster continues beyond it (a warning was due).
    """

    eigenvalues: np.ndarray
    vectors: np.ndarray
    clusters: list[tuple[int, ...]] = field(default_factory=list)
    shift: float = 0.0
    next_eigenvalue: float = np.nan
    cut_cluster: bool = False

    @property
    def omega(self) -> np.ndarray:
        """Angular frequencies ω = √λ (rad/s); negative round-off near zero gives 0."""
        return np.sqrt(np.clip(self.eigenvalues, 0.0, None))

    @property
    def frequencies_hz(self) -> np.ndarray:
        """Frequencies f = ω / 2π (Hz)."""
        return self.omega / (2.0 * np.pi)

    def cluster_of(self, i: int) -> tuple[int, ...]:
        """The cluster containing mode ``i`` (a 1-tuple when λ_i is simple)."""
        for c in self.clusters:
            if i in c:
                return c
        return (i,)


def find_clusters(eigenvalues: np.ndarray, rel_tol: float, zero_tol: float = 0.0) -> list[tuple[int, ...]]:
    """Group ascending eigenvalues into clusters of (nearly) equal values.

    Neighbours ``a <= b`` belong together when ``b - a <= rel_tol * max(|a|, |b|)``, or when both
    are below ``zero_tol`` in magnitude (rigid-body modes, whose computed values are round-off).
    Only groups of two or more are returned.
    """
    lam = np.asarray(eigenvalues, dtype=float)
    groups: list[list[int]] = []
    current = [0] if lam.size else []
    for i in range(1, lam.size):
        a, b = lam[i - 1], lam[i]
        close = (b - a) <= rel_tol * max(abs(a), abs(b)) or (abs(a) <= zero_tol and abs(b) <= zero_tol)
        if close:
            current.append(i)
        else:
            groups.append(current)
            current = [i]
    if current:
        groups.append(current)
    return [tuple(g) for g in groups if len(g) > 1]


def normalize_modes(vectors: np.ndarray, M: sp.spmatrix) -> np.ndarray:
    """M-normalise columns and fix their sign (largest-magnitude entry positive).

    Symmetric structures have modes whose largest entries come in pairs of equal magnitude and
    opposite sign; a plain argmax would then pick by round-off and the sign would differ between
    backends. The first entry within 1e-6 (relative) of the largest magnitude decides instead.
    """
    X = np.array(vectors, dtype=float, copy=True)
    norms = np.sqrt(np.einsum("ij,ij->j", X, sparse_matmul(M, X)))
    X /= norms
    X *= _mode_signs(X)  # exact (±1): the same numbers as X * signs, without another copy
    return X


def _mode_signs(X: np.ndarray) -> np.ndarray:
    """±1 per column of ``X`` (n, k): the sign of the first entry within 1e-6 (relative) of the
    column's largest magnitude (see :func:`normalize_modes`)."""
    # column by column on a transposed copy: reductions down the columns of a row-major (n, k)
    # array run k-wide inner loops, several times slower than this way
    mag = np.abs(np.ascontiguousarray(X.T))
    idx = np.array([np.argmax(row >= (1.0 - 1e-6) * row.max()) for row in mag], dtype=np.intp)
    signs = np.sign(X[idx, np.arange(X.shape[1])])
    signs[signs == 0] = 1.0
    return signs


def modes_from_vectors(vectors: np.ndarray, K, M: sp.spmatrix, n_modes: int, shift: float, cluster_tol: float,
                       stiffness_scale: float, warn: bool = True,
                       products: tuple[np.ndarray, np.ndarray] | None = None) -> Modes:
    """:class:`Modes` from converged eigenvectors: the conventions every eigen solver shares.

    Vectors are M-normalised and sign-fixed (:func:`normalize_modes`), eigenvalues are their
    Rayleigh quotients xᵀKx in ascending order, clusters are found with ``cluster_tol`` (values
    below 1e-9 · max(λ_max, 1e-12 · ``stiffness_scale``) count as zero: rigid-body modes), and the
    pair beyond ``n_modes`` gives ``next_eigenvalue``.

    Parameters
    ----------
    vectors : ndarray (n, k)
        Eigenvectors, k ≥ n_modes (k = n_modes + 1 to know whether the last cluster is complete).
    K : sparse matrix or operator (n, n)
    M : sparse matrix (n, n)
    n_modes : int
    shift : float
        σ the solver used (reported).
    cluster_tol : float
    stiffness_scale : float
        A typical diag(K)/diag(M) (rad²/s²) for the zero tolerance.
    warn : bool
        Log a warning when the last requested mode's cluster continues beyond it.
    products : (KX, MX), optional
        K·vectors and M·vectors as the solver carried them along (no sparse products here):
        Rayleigh quotients from them agree with recomputed ones to ~2e-12 (relative, measured
        on LOBPCG's carried products), fine for a solve converged only to ~1e-8 in eigenvalue.
    """
    if products is None:
        vecs = normalize_modes(vectors, M)
        vals = np.einsum("ij,ij->j", vecs, sparse_matmul(K, vecs))
    else:
        # the same conventions in one pass over the vectors: xᵀKx and xᵀMx from two small GEMMs
        # (the diagonals of Xᵀ[KX MX]; einsum's column sums of a row-major block are a k-wide
        # inner loop), the sign found on the unnormalised vectors (scale-free), and one division
        # by ±norm: cheaper than two sparse products and normalize_modes
        KX, MX = products
        x_mx = np.diag(dense_matmul(vectors, MX, transpose_a=True))
        vals = np.diag(dense_matmul(vectors, KX, transpose_a=True)) / x_mx
        vecs = np.divide(vectors, np.sqrt(x_mx) * _mode_signs(vectors))
    order = np.argsort(vals)
    if np.any(order != np.arange(order.size)):  # (usually already ascending: no copy)
        vals, vecs = vals[order], vecs[:, order]
    scale = max(abs(vals[-1]), stiffness_scale * 1e-12)
    clusters = find_clusters(vals, cluster_tol, zero_tol=1e-9 * scale)
    m = n_modes
    next_val = float(vals[m]) if vals.size > m else np.nan
    kept = [c for c in (tuple(i for i in c if i < m) for c in clusters) if len(c) > 1]
    cut = any(m - 1 in c and m in c for c in clusters)
    if warn and cut:
        logger.warning("the last requested mode %d is part of a cluster that continues beyond it "
                       "(λ = %.6g, next %.6g): ask for more modes if a response uses it", m, vals[m - 1], vals[m])
    return Modes(eigenvalues=vals[:m], vectors=vecs[:, :m], clusters=kept, shift=shift, next_eigenvalue=next_val,
                 cut_cluster=cut)


def step_tolerance(tol: float, design_change: float | None, tol_per_change: float, max_tol: float) -> float:
    """An iterative eigen solver's tolerance for a design that moved by ``design_change``:
    ``min(max(tol, tol_per_change · Δ), max(max_tol, tol))``, or ``tol`` when Δ is unknown (not
    an optimiser's step) or ``tol_per_change`` is 0. See
    :class:`~fem_eigopt.solvers.subspace.SubspaceModalSolver`, ``tol_per_change``."""
    if design_change is None or tol_per_change == 0.0:
        return tol
    return min(max(tol, tol_per_change * float(design_change)), max(max_tol, tol))


def shifted_matrix(K: sp.csr_matrix, M: sp.csr_matrix, sigma: float, out: np.ndarray | None = None) -> sp.csr_matrix:
    """``K - σM``; when K and M share their index arrays (the assembler's case) so does the result,
    which lets a factorisation see that only values changed. ``out`` (nnz,): an array to hold the
    result's values in that case (the caller's, reused between designs; see
    :func:`fem_eigopt.linalg.kernels.reusable`); ignored when the patterns differ."""
    if K.indptr is M.indptr and K.indices is M.indices:
        A = sp.csr_matrix(K.shape)
        data = np.multiply(M.data, sigma, out=out)  # K.data − σ M.data, the same numbers
        np.subtract(K.data, data, out=data)
        A.indptr, A.indices, A.data = K.indptr, K.indices, data
        A.has_sorted_indices = True
        return A
    return sp.csr_matrix(K - sigma * M)


def _deterministic_vector(n: int) -> np.ndarray:
    """A fixed start vector with components in every direction (seeded, so runs repeat)."""
    return np.random.default_rng(20070307).uniform(0.5, 1.5, n)
