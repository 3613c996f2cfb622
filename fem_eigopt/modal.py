"""Modal analysis: the leading eigenpairs of K x = λ M x on the free dofs.

Shift-invert Lanczos (ARPACK through SciPy's ``eigsh``) with the factorisation of ``K - σM`` from
:mod:`fem_eigopt.linalg`, kept between designs so the symbolic analysis is reused. The default
shift is slightly *negative*, so ``K - σM`` is positive definite even when the structure is free or
partly free, and the modes nearest σ are exactly the lowest ones, rigid-body modes included (unlike
scikit-fem's ``solver_eigen_scipy_sym`` default σ = 10, which loses modes below it).

Eigenvectors are M-normalised (xᵀMx = 1) and signed so that their largest-magnitude entry is
positive; the Lanczos start vector is deterministic (or built from previous modes for a warm
start), so runs repeat exactly. Clusters of (nearly) repeated eigenvalues are reported.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .errors import InputError
from .linalg import Factorization, dense_matmul, limited_threads, make_factorization, sparse_matmul

logger = logging.getLogger(__name__)

__all__ = ["Modes", "ModalSolver", "find_clusters", "make_modal_solver", "modes_from_vectors", "normalize_modes",
           "shifted_matrix"]


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
    """

    eigenvalues: np.ndarray
    vectors: np.ndarray
    clusters: list[tuple[int, ...]] = field(default_factory=list)
    shift: float = 0.0
    next_eigenvalue: float = np.nan

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
    # array run k-wide inner loops (2.6 ms at 40 400 x 5, against ~0.6 ms this way)
    mag = np.abs(np.ascontiguousarray(X.T))
    idx = np.array([np.argmax(row >= (1.0 - 1e-6) * row.max()) for row in mag], dtype=np.intp)
    signs = np.sign(X[idx, np.arange(X.shape[1])])
    signs[signs == 0] = 1.0
    return signs


class ModalSolver:
    """Leading eigenpairs with a factorisation kept between calls.

    Parameters
    ----------
    n_modes : int
        Number of eigenpairs returned.
    shift : "auto" or float
        σ. ``"auto"``: ``-1e-8 · mean(diag K) / mean(diag M)``, fixed at the first call (negative,
        so K - σM stays positive definite and the lowest modes, rigid ones included, are found).
    backend : str
        Factorisation backend (see :mod:`fem_eigopt.linalg`).
    cluster_tol : float
        Relative tolerance for repeated eigenvalues.
    tol : float
        ARPACK relative accuracy (0 = machine precision).
    lanczos_threads : int or None
        BLAS/MKL threads during the Lanczos iteration (its solves and small dense algebra);
        1 by default, which measured several times faster on a busy 2-core machine and no slower
        on a quiet one. The factorisation itself runs with the library's default threads.
        ``None`` leaves the thread settings alone.

    Attributes
    ----------
    last_timings : dict
        Seconds spent in the last solve: ``factorization`` and ``eigensolve``.
    """

    AUTO_SHIFT_FACTOR = 1e-8

    def __init__(self, n_modes: int = 6, shift="auto", backend: str = "auto", cluster_tol: float = 1e-6,
                 tol: float = 0.0, lanczos_threads: int | None = 1) -> None:
        if n_modes < 1:
            raise InputError(f"n_modes = {n_modes!r}; allowed: an integer >= 1")
        self.n_modes = int(n_modes)
        self.shift_setting = shift
        self.cluster_tol = cluster_tol
        self.tol = tol
        self.factorization: Factorization = make_factorization(backend)
        self.backend = self.factorization.name
        self.shift: float | None = None if shift == "auto" else float(shift)
        self.n_solves = 0
        self.last_iterations = 0
        self.lanczos_threads = lanczos_threads
        self.last_timings: dict[str, float] = {}
        #: warn when the last requested mode's cluster continues beyond it (off for internal use)
        self.warn_incomplete_cluster = True

    def _auto_shift(self, K: sp.csr_matrix, M: sp.csr_matrix) -> float:
        return -self.AUTO_SHIFT_FACTOR * float(np.mean(K.diagonal())) / float(np.mean(M.diagonal()))

    def solve(self, K: sp.csr_matrix, M: sp.csr_matrix, warm_start: np.ndarray | None = None) -> Modes:
        """Eigenpairs of ``K x = λ M x``.

        Parameters
        ----------
        K, M : csr_matrix (n, n)
            Symmetric stiffness (positive semi-definite) and mass (positive definite), same pattern.
        warm_start : ndarray (n, j), optional
            Previous mode shapes; their sum starts the Lanczos iteration.
        """
        n = K.shape[0]
        k = min(self.n_modes + 1, n - 1)  # one extra to see whether the last cluster is complete
        if self.n_modes >= n:
            raise InputError(f"n_modes = {self.n_modes}; allowed: fewer than the {n} free dofs")
        if self.shift is None:
            self.shift = self._auto_shift(K, M)
        sigma = self.shift
        A = shifted_matrix(K, M, sigma)
        t0 = time.perf_counter()
        self.factorization.factor(A, positive_definite=sigma < 0)
        t1 = time.perf_counter()
        op = spla.LinearOperator((n, n), matvec=self.factorization.solve, matmat=self.factorization.solve,
                                 dtype=float)
        if warm_start is not None and warm_start.shape[0] == n:
            v0 = np.asarray(warm_start, dtype=float).sum(axis=1) if warm_start.ndim == 2 else warm_start
            v0 = v0 + 1e-3 * np.linalg.norm(v0) / np.sqrt(n) * _deterministic_vector(n)
        else:
            v0 = _deterministic_vector(n)
        ncv = min(n, max(2 * k + 1, 20))
        with limited_threads(self.lanczos_threads):
            vals, vecs = spla.eigsh(K, k=k, M=M, sigma=sigma, which="LM", OPinv=op, v0=v0, ncv=ncv, tol=self.tol)
        self.last_timings = {"factorization": t1 - t0, "eigensolve": time.perf_counter() - t1}
        self.n_solves += 1
        # Rayleigh quotients xᵀKx (xᵀMx = 1) instead of ARPACK's Ritz values: with the tiny auto
        # shift of a free body, K - σM is ill-conditioned (cond ~ 1e8) and the Ritz values of the
        # elastic modes carry errors ~1e-10 relative; the quotient's error is quadratic in the
        # eigenvector's, ~1e-15 here (checked against dense eigh in tests/test_theory.py).
        return modes_from_vectors(vecs, K, M, self.n_modes, sigma, self.cluster_tol,
                                  stiffness_scale=abs(sigma) / self.AUTO_SHIFT_FACTOR,
                                  warn=self.warn_incomplete_cluster)


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
        # by ±norm: 5.3 -> 3.5 ms at 40 400 x 5 (column slices of LOBPCG's arrays) against two
        # sparse products and normalize_modes
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
    if warn and any(m - 1 in c and m in c for c in clusters):
        logger.warning("the last requested mode %d is part of a cluster that continues beyond it "
                       "(λ = %.6g, next %.6g): ask for more modes", m, vals[m - 1], vals[m])
    return Modes(eigenvalues=vals[:m], vectors=vecs[:, :m], clusters=kept, shift=shift, next_eigenvalue=next_val)


