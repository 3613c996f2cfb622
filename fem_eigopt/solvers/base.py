"""The eigen-solver interface: what every modal solver takes, does and reports.

Implemented by :class:`~fem_eigopt.solvers.lanczos.LanczosSolver` (shift-invert ARPACK),
:class:`~fem_eigopt.solvers.subspace.SubspaceModalSolver` (warm-started LOBPCG, kept factorisation)
and :class:`~fem_eigopt.solvers.amg.AMGModalSolver` (LOBPCG with AMG, no factorisation).
Callers (the design evaluator, the modal analysis) use these members directly and never probe a
solver for optional ones.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from fem_eigopt.solvers.modes import Modes

__all__ = ["WORK_COUNTS", "EigenSolver"]

#: keys every solver's :meth:`EigenSolver.work_counts` reports (solvers may add their own)
WORK_COUNTS = ("solves", "factorizations", "iterations", "preconditioner_columns")


@runtime_checkable
class EigenSolver(Protocol):
    """A modal solver: the leading eigenpairs of ``K x = λ M x`` for a sequence of designs.

    A :class:`typing.Protocol` rather than an abstract base class: the solvers share conventions,
    not code (what they share lives in :mod:`fem_eigopt.solvers.modes` and
    :mod:`fem_eigopt.solvers.lobpcg`), so the interface is a contract checked structurally —
    ``isinstance(obj, EigenSolver)`` holds for any object with these members, which lets tests
    and users pass their own solvers without inheriting from ours. It is ``runtime_checkable`` so
    that the tests can assert that every solver class implements it.

    Attributes
    ----------
    n_modes : int
        Eigenpairs returned (one more is computed: ``Modes.next_eigenvalue``).
    backend : str
        Name of what does the linear algebra: the factorisation backend (``"pardiso"``,
        ``"superlu"``, ``"cholmod"``) or ``"amg"``.
    tol : float
        The solver's own convergence tolerance (its meaning is the solver's: ARPACK's relative
        accuracy, an energy-norm or a relative residual; dimensionless).
    last_tol : float
        The tolerance the accurate modes of the last solve converged to: ``tol``, or looser while
        the design moves (``design_change``).
    design_change : float or None
        Set by the optimiser's evaluator before each solve: RMS change of the physical densities
        (dimensionless) since the last evaluated design, which iterative solvers let loosen their
        tolerance (inexact gradients for large steps); None: converge to ``tol``. Solvers that
        always converge fully ignore it.
    mode_weights : ndarray (n_modes + 1,) or None
        Set by the evaluator after each evaluation: the share in [0, 1] of each mode in the
        responses' gradients, for per-mode tolerances of the next solve; None: all modes weigh 1.
        Solvers without per-mode tolerances ignore it.
    warn_incomplete_cluster : bool
        Log a warning when the cluster of the last returned mode continues beyond it.
    factorization : object with ``solve(b)``, or None
        An SPD approximation (or the exact factorisation) of ``(K − σM)⁻¹`` for the last design,
        to precondition eigenvector adjoints; None before the first solve when there is none yet.
    n_solves : int
        Solves so far.
    last_iterations : int
        Iterations of the last solve (0 when the solver does not count them).
    last_timings : dict of str to float
        Seconds spent in parts of the last solve (keys depend on the solver, e.g.
        ``factorization``/``setup`` and ``eigensolve``). For logs only: never for decisions that
        must be reproducible.
    """

    n_modes: int
    backend: str
    tol: float
    design_change: float | None
    mode_weights: np.ndarray | None
    warn_incomplete_cluster: bool
    n_solves: int
    last_iterations: int
    last_timings: dict[str, float]

    @property
    def last_tol(self) -> float: ...

    @property
    def factorization(self): ...

    def solve(self, K: sp.csr_matrix, M: sp.csr_matrix) -> Modes:
        """Eigenpairs of ``K x = λ M x``.

        Parameters
        ----------
        K, M : csr_matrix (n, n)
            Stiffness (symmetric positive semi-definite, N/m) and mass (symmetric positive
            definite, kg) on the free dofs, one sparsity pattern for the whole sequence.

        Returns
        -------
        Modes
            ``n_modes`` eigenvalues (rad²/s², ascending), M-orthonormal sign-fixed vectors (n,
            n_modes), clusters of repeated eigenvalues and the next eigenvalue.
        """
        ...

    def reset(self) -> None:
        """Forget what is carried between designs (vectors): the next solve starts afresh."""
        ...

    def release(self) -> None:
        """Free the memory kept between solves (factorisations, hierarchies, vectors)."""
        ...

    def work_counts(self) -> dict[str, int]:
        """Work done over all solves, machine-independent: at least the keys of
        :data:`WORK_COUNTS` (``solves``, ``factorizations``, ``iterations`` — LOBPCG iterations,
        0 for Lanczos — and ``preconditioner_columns``)."""
        ...
