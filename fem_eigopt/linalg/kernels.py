"""Dense and sparse kernels shared by the solvers and the sensitivities: MKL GEMM and sparse
products with NumPy/SciPy fallbacks, reusable buffers, Ritz pairs, thread limits.
"""

from __future__ import annotations

import ctypes

import numpy as np
import scipy.sparse as sp

from fem_eigopt.linalg.mkl import MatrixDescriptor, dgemm, sparse_blas

#: rows below which MKL runs one thread (PARDISO's factorisations and solves, GEMMs on blocks of
#: vectors): a second thread does not pay for blocks this small, its start-up and contention cost
#: more than it gains (see docs/performance.md)
SMALL_SYSTEM_ROWS = 20_000

_thread_controller = None


def limited_threads(n: int | None = 1):
    """Context manager limiting BLAS / MKL threads (OpenBLAS and MKL alike) to ``n``.

    Used around the Lanczos iteration: its work is triangular solves with one right-hand side and
    tall-skinny dense algebra, which gain nothing from threads but lose badly when threads are
    oversubscribed: every small BLAS call then waits for a thread whose core another process
    holds (see docs/performance.md).

    Parameters
    ----------
    n : int or None, default 1
        Maximum number of OpenBLAS threads inside the context. ``None`` leaves the settings
        alone.

    Returns
    -------
    context manager
        Restores the previous limits on exit.
    """
    import contextlib

    if n is None:
        return contextlib.nullcontext()
    global _thread_controller
    if _thread_controller is None:
        from threadpoolctl import ThreadpoolController

        _thread_controller = ThreadpoolController()
    # OpenBLAS only: PARDISO must see the same MKL thread count in all its phases (changing it
    # between the analysis and a later factorisation crashed MKL), so PARDISO sets its own count
    # per call (PardisoFactorization.threads).
    return _thread_controller.limit(limits={"openblas": n})