def step_tolerance(tol: float, design_change: float | None, tol_per_change: float, max_tol: float) -> float:
    """An iterative eigen solver's tolerance for a design that moved by ``design_change``:
    ``min(max(tol, tol_per_change · Δ), max(max_tol, tol))``, or ``tol`` when Δ is unknown (not
    an optimiser's step) or ``tol_per_change`` is 0. See
    :class:`~fem_eigopt.subspace.SubspaceModalSolver`, ``tol_per_change``."""
    if design_change is None or tol_per_change == 0.0:
        return tol
    return min(max(tol, tol_per_change * float(design_change)), max(max_tol, tol))


#: free dofs from which ``eigensolver="auto"`` optimises 2D models with the warm-started subspace
#: solver (below: ARPACK with a fresh factorisation per design; see :func:`make_modal_solver`)
SUBSPACE_MIN_DOFS_2D = 10_000
#: free dofs of a 3D model from which ``eigensolver="auto"`` asks PARDISO's analysis how much
#: memory the factorisation needs (below: under 1 GB — 0.6 GB at 89 000 hex8 dofs — so not asked)
FACTOR_MEMORY_CHECK_DOFS_3D = 100_000
#: share of the available memory beyond which ``"auto"`` takes the AMG solver, which needs no
#: factorisation, instead of the subspace solver (the rest is for the model, the eigen solver's
#: blocks and the sensitivities)
FACTOR_MEMORY_SHARE = 0.5


def _factors_too_big(model, backend: str) -> bool:
    """Whether factorising ``model``'s K (double precision, the subspace solver's cold start)
    would take more than FACTOR_MEMORY_SHARE of the available memory (PARDISO's own estimate from
    its analysis; False when PARDISO or the available memory is unknown)."""
    from .linalg import PardisoFactorization, available_memory, default_backend

    available = available_memory()
    if available is None or (backend if backend != "auto" else default_backend()) != "pardiso":
        return False
    factorization = PardisoFactorization()
    try:
        needed = factorization.memory_estimate(model.stiffness())
    except (np.linalg.LinAlgError, MemoryError) as exc:  # PARDISO cannot even analyse it
        logger.info("eigensolver auto: PARDISO's analysis of K (%d dofs) failed (%s): "
                    "AMG-preconditioned LOBPCG (no factorisation)", model.n_free, exc)
        return True
    finally:
        factorization.release()
    too_big = needed > FACTOR_MEMORY_SHARE * available
    logger.info("eigensolver auto: factorising K (%d dofs) needs ~%.1f GB of %.1f GB available: %s",
                model.n_free, needed / 1e9, available / 1e9,
                "AMG-preconditioned LOBPCG (no factorisation)" if too_big else "warm-started subspace solver")
    return too_big


