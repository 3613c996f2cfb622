"""How fem_eigopt scales: seconds per optimisation iteration against dofs, and a million-dof run.

Two parts, each size in its own subprocess (so that its peak memory, ``ru_maxrss``, is its own):

(a) **Scaling table.** A cantilever (2 × 1 m plate in plane stress, or a 2 × 1 × 0.5 m box; clamped
    at x = 0, a lumped tip mass of 10 % of the design mass, SIMP p = 3 with the two-range mass law,
    x_min = 1e-3, density filter of 1.5 elements, maximise λ1 subject to V ≤ 0.3) is optimised by
    :func:`fem_eigopt.optimize.run.optimize` — the code path of ``python -m fem_eigopt`` — for
    ``--evals`` evaluations at several sizes: in 2D with shift-invert Lanczos and a PARDISO
    factorisation (``eigensolver="arpack"``), in 3D with the AMG path (``eigensolver="amg"``,
    :mod:`fem_eigopt.solvers.amg`) and, up to ``--direct-max`` dofs, with the default direct path
    (``"auto"``: LOBPCG with a kept factorisation) for comparison. One *iteration* is one
    evaluation after the starting design (one DesignEvaluator call and NLopt MMA's step; MMA's
    inner iterations count as iterations). Columns, medians over the iterations (seconds):

    ``build``      :func:`fem_eigopt.fem.assembly.build_model` (once per run),
    ``setup``      the rest of DesignEvaluator's constructor (filter, density chain; once),
    ``asm``        K and M on the fixed pattern (``t_assembly``),
    ``eigen``      the modal solve (``t_modal``: factorisation or AMG setup plus the eigen solve),
    ``sens``       element-by-element sensitivities and chain rule (``t_sensitivities``),
    ``rest``       the rest of the iteration: density filter, responses, NLopt's MMA step,
    ``s/iter``     wall time between two evaluations,
    ``cpu/it``     process CPU time per iteration (all threads; above s/iter when MKL threads),
    ``its``        LOBPCG iterations per solve (AMG path; median),
    ``peak MB``    the subprocess's ru_maxrss,
    ``load``       the 1-minute load average at the end of the run (this machine is shared: a
                   load above the 2 cores stretches the wall times).

    Below the table, the fitted exponent a of t ∝ dofs^a per dimension, solver and stage (least
    squares on log t over the sizes of the table).

(b) **Large run.** The same 3D cantilever on a ``--largest`` hex1 mesh (default 140 × 70 × 35:
    1,073,520 free dofs) with the AMG path for ``--big-evals`` evaluations (the starting design and
    at least 3 optimisation iterations), printing one line per evaluation (λ1, λ2, seconds, AMG
    setup and eigen solve, LOBPCG iterations) and the build time, seconds per iteration, the peak
    memory and the eigenvalues.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_scale.py            # table and the 1M-dof run
    python benchmarks/bench_scale.py --quick                            # < 1 min smoke run
    python benchmarks/bench_scale.py --skip-big                         # the table only
    python benchmarks/bench_scale.py --skip-table --largest 100 50 25   # a smaller large run
    python benchmarks/bench_scale.py --sizes-3d 20x10x5,40x20x10 --sizes-2d 100x50,200x100

Measured on this machine (2 cores shared with another job, load 2.3–3.7; 22 Nov 2026): 3D
s/iter exponents 0.80 (AMG) and 1.00 (direct), both paths alike up to 400k dofs in time (7.7 s
and 5.3 s per iteration) but not in memory (5.4 GB and 9.6 GB, the factor growing like n^1.34);
the 1.07M-dof run: build 18 s, 34.5 s per iteration (20.5 s CPU), 9–12 LOBPCG iterations per
design, peak 14.4 GiB (6.4 GiB after build_model; the rest is the transient of DesignEvaluator's
element-volume bases).

Reading it: the exponent of ``eigen`` tells whether the eigen solver is the part that stops
scaling (direct 3D factorisations grow faster than linear; the AMG path should stay near 1, its
LOBPCG iteration count roughly constant); ``build`` and ``asm`` are linear by construction. The
machine this was written on has 2 cores shared with other jobs: repeat a number before trusting a
difference below ~20 %. OpenBLAS is limited to one thread unless ``OPENBLAS_NUM_THREADS`` is set.
Nothing is asserted.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

DEFAULT_2D = "100x50,200x100,400x200,800x400"
DEFAULT_3D = "20x10x5,40x20x10,60x30x15,80x40x20,100x50x25"
QUICK_2D = "50x25,100x50"
QUICK_3D = "10x5x3,20x10x5"
STAGES = ("build", "setup", "asm", "eigen", "sens", "rest", "s/iter")


def peak_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cantilever(size: tuple[int, ...], eigensolver: str, max_eval: int):
    """The benchmark problem on an nx × ny (× nz) mesh."""
    import fem_eigopt as fe

    volfrac = 0.3
    if len(size) == 2:
        nx, ny = size
        L, W, t = 2.0, 1.0, 0.01
        mesh = fe.rectangle(L, W, nx, ny)
        material = fe.Material(E=210e9, nu=0.3, density=7850.0, model="plane_stress", thickness=t)
        tip = (L, W / 2)
        design_mass = 7850.0 * L * W * t * volfrac
        element = "quad1"
        h = W / ny
    else:
        nx, ny, nz = size
        L, W, H = 2.0, 1.0, 0.5
        mesh = fe.box(L, W, H, nx, ny, nz)
        material = fe.Material(E=210e9, nu=0.3, density=7850.0, model="solid")
        tip = (L, W / 2, H / 2)
        design_mass = 7850.0 * L * W * H * volfrac
        element = "hex1"
        h = max(W / ny, H / nz)
    return fe.Problem(
        mesh=mesh, element=element, material=material, supports=(fe.Support("left"),),
        # spread over the end vertices within 0.1 W of the centre (at least the nearest ones)
        point_masses=(fe.PointMass(0.1 * design_mass, at=tip, radius=max(0.1 * W, 0.75 * h)),),
        analysis=fe.Analysis(n_modes=2, eigensolver=eigensolver),
        design=fe.DensityDesign(initial=volfrac, x_min=1e-3, stiffness=fe.SIMP(3.0), mass=fe.TwoRangeMass(0.1),
                                filter="density"),
        objective=fe.MaxEigenvalue(mode=1), constraints=[fe.VolumeConstraint(volfrac)],
        optimizer=fe.OptimizerSettings(max_eval=max_eval),
        name=f"cantilever{len(size)}d",
    )


# ---------------------------------------------------------------------------------------------
# one run (in a subprocess)


def run_one(size: tuple[int, ...], eigensolver: str, evals: int, verbose: bool) -> dict:
    """Optimise the cantilever for ``evals`` evaluations; timings, eigenvalues and peak memory."""
    import fem_eigopt.fem.assembly as assembly
    import fem_eigopt.optimize.run as optimize_module
    from fem_eigopt.optimize.evaluator import DesignEvaluator

    times: dict[str, float] = {}

    class TimedEvaluator(DesignEvaluator):
        def __init__(self, problem, model=None, backend=None):
            t0 = time.perf_counter()
            model = assembly.build_model(problem)
            times["build"] = time.perf_counter() - t0
            times["build_peak_mb"] = peak_mb()
            t1 = time.perf_counter()
            super().__init__(problem, model=model, backend=backend)
            times["setup"] = time.perf_counter() - t1

        def __call__(self, x):
            key = np.asarray(x, dtype=float).tobytes() + np.float64(self.beta).tobytes()
            if key != self._cache_key:  # a new evaluation (cache hits are not iterations)
                cpu_stamps.append(time.process_time())
            return super().__call__(x)

    lines: list[str] = []
    cpu_stamps: list[float] = []

    def log(text: str) -> None:
        lines.append(text)
        if verbose:
            print(text, flush=True)

    problem = cantilever(size, eigensolver, evals)
    original = optimize_module.DesignEvaluator
    optimize_module.DesignEvaluator = TimedEvaluator
    try:
        t0 = time.perf_counter()
        result = optimize_module.optimize(problem, out_dir=None, max_eval=evals, progress=verbose)
        wall = time.perf_counter() - t0
    finally:
        optimize_module.DesignEvaluator = original
    ev = result.evaluator
    history = result.history
    stamps = np.array([row["time_s"] for row in history])
    per_eval = np.diff(stamps)  # wall between consecutive evaluations: one optimisation iteration
    rows = history[1:]

    def med(key: str) -> float:
        vals = [row.get(key, 0.0) or 0.0 for row in rows]
        return float(np.median(vals)) if vals else float("nan")

    solver = ev.solver
    its = [i for i, _ in getattr(solver, "iteration_history", [])]
    out = {
        "dim": len(size), "size": "x".join(map(str, size)), "dofs": int(ev.model.n_free),
        "elements": int(ev.model.n_elements), "solver": eigensolver, "backend": getattr(solver, "backend", ""),
        "build": times["build"], "build_peak_mb": times["build_peak_mb"], "setup": times["setup"],
        "asm": med("t_assembly"), "eigen": med("t_modal"), "sens": med("t_sensitivities"),
        "s/iter": float(np.median(per_eval)) if per_eval.size else float("nan"),
        "iterations_timed": int(per_eval.size), "evaluations": int(result.summary["evaluations"]),
        "lobpcg_its": its, "setups": getattr(solver, "n_setups", None), "wall": wall,
        "omega": [list(map(float, np.asarray(r["omega"]))) if "omega" in r else
                  [r.get(f"omega{j + 1}", float("nan")) for j in range(2)] for r in history],
        "per_eval": per_eval.tolist(),
        "eval_modal": [row.get("t_modal", float("nan")) for row in history],
        "eval_setup": [row.get("t_modal_setup", row.get("t_modal_factorization", float("nan"))) for row in history],
        "eval_eigensolve": [row.get("t_modal_eigensolve", float("nan")) for row in history],
        "eigenvalues_final": list(map(float, result.summary["eigenvalues_final"])),
        "peak_mb": peak_mb(),
    }
    out["rest"] = out["s/iter"] - out["asm"] - out["eigen"] - out["sens"]
    cpu = np.diff(cpu_stamps)  # process CPU seconds (all threads) between new evaluations
    out["cpu/iter"] = float(np.median(cpu)) if cpu.size else float("nan")
    out["loadavg"] = os.getloadavg()[0]
    return out


def spawn(size: tuple[int, ...], eigensolver: str, evals: int, verbose: bool = False) -> dict | None:
    """``run_one`` in a fresh interpreter (its own peak memory); None if it failed."""
    cmd = [sys.executable, __file__, "--run-one", "x".join(map(str, size)), "--solver", eigensolver,
           "--evals", str(evals)] + (["--verbose"] if verbose else [])
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if verbose else subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print(f"  {'x'.join(map(str, size))} {eigensolver}: failed (exit {proc.returncode})"
              + (f": {proc.stderr.strip().splitlines()[-1]}" if proc.stderr and proc.stderr.strip() else ""))
        return None
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    print(f"  {'x'.join(map(str, size))} {eigensolver}: no result")
    return None


# ---------------------------------------------------------------------------------------------
# printing


def print_table(results: list[dict]) -> None:
    head = (f"{'dim':>3} {'mesh':>10} {'dofs':>9} {'solver':>7} {'build':>7} {'setup':>6} {'asm':>6} {'eigen':>7} "
            f"{'sens':>6} {'rest':>6} {'s/iter':>7} {'cpu/it':>7} {'its':>4} {'peak MB':>8} {'load':>5}")
    print(head)
    print("-" * len(head))
    for r in results:
        its = f"{int(np.median(r['lobpcg_its'][1:] or r['lobpcg_its'])):4d}" if r["lobpcg_its"] else f"{'-':>4}"
        print(f"{r['dim']:>3} {r['size']:>10} {r['dofs']:>9,d} {r['solver']:>7} {r['build']:7.2f} {r['setup']:6.2f} "
              f"{r['asm']:6.3f} {r['eigen']:7.2f} {r['sens']:6.3f} {r['rest']:6.2f} {r['s/iter']:7.2f} "
              f"{r['cpu/iter']:7.2f} {its} {r['peak_mb']:8.0f} {r['loadavg']:5.1f}")


def print_exponents(results: list[dict]) -> None:
    print("\nfitted exponent a of t ∝ dofs^a (least squares on log t; sizes of the table):")
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["dim"], r["solver"]), []).append(r)
    keys = ("build", "asm", "eigen", "sens", "s/iter")
    print(f"{'dim':>3} {'solver':>7} {'sizes':>5} " + " ".join(f"{k:>7}" for k in keys))
    for (dim, solver), rs in sorted(groups.items()):
        if len(rs) < 2:
            continue
        x = np.log([r["dofs"] for r in rs])
        cells = []
        for k in keys:
            y = np.array([r[k] for r in rs])
            ok = np.isfinite(y) & (y > 0)
            cells.append(f"{np.polyfit(x[ok], np.log(y[ok]), 1)[0]:7.2f}" if ok.sum() >= 2 else f"{'-':>7}")
        print(f"{dim:>3} {solver:>7} {len(rs):>5} " + " ".join(cells))


def print_big(r: dict) -> None:
    print(f"\nlarge run: hex1 {r['size']}, {r['elements']:,d} elements, {r['dofs']:,d} free dofs, "
          f"eigensolver {r['solver']}")
    print(f"{'eval':>4} {'omega1':>10} {'omega2':>10} {'s/eval':>8} {'modal':>8} {'amg setup':>9} {'eigen':>8} {'its':>4}")
    its = r["lobpcg_its"]
    for i, om in enumerate(r["omega"]):
        wall = r["per_eval"][i - 1] if i >= 1 and i - 1 < len(r["per_eval"]) else float("nan")
        n_its = its[i] if i < len(its) else ""
        print(f"{i + 1:>4} {om[0]:10.3f} {om[1]:10.3f} {wall:8.1f} {r['eval_modal'][i]:8.1f} "
              f"{r['eval_setup'][i]:9.1f} {r['eval_eigensolve'][i]:8.1f} {n_its!s:>4}")
    print(f"build_model {r['build']:.1f} s (peak {r['build_peak_mb']:.0f} MB after it), evaluator setup "
          f"{r['setup']:.1f} s, total wall {r['wall']:.1f} s for {r['evaluations']} evaluations")
    print(f"seconds per optimisation iteration: median {r['s/iter']:.1f} wall, {r['cpu/iter']:.1f} CPU "
          f"(iterations timed: {r['iterations_timed']}; the starting design is not one), AMG setups "
          f"{r['setups']}, load average {r['loadavg']:.1f}")
    print(f"peak memory (ru_maxrss): {r['peak_mb']:.0f} MB = {r['peak_mb'] / 1024:.2f} GiB")
    print(f"final eigenvalues λ (rad²/s²): {np.array2string(np.asarray(r['eigenvalues_final']), precision=6)}")


def parse_sizes(text: str) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in item.split("x")) for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a 27k-dof 'large' run (< 1 min)")
    ap.add_argument("--sizes-2d", default=None, help=f"comma-separated NXxNY (default {DEFAULT_2D}; '' for none)")
    ap.add_argument("--sizes-3d", default=None, help=f"comma-separated NXxNYxNZ (default {DEFAULT_3D})")
    ap.add_argument("--evals", type=int, default=None, help="evaluations per table run (default 5; quick 3)")
    ap.add_argument("--direct-max", type=int, default=450_000,
                    help="3D sizes up to this many dofs also run with the direct path (default 450000)")
    ap.add_argument("--largest", type=int, nargs=3, default=None, metavar=("NX", "NY", "NZ"),
                    help="mesh of the large run (default 140 70 35; quick 40 20 10)")
    ap.add_argument("--big-evals", type=int, default=4, help="evaluations of the large run (default 4)")
    ap.add_argument("--skip-table", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--solver", default="amg", help=argparse.SUPPRESS)
    ap.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.run_one:
        import logging

        if args.verbose:  # fem_eigopt's progress lines (one per evaluation) on stderr
            logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
            logging.getLogger("fem_eigopt").setLevel(logging.INFO)
        result = run_one(tuple(int(v) for v in args.run_one.split("x")), args.solver, args.evals or 5, args.verbose)
        print("@@RESULT " + json.dumps(result), flush=True)
        return 0

    sizes_2d = parse_sizes(args.sizes_2d if args.sizes_2d is not None else (QUICK_2D if args.quick else DEFAULT_2D))
    sizes_3d = parse_sizes(args.sizes_3d if args.sizes_3d is not None else (QUICK_3D if args.quick else DEFAULT_3D))
    evals = args.evals or (3 if args.quick else 5)
    largest = tuple(args.largest or ((40, 20, 10) if args.quick else (140, 70, 35)))
    import numpy
    import scipy

    import fem_eigopt  # noqa: F401

    print(f"python {platform.python_version()}, numpy {numpy.__version__}, scipy {scipy.__version__}, "
          f"{os.cpu_count()} cpus, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS', '(unset)')}")
    if not args.skip_table:
        print(f"\n(a) scaling table: {evals} evaluations per run, medians over the {evals - 1} iterations after "
              "the starting design (seconds)")
        results = []
        for size in sizes_2d:
            r = spawn(size, "arpack", evals)
            if r:
                results.append(r)
        for size in sizes_3d:
            r = spawn(size, "amg", evals)
            if r:
                results.append(r)
            if r is None or r["dofs"] <= args.direct_max:
                d = spawn(size, "auto", evals)
                if d:
                    results.append(d)
        results.sort(key=lambda r: (r["dim"], r["solver"], r["dofs"]))
        print_table(results)
        print_exponents(results)
    if not args.skip_big:
        print(f"\n(b) large run: {'x'.join(map(str, largest))} hex1, eigensolver amg, {args.big_evals} evaluations "
              "(progress on stderr)", flush=True)
        r = spawn(largest, "amg", args.big_evals, verbose=True)
        if r:
            print_big(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
