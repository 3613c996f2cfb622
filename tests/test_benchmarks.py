"""The fem_eigopt side of benchmarks/bench_pymoto.py on a tiny mesh (pyMOTO itself is in the bench
extra, not needed here): the iteration accounting the benchmark's table rests on."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from fem_eigopt.linalg.factorization import available_backends

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_pymoto", REPO / "benchmarks" / "bench_pymoto.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_pymoto"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_pymoto", None)


@pytest.mark.parametrize("algorithm, scale", [("MMA", 100.0), ("LD_MMA", 1.0)])
def test_fem_worker_counts_iterations(bench, algorithm, scale):
    start = bench.feasible_start(16, 8, 0)
    res = bench.run_fem(16, 8, 0, 4, "auto", objective_scale=scale, start=start, algorithm=algorithm)
    assert res["completed"] == 4, res["status"]
    evals = [it["evals"] for it in res["iterations"]]
    if algorithm == "MMA":
        assert evals == [1, 1, 1, 1]  # our MMA: one evaluation per iteration
    else:
        assert all(e >= 1 for e in evals)
    assert {"wall", "eval", "evals", "sens_filter"} <= set(res["iterations"][0]) and "factor_s" in res
    # on the example's scale (100 at the start) the objective went down and the volume limit holds
    assert res["final"]["f"] < 100.0 and res["final"]["volume"] <= 0.5 * (1 + 1e-6)


def test_parse_nlopt(bench):
    assert bench.parse_nlopt("inner_maxeval=1, dual_ftol_rel=1e-6") == {"inner_maxeval": 1.0, "dual_ftol_rel": 1e-6}
    assert bench.parse_nlopt("") == {}
    with pytest.raises(SystemExit):
        bench.parse_nlopt("inner_maxeval")


def test_table_reports_the_ratio_per_repeat(bench, capsys):
    """print_size: the medians of all runs in the table, and with two repeats the ratio of each
    pair of runs (pyMOTO's k-th against fem_eigopt's k-th) below it."""
    def run(label, seconds, f):
        its = [dict(wall=s, eval=0.9 * s, evals=1, f=f, sens_filter=0.01 * s) for s in seconds]
        return dict(label=label, iterations=its, final=dict(f=f, omega1=12.0, volume=0.5), completed=len(its),
                    setup_s=1.0, info="synthetic", status="MAXEVAL_REACHED", initial_eigenvalues=[1.0, 2.0, 3.0],
                    n_elements=8, n_dofs=30)
    results = [run("pyMOTO", [0.5, 0.6, 0.7], 13.0), run("fem", [0.1, 0.1, 0.1], 12.0),
               run("pyMOTO", [0.9, 1.0, 1.1], 13.0), run("fem", [0.2, 0.2, 0.25], 12.0)]
    bench.print_size("8x4", results, 3)
    out = capsys.readouterr().out
    assert "per repeat, pyMOTO/fem (median s/it of each run): 0.600/0.100 = 6.00x, 1.000/0.200 = 5.00x" in out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["fem"])
    assert float(row.split()[1]) == pytest.approx(0.15)  # median over both runs' iterations
    assert float(row.split()[6]) == pytest.approx(0.8 / 0.15, abs=0.01)  # pyMOTO/x from the medians


@pytest.mark.skipif("pardiso" not in available_backends(),
                    reason="the stage table times MKL PARDISO's phases; PARDISO not installed")
def test_stage_benchmark_prints_its_table_and_undoes_its_instrumentation(capsys):
    """bench_subspace.py --quick (a 3D mesh: the subspace solver) runs, prints every stage row, the
    counted work and the floor line, and leaves the library as it found it. Its timings are
    measurements, not test results: nothing here compares them."""
    spec = importlib.util.spec_from_file_location("bench_subspace", REPO / "benchmarks" / "bench_subspace.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import fem_eigopt.linalg.kernels as linalg
    import fem_eigopt.optimize.evaluator as evaluate
    import fem_eigopt.solvers.lobpcg as lobpcg

    assert module.main(["--quick"]) == 0
    # the benchmark instruments the library in place and undoes it afterwards
    assert lobpcg.dense_matmul is linalg.dense_matmul and not hasattr(evaluate.element_energies, "__wrapped__")
    assert not hasattr(evaluate.DesignEvaluator.__call__, "__wrapped__")
    out = capsys.readouterr().out
    for label in ("total (the timed loop)", "preconditioner solves (PARDISO 33)", "Rayleigh-Ritz (Gram products, eigh)",
                  "counted work per design", "LOBPCG iterations"):
        assert label in out, label
    assert re.search(r"outside the eigen solve [\d.]+ ms .*? = [\d.]+x one double-precision factorisation", out), out
    assert re.search(r"would allow -?[\d.]+ one-column solves per design", out)
