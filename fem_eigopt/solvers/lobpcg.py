"""The one LOBPCG kernel: block preconditioned eigensolver for the lowest pairs of ``K x = λ M x``.

Both iterative modal solvers run this kernel; they differ only in what they hand it:

* :class:`~fem_eigopt.solvers.subspace.SubspaceModalSolver`: the preconditioner is a kept (possibly
  stale) factorisation of ``K₀ − σM₀``, convergence is judged on the energy-norm residual
  (:func:`energy_residuals`), and a stale factorisation is refreshed midway when the iterations
  it adds are predicted to cost more than a new one.
* :class:`~fem_eigopt.solvers.amg.AMGModalSolver`: the preconditioner is one AMG V-cycle,
  convergence is judged on the relative Euclidean residual with a rounding floor
  (:func:`relative_residuals`), the preconditioned residuals are M-orthogonalised against X (the
  pencil can be very ill-conditioned: solid islands in void), and the best iterate is kept in
  case the residuals stagnate at rounding level.

The method (Knyazev 2001, "Toward the optimal preconditioned eigensolver", SIAM J. Sci. Comput.
23:517–541): the search space S = [X W P] (Ritz vectors, preconditioned residuals W = T R,
R = KX − MXΛ, and the previous step's directions P) is reduced by a Rayleigh–Ritz step to the
next X and P. Converged vectors are soft-locked: they stay in X, and are improved by every
Rayleigh–Ritz step, but get no more preconditioned directions. The iteration ends when every
*wanted* vector (the leading ones; the rest of the block are guard vectors that speed up the
convergence of the wanted ones) has met its tolerance.

Memory layout. S and its products KS, MS live side by side in kept (n, 3b) arrays, two sets used
in turn (:class:`Workspace`): each Rayleigh–Ritz step reads the current set with two Gram
products and writes the next X, P (and their products, carried along: no extra sparse products)
straight into the other set; the preconditioner writes W into its place there, right after X
(columns of converged vectors are then dropped, moving the others left). Memory traffic is what
costs at these sizes (n × 3b doubles per array, beyond the core's caches), so nothing is copied
block by block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fem_eigopt.linalg.kernels import (
    BlockOperator,
    dense_matmul,
    ritz_pairs,
    sparse_matmul,
)

logger = logging.getLogger(__name__)

__all__ = ["BlockPreconditioner", "LobpcgCounts", "LobpcgFailure", "LobpcgResult", "LobpcgWork", "Workspace",
           "energy_residuals", "lobpcg", "relative_residuals"]


class BlockPreconditioner(Protocol):
    """``precondition(R, out, dots)``: write ``T R`` into ``out`` and ``r_jᵀ T r_j`` into ``dots``.

    R and out are (n, a), ``out`` possibly a column slice of a wider array; ``dots`` is (a,). T
    is symmetric positive definite and approximates ``(K − σM)⁻¹`` (a kept factorisation, one AMG
    V-cycle, ...).
    """

    def __call__(self, R: np.ndarray, out: np.ndarray, dots: np.ndarray) -> None: ...


#: ``measure(R, dots, lam, X, KX, MX, active) -> residuals (a,)`` of the active columns
ResidualMeasure = Callable[..., np.ndarray]


def energy_residuals(sigma: float) -> ResidualMeasure:
    """The energy-norm residual ``√(rᵀ T r / (λ − σ))`` per active column.

    About the eigenvector's relative error in the energy norm (exact when T = (K − σM)⁻¹), the
    quantity the sensitivities φ_eᵀK_eφ_e depend on. Free: rᵀ T r comes with the preconditioner's
    solve. The Euclidean ‖Kx − λMx‖ would demand far more: it weighs the error's high-frequency
    part by λ_high/λ and, forming Kx for a smooth mode, cancels to eps·λ_max/λ.

    Parameters
    ----------
    sigma : float
        Shift σ of the preconditioner (below the wanted eigenvalues), in the units of λ (rad²/s²).
    """

    def measure(R, dots, lam, X, KX, MX, active):
        return np.sqrt(np.abs(dots) / np.maximum(lam - sigma, 1e-300))

    return measure


def relative_residuals(floor: float) -> ResidualMeasure:
    """The relative residual ``‖Kx − λMx‖ / (‖Kx‖ + |λ|‖Mx‖ + floor·‖x‖)`` per active column.

    Independent of the preconditioner. ``floor`` accepts rounding: K x carries errors of about
    eps·‖K‖·‖x‖, so a mode whose λ is ~1e-14 of K's scale (a solid island in void) cannot reach a
    tolerance relative to itself.

    Parameters
    ----------
    floor : float
        In the units of K (e.g. ``300 eps / tol · max |diag K|``).
    """

    def measure(R, dots, lam, X, KX, MX, active):
        def norms(A):
            return np.linalg.norm(A[:, active], axis=0)

        return np.linalg.norm(R, axis=0) / (norms(KX) + np.abs(lam) * norms(MX) + floor * norms(X))

    return measure


@dataclass
class LobpcgCounts:
    """Work counted over LOBPCG runs (machine-independent, unlike timings).

    Attributes
    ----------
    iterations : int
        LOBPCG iterations (each adds preconditioned directions).
    preconditioner_columns : int
        Columns the preconditioner was applied to.
    rayleigh_ritz : int
        Rayleigh–Ritz steps (one to start every run, one per iteration).
    """

    iterations: int = 0
    preconditioner_columns: int = 0
    rayleigh_ritz: int = 0


class LobpcgWork:
    """The work counters of a solver that runs :func:`lobpcg` with a :class:`LobpcgCounts` ``counts``."""

    counts: LobpcgCounts

    @property
    def n_lobpcg_iterations(self) -> int:
        """LOBPCG iterations over all solves."""
        return self.counts.iterations

    @property
    def n_preconditioner_columns(self) -> int:
        """Columns the preconditioner was applied to over all solves (a V-cycle for AMG, a solve
        with the kept factorisation for the subspace solver)."""
        return self.counts.preconditioner_columns


@dataclass
class LobpcgResult:
    """What :func:`lobpcg` returns.

    X, KX, MX are views into the :class:`Workspace` arrays, valid until its next use (a new run
    may start from X without copying it); KX and MX are None when the best earlier iterate is
    returned (``stagnation``).

    Attributes
    ----------
    X, KX, MX : ndarray (n, b)
        M-orthonormal Ritz vectors and their products.
    eigenvalues : ndarray (b,)
        Ritz values, ascending (rad²/s² for a structural pencil).
    iterations : int
    converged : bool
        Every wanted vector met its tolerance.
    residuals : ndarray (b,)
        The last measured residual of every column (inf: never measured).
    refreshed_at : int or None
        The iteration at which a stale preconditioner was refreshed (None: it was not).
    message : str
        Why the run stopped without converging ("" when it converged).
    """

    X: np.ndarray
    KX: np.ndarray | None
    MX: np.ndarray | None
    eigenvalues: np.ndarray
    iterations: int
    converged: bool
    residuals: np.ndarray
    refreshed_at: int | None = None
    message: str = ""


class LobpcgFailure(RuntimeError):
    """The LOBPCG basis lost rank (the start block was degenerate)."""


class Workspace:
    """Kept arrays of :func:`lobpcg`: two sets of (S, KS, MS), each (n, 3b), and R (n, b)."""

    def __init__(self) -> None:
        self._kept: tuple | None = None

    def get(self, n: int, b: int) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray]:
        """The arrays for an (n, b) block, reallocated only when the size changes."""
        kept = self._kept
        if kept is None or kept[1].shape != (n, b):
            kept = ([tuple(np.empty((n, 3 * b)) for _ in range(3)) for _ in range(2)], np.empty((n, b)))
            self._kept = kept
        return kept

    def release(self) -> None:
        """Free the arrays."""
        self._kept = None


def _product(A, X: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``A @ X`` into ``out`` for a sparse matrix or a :class:`BlockOperator` A."""
    if isinstance(A, BlockOperator):
        return A.matmul(X, out=out)
    return sparse_matmul(A, X, out=out)


