"""Sweep engine: speed-up of 4 equal cases on 2 workers against 1, and the overhead per case.

    python benchmarks/bench_sweep.py [--nx 64 --ny 8 --max-eval 60] [--engine process|dask]

Runs (1) one plain optimisation in this process (``optimize``, the same as ``python -m fem_eigopt``),
(2) a sweep of 4 equal cases (they differ only in ``volfrac`` by 1e-12, far below its effect,
since a sweep runs distinct parameters) on 1 worker and (3) on 2 workers, and prints a table: wall time, speed-up, and the sweep's overhead per case
(sweep wall time × workers / cases − plain run), which covers starting the worker processes,
shipping the task, the design picture and the sweep's own files. Expect a speed-up ≥ 1.7 on 2
quiet cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
BEAM = REPO / "problems" / "beam.py"


def plain_run(fixed: dict, out: Path) -> float:
    from fem_eigopt.optimize.run import optimize
    from fem_eigopt.problem.loading import load_problem

    t = time.perf_counter()
    optimize(load_problem(BEAM, fixed), out_dir=out, progress=False)
    return time.perf_counter() - t


def sweep_run(fixed: dict, workers: int, engine: str, out: Path) -> tuple[float, int]:
    from fem_eigopt.sweeps.runner import run_sweep
    from fem_eigopt.sweeps.spec import build_spec

    # 4 cases that do the same work: volume fractions that differ far below their effect
    volumes = ",".join(f"{0.5 + i * 1e-12:.13f}" for i in range(4))
    spec = build_spec(BEAM, grid={"volfrac": volumes}, fixed=fixed, workers=workers, engine=engine, out=out)
    t = time.perf_counter()
    result = run_sweep(spec, progress=False)
    return time.perf_counter() - t, result.counts.get("ok", 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nx", type=int, default=64)
    ap.add_argument("--ny", type=int, default=8)
    ap.add_argument("--max-eval", type=int, default=60)
    ap.add_argument("--engine", default="process", choices=("process", "dask"))
    args = ap.parse_args()
    fixed = {"nx": args.nx, "ny": args.ny, "max_eval": args.max_eval}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        plain_run(fixed, out / "warm")  # imports and caches, not timed
        plain = plain_run(fixed, out / "plain")
        one, ok1 = sweep_run(fixed, 1, args.engine, out / "w1")
        two, ok2 = sweep_run(fixed, 2, args.engine, out / "w2")
    print(f"beam {args.nx} x {args.ny}, {args.max_eval} evaluations per case, 4 cases, engine {args.engine}, "
          f"{os.cpu_count()} cores")
    print(f"{'run':<22} {'wall [s]':>9} {'cases ok':>9} {'per case [s]':>13} {'overhead/case [s]':>18} {'speed-up':>9}")
    print(f"{'plain run (1 case)':<22} {plain:9.2f} {1:9d} {plain:13.2f} {'-':>18} {'-':>9}")
    for label, wall, ok, workers in (("sweep, 1 worker", one, ok1, 1), ("sweep, 2 workers", two, ok2, 2)):
        per_case = wall * workers / 4
        print(f"{label:<22} {wall:9.2f} {ok:9d} {per_case:13.2f} {per_case - plain:18.2f} {one / wall:9.2f}")


if __name__ == "__main__":
    main()
