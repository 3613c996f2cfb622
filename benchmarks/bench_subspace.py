"""Where an optimisation iteration's time goes, stage by stage, with the warm-started subspace solver.

Runs fem_eigopt's side of ``bench_pymoto.py`` (pyMOTO's eigenfrequency example, our MMA with
pyMOTO's move limit, ``eigensolver="auto"``; pyMOTO itself is not needed) and times every stage
of every design *exclusively* (a stage's time excludes the stages it calls), so the rows add up to
the loop's time:

    python benchmarks/bench_subspace.py [--size 200x100] [--iterations 30] [--quick]

Rows: the preconditioner's triangular solves (PARDISO phase 33) and the conversions and copies
around them, its numeric factorisation (phase 22) and forming K − σM for it, the Rayleigh–Ritz steps (Gram products and the small eigenproblem),
the other dense block products of LOBPCG (the X, P and residual updates through
``linalg.dense_matmul``), the sparse block products (K·W, M·W), turning the converged vectors into
modes (normalisation, Rayleigh quotients), the rest of the eigen solve, assembly of K and M,
element energies (the sensitivities' kernel), MMA's step and everything else in the loop (filter,
chain rule, driver). Below the table: the subspace solver's counted work per design, which a noisy
machine does not change (decide on these; the seconds move by ±20 % on a shared host). Last, the
floor of an iteration on this path, built from this run's own stage times: the work outside the
eigen solve, one factorisation of K − σM, and one preconditioner solve per wanted mode, against
one double-precision factorisation of K (the issue's yardstick), and how many solves a design
could afford at 1.0× that factorisation if it never refactorised.

The instrumentation wraps functions with timers (a few microseconds per call); the median
seconds per iteration printed alongside are therefore a little above an uninstrumented run's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as bench_pymoto's workers (both tools alike)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pymoto  # noqa: E402

STAGES = {
    "solve": "preconditioner solves (PARDISO 33)",
    "solve_io": "preconditioner conversions and copies",
    "factor": "numeric factorisation (PARDISO 22)",
    "shifted": "forming K - sigma M for it",
    "symbolic": "symbolic analysis (PARDISO 11)",
    "rr": "Rayleigh-Ritz (Gram products, eigh)",
    "gemm": "other block GEMMs (X, P, R updates)",
    "sparse": "sparse block products (K W, M W)",
    "modes": "modes from vectors (normalise, Rayleigh quotients)",
    "eigen_rest": "rest of the eigen solve",
    "cold": "shift-invert Lanczos (cold start; ARPACK runs)",
    "assembly": "assembly of K and M",
    "energies": "element energies (sensitivities)",
    "mma": "MMA step (subproblem)",
}


class StageTimer:
    """Exclusive seconds per stage: a stage's time excludes the stages called inside it (calls
    inside a stage of the same name, and anything inside Rayleigh-Ritz, count as the caller's)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[str] = []
        self._replaced: list[tuple[object, str, object]] = []

    def replace(self, owner, name: str, new) -> None:
        """``owner.name = new``, remembered for :meth:`restore`."""
        self._replaced.append((owner, name, getattr(owner, name)))
        setattr(owner, name, new)

    def restore(self) -> None:
        """Undo every replacement (the library is instrumented in place)."""
        while self._replaced:
            owner, name, original = self._replaced.pop()
            setattr(owner, name, original)

    def wrap(self, owner, name: str, stage: str | Callable[..., str]) -> None:
        """Replace ``owner.name`` by a timed version; ``stage`` may depend on the call's arguments."""
        original = getattr(owner, name)
        timer = self

        def timed(*args, **kwargs):
            label = stage(*args, **kwargs) if callable(stage) else stage
            if timer._stack and timer._stack[-1] in (label, "rr"):
                # inside the same stage, or Rayleigh-Ritz's own Gram products: part of the caller
                return original(*args, **kwargs)
            timer._stack.append(label)
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                timer._stack.pop()
                timer.seconds[label] += elapsed
                timer.calls[label] += 1
                if timer._stack:
                    timer.seconds[timer._stack[-1]] -= elapsed

        timed.__wrapped__ = original
        self.replace(owner, name, timed)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def instrument(timer: StageTimer) -> None:
    """Wrap the stages where the modules look them up (names imported with ``from`` included)."""
    import fem_eigopt.fem.assembly as assembly
    import fem_eigopt.linalg.factorization as linalg
    import fem_eigopt.optimize.evaluator as evaluate
    import fem_eigopt.optimize.mma as mma
    import fem_eigopt.solvers.lanczos as modal
    import fem_eigopt.solvers.lobpcg as lobpcg
    import fem_eigopt.solvers.subspace as subspace

    phases = {11: "symbolic", 22: "factor", 33: "solve", -1: "symbolic"}
    timer.wrap(linalg.PardisoFactorization, "_call", lambda self, phase, *a, **k: phases.get(phase, "solve"))
    timer.wrap(linalg.PardisoFactorization, "solve_into", "solve_io")
    timer.wrap(subspace.SubspaceModalSolver, "solve", "eigen_rest")
    timer.wrap(subspace.SubspaceModalSolver, "_factor", "shifted")
    timer.wrap(lobpcg, "_ritz_coefficients", "rr")
    timer.wrap(lobpcg, "dense_matmul", "gemm")
    timer.wrap(lobpcg, "sparse_matmul", "sparse")
    timer.wrap(subspace, "modes_from_vectors", "modes")
    timer.wrap(modal.ModalSolver, "solve", "cold")
    timer.wrap(assembly.Model, "stiffness", "assembly")
    timer.wrap(assembly.Model, "mass", "assembly")
    timer.wrap(evaluate, "element_energies", "energies")
    timer.wrap(mma.MMA, "step", "mma")