def _ritz_coefficients(S: np.ndarray, KS: np.ndarray, MS: np.ndarray, b: int, ritz_values: np.ndarray | None,
                       drop: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``b`` lowest Ritz values of (K, M) in the span of S (n, w) and the coefficients C
    (w, b) of their M-orthonormal Ritz vectors ``S C``, from S and its products KS, MS.

    ``ritz_values``: the first b columns of S are M-orthonormal Ritz vectors with these Ritz
    values (the previous step's result), so that block of the Gram matrices is set to I and
    diag(λ) rather than computed. Directions below ``drop`` of the largest are dropped from the
    basis (LOBPCG's blocks become nearly dependent as it converges; :func:`ritz_pairs`).
    """
    GM = dense_matmul(S, MS, transpose_a=True)
    GK = dense_matmul(S, KS, transpose_a=True)
    if ritz_values is not None:
        GM[:b, :b] = np.eye(b)
        GK[:b, :b] = np.diag(ritz_values)
    return ritz_pairs(GK, GM, b, drop=drop)


class _Best:
    """The iterate with the smallest wanted residuals so far (``stagnation``)."""

    def __init__(self) -> None:
        self.score, self.iteration, self.X, self.lam, self.residuals = np.inf, 0, None, None, None

    def offer(self, score: float, its: int, X: np.ndarray, lam: np.ndarray, residuals: np.ndarray) -> None:
        if score < self.score:
            self.score, self.iteration = score, its
            self.X, self.lam, self.residuals = X.copy(), lam.copy(), residuals.copy()


def lobpcg(K, M, X0: np.ndarray, precondition: BlockPreconditioner, measure: ResidualMeasure,
           tolerances: Callable[[np.ndarray], tuple[np.ndarray, int]], *, workspace: Workspace,
           counts: LobpcgCounts, limit: int, fresh_limit: int | None = None, stale: bool = False,
           refresh: Callable[[], None] | None = None, predict: bool = False, orthogonalize: bool = False,
           stagnation: int | None = None, refresh_products: int | None = None,
           drop: float = 1e-12) -> LobpcgResult:
    """Lowest eigenpairs of ``K x = λ M x`` by block LOBPCG with soft locking, from ``X0``.

    Parameters
    ----------
    K, M : sparse matrix or BlockOperator (n, n)
        Symmetric; M positive definite.
    X0 : ndarray (n, b)
        Start block (wanted and guard vectors). May be the X of the last run in ``workspace`` (no
        copy then).
    precondition : BlockPreconditioner
        ``precondition(R, out, dots)``: ``out = T R``, ``dots_j = r_jᵀ T r_j``.
    measure : ResidualMeasure
        The convergence measure (:func:`energy_residuals`, :func:`relative_residuals`).
    tolerances : callable
        ``tolerances(λ) -> (tol (b,), wanted)`` from the first Ritz values (b,): every column's
        tolerance, and how many leading columns must converge (the rest are guard vectors).
    workspace : Workspace
        Kept arrays (returned X, KX, MX are views into them).
    counts : LobpcgCounts
        Incremented with the work done.
    limit : int
        Iterations after which the run stops (or, with a stale preconditioner and ``refresh``,
        refreshes it and goes on for ``fresh_limit`` more).
    fresh_limit : int, optional
        Iteration limit after a refresh (default ``limit``).
    stale : bool
        The preconditioner belongs to an earlier matrix and can be refreshed by ``refresh()``.
    refresh : callable, optional
        Rebuild the preconditioner for (K, M); ``precondition`` then uses the new one.
    predict : bool
        With a stale preconditioner, refresh as soon as the residuals' mean rate of decrease
        predicts convergence beyond ``limit`` (a failing stale preconditioner then costs 2-3
        iterations, not the whole limit).
    orthogonalize : bool
        M-orthogonalise the preconditioned residuals against X before the Rayleigh–Ritz step
        (robust for very ill-conditioned pencils, at one more (b × a) Gram product).
    stagnation : int, optional
        Keep the iterate with the smallest wanted residuals, and stop (or refresh a stale
        preconditioner) once they are within 1000 tolerances and have not decreased for this
        many iterations — rounding level; the best iterate is then returned.
    refresh_products : int, optional
        Recompute the carried products K X, M X, K P, M P every this many iterations (rounding
        drift over long runs).
    drop : float
        Relative Gram eigenvalue below which search directions are dropped as dependent.

    Returns
    -------
    LobpcgResult

    Raises
    ------
    LobpcgFailure
        When the basis loses rank.
    """
    run = _Run(K, M, precondition, measure, workspace, counts, drop, orthogonalize)
    run.start(X0)
    fresh_limit = limit if fresh_limit is None else fresh_limit
    best = _Best() if stagnation is not None else None
    its = its_at_refresh = 0
    refreshed_at = None
    excess_start = 1.0
    while True:
        run.rayleigh_ritz(its)
        if refresh_products and its and its % refresh_products == 0:
            run.recompute_products()
        if its == 0:
            tol_all, wanted = tolerances(run.lam)
        res, done = run.residuals(tol_all)
        if np.all(run.converged[:wanted]):
            return run.result(its, True, refreshed_at)
        wanted_active = run.active < wanted
        excess = float(np.max(res[wanted_active] / tol_all[run.active][wanted_active]))
        if best is not None:
            best.offer(excess, its, run.X, run.lam, run.all_residuals)
        if its == its_at_refresh:
            excess_start = excess
        over = its - its_at_refresh >= limit or _predicted_over(
            predict and stale, its - its_at_refresh, excess, excess_start, limit)
        stagnated = best is not None and best.score < 1e3 and its - best.iteration >= stagnation
        if over or stagnated:
            if not stale or refresh is None:
                message = (f"LOBPCG did not converge in {its} iterations (residual {res.max():.2e}, "
                           f"{excess:.2g} tolerances)")
                return run.result(its, False, refreshed_at, message, best)
            refreshed_at = its_at_refresh = its
            refresh()
            stale, limit = False, fresh_limit
            if best is not None:
                best.iteration = its
            logger.debug("LOBPCG: refreshed the preconditioner after %d iterations", its)
            run.precondition_again()
        run.next_directions(done)
        if refresh_products and (its + 1) % refresh_products == 0:
            run.recompute_products(directions=True)
        its += 1
        counts.iterations += 1


def _predicted_over(predict: bool, its: int, excess: float, excess_start: float, limit: int) -> bool:
    """Whether the residuals' mean rate of decrease over ``its`` iterations (from ``excess_start``
    to ``excess`` times the tolerance) predicts convergence beyond ``limit`` iterations."""
    if not predict or its < 2:
        return False
    rate = (excess / excess_start) ** (1.0 / its)
    return rate >= 1.0 or its + np.log(excess) / -np.log(rate) > limit


class _Run:
    """The state of one :func:`lobpcg` run: the two sets of [X W P] and their products, the Ritz
    values and which columns are still active."""

    def __init__(self, K, M, precondition: BlockPreconditioner, measure: ResidualMeasure, workspace: Workspace,
                 counts: LobpcgCounts, drop: float, orthogonalize: bool) -> None:
        self.K, self.M, self.precondition, self.measure = K, M, precondition, measure
        self.workspace, self.counts, self.drop, self.orthogonalize = workspace, counts, drop, orthogonalize

    def start(self, X0: np.ndarray) -> None:
        """Put X0 (n, b) into the first b columns of a set and form its products."""
        n, b = X0.shape
        self.b = b
        self.sets, self.residual = self.workspace.get(n, b)
        self.identity = np.eye(b)
        self.dots = np.empty(b)  # rᵀ T r per active column (from the preconditioner)
        # start in the set holding X0 when it is the last run's result (a view: no copies)
        self.current = 1 if X0.base is self.sets[1][0] else 0
        S, KS, MS = self.sets[self.current]
        if X0.base is not S:
            S[:, :b] = X0
        _product(self.K, X0, KS[:, :b])
        _product(self.M, X0, MS[:, :b])
        self.width, self.w_cols, self.p_cols = b, 0, 0  # columns of S in use: X, W, P
        self.lam = None
        self.active = np.arange(b)
        self.converged = np.zeros(b, dtype=bool)
        self.all_residuals = np.full(b, np.inf)

    def rayleigh_ritz(self, its: int) -> None:
        """The next X (Ritz vectors of the current set, with their products) into the other set."""
        b = self.b
        S, KS, MS = self.sets[self.current]
        self.counts.rayleigh_ritz += 1
        lam, C = self._coefficients(S, KS, MS, its)
        if self.p_cols and lam[0] < -1e-6 * abs(self.lam[-1]):
            # a negative Ritz value of a definite pencil: rounding in a nearly dependent basis
            # (seen at cond(K, M) ~ 1e16, solid islands in void). Restart without P.
            self.width, self.p_cols = b + self.w_cols, 0
            lam, C = self._coefficients(S, KS, MS, its)
        nS, nKS, nMS = self.sets[1 - self.current]
        self.X, self.KX, self.MX = nS[:, :b], nKS[:, :b], nMS[:, :b]
        for old, new in ((S, self.X), (KS, self.KX), (MS, self.MX)):
            dense_matmul(old[:, :self.width], C, out=new)
        self.lam, self.C = lam, C

    def _coefficients(self, S: np.ndarray, KS: np.ndarray, MS: np.ndarray, its: int):
        w = self.width
        try:
            return _ritz_coefficients(S[:, :w], KS[:, :w], MS[:, :w], self.b, self.lam, self.drop)
        except np.linalg.LinAlgError as exc:
            raise LobpcgFailure(f"LOBPCG basis degenerate after {its} iterations ({exc})") from exc

    def recompute_products(self, directions: bool = False) -> None:
        """K X, M X (or, ``directions``, K P, M P of the next set) from the vectors themselves."""
        if not directions:
            _product(self.K, self.X, self.KX)
            _product(self.M, self.X, self.MX)
            return
        if self.p_cols:
            S, KS, MS = self.sets[self.current]
            cols = slice(self.b + self.w_cols, self.width)
            _product(self.K, S[:, cols], KS[:, cols])
            _product(self.M, S[:, cols], MS[:, cols])

    def residuals(self, tol_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residuals R = KX − MXΛ of the active columns, their preconditioned W and measures; marks
        the converged ones (soft locking). Returns (measures (a,), converged (a,) bool)."""
        b, active = self.b, self.active
        nS = self.sets[1 - self.current][0]
        # two GEMMs with a selection matrix: they read the column slices in place and write a kept buffer
        select = self.identity[:, active]
        self.R, self.W = self.residual[:, :active.size], nS[:, b:b + active.size]  # W in its place in [X W P]
        dense_matmul(self.KX, select, out=self.R)
        dense_matmul(self.MX, select * -self.lam[active], out=self.R, accumulate=True)
        self.precondition_again()
        res = self.measure(self.R, self.dots[:active.size], self.lam[active], self.X, self.KX, self.MX, active)
        self.all_residuals[active] = res
        done = res <= tol_all[active]
        self.converged[active[done]] = True  # soft locking: a converged vector gets no more directions
        return res, done

    def precondition_again(self) -> None:
        """W = T R for the active columns (after a refresh: with the new preconditioner)."""
        self.precondition(self.R, self.W, self.dots[:self.R.shape[1]])
        self.counts.preconditioner_columns += self.R.shape[1]

    def next_directions(self, done: np.ndarray) -> None:
        """Drop the converged columns' W, form K W, M W and the LOBPCG directions P; switch sets."""
        b = self.b
        S, KS, MS = self.sets[self.current]
        nS, nKS, nMS = self.sets[1 - self.current]
        next_active = self.active[~done]
        a = next_active.size
        # converged vectors get no direction: drop their W columns, moving the others left
        for to, col in enumerate(np.flatnonzero(~done)):
            if to != col:
                nS[:, b + to] = nS[:, b + col]
        W = nS[:, b:b + a]
        if self.orthogonalize:  # M-orthogonal to the current Ritz vectors
            W -= self.X @ (self.MX.T @ W)
        _product(self.K, W, nKS[:, b:b + a])
        _product(self.M, W, nMS[:, b:b + a])
        p = 0
        if self.width > b:  # P = [W P]_old C (the part of the new X beyond the old X), next_active columns
            rows = self.C[b:self.width][:, next_active]
            for old, new in ((S, nS), (KS, nKS), (MS, nMS)):
                dense_matmul(old[:, b:self.width], rows, out=new[:, b + a:b + 2 * a])
            p = a
        self.width, self.w_cols, self.p_cols = b + a + p, a, p
        self.current = 1 - self.current
        self.active = next_active

    def result(self, its: int, converged: bool, refreshed_at: int | None, message: str = "",
               best: _Best | None = None) -> LobpcgResult:
        if best is not None and best.X is not None and not converged:
            return LobpcgResult(best.X, None, None, best.lam, its, False, best.residuals, refreshed_at, message)
        return LobpcgResult(self.X, self.KX, self.MX, self.lam, its, converged, self.all_residuals.copy(),
                            refreshed_at, message)
