"""Sparse symmetric factorisations behind one small interface, chosen by name.

The modal solver factorises the shifted matrix ``A = K - σM`` once per design and then solves
many right-hand sides with it. Every backend keeps its symbolic analysis (fill-reducing ordering)
for as long as the sparsity pattern stays the same, which it does for a whole optimisation run
because the assembler writes every design onto one fixed pattern.

Backends
--------
``"pardiso"``
    Intel MKL PARDISO through the ``mkl_rt`` library that the ``pypardiso`` wheel installs. Symbolic
    analysis (phase 11) once per pattern, numeric factorisation (phase 22) per design, solve
    (phase 33). Symmetric positive definite (``mtype=2``) when the shift is negative, symmetric
    indefinite Bunch–Kaufman (``mtype=-2``) otherwise. Fastest on Linux x86-64 (see
    ``benchmarks/bench_foundation.py``).
``"superlu"``
    SciPy's SuperLU with a symmetric ordering (minimum degree on AᵀA + A, symmetric mode, diagonal
    pivoting). Always available; SciPy exposes no way to keep the symbolic analysis, so every
    design pays for the ordering again.
``"cholmod"``
    CHOLMOD through the optional ``cholespy`` wheel (no symbolic reuse in its API).
"""

from __future__ import annotations

import ctypes
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from fem_eigopt.errors import InputError
from fem_eigopt.linalg.kernels import SMALL_SYSTEM_ROWS, reusable
from fem_eigopt.linalg.mkl import load_function, load_pardiso


