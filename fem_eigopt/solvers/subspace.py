"""Warm-started block eigensolver for a sequence of slowly changing designs.

During an optimisation consecutive designs differ little, and so do their modes. Instead of a
fresh shift-invert Lanczos run per design (one numeric factorisation plus ~2k–5k single solves,
:class:`~fem_eigopt.solvers.lanczos.LanczosSolver`), :class:`SubspaceModalSolver` runs LOBPCG (Knyazev 2001,
"Toward the optimal preconditioned eigensolver", SIAM J. Sci. Comput. 23:517–541) on

    K x = λ M x,

started from the previous design's Ritz vectors and preconditioned by ``T = (K₀ − σM₀)⁻¹``, the
factorisation of the shifted matrix of an *earlier* design. When T belongs to the current design,
the LOBPCG search space ``span{X, T R}`` (R = KX − MXΛ) equals ``span{X, T M X}``: block
shift-invert inverse iteration, accelerated by the LOBPCG direction. When T is stale it is still an
excellent preconditioner while the design changes little, and a design step costs a few block
solves with the kept factors, a few sparse products and a small dense Rayleigh–Ritz problem; no
factorisation. T is refreshed (one numeric factorisation on the fixed pattern, the symbolic
analysis kept) when the iterations a stale T adds cost more than a factorisation (estimated from
the factorisation's operation counts, so that every run decides alike), or in the middle of a solve
that stalls; a solve that fails even on fresh factors
restarts cold.

The block holds ``k + 1`` wanted vectors (the modes asked for and one more to see whether the last
cluster is complete, as in :class:`~fem_eigopt.solvers.lanczos.LanczosSolver`) plus ``guard`` vectors that
speed convergence of the wanted ones (the rate of mode i is governed by λ_i / λ_{block+1}).
The first design is solved by shift-invert Lanczos (ARPACK) for the whole block.

Convergence: the energy-norm residual ``√(rᵀ T r / (λ − σ))``, r = K x − λ M x, about the relative
error of the eigenvector in the energy norm (exact for a fresh T), of every wanted vector below
``tol`` (the accurate ones and their cluster partners, see ``accurate_modes``) or ``loose_tol`` (the
others); eigenvalues, being Rayleigh quotients, are then accurate to about tol² (relative).
Clusters of repeated eigenvalues are invariant subspaces of the block: any basis of them is a
valid result, and the design evaluator rotates it (see :mod:`fem_eigopt.optimize.evaluator`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from fem_eigopt.errors import InputError
from fem_eigopt.linalg.factorization import Factorization, make_factorization
from fem_eigopt.linalg.kernels import limited_threads, reusable
from fem_eigopt.solvers.lanczos import LanczosSolver
from fem_eigopt.solvers.lobpcg import (
    LobpcgCounts,
    LobpcgWork,
    LobpcgFailure,
    Workspace,
    energy_residuals,
    lobpcg,
)
from fem_eigopt.solvers.modes import (
    Modes,
    modes_from_vectors,
    shifted_matrix,
    step_tolerance,
)

logger = logging.getLogger(__name__)

__all__ = ["SubspaceModalSolver"]


class SubspaceModalSolver(LobpcgWork):
    """Leading eigenpairs by warm-started LOBPCG with a kept (possibly stale) factorisation.

    Parameters
    ----------
    n_modes : int
        Eigenpairs returned.
    shift : "auto" or float
        σ of the preconditioner ``(K − σM)⁻¹`` and of the cold-start Lanczos run; ``"auto"`` as in
        :class:`~fem_eigopt.solvers.lanczos.LanczosSolver` (slightly negative: K − σM positive definite).
    backend : str
        Factorisation backend (:mod:`fem_eigopt.linalg.kernels`).
    cluster_tol : float
        Relative tolerance for repeated eigenvalues.
    tol : float
        Energy-norm residual (module docstring) at which an accurate eigenpair counts as converged:
        about the relative error of its eigenvector and of the sensitivities computed from it.
        1e-6: measured on a 200x100 pyMOTO design against ARPACK, gradients were off by 6e-8, 6e-7
        and 9e-6 (relative) at 1e-7, 1e-6 and 1e-5, eigenvalues by 1e-12 at all three; 1e-6
        instead of 1e-7 needs ~15 % fewer LOBPCG iterations (2D: 182 -> 158 Rayleigh-Ritz steps in
        30 MMA iterations; 3D 40x20x20: 38 -> 33 factorisations) for the same objective history
        to the printed digits.
    guard : int
        Extra block vectors beyond the ``n_modes + 1`` wanted ones. 1: measured fastest on the
        pyMOTO comparison problems, 2D and 3D (docs/performance.md) — the extra convergence speed
        of a larger block does not repay its solves and Rayleigh-Ritz work.
    factorization_worth : None, "measured" or float
        LOBPCG iterations one refactorisation is worth in the refresh rule of
        :meth:`_plan_refresh`. None (default): estimated from counts that are the same in every
        run — the factorisation's floating-point operations F and the non-zeros of its factors L
        as the backend's analysis reports them (PARDISO), and the preconditioner columns c per
        LOBPCG iteration of the last solve: worth = F / (κ · L · c), κ =
        :attr:`FLOPS_PER_SOLVED_ENTRY`, at least 1. A factorisation runs at a high flop rate
        (BLAS 3), an iteration streams the factors once per column and does dense work of about
        the same size, so κ is a ratio of machine rates; fitted on the pyMOTO benchmark problems
        of ``benchmarks/bench_pymoto.py`` (single-precision factors, 2 cores), where the measured
        ratio t_factorisation / t_iteration was 1.1, 1.1, 1.4 (2D 100x50, 200x100, 400x200) and
        3.3, 5.4, 5.8 (3D 20x10x10, 30x15x15, 40x20x20) and the estimate gives 1, 1, 1.6 and 3.0,
        5.8, 8.4. The refresh decision is not sensitive to a factor of 2 here, and two runs of the
        same problem now refresh at the same designs. Backends that report no counts (SuperLU,
        CHOLMOD) fall back to ``"measured"``: t_factorisation / t_iteration timed in every solve,
        which lets the machine's load decide when to refactorise, so two runs may differ in the
        last bits and in their counted work. A number pins the worth (tests comparing counts).
    tol_per_change : float
        Inexact gradients while the design moves: when ``design_change`` (Δ, the RMS change of
        the physical densities since the last evaluated design, set by the optimiser's evaluator)
        is known, the accurate modes converge to ``min(max(tol, tol_per_change · Δ), max_tol)``
        instead of ``tol``. An MMA step taken with a gradient of relative error ε differs from
        the exact step by O(ε) of its size, so ε ≤ η Δ makes that difference second order in the
        step — the order of MMA's own approximation error — and the tolerance tightens back to
        ``tol`` as the design settles (a trust-region method converges with gradient errors
        below a fixed fraction of the gradient, Carter 1991, SIAM J. Numer. Anal. 28:251–265;
        MMA's move limit plays the trust region's part). Eigenvalues, Rayleigh quotients, stay
        accurate to about the tolerance squared (1e-8 at ``max_tol``). Measured on the 2D 200x100
        pyMOTO problem (30 MMA iterations, Δ = 0.014-0.075, so the tolerance sat at ``max_tol``):
        16.9 instead of 20.6 preconditioner columns and 3.4 instead of 4.9 Rayleigh-Ritz steps per
        design, final objective 12.6517 against 12.6530 (lower is better); by iteration 100 Δ had
        fallen to ~1e-3 and the tolerance to ~1e-5. 0 switches this off.
    max_tol : float
        The loosest tolerance ``tol_per_change`` may set (above ``tol``): 1e-3 saved only 5 %
        more columns at 200x100 than 1e-4.
    refresh_after : int
        Refactorise before the next solve when this one needed more LOBPCG iterations (an upper
        limit: usually the cost rule of :meth:`_plan_refresh` decides earlier).
    max_iterations : int
        Refactorise in the middle of a solve after this many iterations without convergence (and
        give up with an error after as many again on the fresh factorisation).
    threads : int or None
        BLAS threads during the iteration (1: the dense algebra is small, see
        :func:`fem_eigopt.linalg.kernels.limited_threads`).
    accurate_modes : int, optional
        Only the first ``accurate_modes`` eigenpairs (those the responses differentiate) and the
        cluster partners of the last of them must reach ``tol``; the others, reported but not
        differentiated, stop at ``loose_tol`` (their eigenvalues, Rayleigh quotients, are then still
        accurate to about loose_tol², 1e-6 relative). When mode ``n_modes`` itself is not
        accurate (the design evaluator asks for one mode beyond the highest it differentiates, to
        see that mode's cluster), the extra vector beyond it is refined only like a guard vector
        and ``next_eigenvalue`` is its Ritz value (an upper bound of λ_{n_modes+1}, to about 1e-2
        relative): 2D 200x100 pyMOTO problem, 30 MMA iterations, 659 instead of 722 preconditioner
        columns, the same objective history. Default: all ``n_modes + 1``. A vector whose
        Ritz value lies within ``CLUSTER_WINDOW`` (1 %, relative; 10 ``cluster_tol`` if that is
        larger) of the last accurate one is a cluster partner: whether the last differentiated
        cluster is complete is then decided on accurate eigenvalues, and a pair further apart
        cannot be one cluster. (Converging the next mode tightly whatever its distance, as
        before, cost 25 % more preconditioner solves per design on the pyMOTO comparison
        problems, 2D and 3D, for the same objective history.)
    loose_tol : float
        Residual tolerance of the modes beyond ``accurate_modes``.
    guard_tol : float
        Residual below which the guard vectors get no more preconditioned directions. A guard
        vector only has to roughly span the next mode, so that the wanted ones converge at the
        rate of a larger block; refining it to ``loose_tol`` as well cost a solve per LOBPCG
        iteration (2D 200x100: 9 % more preconditioner columns; 3D no difference measured).
    precision : "double" or "single"
        Precision of the kept factorisation T. ``"single"`` (PARDISO only) halves the memory traffic
        of the factorisation and of every preconditioner solve (faster factorisations, solves and
        MMA iterations, docs/performance.md) with the same LOBPCG iteration counts and the same
        objective history to the printed digits (LOBPCG needs only a good preconditioner, not an exact one; convergence is
        judged on the double-precision residual). The cold start (shift-invert Lanczos, which
        needs exact solves) keeps its own double-precision factorisation, freed once it is done.
        Should LOBPCG fail even on fresh single-precision factors, or PARDISO refuse them, the solver switches to double for the
        rest of the run.

    Attributes
    ----------
    factorization : Factorization
        The kept factorisation of ``K₀ − σM₀`` (also used to precondition eigenvector adjoints).
    last_timings : dict
        Seconds of the last solve: ``factorization``, ``eigensolve``.
    last_iterations : int
        LOBPCG iterations of the last solve (0 for a Lanczos cold start).
    last_refresh_at : int or None
        The iteration of the last solve at which stale factors were refreshed midway.
    n_factorizations, n_solves, n_cold_starts : int
    n_lobpcg_iterations, n_preconditioner_columns, n_rayleigh_ritz : int
        Work counted over all solves (machine-independent, unlike timings): LOBPCG iterations,
        columns solved with the kept factorisation, Rayleigh–Ritz steps.
    """

    #: relative eigenvalue distance within which a vector next to the accurate modes is treated
    #: as their cluster partner (and converged as tightly)
    CLUSTER_WINDOW = 1e-2
    #: κ of the estimated ``factorization_worth`` F / (κ · L · c): factorisation flops that take
    #: as long as one preconditioner column's share of a LOBPCG iteration, per factor non-zero
    #: (fitted from 17.5-46 on the six benchmark sizes quoted there)
    FLOPS_PER_SOLVED_ENTRY = 32.0

    def __init__(self, n_modes: int = 6, shift="auto", backend: str = "auto", cluster_tol: float = 1e-6,
                 tol: float = 1e-6, guard: int = 1, refresh_after: int = 12, max_iterations: int = 16,
                 threads: int | None = 1, accurate_modes: int | None = None, loose_tol: float = 1e-3,
                 precision: str = "double", guard_tol: float = 1e-1,
                 factorization_worth: float | str | None = None, tol_per_change: float = 1e-2,
                 max_tol: float = 1e-4) -> None:
        if n_modes < 1:
            raise InputError(f"n_modes = {n_modes!r}; allowed: an integer >= 1")
        self.n_modes = int(n_modes)
        self.cluster_tol = cluster_tol
        self.tol = float(tol)
        self.guard = int(guard)
        self.refresh_after = int(refresh_after)
        self.max_iterations = int(max_iterations)
        self.threads = threads
        self.accurate_modes = accurate_modes
        #: log a warning when the last returned mode's cluster continues beyond it
        self.warn_incomplete_cluster = True
        self.loose_tol = float(loose_tol)
        self.guard_tol = float(guard_tol)
        if factorization_worth not in (None, "measured") and not (
                isinstance(factorization_worth, (int, float)) and factorization_worth >= 1.0):
            raise ValueError(f"factorization_worth={factorization_worth!r}: must be >= 1, None (estimated "
                             "from the factorisation's counts) or 'measured'")
        self.factorization_worth = factorization_worth
        if not tol_per_change >= 0.0:
            raise ValueError(f"tol_per_change={tol_per_change!r}: must be >= 0 (0: always tol)")
        self.tol_per_change = float(tol_per_change)
        self.max_tol = float(max_tol)
        #: RMS change of the physical densities since the design the last gradients were taken
        #: at, set by an optimiser's evaluator before each solve (see ``tol_per_change``); None:
        #: not in an optimisation step, converge to ``tol``
        self.design_change: float | None = None
        #: the residual tolerance of the accurate modes in the last solve (``tol`` or looser)
        self.last_tol = self.tol
        #: weights w_i in [0, 1] of the accurate modes in the responses' gradients, set by the
        #: design evaluator after each evaluation (see :meth:`_accurate_tolerances`); None: all 1
        self.mode_weights: np.ndarray | None = None
        self._cold = LanczosSolver(1, shift=shift, backend=backend, cluster_tol=cluster_tol)
        self._cold.warn_incomplete_cluster = False  # its block includes guard vectors
        self.factorization: Factorization = self._cold.factorization
        self.backend = self._cold.backend
        self.precision = precision
        if precision != "double":
            self.factorization = make_factorization(self.backend, precision)
        self.factorization.tune_block_solves()
        self.shift: float | None = self._cold.shift
        self._X: np.ndarray | None = None
        self._shifted: np.ndarray | None = None  # values of K − σM, refilled per factorisation
        self._workspace = Workspace()  # LOBPCG's kept arrays
        self._t_refresh = 0.0  # seconds refactorising midway in the current solve
        self._refresh_next = False
        self.last_timings: dict[str, float] = {}
        self.last_iterations = 0
        #: LOBPCG iteration of the last solve at which stale factors were refreshed (None: not)
        self.last_refresh_at: int | None = None
        self.n_factorizations = 0
        self.n_solves = 0
        self.n_cold_starts = 0
        #: LOBPCG work over all solves
        self.counts = LobpcgCounts()
        self._baseline_its: int | None = None
        self._t_factor = 0.0
        self._t_iteration: float | None = None
        self._columns_per_iteration: float | None = None  # preconditioner columns, last solve
        self._probe_wait = 1  # designs between attempts with stale factors after they failed
        self._designs_to_probe = 0

    def reset(self) -> None:
        """Forget the kept vectors: the next solve starts cold (after a jump in the design)."""
        self._X = None

    def release(self) -> None:
        """Free the factorisations and the kept vectors (the next solve starts cold)."""
        self.factorization.release()
        self._cold.factorization.release()
        self._workspace.release()
        self._X = None

    @property
    def n_rayleigh_ritz(self) -> int:
        """Rayleigh–Ritz steps over all solves."""
        return self.counts.rayleigh_ritz

    def work_counts(self) -> dict[str, int]:
        """Work done over all solves (see :meth:`~fem_eigopt.solvers.base.EigenSolver.work_counts`)."""
        return {"solves": self.n_solves, "factorizations": self.n_factorizations,
                "iterations": self.n_lobpcg_iterations, "preconditioner_columns": self.n_preconditioner_columns,
                "rayleigh_ritz": self.n_rayleigh_ritz, "cold_starts": self.n_cold_starts}

    def _plan_refresh(self, its: int, seconds: float, fresh: bool, stale_failed: bool = False,
                      columns: int = 0) -> None:
        """Refactorise before the next solve when the stale factors cost more than a new one.

        The iterations a fresh factorisation needs are remembered (``baseline``); once a solve
        needs more than baseline + what a factorisation is worth in iterations, the extra ones
        cost more than refactorising would (in 2D a factorisation is worth about one iteration, in 3D
        three to eight; see ``factorization_worth``).

        A stale solve that had to refactorise midway (``stale_failed``) shows that the factors go
        stale within one design step (2D SIMP designs with a move limit of 0.1: the stale solve
        needed 16–19 iterations against 4–5 fresh, every other design). Then every following
        solve refactorises first, and the stale factors are tried again only after 2, 4, 8, 16
        designs (a probe whose failure doubles the wait).

        ``seconds`` and ``columns``: time and preconditioner columns of the solve's ``its``
        iterations (see ``factorization_worth``).
        """
        if its == 0:
            return
        self._t_iteration = seconds / its
        self._columns_per_iteration = max(columns / its, 1.0)
        if fresh or self._baseline_its is None:
            self._baseline_its = its
        self._refresh_next = its > min(self._baseline_its + self._allowance(), self.refresh_after)
        if stale_failed:
            self._probe_wait = min(2 * self._probe_wait, 16)
            self._designs_to_probe = self._probe_wait
        elif not fresh and not self._refresh_next:
            self._probe_wait = 1  # the stale factors paid: keep using them
        if self._designs_to_probe > 0:
            self._designs_to_probe -= 1
            self._refresh_next = True

    def _allowance(self) -> float:
        """LOBPCG iterations one factorisation is worth (at least 1; see ``factorization_worth``)."""
        if self.factorization_worth not in (None, "measured"):
            return float(self.factorization_worth)
        work = self.factorization.work_estimate() if self.factorization_worth is None else None
        if work is not None and self._columns_per_iteration is not None:
            flops, entries = work
            return max(flops / (self.FLOPS_PER_SOLVED_ENTRY * max(entries, 1.0) * self._columns_per_iteration), 1.0)
        return max(self._t_factor / max(self._t_iteration, 1e-12), 1.0)

    def _stale_limit(self) -> int:
        """LOBPCG iterations a stale factorisation may take before it is refreshed midway."""
        if self._baseline_its is None or self._t_iteration is None:
            return self.max_iterations
        return int(min(self.max_iterations, np.ceil(self._baseline_its + self._allowance()) + 1))

    def _use_double(self, why: str) -> None:
        """Switch the kept factorisation to the cold start's double-precision one for good."""
        logger.info("subspace solver: %s; preconditioning in double precision from now on", why)
        self.factorization.release()
        self.factorization = self._cold.factorization
        self.factorization.tune_block_solves()
        self.precision = "double"

    def _factor(self, K: sp.csr_matrix, M: sp.csr_matrix) -> float:
        t0 = time.perf_counter()
        self._shifted = reusable(self._shifted, K.data.shape)  # only the factorisation reads it
        A = shifted_matrix(K, M, self.shift, out=self._shifted)
        try:
            self.factorization.factor(A, positive_definite=self.shift < 0)
        except np.linalg.LinAlgError as exc:
            if self.precision == "double":
                raise
            self._use_double(f"the single-precision factorisation failed ({exc})")
            self.factorization.factor(A, positive_definite=self.shift < 0)
        self.n_factorizations += 1
        self._t_factor = time.perf_counter() - t0
        return self._t_factor

    def solve(self, K: sp.csr_matrix, M: sp.csr_matrix) -> Modes:
        """Eigenpairs of ``K x = λ M x`` (same contract as :meth:`LanczosSolver.solve`)."""
        n = K.shape[0]
        m = self.n_modes
        wanted = m + 1
        block = min(wanted + self.guard, n - 2)
        if wanted > block:
            raise InputError(f"n_modes = {m}; allowed: fewer than the {n} free dofs minus two")
        t_fact = 0.0
        t0 = time.perf_counter()
        self.last_tol = self._step_tolerance()
        X = None
        products = None  # K X, M X carried by LOBPCG, for the modes of an inexact solve
        if self._X is not None and self._X.shape == (n, block):
            just_refreshed = self._refresh_next
            if self._refresh_next:
                t_fact += self._factor(K, M)
                self._refresh_next = False
            try:
                t_it = time.perf_counter()
                columns_before = self.n_preconditioner_columns
                with limited_threads(self.threads):
                    X, KX, MX, lam, its, refreshed = self._iterate(K, M, self._X, fresh=just_refreshed)
                t_fact += refreshed
                self.last_iterations = its
                self._plan_refresh(its, time.perf_counter() - t_it - refreshed, just_refreshed or refreshed > 0,
                                   stale_failed=refreshed > 0 and not just_refreshed,
                                   columns=self.n_preconditioner_columns - columns_before)
                if self.last_tol > self.tol:
                    # eigenvalues only to ~last_tol² here: Rayleigh quotients from the carried
                    # products (~2e-12) do, without two sparse block products; a solve to tol
                    # recomputes them (Ritz-level 4e-12 would show there)
                    products = (KX[:, :wanted], MX[:, :wanted])
            except _NotConverged as exc:
                # The design jumped too far for the kept vectors: start again from scratch.
                logger.debug("subspace solver: %s; cold restart", exc)
                t_fact += exc.seconds
                if self.precision != "double":
                    self._use_double(f"LOBPCG did not converge on fresh {self.precision}-precision factors")
        if X is None:
            # Cold start: shift-invert Lanczos for the whole block with a fresh factorisation.
            self._cold.n_modes = block
            cold = self._cold.solve(K, M)
            self.shift = self._cold.shift
            self.n_factorizations += 1
            self.n_cold_starts += 1
            t_fact += self._cold.last_timings.get("factorization", 0.0)
            self._t_factor = self._cold.last_timings.get("factorization", 0.0)
            self._baseline_its = None
            self._refresh_next = False
            X = cold.vectors
            self.last_iterations = 0
            if self.factorization is not self._cold.factorization:
                # The kept preconditioner is a separate (single-precision) factorisation: free the
                # cold start's factors and factorise the preconditioner at the next design.
                self._cold.factorization.release()
                self._refresh_next = True
        self._X = X
        self.last_timings = {"factorization": t_fact, "eigensolve": time.perf_counter() - t0 - t_fact}
        self.n_solves += 1

        modes = modes_from_vectors(X[:, :wanted], K, M, m, self.shift, self.cluster_tol,
                                   stiffness_scale=abs(self.shift) / LanczosSolver.AUTO_SHIFT_FACTOR,
                                   warn=self.warn_incomplete_cluster, products=products)
        self.warn_incomplete_cluster &= not modes.cut_cluster  # once per solver, not per design
        return modes

    def _iterate(self, K: sp.csr_matrix, M: sp.csr_matrix, X0: np.ndarray,
                 fresh: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, float]:
        """LOBPCG from ``X0`` (:func:`~fem_eigopt.solvers.lobpcg.lobpcg`, preconditioned by the kept
        factorisation); returns (X, K X, M X, λ, iterations, seconds spent refactorising).

        X and its products (carried along by the Rayleigh–Ritz updates) are views into the kept
        search-space arrays, valid until the next call (which starts from X without copying it).

        ``fresh``: the factorisation belongs to this design (else it is stale and is refreshed
        midway once the iterations exceed what refactorising would cost, :meth:`_stale_limit`).
        """
        self._t_refresh = 0.0

        def refresh() -> None:
            self._t_refresh += self._factor(K, M)

        try:
            result = lobpcg(K, M, X0, self._precondition, energy_residuals(self.shift), self._block_tolerances,
                            workspace=self._workspace, counts=self.counts,
                            limit=self.max_iterations if fresh else self._stale_limit(),
                            fresh_limit=self.max_iterations, stale=not fresh, refresh=refresh, predict=True)
        except LobpcgFailure as exc:  # the basis lost rank: start again from scratch
            raise _NotConverged(str(exc), self._t_refresh) from exc
        self.last_refresh_at = result.refreshed_at
        if not result.converged:
            raise _NotConverged(f"{result.message} on a fresh factorisation (energy residual, "
                                f"tolerance {self.last_tol:.0e})", self._t_refresh)
        return result.X, result.KX, result.MX, result.eigenvalues, result.iterations, self._t_refresh

    def _precondition(self, R: np.ndarray, out: np.ndarray, dots: np.ndarray) -> None:
        """The block preconditioner: solves with the kept factorisation (see ``BlockPreconditioner``)."""
        self.factorization.solve_into(R, out, dots=dots)

    def _block_tolerances(self, lam: np.ndarray) -> tuple[np.ndarray, int]:
        """Every block vector's residual tolerance from the first Ritz values ``lam`` (b,), and how
        many leading vectors must converge.

        Tight tolerance for the accurate modes and for any vector clustered with the last of them:
        a (near-)degenerate partner locked at the loose tolerance is mixed back into the accurate
        vector by every Rayleigh-Ritz step (its error is then arbitrary within the pair), which
        costs iterations on models with a double pair right after the accurate modes.
        The vector beyond the reported modes only tells whether the last reported cluster
        continues. When that mode is not differentiated (not tight) this decides nothing a
        gradient uses: the vector then serves as a guard (refined roughly, not waited for) and
        next_eigenvalue is its Ritz value (an upper bound, ~1e-2 relative).
        """
        b = lam.size
        tight = min(self.accurate_modes or self.n_modes + 1, self.n_modes + 1)
        window = max(self.CLUSTER_WINDOW, 10.0 * self.cluster_tol)
        while tight < b and lam[tight] - lam[tight - 1] <= window * max(abs(lam[tight]), 1e-300):
            tight += 1
        wanted = max(self.n_modes + (tight >= self.n_modes), tight)
        tol_all = np.full(b, max(self.last_tol, self.loose_tol))
        tol_all[:tight] = self._accurate_tolerances(lam, tight, window)
        tol_all[wanted:] = max(self.guard_tol, tol_all[wanted - 1])  # guard vectors: roughly
        return tol_all, wanted

    def _step_tolerance(self) -> float:
        """The accurate modes' residual tolerance for this solve (see ``tol_per_change``)."""
        return step_tolerance(self.tol, self.design_change, self.tol_per_change, self.max_tol)

    def _accurate_tolerances(self, lam: np.ndarray, tight: int, window: float) -> np.ndarray:
        """Residual tolerances of the ``tight`` accurate vectors, from ``mode_weights``.

        A response's gradient is Σ_i (∂f/∂λ_i) ∇λ_i; an eigenvector error ε_i makes an error of
        about ε_i |∇λ_i| ≈ ε_i λ_i (relative) in ∇λ_i, so mode i adds about w_i ε_i to the relative
        gradient error, w_i = |∂f/∂λ_i| λ_i normalised by the largest such term (the design
        evaluator sets the weights, the largest over its responses). Modes with w_i < 1/n (n: the
        weighted modes) are converged to tol / (n w_i) instead of tol — each then adds about
        tol / n — up to ``loose_tol``. Only modes further than ``window`` from both neighbours
        qualify: (near-)repeated modes converge as a subspace, at the tightest tolerance.
        Measured on pyMOTO's objective Σ 1/λ_i (i = 1..3, 200x100; w ≈ 1, 0.07-0.14, 0.05-0.12
        along the run): modes 2 and 3 stop at 2.5e-6 to 6e-6 instead of 1e-6; 30 MMA iterations
        took 640 instead of 659 preconditioner columns and 153 instead of 157 Rayleigh-Ritz steps
        for the same objective history, and the gradient error against ARPACK stayed at the
        tolerance (1.3e-6 against 1.2e-6, 2-norm, relative).
        """
        tol = self.last_tol
        tols = np.full(tight, tol)
        w = self.mode_weights
        if w is None:
            return tols
        w = np.asarray(w, dtype=float)[:tight]
        n_weighted = max(int(np.count_nonzero(w > 0)), 1)
        ceiling = max(tol, self.loose_tol)
        for i, wi in enumerate(w):
            if n_weighted * wi >= 1.0:
                continue
            below = i == 0 or lam[i] - lam[i - 1] > window * max(abs(lam[i]), 1e-300)
            above = i + 1 >= lam.size or lam[i + 1] - lam[i] > window * max(abs(lam[i + 1]), 1e-300)
            if below and above:
                tols[i] = min(tol / max(n_weighted * wi, 1e-300), ceiling)
        return tols


class _NotConverged(RuntimeError):
    """LOBPCG gave up; ``seconds`` spent refactorising on the way."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds

