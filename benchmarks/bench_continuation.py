"""The Du & Olhoff beams: today's default path against the previous one, side by side in one run.

    python benchmarks/bench_continuation.py [--supports SS CC] [--threads 1]

Runs ``problems/beam.py`` for each support case twice in this process, one after the other:

* **default** — the problem file as shipped: our MMA carried through the β continuation, the
  bound variable's move limit in its own units, mirror symmetry, erosion 0.1 (the robust
  formulation's eroded design), 600 evaluations;
* **previous** — the path before (NLopt's ``LD_MMA``, restarted at every β change with density
  steps ≤ 0.1, no symmetry, no erosion, 1600 evaluations).

and prints one table: wall time, evaluations, evaluations and seconds to 95 % of the final
objective, final ω1 and its percentage of the published optimum, the gap ω2/ω1 − 1 and the grey
fraction. Only numbers from one run on one machine are comparable; docs/du-olhoff.md has a table.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = {"SS": 174.7, "CC": 456.4}


def run(supports: str, previous: bool) -> dict:
    """One beam run; the summary numbers of the table."""
    from fem_eigopt.optimize.run import default_settings, optimize
    from fem_eigopt.problem.loading import load_problem

    params = {"supports": supports}
    if previous:
        params.update(symmetry="", max_eval="1600", erosion="0")
    problem = load_problem(REPO / "problems" / "beam.py", params)
    settings = default_settings(problem)
    if previous:
        settings = replace(settings, algorithm="LD_MMA", restart_step=0.1)
    t = time.perf_counter()
    s = optimize(problem, out_dir=None, progress=False, settings=settings).summary
    omega = s["omega_final"]
    return {"wall": time.perf_counter() - t, "evaluations": s["evaluations"], "to95": s["evaluations_to_95"],
            "t95": s["time_to_95_s"], "omega1": omega[0], "percent": 100 * omega[0] / PUBLISHED[supports],
            "gap": 100 * (omega[1] / omega[0] - 1), "grey": 100 * s["grey_fraction"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supports", nargs="+", default=["SS", "CC"])
    ap.add_argument("--threads", type=int, default=1, help="BLAS/MKL threads (default 1)")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    header = (f"{'beam':<5} {'path':<9} {'wall s':>7} {'evals':>6} {'to 95 %':>8} {'s to 95 %':>10} "
              f"{'ω1':>8} {'% publ.':>8} {'gap %':>6} {'grey %':>7}")
    rows = []
    for supports in args.supports:
        for previous in (False, True):
            r = run(supports, previous)
            rows.append(f"{supports:<5} {'previous' if previous else 'default':<9} {r['wall']:7.1f} "
                        f"{r['evaluations']:6d} {r['to95']:8d} {r['t95']:10.1f} {r['omega1']:8.2f} "
                        f"{r['percent']:8.1f} {r['gap']:6.2f} {r['grey']:7.2f}")
            print(rows[-1], flush=True)
    print()
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
