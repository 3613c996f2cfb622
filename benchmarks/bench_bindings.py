"""Our ctypes binding of MKL (PARDISO, sparse BLAS) against the PyPI wrappers of the same library.

Usage::

    python benchmarks/bench_bindings.py            # bench_foundation's models: 2D 200×100, 400×200; 3D 40×20×20
    python benchmarks/bench_bindings.py --quick    # its quick models, seconds

Needs ``pydiso`` and ``sparse-dot-mkl`` (``pip install pydiso sparse-dot-mkl``; pydiso 0.3 wheels are
for Python ≥ 3.12 only, older Pythons build pydiso 0.2 from its sdist, which needs
``pip install mkl-devel`` and ``PKG_CONFIG_PATH=<env>/lib/pkgconfig``). A library that is missing
is left out of the tables (its column says so).

For each model of ``benchmarks/bench_foundation.py`` (same meshes, same designs drawn from
U(0.3, 1), the same shifted matrix A = K − σM that the modal solver factorises, positive definite)
it prints two tables, every library side by side in one run, all of them calling the same
``libmkl_rt`` (the MKL wheel's):

* PARDISO: symbolic analysis (phase 11, a fresh object each time), numeric re-factorisation of a
  new design on the kept pattern (phase 22 only: ``PardisoFactorization.factor`` /
  ``MKLPardisoSolver.refactor``), solves of 1 and 6 right-hand sides into preallocated arrays —
  ours (``fem_eigopt.linalg.factorization.PardisoFactorization``) in double and single precision
  (``iparm[27] = 1``) against pydiso's ``MKLPardisoSolver`` with a float64 and a float32 matrix
  (pydiso's single precision). Every timing covers what a caller holding a float64 CSR matrix and
  float64 vectors must do: for pydiso in single precision that includes the float32 copies of A,
  b and back of x, which our class does inside. Both run with the same MKL thread count (ours
  sets it per call, one thread below ``SMALL_SYSTEM_ROWS`` unknowns; pydiso gets the same count
  through its global ``set_mkl_pardiso_threads``).
* ``K @ X`` for row-major (C-ordered) X of 6 and 16 columns, written into a preallocated array
  where the API allows: ours, a kept ``BlockOperator`` (handle created once) and
  ``sparse_matmul`` (a handle per call); sparse-dot-mkl's ``dot_product_mkl(K, X, out=Y,
  out_scalar=0)`` (it creates and destroys its MKL handle on every call); SciPy's ``K @ X``
  (single-threaded, allocates).

Below the timings: relative residuals ``max_j |A x_j − b_j| / |b_j|`` of every solve, the relative
difference of pydiso's solutions from ours (same precision), and ``max|Y − Y_scipy| / max|Y_scipy|``
for the products. Times are medians over ``--repeat`` runs, wall clock, in milliseconds; the
ratio columns are the library's time over ours (< 1: the library is faster). Nothing is
asserted here: speed is measured, not tested (tests/test_bench_bindings.py checks the residuals).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
import fem_eigopt as fe
from fem_eigopt.fem.assembly import build_model
from fem_eigopt.linalg.factorization import PardisoFactorization
from fem_eigopt.linalg.kernels import SMALL_SYSTEM_ROWS, BlockOperator, sparse_matmul
from fem_eigopt.solvers.lanczos import ModalSolver
from fem_eigopt.solvers.modes import shifted_matrix

try:
    import pydiso
    from pydiso.mkl_solver import MKLPardisoSolver, set_mkl_pardiso_threads
except ImportError:  # pragma: no cover - depends on the environment
    pydiso = None
try:
    import sparse_dot_mkl
except ImportError:  # pragma: no cover - depends on the environment
    sparse_dot_mkl = None


def _foundation():
    """benchmarks/bench_foundation.py as a module (its models and sizes are the ones timed here)."""
    name = "bench_foundation"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "bench_foundation.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def interleaved_ms(calls: dict, repeat: int) -> dict[str, float]:
    """Median wall-clock milliseconds of each ``calls[name](r)`` over r = 0 … repeat − 1, the
    libraries taking turns in every round (after one untimed warm-up call each), so that load
    from elsewhere on the machine falls on all of them alike rather than on whichever ran last."""
    for fn in calls.values():
        fn(repeat)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(repeat):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn(r)
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def residual(A: sp.csr_matrix, x: np.ndarray, b: np.ndarray) -> float:
    """max over the columns of |A x − b| / |b| (in double)."""
    x2, b2 = np.asarray(x, dtype=np.float64).reshape(b.shape[0], -1), b.reshape(b.shape[0], -1)
    return float(np.max(np.linalg.norm(A @ x2 - b2, axis=0) / np.linalg.norm(b2, axis=0)))


def rel_diff(x: np.ndarray, ref: np.ndarray) -> float:
    """max|x − ref| / max|ref|."""
    return float(np.max(np.abs(np.asarray(x, dtype=np.float64) - ref)) / np.max(np.abs(ref)))


class Ours:
    """fem_eigopt's PardisoFactorization in one precision."""

    def __init__(self, precision: str) -> None:
        self.precision = precision
        self.f: PardisoFactorization | None = None

    def analyse(self, A) -> None:
        """Symbolic analysis only, on a fresh object (phase 11; memory_estimate runs just that)."""
        f = PardisoFactorization(precision=self.precision)
        f.memory_estimate(A, positive_definite=True)
        f.release()

    def setup(self, A) -> None:
        self.f = PardisoFactorization(precision=self.precision)
        self.f.factor(A, positive_definite=True)

    def refactor(self, A) -> None:
        self.f.factor(A, positive_definite=True)

    def solve(self, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        return self.f.solve_into(b, out)

    def n_symbolic(self) -> int:
        return self.f.n_symbolic

    def release(self) -> None:
        if self.f is not None:
            self.f.release()
        self.f = None


class Pydiso:
    """pydiso's MKLPardisoSolver, float64 or float32 matrix (its single precision: iparm[27] = 1)."""

    def __init__(self, precision: str) -> None:
        self.dtype = np.float32 if precision == "single" else np.float64
        self.s = None
        self._x = None
        self.n_analyses = 0

    def _matrix(self, A):
        return A if self.dtype == np.float64 else A.astype(self.dtype)

    def analyse(self, A) -> None:
        MKLPardisoSolver(self._matrix(A), matrix_type=2, factor=False)

    def setup(self, A) -> None:
        self.s = MKLPardisoSolver(self._matrix(A), matrix_type=2, factor=True)
        self.n_analyses = 1

    def refactor(self, A) -> None:
        self.s.refactor(self._matrix(A))  # phase 22 on the kept analysis

    def solve(self, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        if self.dtype == np.float64:
            return self.s.solve(b, x=out)
        if self._x is None or self._x.shape != b.shape:
            self._x = np.empty(b.shape, dtype=self.dtype, order="F")
        x = self.s.solve(np.asarray(b, dtype=self.dtype, order="F"), x=self._x)
        out[...] = x.reshape(out.shape)
        return out

    def n_symbolic(self) -> int:
        return self.n_analyses

    def release(self) -> None:
        self.s = None
        gc.collect()  # pydiso frees PARDISO's memory (phase -1) in the handle's destructor


SOLVE_ROWS = ("symbolic analysis (phase 11)", "numeric refactorisation (22)", "solve, 1 rhs (33)",
              "solve, 6 rhs (33)")
PRODUCT_COLUMNS = (6, 16)


def bench_pardiso(shifted: list, repeat: int, quick: bool) -> None:
    """The PARDISO table: ours / pydiso in double, ours / pydiso in single precision."""
    A0 = shifted[0]
    n = A0.shape[0]
    threads = 1 if n < SMALL_SYSTEM_ROWS else 0  # our rule (PardisoFactorization.threads=None)
    rng = np.random.default_rng(1)
    b = {1: rng.standard_normal(n), 6: np.asfortranarray(rng.standard_normal((n, 6)))}
    variants = {"ours f64": Ours("double"), "ours f32": Ours("single")}
    if pydiso is not None:
        set_mkl_pardiso_threads(threads)
        variants = {"ours f64": variants["ours f64"], "pydiso f64": Pydiso("double"),
                    "ours f32": variants["ours f32"], "pydiso f32": Pydiso("single")}
    names = list(variants)
    times: dict[str, list[float]] = {nm: [] for nm in names}
    outs = {k: {nm: np.full(b[k].shape, np.nan, order="F") for nm in names} for k in (1, 6)}
    try:
        sym = interleaved_ms({nm: (lambda r, v=v: v.analyse(A0)) for nm, v in variants.items()}, max(1, repeat // 2))
        for v in variants.values():
            v.setup(A0)
        num = interleaved_ms({nm: (lambda r, v=v: v.refactor(shifted[1 + r % (len(shifted) - 1)]))
                              for nm, v in variants.items()}, repeat)
        for v in variants.values():
            v.refactor(A0)  # the solves below are with A0's factors
        solve_repeat = repeat * (3 if quick else 2)
        solves = {k: interleaved_ms({nm: (lambda r, v=v, nm=nm, k=k: v.solve(b[k], outs[k][nm]))
                                     for nm, v in variants.items()}, solve_repeat) for k in (1, 6)}
        for nm in names:
            times[nm] = [sym[nm], num[nm], solves[1][nm], solves[6][nm]]
        n_symbolic = {nm: v.n_symbolic() for nm, v in variants.items()}
    finally:
        for v in variants.values():
            v.release()
        if pydiso is not None:
            gc.collect()
            set_mkl_pardiso_threads(0)
    pairs = [(p, o) for p, o in (("pydiso f64", "ours f64"), ("pydiso f32", "ours f32")) if p in times]
    print(f"   {'PARDISO [ms]':<32}" + "".join(f"{nm:>12}" for nm in names)
          + "".join(f"{p.split()[0] + '/ours ' + p.split()[1]:>18}" for p, _ in pairs)
          + ("" if pydiso is not None else "   (pydiso not installed)"))
    for i, row in enumerate(SOLVE_ROWS):
        print(f"   {row:<32}" + "".join(f"{times[nm][i]:12.2f}" for nm in names)
              + "".join(f"{times[p][i] / times[o][i]:18.2f}" for p, o in pairs))
    print(f"   {'  symbolic analyses, all refactors':<32}" + "".join(f"{n_symbolic[nm]:12d}" for nm in names))
    for k in (1, 6):
        print(f"   {f'  residual |Ax-b|/|b|, {k} rhs':<32}"
              + "".join(f"{residual(A0, outs[k][nm], b[k]):12.1e}" for nm in names))
    for p, o in pairs:
        label = f"  {p} vs {o}: |dx|/|x|"
        print(f"   {label:<32}" + "".join(
            f"{rel_diff(outs[k][p], outs[k][o]):12.1e}" for k in (1, 6)) + "   (1 rhs, 6 rhs)")


def bench_products(K: sp.csr_matrix, repeat: int) -> None:
    """The K @ X table: BlockOperator (kept handle), sparse_matmul, sparse-dot-mkl, SciPy."""
    n = K.shape[0]
    rng = np.random.default_rng(2)
    op = BlockOperator(K)
    names = ["BlockOperator", "sparse_matmul"] + (["sparse-dot-mkl"] if sparse_dot_mkl is not None else []) + ["SciPy"]
    print(f"   {'K @ X [ms]':<32}" + "".join(f"{nm:>15}" for nm in names)
          + (f"{'sdm/BlockOp':>14}{'sdm/sp_matmul':>14}" if sparse_dot_mkl is not None
             else "   (sparse-dot-mkl not installed)"))
    diffs = {}
    for k in PRODUCT_COLUMNS:
        X = rng.standard_normal((n, k))
        outs = {nm: np.full((n, k), np.nan) for nm in names}
        calls = {
            "BlockOperator": lambda r, X=X, outs=outs: op.matmul(X, out=outs["BlockOperator"]),
            "sparse_matmul": lambda r, X=X, outs=outs: sparse_matmul(K, X, out=outs["sparse_matmul"]),
            "sparse-dot-mkl": lambda r, X=X, outs=outs: sparse_dot_mkl.dot_product_mkl(
                K, X, out=outs["sparse-dot-mkl"], out_scalar=0.0),
            "SciPy": lambda r, X=X: K @ X,  # SciPy has no out=: the product alone
        }
        t = interleaved_ms({nm: calls[nm] for nm in names}, repeat)
        outs["SciPy"] = ref = K @ X
        diffs[k] = [rel_diff(outs[nm], ref) for nm in names]
        print(f"   {f'K @ X, {k} columns':<32}" + "".join(f"{t[nm]:15.2f}" for nm in names)
              + (f"{t['sparse-dot-mkl'] / t['BlockOperator']:14.2f}{t['sparse-dot-mkl'] / t['sparse_matmul']:14.2f}"
                 if sparse_dot_mkl is not None else ""))
    for k in PRODUCT_COLUMNS:
        print(f"   {f'  |Y-Y_scipy|/|Y_scipy|, {k} cols':<32}" + "".join(f"{d:15.1e}" for d in diffs[k]))


def bench(label: str, problem, repeat: int, quick: bool) -> None:
    model = build_model(problem)
    rng = np.random.default_rng(0)
    designs = [rng.uniform(0.3, 1.0, model.n_elements) for _ in range(min(repeat, 3) + 1)]
    K0, M0 = model.stiffness(designs[0] ** 3), model.mass(designs[0])
    sigma = -ModalSolver.AUTO_SHIFT_FACTOR * K0.diagonal().mean() / M0.diagonal().mean()
    shifted = [shifted_matrix(model.stiffness(s**3), model.mass(s), sigma) for s in designs]
    print(f"\n== {label}: {model.n_free} free dofs, nnz(K) {model.nnz}; A = K - sigma M (SPD, mtype 2)")
    bench_pardiso(shifted, repeat, quick)
    bench_products(K0, repeat * 4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="bench_foundation's small meshes (seconds)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats per timing (default 9, quick 3)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 9)
    versions = [f"fem_eigopt {fe.__version__}", f"numpy {np.__version__}", f"scipy {scipy.__version__}",
                f"pydiso {pydiso.__version__}" if pydiso is not None else "pydiso missing",
                f"sparse-dot-mkl {sparse_dot_mkl.__version__}" if sparse_dot_mkl is not None else "sparse-dot-mkl missing"]
    if sparse_dot_mkl is not None:
        versions.append("MKL " + sparse_dot_mkl.mkl_get_version_string().split("Version ")[-1].split(" ")[0])
    print(", ".join(versions) + f", python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} cpus, MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS', 'unset')}; "
          f"median of {repeat} (analyses {max(1, repeat // 2)}, solves {repeat * (3 if args.quick else 2)}, "
          f"products {repeat * 4}); load average {os.getloadavg()[0]:.2f} at the start")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)
        for label, problem in _foundation().cases(args.quick):
            bench(label, problem, repeat, args.quick)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (1 min; this run alone adds up to ~1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