class BlockOperator:
    """``A @ X`` for blocks X (n, k), k ≥ 2: MKL's ``mkl_sparse_d_mm`` (MKL's threads) when
    available, SciPy for single vectors and everywhere else. Holds no copy of A.

    Why: MKL's product reads each row of A once for all k columns and splits the rows over its
    threads, where SciPy's ``csr_matvecs`` is single-threaded; it is faster for the few columns
    of a Lanczos / LOBPCG block, even with one thread (see docs/performance.md). The result
    equals SciPy's to rounding: some MKL releases sum each row sequentially like SciPy, bit for
    bit (the threads split rows), others round some entries one ulp differently.
    (``mkl_sparse_d_mv``, for single vectors, is not used: its vectorised row sums round
    differently.)
    """

    _SPARSE_OPERATION_NON_TRANSPOSE, _SPARSE_MATRIX_TYPE_GENERAL, _SPARSE_LAYOUT_ROW_MAJOR = 10, 20, 101

    def __init__(self, A: sp.spmatrix, use_mkl: bool = True) -> None:
        self.A = A if sp.isspmatrix_csr(A) else sp.csr_matrix(A)
        self.shape = self.A.shape
        self._handle = None
        lib = sparse_blas() if use_mkl else None
        if (lib is not None and self.A.dtype == np.float64 and self.A.nnz < 2**31 - 1
                and self.A.indptr.dtype == np.int32 and self.A.indices.dtype == np.int32):
            self.A.data = np.ascontiguousarray(self.A.data)
            handle = ctypes.c_void_p()
            status = lib.mkl_sparse_d_create_csr(
                ctypes.byref(handle), 0, self.shape[0], self.shape[1], self.A.indptr.ctypes.data,
                self.A.indptr[1:].ctypes.data, self.A.indices.ctypes.data, self.A.data.ctypes.data)
            if status == 0:
                self._handle, self._lib = handle, lib

    def __matmul__(self, X: np.ndarray) -> np.ndarray:
        return self.matmul(X)

    def matmul(self, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``A @ X``, written into ``out`` (m, k) when given (row-major rows, unit column stride:
        e.g. a column slice of a C-ordered array, filled in place); returns the product."""
        if self._handle is None or X.ndim != 2 or X.shape[1] < 2 or X.dtype != np.float64:
            return _into(self.A @ X, out)
        if not _row_major(X):
            X = np.ascontiguousarray(X)
        k = X.shape[1]
        direct = out is not None and out.shape == (self.shape[0], k) and _row_major(out)
        Y = out if direct else np.empty((self.shape[0], k))
        status = self._lib.mkl_sparse_d_mm(
            self._SPARSE_OPERATION_NON_TRANSPOSE, 1.0, self._handle, MatrixDescriptor(self._SPARSE_MATRIX_TYPE_GENERAL, 0, 0),
            self._SPARSE_LAYOUT_ROW_MAJOR, X.ctypes.data, k, X.strides[0] // X.itemsize, 0.0, Y.ctypes.data,
            Y.strides[0] // Y.itemsize)
        if status != 0:
            raise RuntimeError(f"mkl_sparse_d_mm failed with status {status}")
        return Y if direct else _into(Y, out)

    def diagonal(self) -> np.ndarray:
        if getattr(self, "_diagonal", None) is None:
            self._diagonal = self.A.diagonal()
        return self._diagonal

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self._lib.mkl_sparse_destroy(self._handle)
            self._handle = None


def reusable(buffer: np.ndarray | None, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """``buffer`` if it has this shape and dtype, else a new (uninitialised) array for it.

    Why buffers are kept: an array over 32 MB (glibc's largest mmap threshold; K's 4.3M entries on
    a 53k-dof hex8 model are 34 MB) is a fresh mapping every time it is allocated, and touching it
    first costs page faults, so filling a fresh one is markedly slower than refilling a kept
    one (see docs/performance.md). Only arrays that never leave their owner are kept this way.

    Parameters
    ----------
    buffer : ndarray or None
        The array kept from the previous call.
    shape : tuple of int
        Shape wanted.
    dtype : dtype, default float64

    Returns
    -------
    ndarray of ``shape`` and ``dtype``
        ``buffer`` itself when it fits (its old contents intact), else an uninitialised array.
    """
    if buffer is None or buffer.shape != tuple(shape) or buffer.dtype != np.dtype(dtype):
        return np.empty(shape, dtype=dtype)
    return buffer


def sparse_matmul(A, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``A @ X`` for a sparse matrix A (m, n) and X (n, k) or (n,), through :class:`BlockOperator`
    (MKL's threaded product for blocks, SciPy's to rounding); any other A: ``A @ X``.

    Parameters
    ----------
    A : sparse matrix (m, n), or anything with ``@``
    X : ndarray (n, k) or (n,)
    out : ndarray (m, k), optional
        Where to write the product (a row-major array or a column slice of one, which MKL writes
        in place).

    Returns
    -------
    ndarray (m, k) or (m,)
        ``out`` when given. Units: those of A times those of X.
    """
    if not sp.issparse(A) or np.ndim(X) != 2:
        return _into(A @ X, out)
    return BlockOperator(A).matmul(X, out=out)


def _into(Y: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``Y``, or ``out`` filled with it when one is given."""
    if out is None:
        return Y
    out[...] = Y
    return out


def _row_major(A: np.ndarray) -> bool:
    """A float64 matrix whose rows are evenly spaced and columns adjacent (a C-ordered array or a
    column slice of one): what BLAS takes as a row-major matrix with a leading dimension."""
    return (A.ndim == 2 and A.dtype == np.float64 and A.strides[1] == A.itemsize
            and A.strides[0] % A.itemsize == 0 and A.strides[0] >= A.shape[1] * A.itemsize)


def dense_matmul(A: np.ndarray, B: np.ndarray, out: np.ndarray | None = None,
                 transpose_a: bool = False, accumulate: bool = False) -> np.ndarray:
    """``A @ B`` (or ``Aᵀ @ B``; with ``accumulate``, ``out + A @ B``) for tall-skinny blocks,
    through MKL's ``cblas_dgemm`` when MKL is loaded (PARDISO's ``mkl_rt``; MKL's threads), else
    NumPy.

    A, B and ``out`` may be column slices of wider C-ordered arrays (LOBPCG's [X W P] side by side):
    MKL reads and writes them in place through its leading dimensions, where NumPy's ``matmul``
    falls back to a slow loop for such an ``out`` (a non-contiguous output is not handed to BLAS
    as is) and needs a temporary plus a copy otherwise; MKL's threads also split the tall
    dimension (see docs/performance.md). Results agree with NumPy's to rounding.

    Parameters
    ----------
    A : ndarray (m, k), or (k, m) with ``transpose_a``
    B : ndarray (k, n)
    out : ndarray (m, n), optional
        Written in place and returned.
    accumulate : bool
        Add the product to ``out`` (required then) instead of overwriting it (BLAS β = 1).
    """
    m = A.shape[1] if transpose_a else A.shape[0]
    k = A.shape[0] if transpose_a else A.shape[1]
    if B.shape[0] != k:
        raise ValueError(f"dense_matmul: shapes {A.shape}{'ᵀ' if transpose_a else ''} and {B.shape} do not match")
    n = B.shape[1]
    if out is None:
        if accumulate:
            raise ValueError("dense_matmul: accumulate needs out")
        out = np.empty((m, n))
    elif out.shape != (m, n):
        raise ValueError(f"dense_matmul: out has shape {out.shape}, the product {(m, n)}")
    blas = dgemm()
    if blas is None or not _row_major(A) or not _row_major(out) or min(m, n, k) == 0:
        if accumulate:
            out += (A.T if transpose_a else A) @ B
        else:
            np.matmul(A.T if transpose_a else A, B, out=out)
        return out
    B = B if _row_major(B) else np.ascontiguousarray(B, dtype=np.float64)
    row_major, no_trans, trans = 101, 111, 112
    # PARDISO's thread rule (SMALL_SYSTEM_ROWS): one thread for small blocks, whose product is
    # too short to pay for a second thread's start-up, MKL's count for tall ones, where the
    # rows split evenly over the threads (see docs/performance.md)
    gemm, set_local_threads = blas
    previous = set_local_threads(1 if max(A.shape[0], out.shape[0]) < SMALL_SYSTEM_ROWS else 0)
    try:
        gemm(row_major, trans if transpose_a else no_trans, no_trans, m, n, k, 1.0,
             A.ctypes.data, A.strides[0] // 8, B.ctypes.data, B.strides[0] // 8, 1.0 if accumulate else 0.0,
             out.ctypes.data, out.strides[0] // 8)
    finally:
        set_local_threads(previous)
    return out


def ritz_pairs(GK: np.ndarray, GM: np.ndarray, m: int, drop: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """The m smallest Ritz pairs of the pencil (GK, GM) (s, s) of a possibly dependent basis.

    Columns are scaled to unit M-norm, the Gram matrix is diagonalised and directions with
    eigenvalues below ``drop`` times the largest are dropped (a numerically dependent basis), the
    projected stiffness is diagonalised (Rayleigh–Ritz on a basis that may have lost rank, as in
    robust LOBPCG implementations).

    Parameters
    ----------
    GK, GM : ndarray (s, s)
        Projected stiffness ``SᵀKS`` and mass ``SᵀMS`` of a basis S (n, s); GM positive
        semi-definite.
    m : int
        Number of Ritz pairs wanted.
    drop : float, default 1e-8
        Relative eigenvalue of the scaled Gram matrix below which a direction is dropped.

    Returns
    -------
    theta : ndarray (m,)
        Ritz values, ascending; units those of K over those of M ((rad/s)² for K, M).
    C : ndarray (s, m)
        Coefficients of the Ritz vectors ``S C``, with ``CᵀGM C = I``.

    Raises
    ------
    numpy.linalg.LinAlgError
        When fewer than m directions are left.
    """
    d = np.sqrt(np.clip(np.diag(GM), 0.0, None))
    d[d == 0.0] = 1.0
    Gm = GM / np.outer(d, d)
    Gk = GK / np.outer(d, d)
    w, V = np.linalg.eigh(0.5 * (Gm + Gm.T))
    keep = w > drop * w.max()
    Q = V[:, keep] / np.sqrt(w[keep])
    H = Q.T @ Gk @ Q
    theta, Y = np.linalg.eigh(0.5 * (H + H.T))
    if theta.size < m:
        raise np.linalg.LinAlgError(f"LOBPCG basis of rank {theta.size} < block size {m}")
    return theta[:m], (Q @ Y[:, :m]) / d[:, None]