class Factorization:
    """A reusable sparse factorisation of a symmetric matrix.

    Call :meth:`factor` with a new matrix (same pattern: only the numeric phase is redone), then
    :meth:`solve` as often as needed.
    """

    name = "base"

    def factor(self, A: sp.csr_matrix, positive_definite: bool = True) -> None:  # pragma: no cover
        raise NotImplementedError

    def solve(self, b: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def solve_into(self, b: np.ndarray, out: np.ndarray, dots: np.ndarray | None = None) -> np.ndarray:
        """Solve for the columns of ``b`` (n, k) and write the solutions into ``out`` (n, k), which
        may be a column slice of a wider array; returns ``out``. ``dots`` (k,), if given, receives
        ``b_jᵀ x_j`` for every column (a preconditioned residual norm, accumulated in double).
        Backends that can avoid the temporaries (PARDISO) override this."""
        out[...] = self.solve(b).reshape(out.shape)
        if dots is not None:
            dots[...] = np.einsum("ij,ij->j", b.reshape(out.shape), out)
        return out

    def tune_block_solves(self) -> None:
        """Let solves of several right-hand sides run as one block or column by column, whichever
        the solves so far showed to be faster (a preconditioner's choice: the two ways agree to
        rounding only). Nothing here: only backends that offer both ways (PARDISO's
        ``multi_rhs``) override this."""

    def release(self) -> None:
        """Free the factors and the symbolic analysis (the next :meth:`factor` starts afresh)."""

    def work_estimate(self) -> tuple[float, float] | None:
        """(floating-point operations of one numeric factorisation, non-zeros of the factors) of the
        current pattern, as the backend's analysis reports them; None where it reports neither.

        Machine-independent measures of what a factorisation and a solve cost, for decisions that
        must come out the same in every run (the subspace solver's refresh rule)."""
        return None

    #: number of symbolic analyses and numeric factorisations done (for tests and benchmarks)
    n_symbolic: int = 0
    n_numeric: int = 0
    #: "double", or "single" for factors stored and applied in single precision (preconditioning)
    precision: str = "double"


def _same_pattern(A: sp.csr_matrix, indptr: np.ndarray | None, indices: np.ndarray | None) -> bool:
    if indptr is None or indices is None:
        return False
    if A.indptr is indptr and A.indices is indices:
        return True
    return (
        A.indptr.shape == indptr.shape
        and A.indices.shape == indices.shape
        and np.array_equal(A.indptr, indptr)
        and np.array_equal(A.indices, indices)
    )


class SuperLUFactorization(Factorization):
    """SciPy SuperLU with a symmetric fill-reducing ordering (always available)."""

    name = "superlu"

    def __init__(self) -> None:
        self._lu = None
        self.n_symbolic = 0
        self.n_numeric = 0

    def factor(self, A: sp.csr_matrix, positive_definite: bool = True) -> None:
        A = sp.csc_matrix(A)
        # For symmetric matrices, a minimum-degree ordering of A^T + A with diagonal pivots is
        # several times faster than SuperLU's default COLAMD (which targets unsymmetric matrices).
        self._lu = spla.splu(
            A,
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0 if positive_definite else 0.1,
            options={"SymmetricMode": True},
        )
        self.n_symbolic += 1
        self.n_numeric += 1

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self._lu.solve(np.asarray(b, dtype=float))

    def release(self) -> None:
        self._lu = None


class PardisoFactorization(Factorization):
    """MKL PARDISO via ctypes, keeping the symbolic analysis while the pattern is unchanged.

    Only the upper triangle of the (symmetric) input is handed to PARDISO; the positions of the
    upper-triangle entries in the CSR data array are computed once per pattern.

    Parameters
    ----------
    threads : int or None
        MKL threads for every phase (see the comment in ``__init__``).
    precision : "double" or "single"
        ``"single"`` factorises and solves in single precision (PARDISO's ``iparm[27] = 1``): half
        the memory traffic, so factorisations and solves run markedly faster, most in 3D
        (``benchmarks/bench_foundation.py``; docs/performance.md). The solves are then only approximate — relative
        residual 1e-2 in 3D, 0.2 in 2D on SIMP designs with E_min = 1e-9 — which is fine for a
        preconditioner (:class:`~fem_eigopt.solvers.subspace.SubspaceModalSolver`, the eigenvector
        adjoint's MINRES) and wrong for anything needing exact solves (shift-invert Lanczos).
    multi_rhs : "block", "columns" or "auto"
        How a solve with k ≥ 2 right-hand sides runs: ``"block"``, one PARDISO call for all
        (the default); ``"columns"``, one call per column; ``"auto"``, whichever the solves so
        far showed to be faster for that k (each way is timed :attr:`TUNING_SAMPLES` times per k,
        alternating, then the faster minimum wins — at once after one sample each when one way
        took less than half the other's time; the timings restart with a new pattern). Why:
        PARDISO's multi-RHS solve has a large fixed cost on 2D models, where a few columns
        solved one by one are faster than the same columns as a block, while in 3D the block
        solve is properly blocked and faster (docs/performance.md). The two ways
        agree to rounding, not bit for bit, so ``"auto"`` (a timing-based choice) is for
        preconditioners only.
    """

    name = "pardiso"
    #: unknowns below which PARDISO runs one thread (see ``threads``)
    SMALL = SMALL_SYSTEM_ROWS
    #: timed solves per way and per number of columns before ``multi_rhs="auto"`` decides
    TUNING_SAMPLES = 3
    #: ``multi_rhs="auto"`` decides after one sample each when one way is this many times faster
    #: (a 2D block solve can cost several times the columns one by one: timing such a loser
    #: three times would cost more than the choice saves over a short run)
    CLEAR_WIN = 2.0

    def __init__(self, threads: int | None = None, precision: str = "double", multi_rhs: str = "block") -> None:
        if precision not in ("double", "single"):
            raise InputError(f"PARDISO precision {precision!r}; allowed: 'double', 'single'")
        if multi_rhs not in ("block", "columns", "auto"):
            raise InputError(f"PARDISO multi_rhs {multi_rhs!r}; allowed: 'block', 'columns', 'auto'")
        self.precision = precision
        self.multi_rhs = multi_rhs
        #: ``multi_rhs="auto"``: seconds of the timed solves, {k: ([block...], [columns...])}
        self._rhs_timings: dict[int, tuple[list[float], list[float]]] = {}
        self._dtype = np.float32 if precision == "single" else np.float64
        self._lib = load_pardiso()
        self._set_local_threads = load_function("MKL_Set_Num_Threads_Local")
        #: MKL threads for every phase of this factorisation (fixed for its lifetime: PARDISO
        #: must not see the count change between phases); None: one below SMALL unknowns, MKL's
        #: default (all cores, or MKL_NUM_THREADS) above. A second thread speeds up factorisations
        #: and solves of mid-size and large models (docs/performance.md); below SMALL the gain is
        #: negligible and one thread keeps small models bitwise reproducible. Threaded PARDISO is
        #: not bitwise reproducible from run to run; MKL's conditional numerical reproducibility
        #: (environment MKL_CBWR=AUTO,STRICT, set before MKL loads) makes it so, at the price of
        #: other last bits than the default mode (docs/du-olhoff.md: these runs are path-sensitive).
        self.threads = threads
        self._pt = np.zeros(64, dtype=np.int64)
        self._iparm = np.zeros(64, dtype=np.int32)
        self._mtype = 0
        self._indptr = None
        self._indices = None
        self._upper_pos = None
        self._ia = None
        self._ja = None
        self._a = None
        self._gathered: np.ndarray | None = None  # float64 gather of the upper triangle (single precision)
        self._rhs: np.ndarray | None = None  # kept right-hand side and solution in PARDISO's precision
        self._sol: np.ndarray | None = None
        self._n = 0
        self.n_symbolic = 0
        self.n_numeric = 0

    # PARDISO's iparm (0-based here): see the oneMKL reference "pardiso iparm parameter".
    def _set_iparm(self) -> None:
        ip = self._iparm
        ip[:] = 0
        ip[0] = 1  # use the values below, not the defaults
        ip[1] = 2  # METIS nested-dissection ordering
        ip[7] = 0  # up to two steps of iterative refinement when pivots were perturbed
        ip[9] = 8  # pivot perturbation 1e-8 (symmetric default)
        ip[10] = 0  # no scaling (symmetric matrices)
        ip[12] = 0  # no weighted matching (symmetric matrices)
        ip[17] = -1  # report nnz(L)
        ip[18] = -1  # report the factorisation's floating-point operations (MFLOP)
        ip[27] = 1 if self.precision == "single" else 0  # factors, matrix and vectors in float32
        ip[34] = 1  # zero-based indexing: no copies of the index arrays

    def _call(self, phase: int, b: np.ndarray | None = None, x: np.ndarray | None = None) -> np.ndarray | None:
        threads = self.threads if self.threads is not None else (1 if self._n < self.SMALL else 0)
        previous = self._set_local_threads(threads)  # 0 = back to MKL's global setting
        try:
            return self._call_pardiso(phase, b, x)
        finally:
            self._set_local_threads(previous)

    def _call_pardiso(self, phase: int, b: np.ndarray | None = None, x: np.ndarray | None = None
                      ) -> np.ndarray | None:
        """One PARDISO phase; for solves, the solution of ``b`` (written into ``x`` if given: then
        ``x`` and ``b`` must be Fortran-ordered in the factorisation's precision)."""
        error = ctypes.c_int32(0)
        i32 = ctypes.POINTER(ctypes.c_int32)
        real = ctypes.POINTER(ctypes.c_float if self._dtype == np.float32 else ctypes.c_double)
        if b is None:
            nrhs = 1
            bb = np.zeros(1, dtype=self._dtype)
            x = np.zeros(1, dtype=self._dtype)
        else:
            bb = np.asfortranarray(b, dtype=self._dtype)
            nrhs = 1 if bb.ndim == 1 else bb.shape[1]
            if x is None:
                x = np.zeros_like(bb, order="F")
            elif x.shape != bb.shape or x.dtype != bb.dtype or not x.flags.f_contiguous:
                raise ValueError(f"PARDISO solve: x {x.shape} {x.dtype} does not fit b {bb.shape} {bb.dtype}")
        perm = np.zeros(1, dtype=np.int32)
        self._lib(
            self._pt.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
            ctypes.byref(ctypes.c_int32(1)),
            ctypes.byref(ctypes.c_int32(1)),
            ctypes.byref(ctypes.c_int32(self._mtype)),
            ctypes.byref(ctypes.c_int32(phase)),
            ctypes.byref(ctypes.c_int32(self._n)),
            self._a.ctypes.data_as(real) if self._a is not None else None,
            self._ia.ctypes.data_as(i32) if self._ia is not None else None,
            self._ja.ctypes.data_as(i32) if self._ja is not None else None,
            perm.ctypes.data_as(i32),
            ctypes.byref(ctypes.c_int32(nrhs)),
            self._iparm.ctypes.data_as(i32),
            ctypes.byref(ctypes.c_int32(0)),
            bb.ctypes.data_as(real),
            x.ctypes.data_as(real),
            ctypes.byref(error),
        )
        if error.value != 0:
            raise np.linalg.LinAlgError(f"PARDISO phase {phase} failed with error {error.value}")
        return x if b is not None else None

    def _release(self) -> None:
        if self._n and self._pt.any():
            try:
                self._call(-1)
            except Exception:  # pragma: no cover - best effort at teardown
                pass
        self._pt[:] = 0

    def release(self) -> None:
        self._release()
        self._indptr = self._indices = self._upper_pos = self._ia = self._ja = self._a = self._gathered = None
        self._rhs = self._sol = None
        self._n = 0

    def __del__(self) -> None:  # pragma: no cover - depends on GC timing
        try:
            self._release()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass

    def factor(self, A: sp.csr_matrix, positive_definite: bool = True) -> None:
        # a CSR matrix as it is: re-wrapping it would recheck its index order (a pass over K)
        A = A if getattr(A, "format", None) == "csr" else sp.csr_matrix(A)
        mtype = 2 if positive_definite else -2
        if not A.has_sorted_indices:
            A = A.sorted_indices()
        if not _same_pattern(A, self._indptr, self._indices) or mtype != self._mtype:
            self._analyse(A, mtype)
        else:
            # refill the kept value array in place (see `reusable`: no fresh arrays per design)
            if self._dtype == np.float64:
                np.take(A.data, self._upper_pos, out=self._a)
            else:
                self._gathered = reusable(self._gathered, self._upper_pos.shape)
                np.take(A.data, self._upper_pos, out=self._gathered)
                self._a[...] = self._gathered
        self._call(22)
        self.n_numeric += 1

    def _analyse(self, A: sp.csr_matrix, mtype: int) -> None:
        """Phase 11 (ordering, symbolic factorisation) for A's pattern; A sorted CSR."""
        self._release()
        self._indptr, self._indices = A.indptr, A.indices
        rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
        upper = A.indices >= rows
        self._upper_pos = np.flatnonzero(upper)
        counts = np.bincount(rows[upper], minlength=A.shape[0])
        self._ia = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
        self._ja = A.indices[upper].astype(np.int32)
        self._n = A.shape[0]
        self._mtype = mtype
        self._set_iparm()
        self._a = A.data[self._upper_pos].astype(self._dtype)
        self._rhs_timings = {}
        self._call(11)
        self.n_symbolic += 1

    def memory_estimate(self, A: sp.csr_matrix, positive_definite: bool = True) -> float:
        """Bytes PARDISO expects to need for factorising and solving with ``A`` (its analysis only,
        no numeric factorisation): max(iparm[14], iparm[15] + iparm[16]) kilobytes — the peak of
        the symbolic phase, and its permanent memory plus that of the numeric factorisation and
        solve. The analysis is kept: a ``factor`` of a matrix with this pattern reuses it."""
        A = A if getattr(A, "format", None) == "csr" else sp.csr_matrix(A)
        if not A.has_sorted_indices:
            A = A.sorted_indices()
        self._analyse(A, 2 if positive_definite else -2)
        ip = self._iparm
        return 1024.0 * float(max(int(ip[14]), int(ip[15]) + int(ip[16])))

    def solve(self, b: np.ndarray) -> np.ndarray:
        b = np.asarray(b, dtype=np.float64)
        return self.solve_into(b, np.empty(b.shape, order="F"))

    def tune_block_solves(self) -> None:
        """``multi_rhs = "auto"``: block or column-by-column solves, whichever is faster."""
        self.multi_rhs = "auto"

    def work_estimate(self) -> tuple[float, float] | None:
        """PARDISO's own counts from the analysis (phase 11): ``iparm[18]`` MFLOP of the numeric
        factorisation (0 below one MFLOP) and ``iparm[17]`` non-zeros of the factors (both
        deterministic: METIS's ordering of a pattern is)."""
        if not self._n or self._iparm[17] <= 0 or self._iparm[18] < 0:
            return None
        return 1e6 * float(self._iparm[18]), float(self._iparm[17])

    def solve_into(self, b: np.ndarray, out: np.ndarray, dots: np.ndarray | None = None) -> np.ndarray:
        """Solutions for the columns of ``b`` written into ``out``, through kept buffers: the
        right-hand sides are converted to PARDISO's precision and layout and the solutions back
        into ``out`` once each (in single precision the float32 copies are needed anyway; the
        fresh temporaries for every column cost more than the conversions). ``dots`` are taken
        from those contiguous buffers while they are in cache (accumulated in double; in single
        precision they are the float32-rounded b's products, 6e-8 relative), which is several
        times cheaper than reading b and a strided ``out`` again afterwards."""
        k = b.shape[1] if b.ndim == 2 else 1
        if k < 2 or self.multi_rhs == "block":
            rhs, sol = self._solve_block(b, out)
        elif self.multi_rhs == "columns":
            rhs, sol = self._solve_columns(b, out)
        else:
            rhs, sol = self._solve_tuned(b, out)
        if dots is not None:
            if rhs.ndim == 1:
                dots[...] = np.einsum("i,i->", rhs, sol, dtype=np.float64)
            else:
                for j in range(rhs.shape[1]):  # contiguous columns: one pass each
                    dots[j] = np.einsum("i,i->", rhs[:, j], sol[:, j], dtype=np.float64)
        return out

    def _buffers(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kept Fortran-ordered right-hand-side and solution arrays in PARDISO's precision, shaped
        like ``b`` (views of arrays grown to the widest block seen), the right-hand sides filled."""
        n, k = b.shape[0], (b.shape[1] if b.ndim == 2 else 1)
        if self._rhs is None or self._rhs.shape[0] != n or self._rhs.shape[1] < k or self._rhs.dtype != self._dtype:
            self._rhs = np.empty((n, k), dtype=self._dtype, order="F")
            self._sol = np.empty((n, k), dtype=self._dtype, order="F")
        rhs, sol = (self._rhs[:, :k], self._sol[:, :k]) if b.ndim == 2 else (self._rhs[:, 0], self._sol[:, 0])
        rhs[...] = b  # one conversion for the block (column by column from a row-major b: 2x slower)
        return rhs, sol

    def _solve_block(self, b: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rhs, sol = self._buffers(b)
        self._call(33, rhs, sol)
        out[...] = sol
        return rhs, sol

    def _solve_columns(self, b: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rhs, sol = self._buffers(b)
        for j in range(b.shape[1]):
            self._call(33, rhs[:, j], sol[:, j])
        # one copy of the block into out: writing each column into a row-major out would touch
        # every cache line of it once per column
        out[...] = sol
        return rhs, sol

    def _solve_tuned(self, b: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Block or column by column, whichever was faster for this number of columns."""
        block_times, column_times = self._rhs_timings.setdefault(b.shape[1], ([], []))
        sampled = min(len(block_times), len(column_times))
        if sampled >= self.TUNING_SAMPLES or (sampled >= 1 and max(
                min(block_times) / min(column_times), min(column_times) / min(block_times)) >= self.CLEAR_WIN):
            return (self._solve_block if min(block_times) <= min(column_times) else self._solve_columns)(b, out)
        by_block = len(block_times) <= len(column_times)
        t0 = time.perf_counter()
        buffers = (self._solve_block if by_block else self._solve_columns)(b, out)
        (block_times if by_block else column_times).append(time.perf_counter() - t0)
        return buffers


class CholmodFactorization(Factorization):
    """CHOLMOD supernodal Cholesky from the optional ``cholespy`` wheel (positive definite only)."""

    name = "cholmod"

    def __init__(self) -> None:
        import cholespy  # noqa: F401  (import error tells the user the backend is absent)

        self._solver = None
        self.n_symbolic = 0
        self.n_numeric = 0

    def factor(self, A: sp.csr_matrix, positive_definite: bool = True) -> None:
        import cholespy

        if not positive_definite:
            raise np.linalg.LinAlgError("the cholmod backend needs a positive definite matrix (negative shift)")
        A = sp.csr_matrix(A)
        self._solver = cholespy.CholeskySolverD(
            A.shape[0], A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data, cholespy.MatrixType.CSR
        )
        self.n_symbolic += 1
        self.n_numeric += 1

    def solve(self, b: np.ndarray) -> np.ndarray:
        b = np.ascontiguousarray(b, dtype=np.float64)
        x = np.zeros_like(b)
        self._solver.solve(b, x)
        return x

    def release(self) -> None:
        self._solver = None


_BACKENDS: dict[str, Callable[[], Factorization]] = {
    "pardiso": PardisoFactorization,
    "superlu": SuperLUFactorization,
    "cholmod": CholmodFactorization,
}


def available_memory() -> float | None:
    """Bytes of memory available to new allocations (Linux's ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return 1024.0 * float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_backends() -> list[str]:
    """Names of the factorisation backends that load on this machine, fastest first."""
    names = []
    for name in ("pardiso", "cholmod", "superlu"):
        try:
            _BACKENDS[name]()
        except Exception:  # ImportError, OSError: library missing
            continue
        names.append(name)
    return names


def default_backend() -> str:
    """``"pardiso"`` where MKL loads, otherwise ``"superlu"``."""
    try:
        load_pardiso()
        return "pardiso"
    except Exception:
        return "superlu"


def make_factorization(backend: str = "auto", precision: str = "double", multi_rhs: str = "block") -> Factorization:
    """A new factorisation object for ``backend`` (``"auto"``, ``"pardiso"``, ``"superlu"``, ``"cholmod"``).

    ``precision="single"`` (factors in float32, for preconditioners) needs PARDISO.
    ``multi_rhs`` goes to :class:`PardisoFactorization` (the other backends solve blocks at once).
    """
    if backend == "auto":
        backend = default_backend()
    if backend not in _BACKENDS:
        raise InputError(
            f"factorisation backend {backend!r} is unknown; allowed: auto, {', '.join(_BACKENDS)}"
        )
    if precision not in ("double", "single"):
        raise InputError(f"factorisation precision {precision!r}; allowed: 'double', 'single'")
    if precision == "single" and backend != "pardiso":
        raise InputError(f"single-precision factorisation needs the pardiso backend; backend {backend!r} "
                         "offers double only")
    try:
        if backend == "pardiso":
            return PardisoFactorization(precision=precision, multi_rhs=multi_rhs)
        return _BACKENDS[backend]()
    except (ImportError, OSError) as exc:
        raise InputError(
            f"factorisation backend {backend!r} is not installed here ({exc}); available: "
            f"{', '.join(available_backends())}"
        ) from exc
