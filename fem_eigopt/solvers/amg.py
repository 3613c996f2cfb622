"""Modal analysis without factorisation: LOBPCG preconditioned by smoothed-aggregation AMG.

For large 3D meshes a sparse Cholesky/LU of ``K - σM`` no longer fits in memory or pays for
itself: on hex meshes the factor's non-zeros grow like n^1.34 and a numeric refactorisation's
time like n^1.8, so that at a million dofs the factor no longer fits 32-bit indices nor the
memory next to the model, while the AMG solver's memory and work grow like n (measurements in
docs/performance.md; ``eigensolver="auto"`` switches to this solver there:
:func:`~fem_eigopt.solvers.auto.make_modal_solver`). :class:`AMGModalSolver` finds the lowest eigenpairs of
``K x = λ M x`` with the locally optimal block preconditioned conjugate gradient method (LOBPCG,
Knyazev 2001), preconditioned by one V-cycle of a smoothed-aggregation algebraic multigrid
hierarchy of ``K`` (pyamg; Vaněk, Mandel & Brezina 1996) whose near-null space is the rigid-body
modes of the model (3 in 2D, 6 in 3D). Memory and work per iteration are O(nnz).

The pieces, and why they are not the library defaults:

* **Hierarchy.** ``pyamg.smoothed_aggregation_solver`` builds the aggregates, the smoothed
  prolongators and the Galerkin coarse operators (nodal BSR blocks when the free dofs come in
  complete nodes; ``max_coarse`` counted in dofs, pyamg counts blocks). Its own cycle smooths one
  right-hand side at a time with Gauss–Seidel; LOBPCG needs the preconditioner on a block of
  vectors, so the V-cycle here is our own: a Chebyshev polynomial smoother in ``D⁻¹A`` (degree 3,
  the upper 1/20 of the spectrum; symmetric, so the V-cycle is an SPD preconditioner) applied to
  all vectors at once, and a dense Cholesky on the coarsest level. Block products go through MKL's
  sparse BLAS when the PARDISO backend's ``mkl_rt`` is there (it reads each row of K once for the
  whole block; about twice as fast as SciPy's product, see docs/performance.md). On the final design of a 28k-dof optimisation, degree 2/3/4 took 33/25/23
  iterations (cost per iteration 8/10/12 products): 3 is the cheapest.
* **Eigen solver.** The package's LOBPCG kernel (:mod:`fem_eigopt.solvers.lobpcg`, shared with
  the subspace solver) instead of ``scipy.sparse.linalg.lobpcg``: SciPy's stops
  on an absolute residual norm, meaningless for K ~ 1e10 N/m (on a 13k-dof cantilever its
  residuals stalled at 1e-5 with eigenvalues already exact to 1e-13), and it requires the whole
  block, guard vectors included, to converge. Here the criterion is the relative residual
  ``‖Kx − θMx‖ / (‖Kx‖ + |θ|‖Mx‖)`` of the wanted vectors only (with a rounding floor,
  :func:`~fem_eigopt.solvers.lobpcg.relative_residuals`); the preconditioned residuals are
  M-orthogonalised against X, the Rayleigh–Ritz step M-orthonormalises [X, W, P] by an
  eigen-decomposition of its Gram matrix, dropping dependent directions (Hetmaniuk & Lehoucq 2006,
  "Basis selection in LOBPCG"), restarts without P on a negative Ritz value, and when the residuals
  stagnate at rounding level the best iterate is returned.
* **Warm start and reuse.** The previous call's block (wanted and guard vectors) starts the next
  solve, and the hierarchy is kept — only the finest level's operator, diagonal and spectral bound
  are updated to the new K. It is rebuilt when material has appeared where the hierarchy saw
  little (the 99.9 % quantile of diag K / diag K_setup above ``rebuild_stiffening`` = 8), when the
  extra iterations it has cost exceed the time of a setup (rent or buy), or in the middle of a
  solve that runs 10 iterations beyond the last solve with a new hierarchy. Measured on a 28k-dof
  cantilever optimisation (MMA, max λ1, V ≤ 0.3, 20 evaluations): 11–26 iterations per design
  against 17–31 from random vectors with a new hierarchy each time; in a test, 12 against 15 after
  a ±0.02 density change. Why stiffening, one-sided: coarse operators built where a region was
  void miss the stiffness that appears there, and the kept hierarchy then fails — on the
  207k-dof cantilever of ``benchmarks/bench_scale.py`` (NLopt's MMA, steps up to 0.5), with no
  rule before the solve, the 13 designs whose stiffening quantile was 10 or more took 13–61
  iterations (median 35, most with a rebuild midway), the 6 at 1.0–3.4 took 8–21. Material removed is harmless: on pyMOTO's 3D problem (our MMA,
  move 0.1) the kept hierarchy took 14–16 iterations per design against 13–15 with new ones, with
  diagonals fallen by up to 1e8 and risen by at most 5.6. The earlier rule, the two-sided spread
  (0.1 % to 99.9 % quantile ratio above 300), rebuilt there at 13 of 21 designs for nothing,
  which made the MMA iterations slower than with the one-sided rule.

Stiffness contrast (SIMP, x_min = 1e-3: E_void/E_solid = 1e-9), measured on a 30×15×8 hex1
cantilever (12960 dofs, 5 modes, tol 1e-8, iterations from random vectors):

    ======================================  ==========  ==================================
    design                                  iterations  eigenvalues vs shift-invert Lanczos
    ======================================  ==========  ==================================
    uniform 0.3                             13          5e-14
    element-wise random in [1e-3, 1]        21          5e-13
    element-wise random in [0.2, 1]         17          6e-14
    0/1, 30 % void (smooth random field)    15          7e-13
    0/1 I-beam, 60 % void                   22          2e-13
    0/1, 50 % void with two solid islands   35          5e-5 (rounding floor; falls back)
    ======================================  ==========  ==================================

Jacobi-scaled Chebyshev is insensitive to the scale of the rows, and aggregates straddling solid
and void interpolate the void rigidly, which costs no energy. The limit is solid islands held only
by void: their rigid motions have λ ~ 1e-13 of K's scale (cond(K, M) ~ 1e16), aggregates crossing
the void cannot represent them, and a preconditioner shift — even 1e-8 — hides them. The solver
therefore uses no shift on supported structures, adds an exact correction on the rigid modes of
weakly coupled solid regions (error 3.5 % → 1e-4 on the island design), and when a solve still
does not converge it falls back to shift-invert Lanczos below ``fallback`` free dofs (above it
returns the best iterate with a warning). An optimiser seldom visits such designs: islands make
λ1 tiny.

References
----------
- A. V. Knyazev (2001), Toward the optimal preconditioned eigensolver: LOBPCG, SIAM J. Sci.
  Comput. 23:517–541.
- U. Hetmaniuk, R. Lehoucq (2006), Basis selection in LOBPCG, J. Comput. Phys. 218:324–332.
- P. Vaněk, J. Mandel, M. Brezina (1996), Algebraic multigrid by smoothed aggregation for second
  and fourth order elliptic problems, Computing 56:179–196.
- M. Adams, M. Brezina, J. Hu, R. Tuminaro (2003), Parallel multigrid smoothing: polynomial versus
  Gauss–Seidel, J. Comput. Phys. 188:593–610 (Chebyshev smoothers, eigenvalue ratio 30).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from fem_eigopt.errors import InputError
from fem_eigopt.linalg.kernels import BlockOperator
from fem_eigopt.linalg.mkl import load_function, sparse_blas
from fem_eigopt.solvers.lobpcg import (
    LobpcgCounts,
    LobpcgWork,
    Workspace,
    lobpcg,
    relative_residuals,
)
from fem_eigopt.solvers.modes import Modes, modes_from_vectors, step_tolerance

logger = logging.getLogger(__name__)

__all__ = ["AMGModalSolver", "AMGPreconditioner", "rigid_body_modes"]


# --------------------------------------------------------------------------------------------- #
# near-null space


def rigid_body_modes(coordinates: np.ndarray, component: np.ndarray) -> np.ndarray:
    """Rigid-body modes on a set of dofs: translations, then rotations about the centroid.

    Parameters
    ----------
    coordinates : ndarray (dim, n)
        Location of each dof (``model.basis.doflocs[:, model.free_dofs]``).
    component : ndarray (n,)
        Displacement component of each dof (``model.dof_component[model.free_dofs]``).

    Returns
    -------
    ndarray (n, 3) in 2D, (n, 6) in 3D
        Columns scaled to unit 2-norm.
    """
    X = np.asarray(coordinates, dtype=float)
    c = np.asarray(component)
    dim, n = X.shape
    X = X - X.mean(axis=1, keepdims=True)
    B = np.zeros((n, 3 if dim == 2 else 6))
    for k in range(dim):
        B[c == k, k] = 1.0
    if dim == 2:
        B[c == 0, 2], B[c == 1, 2] = -X[1, c == 0], X[0, c == 1]
    elif dim == 3:
        x, y, z = X
        B[c == 1, 3], B[c == 2, 3] = -z[c == 1], y[c == 2]  # about x: (0, -z, y)
        B[c == 2, 4], B[c == 0, 4] = -x[c == 2], z[c == 0]  # about y: (z, 0, -x)
        B[c == 0, 5], B[c == 1, 5] = -y[c == 0], x[c == 1]  # about z: (-y, x, 0)
    else:
        B = B[:, :dim]
    norms = np.linalg.norm(B, axis=0)
    return B / np.where(norms > 0, norms, 1.0)


def _constant_modes(n: int, dim: int) -> np.ndarray:
    """Fallback near-null space without a model: a constant per component (dofs interleaved)."""
    B = np.zeros((n, dim))
    for k in range(dim):
        B[k::dim, k] = 1.0
    return B / np.linalg.norm(B, axis=0)


# --------------------------------------------------------------------------------------------- #
# MKL threads (sparse × dense blocks: fem_eigopt.linalg.kernels.BlockOperator)


class _MKLThreads:
    """``with _MKLThreads(n):`` MKL's thread count for this thread (MKL_Set_Num_Threads_Local),
    restored on exit; nothing without MKL or with ``n`` None."""

    def __init__(self, n: int | None) -> None:
        self.n, self.previous, self.fn = n, None, None

    def __enter__(self) -> "_MKLThreads":
        if self.n is not None and sparse_blas() is not None:
            self.fn = load_function("MKL_Set_Num_Threads_Local")
            self.previous = self.fn(int(self.n))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fn is not None:
            self.fn(self.previous)  # 0 = back to MKL's global setting


# --------------------------------------------------------------------------------------------- #
# AMG preconditioner with a block Chebyshev V-cycle


def _spectral_bound(A: sp.csr_matrix, dinv: np.ndarray, steps: int = 12, seed: int = 7) -> float:
    """Upper estimate of λ_max(D⁻¹A): Lanczos on D^-1/2 A D^-1/2, largest Ritz value × 1.1."""
    n = A.shape[0]
    s = np.sqrt(dinv)
    q = np.random.default_rng(seed).uniform(-1.0, 1.0, n)
    q /= np.linalg.norm(q)
    q_prev = np.zeros(n)
    alpha, beta = [], [0.0]
    for _ in range(min(steps, n)):
        w = s * (A @ (s * q))
        a = float(q @ w)
        w -= a * q + beta[-1] * q_prev
        b = float(np.linalg.norm(w))
        alpha.append(a)
        if b <= 1e-12 * abs(a):
            break
        beta.append(b)
        q_prev, q = q, w / b
    T = np.diag(alpha) + np.diag(beta[1:len(alpha)], 1) + np.diag(beta[1:len(alpha)], -1)
    return 1.1 * float(np.linalg.eigvalsh(T).max())


def _weak_components(A: sp.csr_matrix, d: np.ndarray, block: int, tol: float) -> tuple[np.ndarray, int]:
    """Connected components of the graph of strong couplings |a_ij| ≥ tol·√(a_ii a_jj) between
    nodes (blocks of ``block`` dofs); returns per-dof labels and the number of components."""
    from scipy.sparse.csgraph import connected_components

    n = A.shape[0]
    s = 1.0 / np.sqrt(np.where(d > 0, d, 1.0))
    n_nodes = n // block
    edges_r, edges_c = [], []
    chunk = max(1, (1 << 24) // max(1, A.nnz // max(n, 1)))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        sub = A[r0:r1]
        rows = np.repeat(np.arange(r0, r1), np.diff(sub.indptr))
        strong = np.abs(sub.data) * s[rows] * s[sub.indices] >= tol
        u, v = rows[strong] // block, sub.indices[strong] // block
        keep = u != v
        key = np.unique(u[keep].astype(np.int64) * n_nodes + v[keep])
        edges_r.append(key // n_nodes)
        edges_c.append(key % n_nodes)
    r, c = np.concatenate(edges_r), np.concatenate(edges_c)
    G = sp.csr_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(n_nodes, n_nodes))
    n_comp, labels = connected_components(G, directed=False)
    return np.repeat(labels, block), n_comp


@dataclass
class _Level:
    A: sp.csr_matrix
    dinv: np.ndarray
    lmax: float
    P: BlockOperator | None = None
    R: BlockOperator | None = None

    def __post_init__(self) -> None:
        self.op = BlockOperator(self.A)


class AMGPreconditioner:
    """One V-cycle of smoothed aggregation with a block Chebyshev smoother: ``T(R) ≈ A⁻¹ R``.

    Parameters
    ----------
    A : csr_matrix
        Symmetric positive (semi-)definite operator.
    B : ndarray (n, k)
        Near-null space (rigid-body modes).
    block : int
        Nodal block size for aggregation (1: scalar aggregation).
    degree : int
        Chebyshev smoother degree (applications of A per smoothing step).
    ratio : float
        The smoother targets eigenvalues of D⁻¹A in [λ_max/ratio, λ_max].
    max_coarse : int
        Size below which the coarsest level is solved by dense Cholesky.
    strength, aggregate, smooth : pyamg options.
    max_components : int
        Solid regions coupled to the rest only through void that get an exact rigid-body
        correction (see :meth:`_set_components`; 0: none).
    strength_tol : float
        Normalised coupling |a_ij| / √(a_ii a_jj) below which nodes count as disconnected there.
    """

    def __init__(self, A: sp.csr_matrix, B: np.ndarray, block: int = 1, degree: int = 3, ratio: float = 20.0,
                 max_coarse: int = 1500, strength="symmetric", aggregate="standard",
                 smooth=("jacobi", {"omega": 4.0 / 3.0}), max_components: int = 64,
                 strength_tol: float = 1e-4) -> None:
        import pyamg

        self.degree, self.ratio = int(degree), float(ratio)
        t0 = time.perf_counter()
        A = sp.csr_matrix(A)
        A_in = A.tobsr(blocksize=(block, block)) if block > 1 else A
        ml = pyamg.smoothed_aggregation_solver(
            A_in, B=B, symmetry="hermitian", strength=strength, aggregate=aggregate, smooth=smooth,
            presmoother=None, postsmoother=None, improve_candidates=None,
            max_coarse=max(1, max_coarse // B.shape[1]),  # pyamg counts blocks (of B.shape[1] on coarse levels)
            max_levels=12, keep=False)
        del A_in
        self.levels: list[_Level] = []
        for i, lev in enumerate(ml.levels):
            Ai = A if i == 0 else sp.csr_matrix(lev.A)
            level = _Level(Ai, *self._smoother_data(Ai))
            if i < len(ml.levels) - 1:
                level.P = BlockOperator(sp.csr_matrix(lev.P))
                level.R = BlockOperator(sp.csr_matrix(lev.P.T))
            self.levels.append(level)
        del ml
        self._factor_coarse()
        self.B, self.block = B, block
        self.max_components, self.strength_tol = max_components, strength_tol
        self._set_components(A)
        self.setup_time = time.perf_counter() - t0

    @staticmethod
    def _smoother_data(A: sp.csr_matrix, d: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        d = A.diagonal() if d is None else d
        dmax = np.abs(d).max() if d.size else 1.0
        dinv = 1.0 / np.where(d > 1e-300 * max(dmax, 1e-300), d, max(dmax, 1.0))
        return dinv, _spectral_bound(A, dinv)

    def _factor_coarse(self) -> None:
        Ac = self.levels[-1].A.toarray()
        Ac = 0.5 * (Ac + Ac.T)
        try:
            self._coarse = ("cholesky", sla.cho_factor(Ac, lower=True, check_finite=False))
        except np.linalg.LinAlgError:  # semi-definite (a free body): pseudo-inverse
            self._coarse = ("pinv", np.linalg.pinv(Ac, hermitian=True))

    def update_fine(self, A: sp.csr_matrix, diagonal: np.ndarray | None = None) -> None:
        """Use ``A`` (its diagonal if known) as the finest operator (new design), keeping the
        coarse levels."""
        A = sp.csr_matrix(A)
        level = self.levels[0]
        level.A = A
        level.op = BlockOperator(A)
        level.dinv, level.lmax = self._smoother_data(A, diagonal)
        if len(self.levels) == 1:
            self._factor_coarse()
        if self.Z is not None:  # the regions of the setup, their coarse matrix for the new A
            self._factor_regions(A)

    def _set_components(self, A: sp.csr_matrix) -> None:
        """The rigid-body modes of every weakly coupled region, for an exact coarse correction.

        In SIMP designs E_void/E_solid = 1e-9: a solid island held only by void, or a void
        region, moves rigidly at almost no energy, and aggregates that straddle the void cannot
        represent that motion — LOBPCG then stalls (measured: no convergence in 300 iterations
        with two islands of ~90 nodes). Cutting the connections weaker than ``strength_tol``
        (|a_ij| / √(a_ii a_jj), node level) splits the structure into regions; the rigid modes of
        the solid ones except the largest (at most ``max_components``) become the columns of Z, and
        the preconditioner adds Z (ZᵀAZ)⁻¹ Zᵀ (still symmetric positive definite). The regions are
        found at setup (one pass over A); :meth:`update_fine` only refactors ZᵀAZ.
        Skipped when the diagonal varies by less than 1/strength_tol (no contrast).
        """
        self.Z = None
        d = A.diagonal()
        if self.max_components <= 0 or d.size == 0 or d.min() > self.strength_tol * d.max():
            return
        labels, n_comp = _weak_components(A, d, self.block, self.strength_tol)
        if n_comp < 2:
            return
        # Solid regions only (median diagonal within 1/strength_tol of the largest): void regions
        # are soft too, but the mass law keeps their modes high, and their huge corrections
        # (ZᵀAZ ~ 1e-9) swamp the useful part of the preconditioned residual (measured: 24 → 32
        # iterations on an I-beam design when they were included).
        sizes = np.bincount(labels, minlength=n_comp)
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate(([0], np.cumsum(sizes)))
        median = np.array([np.median(d[order[starts[c]:starts[c + 1]]]) for c in range(n_comp)])
        solid = np.flatnonzero((median >= self.strength_tol * d.max()) & (sizes >= 2 * self.block))
        if solid.size < 2:
            return
        solid = solid[np.argsort(sizes[solid])[::-1]][1: self.max_components + 1]  # all but the largest
        rows, cols, vals = [], [], []
        n_col = 0
        for c in solid:
            dofs = np.sort(order[starts[c]:starts[c + 1]])
            Q, R = np.linalg.qr(self.B[dofs])
            rank = np.abs(np.diag(R)) > 1e-8 * np.abs(np.diag(R)).max()
            Q = Q[:, rank]
            rows.append(np.repeat(dofs, Q.shape[1]))
            cols.append(np.tile(np.arange(n_col, n_col + Q.shape[1]), dofs.size))
            vals.append(Q.ravel())
            n_col += Q.shape[1]
        self.Z = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(A.shape[0], n_col))
        self.ZT = sp.csr_matrix(self.Z.T)
        self._factor_regions(A)
        logger.debug("AMG region correction: %d regions, %d columns", solid.size, n_col)

    def _factor_regions(self, A: sp.csr_matrix) -> None:
        ZAZ = (self.ZT @ (A @ self.Z)).toarray()
        try:
            self._Zfactor = sla.cho_factor(0.5 * (ZAZ + ZAZ.T), lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            logger.debug("region coarse matrix not definite; no region correction")
            self.Z = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.levels[0].A.shape

    @property
    def operator_complexity(self) -> float:
        return sum(lev.A.nnz for lev in self.levels) / self.levels[0].A.nnz

    def describe(self) -> str:
        sizes = " > ".join(str(lev.A.shape[0]) for lev in self.levels)
        return f"{len(self.levels)} levels ({sizes}), operator complexity {self.operator_complexity:.2f}"

    def _chebyshev(self, level: _Level, b: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        lmax = level.lmax
        lmin = lmax / self.ratio
        theta, delta = 0.5 * (lmax + lmin), 0.5 * (lmax - lmin)
        sigma = theta / delta
        rho = 1.0 / sigma
        dinv = level.dinv[:, None] if b.ndim == 2 else level.dinv
        r = b.copy() if x is None else b - level.op @ x
        d = (dinv * r) / theta
        x = d.copy() if x is None else x + d
        for _ in range(self.degree - 1):
            rho_new = 1.0 / (2.0 * sigma - rho)
            r -= level.op @ d
            d *= rho_new * rho
            d += (2.0 * rho_new / delta) * (dinv * r)
            x += d
            rho = rho_new
        return x

    def _cycle(self, i: int, b: np.ndarray) -> np.ndarray:
        level = self.levels[i]
        if i == len(self.levels) - 1:
            kind, data = self._coarse
            return sla.cho_solve(data, b, check_finite=False) if kind == "cholesky" else data @ b
        x = self._chebyshev(level, b, None)
        r = b - level.op @ x
        x += level.P @ self._cycle(i + 1, level.R @ r)
        return self._chebyshev(level, b, x)

    def __call__(self, b: np.ndarray) -> np.ndarray:
        """Apply one V-cycle to a vector (n,) or a block (n, k)."""
        b = np.asarray(b, dtype=float)
        x = self._cycle(0, b)
        if self.Z is not None:
            x = x + self.Z @ sla.cho_solve(self._Zfactor, self.ZT @ b, check_finite=False)
        return x


class _VCycleSolve:
    """The ``solve(b)`` interface of a factorisation, answered by one AMG V-cycle (approximate)."""

    name = "amg-vcycle"

    def __init__(self, preconditioner: AMGPreconditioner) -> None:
        self.preconditioner = preconditioner

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self.preconditioner(b)


# --------------------------------------------------------------------------------------------- #
# the modal solver


class AMGModalSolver(LobpcgWork):
    """Leading eigenpairs by AMG-preconditioned LOBPCG, warm-started between calls.

    Same conventions as :class:`~fem_eigopt.solvers.lanczos.LanczosSolver`: ``n_modes + 1`` pairs are computed
    (the extra one is ``Modes.next_eigenvalue``), vectors are M-normalised and signed by
    :func:`~fem_eigopt.solvers.modes.normalize_modes`, eigenvalues are the Rayleigh quotients xᵀKx in
    ascending order, clusters by :func:`~fem_eigopt.solvers.modes.find_clusters`.

    Parameters
    ----------
    n_modes : int
    model : Model, optional
        Gives the near-null space (rigid-body modes from the free dofs' coordinates and
        components) and the nodal block size; without it, one constant vector per component.
    cluster_tol : float
        Relative tolerance for repeated eigenvalues.
    tol : float
        LOBPCG relative residual ``‖Kx − λMx‖ / (‖Kx‖ + |λ|‖Mx‖)`` of the accurate modes (or its
        rounding floor); eigenvalues, Rayleigh quotients, are then accurate to about tol².
    maxiter : int
        LOBPCG iterations per solve (a solve that reaches it with a reused hierarchy is continued
        once with a new hierarchy).
    guard : int
        Extra block vectors beyond the n_modes + 1 computed (faster convergence of the last ones).
    shift : "auto" or float
        The preconditioner approximates (K + shift·c·M)⁻¹ with c = mean(diag K)/mean(diag M).
        ``"auto"``: 0 when the model has supports (K is definite), 1e-8 for a free body (like
        LanczosSolver's auto shift). A shift above the wanted eigenvalues slows their convergence by
        about (λ + shift·c)/λ: a solid island in void has λ ~ 1e-13 of K's scale, and even 1e-8
        stopped its convergence (measured).
    reuse : bool
        Keep the hierarchy between calls. It is rebuilt when its extra iterations have cost a
        setup, when the stiffness grew by more than ``rebuild_stiffening`` (see there), or in the
        middle of a solve that takes 10 iterations more than the last solve with a new hierarchy.
    rebuild_stiffening : float
        Rebuild the kept hierarchy before a solve when the 99.9 % quantile of
        diag K / diag K_setup (K_setup: the matrix the hierarchy was built for) exceeds this: a
        region has stiffened that the coarse levels saw as (nearly) void (module docstring: kept
        hierarchies failed from 10 on and served well up to 5.6).
    accurate_modes : int, optional
        Only the first ``accurate_modes`` pairs (those differentiated) must reach ``tol``; the
        others stop at ``loose_tol`` (as :class:`~fem_eigopt.solvers.subspace.SubspaceModalSolver`).
    loose_tol : float
    fallback : int
        A solve that does not converge is redone by shift-invert Lanczos with a factorisation
        (:class:`~fem_eigopt.solvers.lanczos.LanczosSolver`) when there are at most this many free dofs;
        above, the best iterate is returned with a warning.
    threads : int or None
        MKL threads for the sparse products during LOBPCG: 1 by default — they are memory bound
        (a second thread measured no faster), and one thread makes the sums, hence the results,
        repeatable. None: MKL's setting.
    degree, ratio, max_coarse, strength : AMG options (see :class:`AMGPreconditioner`).
    regions : int
        Weakly coupled solid regions (islands in void) given an exact rigid-body correction
        (``max_components`` of :class:`AMGPreconditioner`; 0 switches it off).
    tol_per_change : float
        Inexact gradients while the design moves, as in
        :class:`~fem_eigopt.solvers.subspace.SubspaceModalSolver`: when the optimiser's evaluator sets
        ``design_change`` (Δ, RMS change of the physical densities), the accurate modes converge
        to ``tol · min(max(1, tol_per_change · Δ / 1e-6), max_loosening)`` — the same relative
        loosening as the subspace solver's default (whose 1e-6 is an energy-norm error; this
        solver's Euclidean relative residual bounds the eigenvector error from above, so the same
        factor is at least as safe). 0 switches it off.
    max_loosening : float
        The largest factor ``tol_per_change`` may loosen ``tol`` by (100: 1e-8 -> 1e-6).

    Attributes
    ----------
    last_timings : dict
        ``setup`` (hierarchy built or fine level updated) and ``eigensolve`` seconds.
    last_iterations : int
        LOBPCG iterations of the last solve.
    last_residuals : ndarray
        Relative residuals of the last solve's block.
    iteration_history : list of (iterations, new hierarchy)
    n_solves, n_setups, n_fallbacks : int
    preconditioner : AMGPreconditioner
    factorization : object with ``solve(b)``, or None before the first solve
        One V-cycle of the current hierarchy, an SPD approximation of ``(K − σM)⁻¹`` (σ = 0 for
        a supported model): what :func:`fem_eigopt.sensitivity.eigenvectors.eigenvector_adjoint`'s MINRES needs as
        its preconditioner, so eigenvector responses need no factorisation at any size (a few
        more MINRES iterations than with exact factors).
    backend : str
        ``"amg"``.
    """

    backend = "amg"
    #: LOBPCG stops (or rebuilds a kept hierarchy) when the residuals, within 1000 tolerances,
    #: have not decreased for this many iterations: rounding level (the best iterate is returned)
    STAGNATION = 15
    #: LOBPCG recomputes its carried products K X, M X, K P, M P every this many iterations
    REFRESH_PRODUCTS = 25

    @property
    def factorization(self) -> "_VCycleSolve | None":
        return None if self.preconditioner is None else _VCycleSolve(self.preconditioner)

    def __init__(self, n_modes: int = 6, model=None, cluster_tol: float = 1e-6, tol: float = 1e-8,
                 maxiter: int = 300, guard: int = 2, shift="auto", reuse: bool = True,
                 accurate_modes: int | None = None, loose_tol: float = 1e-4, fallback: int = 200_000,
                 rebuild_stiffening: float = 8.0, threads: int | None = 1,
                 degree: int = 3, ratio: float = 20.0, max_coarse: int = 1500, strength="symmetric",
                 regions: int = 64, tol_per_change: float = 1e-2, max_loosening: float = 100.0) -> None:
        if n_modes < 1:
            raise InputError(f"n_modes = {n_modes!r}; allowed: an integer >= 1")
        self.n_modes = int(n_modes)
        self.model = model
        self.cluster_tol = cluster_tol
        self.tol = float(tol)
        if not tol_per_change >= 0.0:
            raise ValueError(f"tol_per_change={tol_per_change!r}: must be >= 0 (0: always tol)")
        self.tol_per_change = float(tol_per_change)
        self.max_loosening = max(float(max_loosening), 1.0)
        #: RMS change of the physical densities since the last evaluated design, set by an
        #: optimiser's evaluator (see ``tol_per_change``); None: converge to ``tol``
        self.design_change: float | None = None
        #: the accurate modes' relative-residual tolerance in the last solve (``tol`` or looser)
        self.last_tol = self.tol
        self.maxiter = int(maxiter)
        self.guard = int(guard)
        if shift == "auto":
            shift = 0.0 if model is not None and model.fixed_dofs.size else 1e-8
        self.shift_factor = float(shift)
        self.reuse = reuse
        self.accurate_modes = accurate_modes
        #: log a warning when the last returned mode's cluster continues beyond it
        self.warn_incomplete_cluster = True
        self.loose_tol = float(loose_tol)
        self.fallback = int(fallback)
        self.rebuild_stiffening = float(rebuild_stiffening)
        self.threads = threads
        self.amg_options = dict(degree=degree, ratio=ratio, max_coarse=max_coarse, strength=strength,
                                max_components=regions)
        self.preconditioner: AMGPreconditioner | None = None
        self.shift = 0.0
        self.n_solves = 0
        self.n_setups = 0
        self.n_fallbacks = 0
        self.last_iterations = 0
        self.last_residuals = np.zeros(0)
        self.last_timings: dict[str, float] = {}
        self.iteration_history: list[tuple[int, bool]] = []
        #: accepted for the interface (per-mode tolerances of the subspace solver); unused here
        self.mode_weights: np.ndarray | None = None
        #: LOBPCG work over all solves
        self.counts = LobpcgCounts()
        self._workspace = Workspace()  # LOBPCG's kept arrays
        self._t_rebuild = 0.0  # seconds rebuilding the hierarchy midway in the current solve
        self._block: np.ndarray | None = None
        self._baseline: int | None = None  # iterations of the last solve with a fresh hierarchy
        self._excess = 0.0  # seconds of iterations beyond the baseline since the last setup
        self._rebuild = False

    def reset(self) -> None:
        """Forget the kept vectors: the next solve starts from random vectors (after a jump in the
        design); the hierarchy is rebuilt too."""
        self._block = None
        self._rebuild = True

    def release(self) -> None:
        """Free the hierarchy and the kept vectors (the next solve starts from random vectors)."""
        self.preconditioner = None
        self._workspace.release()
        self._block = None

    def work_counts(self) -> dict[str, int]:
        """Work done over all solves (see :meth:`~fem_eigopt.solvers.base.EigenSolver.work_counts`)."""
        return {"solves": self.n_solves, "factorizations": 0, "iterations": self.n_lobpcg_iterations,
                "preconditioner_columns": self.n_preconditioner_columns, "rayleigh_ritz": self.counts.rayleigh_ritz,
                "setups": self.n_setups, "fallbacks": self.n_fallbacks}

    # -- pieces
    def _near_null_space(self, n: int) -> tuple[np.ndarray, int]:
        model = self.model
        if model is not None and model.n_free == n:
            free = model.free_dofs
            B = rigid_body_modes(model.basis.doflocs[:, free], model.dof_component[free])
            dim = model.dim
            # nodal blocks: the free dofs come in complete nodes (dim consecutive numbers)
            nodes = free.reshape(-1, dim) if n % dim == 0 else None
            blocks_ok = (nodes is not None and np.all(nodes[:, 0] % dim == 0)
                         and np.all(np.diff(nodes, axis=1) == 1))
            return B, (dim if blocks_ok else 1)
        dim = model.dim if model is not None else 1
        return _constant_modes(n, dim), 1

    def _setup(self, A: sp.csr_matrix) -> None:
        self.preconditioner = None  # free the old hierarchy first
        B, block = self._near_null_space(A.shape[0])
        self.preconditioner = AMGPreconditioner(A, B, block=block, **self.amg_options)
        self.n_setups += 1
        self._excess, self._rebuild = 0.0, False
        logger.debug("AMG hierarchy: %s, setup %.2f s", self.preconditioner.describe(),
                     self.preconditioner.setup_time)

    def _step_tolerance(self) -> float:
        """The accurate modes' tolerance for this solve (see ``tol_per_change``)."""
        # the subspace solver's rule (its tol 1e-6) as a factor on this tol: Δ scaled by tol/1e-6
        change = None if self.design_change is None else self.design_change * self.tol / 1e-6
        return step_tolerance(self.tol, change, self.tol_per_change, self.max_loosening * self.tol)

    def _tolerances(self, k: int) -> np.ndarray:
        self.last_tol = self._step_tolerance()
        tol = np.full(k, self.last_tol)
        if self.accurate_modes is not None:
            tol[min(self.accurate_modes, k):] = max(self.loose_tol, self.last_tol)
        return tol

    # -- solve
    def solve(self, K: sp.csr_matrix, M: sp.csr_matrix, warm_start: np.ndarray | None = None) -> Modes:
        """Eigenpairs of ``K x = λ M x``.

        ``warm_start`` (n, j): columns to start from instead of the previous call's block.
        """
        n = K.shape[0]
        if self.n_modes >= n:
            raise InputError(f"n_modes = {self.n_modes}; allowed: fewer than the {n} free dofs")
        k = min(self.n_modes + 1, n - 1)
        m = min(k + self.guard, n - 1)
        tol = self._tolerances(k)
        Kop, Mop = BlockOperator(K), BlockOperator(M)
        scale = float(np.mean(Kop.diagonal())) / float(np.mean(Mop.diagonal()))
        self.shift = -self.shift_factor * scale
        A = K - self.shift * M if self.shift else K
        dA = A.diagonal() if self.shift else Kop.diagonal()

        t0 = time.perf_counter()
        fresh = (self.preconditioner is None or self.preconditioner.shape != K.shape or not self.reuse
                 or self._rebuild)
        if not fresh:
            # The coarse levels were built for an earlier K: they no longer fit where material
            # has appeared since (stiffness up by more than `rebuild_stiffening` on 0.1 % of the
            # dofs); material removed does not hurt (module docstring)
            fresh = float(np.quantile(dA / self._diag_ref, 0.999)) > self.rebuild_stiffening
        if fresh:
            self._setup(A)
            self._diag_ref = dA
        else:
            self.preconditioner.update_fine(A, dA)
        t_setup = time.perf_counter() - t0

        rng = np.random.default_rng(20070307)
        if warm_start is not None and warm_start.shape[0] == n:
            X0 = np.asarray(warm_start, dtype=float).reshape(n, -1)[:, :m]
            X0 = np.hstack([X0, rng.uniform(-1.0, 1.0, (n, m - X0.shape[1]))])
        elif self._block is not None and self._block.shape == (n, m):
            X0 = self._block
        else:
            X0 = rng.uniform(-1.0, 1.0, (n, m))
        t1 = time.perf_counter()
        # With a kept hierarchy, give up 10 iterations beyond those of the last fresh solve, build
        # a new one and continue from the current block.
        limit = self.maxiter if fresh or self._baseline is None else min(self.maxiter, self._baseline + 10)
        result = self._iterate(Kop, Mop, A, X0, tol, k, limit, stale=not fresh)
        t_setup += self._t_rebuild
        t_iterate = time.perf_counter() - t1 - self._t_rebuild
        X, iterations, res = result.X, result.iterations, result.residuals
        if result.refreshed_at is not None:
            fresh = True
            self._baseline = iterations - result.refreshed_at
        elif fresh:
            self._baseline = iterations
        converged = result.converged
        self._account(iterations, t_iterate, converged)
        self.last_iterations, self.last_residuals = iterations, res
        self.iteration_history.append((iterations, fresh))
        self._block = X
        vecs = X[:, :k]
        if not converged:
            if n <= self.fallback:
                logger.warning("AMG-LOBPCG did not converge in %d iterations (relative residuals %s, tol %.1e): "
                               "shift-invert Lanczos with a factorisation instead", iterations,
                               np.array2string(res[:k], precision=2), self.last_tol)
                from fem_eigopt.solvers.lanczos import LanczosSolver

                direct = LanczosSolver(k, cluster_tol=self.cluster_tol).solve(K, M)
                vecs = direct.vectors
                self._block = np.hstack([vecs, X[:, k:]])
                self.n_fallbacks += 1
            else:
                logger.warning("AMG-LOBPCG did not converge in %d iterations: relative residuals %s (tol %.1e); "
                               "returning the best iterate", iterations, np.array2string(res[:k], precision=2),
                               self.last_tol)
        self.last_timings = {"setup": t_setup, "eigensolve": time.perf_counter() - t0 - t_setup}

        self.n_solves += 1
        modes = modes_from_vectors(vecs, Kop, M, self.n_modes, self.shift, self.cluster_tol, stiffness_scale=scale,
                                   warn=self.warn_incomplete_cluster)
        self.warn_incomplete_cluster &= not modes.cut_cluster  # once per solver, not per design
        return modes

    def _iterate(self, Kop: BlockOperator, Mop: BlockOperator, A: sp.csr_matrix, X0: np.ndarray, tol: np.ndarray,
                 k: int, limit: int, stale: bool):
        """LOBPCG (:func:`~fem_eigopt.solvers.lobpcg.lobpcg`) preconditioned by the V-cycle, from X0
        (n, m); a kept (``stale``) hierarchy is rebuilt for A midway when the limit is reached or
        the residuals stagnate. Seconds rebuilding go to ``_t_rebuild``."""
        self._t_rebuild = 0.0

        def rebuild() -> None:
            logger.debug("AMG-LOBPCG: not converging with a kept hierarchy; rebuilding")
            t = time.perf_counter()
            self._setup(A)
            self._t_rebuild += time.perf_counter() - t

        m = X0.shape[1]
        tol_all = np.concatenate([tol, np.full(m - k, tol.max())])  # guard vectors: not waited for
        # Rounding in K @ x is about eps·‖K‖·‖x‖: a mode whose λ is ~1e-14 of K's largest (a solid
        # island in void) cannot reach ``tol`` relative to itself; the floor accepts ~300 eps·‖K‖·‖x‖.
        floor = 300.0 * np.finfo(float).eps / tol.min() * float(np.abs(Kop.diagonal()).max())
        with _MKLThreads(self.threads):
            return lobpcg(Kop, Mop, X0, self._precondition, relative_residuals(floor), lambda lam: (tol_all, k),
                          workspace=self._workspace, counts=self.counts, limit=limit, fresh_limit=self.maxiter,
                          stale=stale, refresh=rebuild, orthogonalize=True, stagnation=self.STAGNATION,
                          refresh_products=self.REFRESH_PRODUCTS, drop=1e-8)

    def _precondition(self, R: np.ndarray, out: np.ndarray, dots: np.ndarray) -> None:
        """One V-cycle on the block R (n, a) into ``out``; ``dots`` = rᵀ T r per column."""
        out[...] = self.preconditioner(R)
        dots[...] = np.einsum("ij,ij->j", R, out)

    def _account(self, iterations: int, seconds: float, converged: bool) -> None:
        """Rent or buy: rebuild once the iterations beyond those of the last solve with a fresh
        hierarchy have cost as much time as building it (at most twice the best cost in hindsight)."""
        if not converged:
            self._rebuild = True
            return
        if iterations == 0 or self._baseline is None:
            return
        self._excess += max(0, iterations - self._baseline) * seconds / iterations
        setup = self.preconditioner.setup_time if self.preconditioner is not None else 0.0
        if self.reuse and self._excess > setup:
            self._rebuild = True
