"""Speed of the foundation: element matrices, re-assembly, factorisation, eigen solve.

Usage::

    python benchmarks/bench_foundation.py            # 2D 200×100, 400×200 quad1; 3D hex1 ≥ 50k dofs
    python benchmarks/bench_foundation.py --quick    # small meshes, seconds

For each mesh it prints one table: the one-off cost of the element matrices (``build_model``) next
to scikit-fem's own full assembly of K (``skfem.asm``, the reference a plain scikit-fem program
pays per design), the per-design re-assembly of K and M by scaling (``model.stiffness(s)``,
``model.mass(s)``), and for every factorisation backend available here, side by side: the first
factorisation of K − σM (symbolic + numeric), a re-factorisation with new values on the same
pattern (numeric only where the backend can keep its analysis), and a 6-mode shift-invert eigen
solve on a new design (factorisation included). Times are medians over ``--repeat`` runs,
wall clock, in milliseconds. Nothing is asserted: speed is measured here, not in the tests.

``--blas-threads 1`` runs with single-threaded OpenBLAS: ARPACK's Lanczos work is tall-skinny
dense algebra (n × ncv) that threaded OpenBLAS can make many times slower on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

if __name__ == "__main__" and "--blas-threads" in sys.argv:
    # OpenBLAS reads its thread count when numpy/scipy load, so this must come before them.
    _n = sys.argv[sys.argv.index("--blas-threads") + 1]
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = _n

import numpy as np
import scipy
import skfem
from skfem.helpers import ddot, sym_grad, trace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
import fem_eigopt as fe  # noqa: E402
from fem_eigopt.fem.assembly import build_model  # noqa: E402
from fem_eigopt.linalg.factorization import available_backends, make_factorization  # noqa: E402
from fem_eigopt.solvers.lanczos import ModalSolver
from fem_eigopt.solvers.modes import shifted_matrix  # noqa: E402

STEEL_2D = fe.Material(E=210e9, nu=0.3, density=7850.0, model="plane_stress", thickness=0.01)
STEEL_3D = fe.Material(E=210e9, nu=0.3, density=7850.0, model="solid")


def median_ms(fn, repeat: int) -> float:
    """Median wall-clock time of ``fn()`` in milliseconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def cases(quick: bool):
    """(label, problem) pairs: clamped-left cantilevers, 2:1 in 2D, 2:1:1 in 3D."""
    sizes_2d = [(40, 20), (80, 40)] if quick else [(200, 100), (400, 200)]
    size_3d = (10, 5, 5) if quick else (40, 20, 20)  # 40×20×20 hex1: 54 243 dofs
    for nx, ny in sizes_2d:
        yield f"2D quad1 {nx}x{ny}", fe.Problem(
            mesh=fe.rectangle(2.0, 1.0, nx, ny), element="quad1", material=STEEL_2D,
            supports=(fe.Support("left"),))
    nx, ny, nz = size_3d
    yield f"3D hex1 {nx}x{ny}x{nz}", fe.Problem(
        mesh=fe.box(2.0, 1.0, 1.0, nx, ny, nz), element="hex1", material=STEEL_3D,
        supports=(fe.Support("left"),))


def skfem_stiffness(problem: fe.Problem, basis: skfem.Basis):
    """K assembled by scikit-fem directly (the same bilinear form as element_matrices)."""
    lam, mu = problem.material.lame()
    t = problem.material.thickness if basis.mesh.dim() == 2 else 1.0

    @skfem.BilinearForm
    def stiffness(u, v, w):
        eu, ev = sym_grad(u), sym_grad(v)
        return t * (2.0 * mu * ddot(eu, ev) + lam * trace(eu) * trace(ev))

    return stiffness.assemble(basis)


def bench(label: str, problem: fe.Problem, repeat: int, backends: list[str]) -> None:
    t0 = time.perf_counter()
    model = build_model(problem)
    t_build = 1e3 * (time.perf_counter() - t0)
    t_skfem = median_ms(lambda: skfem_stiffness(problem, model.basis), max(1, repeat // 2))

    rng = np.random.default_rng(0)
    designs = [rng.uniform(0.3, 1.0, model.n_elements) for _ in range(repeat + 1)]
    t_K = median_ms(lambda: model.stiffness(designs[0] ** 3), repeat)
    t_M = median_ms(lambda: model.mass(designs[0]), repeat)

    K0, M0 = model.stiffness(designs[0] ** 3), model.mass(designs[0])
    sigma = -ModalSolver.AUTO_SHIFT_FACTOR * K0.diagonal().mean() / M0.diagonal().mean()
    shifted = [shifted_matrix(model.stiffness(s**3), model.mass(s), sigma) for s in designs]

    print(f"\n== {label}: {model.n_elements} elements, {model.n_free} free dofs, nnz(K) {model.nnz}")
    print(f"   build_model (element matrices, pattern; once)   {t_build:10.1f} ms")
    print(f"   skfem asm of K (full assembly, reference)         {t_skfem:10.1f} ms")
    print(f"   re-assembly K(s) | M(s) per design                {t_K:10.1f} | {t_M:.1f} ms"
          f"   (skfem asm / our K: {t_skfem / t_K:.0f}x)")

    rows = {"first factorisation (symbolic+numeric)": [], "re-factorisation, new values": [],
            "eigen solve, 6 modes (incl. factorisation)": [], "  n_symbolic after all re-factorisations": []}
    eig_ref = None
    for name in backends:
        def first():
            make_factorization(name).factor(shifted[0], positive_definite=True)

        f = make_factorization(name)
        f.factor(shifted[0], positive_definite=True)
        counter = iter(range(10**6))

        def again():
            f.factor(shifted[1 + next(counter) % repeat], positive_definite=True)

        t_first = median_ms(first, max(1, repeat // 2))
        t_again = median_ms(again, repeat)
        solver = ModalSolver(6, backend=name)
        solver.solve(model.stiffness(designs[0] ** 3), model.mass(designs[0]))  # symbolic analysis here
        solves = iter(designs[1:])
        last = {}

        def eig():
            s = next(solves)
            last["modes"] = solver.solve(model.stiffness(s**3), model.mass(s))

        t_eig = median_ms(eig, min(repeat, 3))
        lam = last["modes"].eigenvalues
        eig_ref = lam if eig_ref is None else eig_ref
        rows["first factorisation (symbolic+numeric)"].append(f"{t_first:10.1f}")
        rows["re-factorisation, new values"].append(f"{t_again:10.1f}")
        rows["eigen solve, 6 modes (incl. factorisation)"].append(f"{t_eig:10.1f}")
        rows["  n_symbolic after all re-factorisations"].append(f"{f.n_symbolic:10d}")
    header = "   " + f"{'[ms]':<44}" + "".join(f"{n:>10}" for n in backends)
    print(header)
    for key, values in rows.items():
        print("   " + f"{key:<44}" + "".join(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small meshes (seconds)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats per timing (default 5, quick 3)")
    parser.add_argument("--backends", nargs="+", default=None, help="backends to compare (default: all here)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="OpenBLAS/OpenMP threads (ARPACK's dense work; default: the library's)")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    backends = args.backends or available_backends()
    print(f"fem_eigopt {fe.__version__}, scikit-fem {skfem.__version__ if hasattr(skfem, '__version__') else '?'}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}, python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} cpus, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; backends {', '.join(backends)}; median of {repeat}")
    for label, problem in cases(args.quick):
        bench(label, problem, repeat, backends)


if __name__ == "__main__":
    main()
