"""Shift-invert Lanczos (ARPACK through SciPy's ``eigsh``) with a factorisation kept between designs.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from fem_eigopt.errors import InputError
from fem_eigopt.linalg.factorization import Factorization, make_factorization
from fem_eigopt.linalg.kernels import limited_threads
from fem_eigopt.solvers.modes import (
    Modes,
    _deterministic_vector,
    modes_from_vectors,
    shifted_matrix,
)

logger = logging.getLogger(__name__)

__all__ = ["LanczosSolver", "ModalSolver"]


class LanczosSolver:
    """Leading eigenpairs by shift-invert Lanczos with a factorisation kept between calls.

    Implements :class:`~fem_eigopt.solvers.base.EigenSolver`. Every solve factorises ``K − σM``
    afresh (the symbolic analysis is kept) and converges to ARPACK's accuracy: ``design_change``
    and ``mode_weights`` are accepted and ignored, ``last_tol`` is always ``tol``.

    Parameters
    ----------
    n_modes : int
        Number of eigenpairs returned.
    shift : "auto" or float
        σ. ``"auto"``: ``-1e-8 · mean(diag K) / mean(diag M)``, fixed at the first call (negative,
        so K - σM stays positive definite and the lowest modes, rigid ones included, are found).
    backend : str
        Factorisation backend (see :mod:`fem_eigopt.linalg.kernels`).
    cluster_tol : float
        Relative tolerance for repeated eigenvalues.
    tol : float
        ARPACK relative accuracy (0 = machine precision).
    lanczos_threads : int or None
        BLAS/MKL threads during the Lanczos iteration (its solves and small dense algebra);
        1 by default: the solves and the small dense algebra gain little from more threads, and
        on a machine shared with other processes extra threads only wait for each other. The factorisation itself runs with the library's default threads.
        ``None`` leaves the thread settings alone.

    Attributes
    ----------
    backend : str
        The factorisation backend's name.
    last_timings : dict
        Seconds spent in the last solve: ``factorization`` and ``eigensolve``.
    last_iterations : int
        Always 0 (ARPACK's iterations are not counted).
    n_solves : int
        Solves so far (each one factorisation).
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
        #: accepted for the interface (the step-following tolerance of iterative solvers); unused
        self.design_change: float | None = None
        #: accepted for the interface (per-mode tolerances of iterative solvers); unused
        self.mode_weights: np.ndarray | None = None

    @property
    def last_tol(self) -> float:
        """The tolerance of the last solve: always ``tol``."""
        return self.tol

    def reset(self) -> None:
        """Nothing to forget: no vectors are carried between solves."""

    def release(self) -> None:
        """Free the factorisation (the next solve factorises again, with a new analysis)."""
        self.factorization.release()

    def work_counts(self) -> dict[str, int]:
        """Work done over all solves (see :meth:`~fem_eigopt.solvers.base.EigenSolver.work_counts`)."""
        return {"solves": self.n_solves, "factorizations": self.n_solves, "iterations": 0, "preconditioner_columns": 0}

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
        modes = modes_from_vectors(vecs, K, M, self.n_modes, sigma, self.cluster_tol,
                                   stiffness_scale=abs(sigma) / self.AUTO_SHIFT_FACTOR,
                                   warn=self.warn_incomplete_cluster)
        self.warn_incomplete_cluster &= not modes.cut_cluster  # once per solver, not per design
        return modes


#: the public name of :class:`LanczosSolver` before the eigen-solver interface (``fe.ModalSolver``)
ModalSolver = LanczosSolver