def report(size: str, result: dict, timer: StageTimer, designs: int, solver) -> None:
    """Print the stage table for one run (ms per design and share of the timed loop)."""
    walls = np.array([row["wall"] for row in result["iterations"]])
    loop = float(walls.sum())
    print(f"\n== {size}: {result['n_dofs']} free dofs, {len(walls)} iterations, {designs} designs solved ==")
    print(f"median {np.median(walls):.4f} s per iteration, one numeric double-precision factorisation of K "
          f"{result['factor_s']:.4f} s (it/factor {np.median(walls) / result['factor_s']:.2f}), "
          f"final objective {result['final']['f']:.4f}")
    print(f"{'stage':52s} {'ms/design':>10} {'share':>7} {'calls/design':>13}")
    accounted = 0.0
    for key, label in STAGES.items():
        seconds = timer.seconds.get(key, 0.0)
        if timer.calls.get(key, 0) == 0:
            continue
        accounted += seconds
        print(f"{label:52s} {1e3 * seconds / designs:10.2f} {100 * seconds / loop:6.1f} % "
              f"{timer.calls[key] / designs:13.1f}")
    other = loop - accounted
    print(f"{'everything else (filter, chain rule, driver, ...)':52s} {1e3 * other / designs:10.2f} "
          f"{100 * other / loop:6.1f} %")
    print(f"{'total (the timed loop)':52s} {1e3 * loop / designs:10.2f} {100.0:6.1f} %")
    print("counted work" + bench_pymoto._counted_work(solver).replace("; per design", " per design"))
    print_floor(result, timer, designs, solver, other)