def make_modal_solver(n_modes: int, analysis, backend: str | None = None, model=None,
                      repeated: bool = False, accurate_modes: int | None = None):
    """The eigen solver an :class:`~fem_eigopt.problem.Analysis` asks for.

    Parameters
    ----------
    n_modes : int
        Eigenpairs returned.
    analysis : Analysis
        Its ``eigensolver``, ``shift``, ``backend``, ``cluster_tol`` and ``eigen_tol`` are used.
    backend : str, optional
        Overrides ``analysis.backend``.
    model : Model, optional
        The discretisation (the AMG solver builds its near-null space, the rigid-body modes, from it).
    repeated : bool
        True when the solver will see a sequence of slowly changing designs (an optimisation):
        ``"auto"`` then picks the warm-started solver for 3D models and for 2D models with at
        least ``SUBSPACE_MIN_DOFS_2D`` (10 000) free dofs. Whether repeated or not, ``"auto"``
        picks the AMG solver for a 3D model of at least ``FACTOR_MEMORY_CHECK_DOFS_3D`` free dofs
        whose factorisation would need more than ``FACTOR_MEMORY_SHARE`` of the available memory
        (PARDISO's estimate from its analysis of K).
    accurate_modes : int, optional
        Leading eigenpairs that must be accurate to the solver's full tolerance because they are
        differentiated (iterative solvers may stop the others earlier). Whether the last of them
        is part of a cluster must be decided on accurate eigenvalues too: the subspace solver
        converges its cluster partners (Ritz values within 1 %) tightly, the AMG solver the next
        mode whatever its distance.
    """
    kind = analysis.eigensolver
    if kind == "auto":
        # Measured (benchmarks/bench_topology.py, bench_pymoto.py, 2 cores): in 3D the
        # warm-started solver is ~3x faster per design. In 2D it is 1.4x faster per MMA
        # iteration at 10 000 free dofs and 1.8x at 20 000 and 40 000 (pyMOTO's problem), but on
        # the 6 700-dof Du & Olhoff beam (continuation restarts, a double eigenvalue) shift-invert
        # Lanczos with a fresh factorisation per design was 1.5x faster — and the beams'
        # published-optimum results were validated with it.
        dim = model.dim if model is not None else 2
        n_free = model.n_free if model is not None else 0
        kind = "subspace" if repeated and (dim == 3 or n_free >= SUBSPACE_MIN_DOFS_2D) else "arpack"
        # Where a factorisation fits it is faster (3D, 27 720 to 206 640 dofs: 1.6-3.3x per
        # iteration, benchmarks/bench_scale.py); where it does not, the AMG solver needs none.
        if dim == 3 and n_free >= FACTOR_MEMORY_CHECK_DOFS_3D and _factors_too_big(
                model, backend or analysis.backend):
            kind = "amg"
    common = dict(cluster_tol=analysis.cluster_tol)
    tol_per_change = getattr(analysis, "eigen_tol_per_change", 1e-2)  # the iterative solvers only
    if getattr(analysis, "eigen_tol", None) is not None:
        common["tol"] = float(analysis.eigen_tol)
    if kind == "amg":
        from .amg import AMGModalSolver  # imported on demand: pyamg is only needed here

        return AMGModalSolver(n_modes, model=model, **common,
                              accurate_modes=None if accurate_modes is None else accurate_modes + 1,
                              tol_per_change=tol_per_change)
    if kind == "subspace":
        from .linalg import default_backend
        from .subspace import SubspaceModalSolver

        backend = backend or analysis.backend
        precision = getattr(analysis, "preconditioner_precision", "auto")
        if precision == "auto":
            # Single-precision factors: 2x faster factorisations and solves in 3D, 1.3-1.6x in 2D,
            # and the same LOBPCG iteration counts (measured on the pyMOTO comparison problems:
            # iterations 1.7x faster in 3D, 1.2x in 2D, objectives equal to 1e-9).
            resolved = default_backend() if backend == "auto" else backend
            precision = "single" if resolved == "pardiso" else "double"
        return SubspaceModalSolver(n_modes, shift=analysis.shift, backend=backend,
                                   accurate_modes=accurate_modes, precision=precision,
                                   tol_per_change=tol_per_change, **common)
    return ModalSolver(n_modes, shift=analysis.shift, backend=backend or analysis.backend, **common)


def shifted_matrix(K: sp.csr_matrix, M: sp.csr_matrix, sigma: float, out: np.ndarray | None = None) -> sp.csr_matrix:
    """``K - σM``; when K and M share their index arrays (the assembler's case) so does the result,
    which lets a factorisation see that only values changed. ``out`` (nnz,): an array to hold the
    result's values in that case (the caller's, reused between designs; see
    :func:`fem_eigopt.linalg.reusable`); ignored when the patterns differ."""
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