def print_floor(result: dict, timer: StageTimer, designs: int, solver, other: float) -> None:
    """The least an iteration of this path can cost, from the stages measured in this run.

    Three parts, each per design and each a measured time: the work outside the eigen solve
    (assembly, element energies, MMA and "everything else", which any method pays); one
    factorisation of K − σM in the preconditioner's precision with forming K − σM; and one
    preconditioner solve per wanted mode, i.e. a single inverse-iteration step on the modes (a
    warm start cannot do with fewer). Also: how many one-column solves a design could afford if
    it never refactorised and the iteration were to cost one double-precision factorisation.
    """
    seconds, calls = timer.seconds, timer.calls
    columns = getattr(solver, "n_preconditioner_columns", 0) - result.get("columns_before", 0)
    if not calls.get("factor") or columns <= 0:
        return
    factor_double = result["factor_s"]
    outside = (sum(seconds.get(k, 0.0) for k in ("assembly", "energies", "mma")) + other) / designs
    one_factor = (seconds["factor"] + seconds.get("shifted", 0.0)) / calls["factor"]
    one_column = (seconds.get("solve", 0.0) + seconds.get("solve_io", 0.0)) / columns
    modes = int(getattr(solver, "n_modes", 1))
    floor = outside + one_factor + modes * one_column
    print(f"floor of an iteration on this path (per design, from this run's stages): outside the eigen solve "
          f"{1e3 * outside:.1f} ms ({outside / factor_double:.2f}x factor) + one {solver.precision}-precision "
          f"factorisation with K - sigma M {1e3 * one_factor:.1f} ms + {modes} one-column solves "
          f"{1e3 * modes * one_column:.1f} ms ({1e3 * one_column:.2f} ms each) = {1e3 * floor:.1f} ms = "
          f"{floor / factor_double:.2f}x one double-precision factorisation ({1e3 * factor_double:.1f} ms); "
          f"the loop measured {columns / designs:.1f} columns per design")
    affordable = (factor_double - outside) / one_column
    print(f"an iteration of 1.0x factor without any refactorisation would allow {max(affordable, 0.0):.1f} "
          f"one-column solves per design ({affordable / modes:.1f} per mode) and no Rayleigh-Ritz or "
          "block products")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="200x100", help="NXxNY or NXxNYxNZ (default 200x100)")
    parser.add_argument("--iterations", type=int, default=30, help="MMA iterations (default 30)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 16x8x8 (3D: the subspace solver), "
                                                                  "4 iterations")
    args = parser.parse_args(argv)
    size, iterations = ("16x8x8", 4) if args.quick else (args.size, args.iterations)
    timer = StageTimer()
    try:
        return _run(size, iterations, timer)
    finally:
        timer.restore()


def _run(size: str, iterations: int, timer: StageTimer) -> int:
    nx, ny, nz = bench_pymoto.parse_size(size)
    instrument(timer)
    captured: dict = {}
    import fem_eigopt.optimize.evaluator as evaluate

    original_init = evaluate.DesignEvaluator.__init__

    def init(self, *a, **k):  # the evaluator's solver, for its counted work
        original_init(self, *a, **k)
        captured["evaluator"] = self

    timer.replace(evaluate.DesignEvaluator, "__init__", init)
    original_call = evaluate.DesignEvaluator.__call__

    def first_call(self, x):  # time from the first evaluation on (the set-up is not a stage)
        if not captured.get("started"):
            captured["started"] = True
            result = original_call(self, x)
            timer.reset()
            captured["designs_before"] = getattr(self.solver, "n_solves", 0)
            captured["columns_before"] = getattr(self.solver, "n_preconditioner_columns", 0)
            return result
        return original_call(self, x)

    timer.replace(evaluate.DesignEvaluator, "__call__", first_call)
    original_factor_seconds = bench_pymoto.numeric_factorization_seconds

    def after_loop(*a, **k):  # the loop is over: keep its stage times, not this measurement's
        captured["seconds"], captured["calls"] = dict(timer.seconds), dict(timer.calls)
        return original_factor_seconds(*a, **k)

    timer.replace(bench_pymoto, "numeric_factorization_seconds", after_loop)
    result = bench_pymoto.run_fem(nx, ny, nz, iterations, "auto", objective_scale=bench_pymoto.OBJECTIVE_SCALE,
                                  start=bench_pymoto.feasible_start(nx, ny, nz), algorithm="MMA")
    solver = captured["evaluator"].solver
    designs = max(getattr(solver, "n_solves", 0) - captured.get("designs_before", 0), 1)
    timer.seconds, timer.calls = captured["seconds"], captured["calls"]
    result["columns_before"] = captured.get("columns_before", 0)
    report(size, result, timer, designs, solver)
    return 0


if __name__ == "__main__":
    sys.exit(main())
