"""Where the time of a topology optimisation goes: a stage table per optimiser iteration.

Runs a problem file (default ``problems/beam.py``, the Du & Olhoff beam) through
:func:`fem_eigopt.optimize.run.optimize` — the same code path as ``python -m fem_eigopt`` — for a short
evaluation budget (``--max-eval``, default 60: under a minute on a 2-core machine) and prints

1. one row per NLopt MMA *outer iteration*: the evaluations it took (NLopt's MMA/CCSA repeats an
   evaluation with a more conservative approximation, an "inner iteration", when the last one was
   not conservative), its wall time and, summed over its evaluations, the stages

   ``filter``       density chain and material interpolation (``t_filter`` of the history),
   ``assembly``     K and M on the fixed pattern (``t_assembly``),
   ``factor``       numeric factorisation in the modal solve (``t_modal_factorization``),
   ``eigen``        eigen solve (``t_modal_eigensolve``; further ``t_modal_*`` keys an
                    eigensolver records get their own column),
   ``modal rest``   ``t_modal`` minus its recorded parts (normalisation, clusters),
   ``sens``         element-by-element adjoint and chain rule (``t_sensitivities``),
   ``other``        the rest of the evaluation: responses, cluster rotation, bookkeeping —
                    measured evaluation wall time minus the recorded stages,
   ``optimiser``    NLopt's own time (dual subproblem) plus the driver's bookkeeping: the wall
                    time between two history records minus the evaluation's measured wall time;

2. medians per iteration, totals, and each stage as a fraction of the total iteration time;
3. the median iteration against one numeric factorisation of K (``model.stiffness(s_K)`` at the
   final design, factorised ``--factor-repeats`` times with
   :func:`fem_eigopt.linalg.factorization.make_factorization`; the first call includes the symbolic analysis
   and is shown separately, the ratio uses the median of the numeric-only repeats).

How the numbers are obtained
----------------------------
* Stage times are the per-evaluation ``t_*`` columns that :mod:`fem_eigopt.optimize.run` puts in
  the history (``RunResult.history``); the wall time per evaluation is the difference of the
  history's ``time_s`` stamps.
* The wall time of each evaluation is measured here, by a subclass of
  :class:`~fem_eigopt.optimize.evaluator.DesignEvaluator` that times ``__call__`` and is put in place of
  the evaluator class inside ``fem_eigopt.optimize.run`` for the run, so that the optimiser's share
  does not rest on the evaluator's own bookkeeping. The history's ``t_evaluation`` is printed next
  to it as a check (the two agree; a ``t_evaluation`` above the wall time would mean a stage is
  counted twice, as the forward solve once was).
* Outer iterations: NLopt does not report them to Python. The run uses the problem's optimiser
  settings plus ``nlopt_params={"verbosity": 1}``, under which NLopt's MMA prints
  "MMA inner iteration" / "MMA outer iteration" after each evaluation; the C standard output is
  captured for the run and a marker is written into it at every history record, so each
  evaluation is attributed to its outer iteration. Evaluation 1 is the starting design
  (computed before NLopt starts; its wall time is not part of any iteration); evaluations after
  the last completed outer iteration (cut off by ``--max-eval``) are reported as an incomplete
  iteration and left out of the medians.

Usage::

    python benchmarks/bench_topology.py [--problem problems/beam.py] [--set KEY=VALUE ...]
        [--max-eval 60] [--eigensolver auto[,arpack,...]] [--backend auto] [--per-eval]

``--eigensolver`` takes one or more comma-separated values of ``fe.Analysis(eigensolver=...)``
("auto", "arpack", "subspace", "amg"); each is run in turn and one that fails is reported and
skipped. OpenBLAS is limited to one thread (as the command line does) unless
``OPENBLAS_NUM_THREADS`` is already set. No timing is asserted: this prints.
"""

from __future__ import annotations

import os

# Before numpy loads OpenBLAS (as fem_eigopt's command line does): its threads slow the Lanczos
# vector work on a small machine. A value the user exported wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Iterator, Sequence  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from fem_eigopt.linalg.factorization import make_factorization  # noqa: E402
from fem_eigopt.optimize.evaluator import DesignEvaluator  # noqa: E402
from fem_eigopt.optimize.run import default_settings, optimize  # noqa: E402
from fem_eigopt.problem.loading import load_problem, parse_overrides  # noqa: E402

_OPTIMIZE_MODULE = sys.modules["fem_eigopt.optimize.run"]
_MARKER = "@@BENCH_EVAL"
#: recorded stages that are not part of the modal solve, in data-flow order
_STAGES = ("filter", "assembly")


# ---------------------------------------------------------------------------------------------
# instrumentation


class _TimedEvaluator(DesignEvaluator):
    """The design evaluator with the wall time of every call recorded in ``calls``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (start, end) perf_counter stamps of every __call__, in call order
        self.calls: list[tuple[float, float]] = []
        #: wall time of :meth:`start` (it solves the starting design, which the first call reuses)
        self.start_time = 0.0

    def start(self):  # noqa: D102 - same contract as DesignEvaluator
        t0 = time.perf_counter()
        try:
            return super().start()
        finally:
            self.start_time += time.perf_counter() - t0

    def __call__(self, x: np.ndarray):  # noqa: D102 - same contract as DesignEvaluator
        t0 = time.perf_counter()
        try:
            return super().__call__(x)
        finally:
            self.calls.append((t0, time.perf_counter()))


class _EvalMarker(logging.Handler):
    """Writes a marker into the captured standard output at every history record.

    The optimiser driver logs ``"eval %4d ..."`` once per new evaluation, after the evaluation and
    before NLopt decides whether the outer iteration is complete; C stdio is flushed first so the
    marker lands after everything NLopt printed before it.
    """

    def __init__(self, libc: ctypes.CDLL) -> None:
        super().__init__(level=logging.DEBUG)
        self.libc = libc

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith("eval") and record.args:
            self.libc.fflush(None)
            os.write(1, f"\n{_MARKER} {int(record.args[0])}\n".encode())


class _CapturedStdout:
    """Redirect file descriptor 1 (C and Python standard output) to a temporary file."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None)
        self.text = ""

    def __enter__(self) -> "_CapturedStdout":
        sys.stdout.flush()
        self.libc.fflush(None)
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(1)
        os.dup2(self._file.fileno(), 1)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        self.libc.fflush(None)
        os.dup2(self._saved, 1)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode(errors="replace")
        self._file.close()


def classify_evaluations(text: str) -> dict[int, str]:
    """What NLopt did after each evaluation: ``"outer"`` (iteration complete), ``"inner"`` (the
    approximation was not conservative: evaluate again) or ``"none"`` (the starting point, or the
    last evaluation before the budget ran out).

    Parameters
    ----------
    text : str
        Captured standard output with a marker line ``@@BENCH_EVAL n`` after evaluation ``n``.
    """
    parts = re.split(rf"\n{_MARKER} (\d+)\n", text)
    out: dict[int, str] = {}
    for number, segment in zip(parts[1::2], parts[2::2]):
        if "MMA outer iteration" in segment:
            out[int(number)] = "outer"
        elif "MMA inner iteration" in segment:
            out[int(number)] = "inner"
        else:
            out[int(number)] = "none"
    return out


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class EvalRow:
    """Timings of one evaluation (seconds)."""

    eval: int
    kind: str
    wall: float | None
    measured: float
    recorded_eval: float
    stages: dict[str, float]
    omega1: float
    f: float


@dataclass
class Iteration:
    """One NLopt outer iteration: its evaluations and summed stage times (seconds)."""

    number: int
    evals: list[EvalRow]
    complete: bool
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return float(sum(e.wall for e in self.evals if e.wall is not None))


def stage_names(history: Sequence[dict]) -> list[str]:
    """Stage columns in data-flow order: filter, assembly, modal parts, modal rest, sens, other, optimiser."""
    modal_parts: list[str] = []
    for row in history:
        for key in row:
            if key.startswith("t_modal_") and key[2:] not in modal_parts:
                modal_parts.append(key[2:])
    return [*_STAGES, *modal_parts, "modal_rest", "sensitivities", "other", "optimiser"]


def eval_rows(history: Sequence[dict], calls: Sequence[tuple[float, float]], start_time: float,
              kinds: dict[int, str], names: Sequence[str]) -> list[EvalRow]:
    """Per-evaluation stage times from the history and the measured evaluator calls.

    ``calls[0]`` is ``optimize``'s evaluation of the starting design before NLopt starts,
    ``calls[1 + i]`` the evaluation behind history row ``i`` (the driver evaluates each new point
    once), later calls are ``optimize``'s final re-evaluation. The starting design is solved in
    ``DesignEvaluator.start`` (``start_time``), which ``calls[0]`` then reuses.
    """
    rows = []
    for i, h in enumerate(history):
        start, end = calls[1 + i]
        measured = end - start
        if i == 0:
            # the driver's first call is the cached starting design: report the real one
            measured = start_time + calls[0][1] - calls[0][0]
        wall = None if i == 0 else float(h["time_s"] - history[i - 1]["time_s"])
        st = {name: float(h.get(f"t_{name}", 0.0) or 0.0) for name in names
              if name not in ("modal_rest", "other", "optimiser")}
        modal = float(h.get("t_modal", 0.0) or 0.0)
        st["modal_rest"] = max(modal - sum(v for k, v in st.items() if k.startswith("modal_")), 0.0)
        recorded_sum = sum(st.get(k, 0.0) for k in _STAGES) + modal + st.get("sensitivities", 0.0)
        st["other"] = measured - recorded_sum
        st["optimiser"] = (wall - measured) if wall is not None else float("nan")
        omega = h.get("omega1", float("nan"))
        rows.append(EvalRow(eval=int(h["eval"]), kind=kinds.get(int(h["eval"]), "?"), wall=wall, measured=measured,
                            recorded_eval=float(h.get("t_evaluation", float("nan"))), stages=st,
                            omega1=float(omega), f=float(h["f"])))
    return rows


def group_iterations(rows: Sequence[EvalRow], names: Sequence[str]) -> tuple[list[Iteration], bool]:
    """Group evaluations 2… into outer iterations; returns (iterations, whether NLopt's markers were seen)."""
    seen = any(r.kind in ("outer", "inner") for r in rows)
    iterations: list[Iteration] = []
    current: list[EvalRow] = []
    for r in rows[1:]:
        current.append(r)
        if r.kind == "outer" or not seen:  # without markers every evaluation counts as an iteration
            iterations.append(Iteration(len(iterations) + 1, current, True))
            current = []
    if current:
        iterations.append(Iteration(len(iterations) + 1, current, False))
    for it in iterations:
        it.stages = {n: float(sum(e.stages[n] for e in it.evals)) for n in names}
    return iterations, seen


def factor_times(model: Any, design: Any, densities: np.ndarray, backend: str, repeats: int
                 ) -> tuple[str, float, list[float], str]:
    """Factorise K = model.stiffness(s_K) at ``densities``: (backend name, first, numeric repeats, note)."""
    s_K, _ = design.stiffness(densities)
    K = model.stiffness(s_K)
    fac = make_factorization(backend)
    note = "K"
    times = []
    positive_definite = True
    for i in range(1 + repeats):
        t0 = time.perf_counter()
        try:
            fac.factor(K, positive_definite=positive_definite)
        except Exception as exc:  # noqa: BLE001 - a singular K (free body): say so, use an indefinite solver
            if i > 0 or not positive_definite:
                raise
            note = f"K (not positive definite: {type(exc).__name__}; factorised as indefinite)"
            positive_definite = False
            fac = make_factorization(backend)
            t0 = time.perf_counter()
            fac.factor(K, positive_definite=False)
        times.append(time.perf_counter() - t0)
    return getattr(fac, "name", backend), times[0], times[1:], note


@dataclass
class RunReport:
    label: str
    problem: Any
    run: Any
    rows: list[EvalRow]
    iterations: list[Iteration]
    markers: bool
    names: list[str]
    factor: tuple[str, float, list[float], str]
    wall: float


def run_once(problem: Any, max_eval: int, backend: str | None, factor_repeats: int) -> RunReport:
    """One optimisation run with instrumentation (see the module docstring)."""
    settings = default_settings(problem)
    if settings.algorithm in ("LD_MMA", "LD_CCSAQ"):  # NLopt prints its iterations, counted below
        settings = replace(settings, nlopt_params={**settings.nlopt_params, "verbosity": 1})
    opt_logger = logging.getLogger("fem_eigopt.optimize.driver")
    capture = _CapturedStdout()
    marker = _EvalMarker(capture.libc)
    old_level = opt_logger.level
    opt_logger.addHandler(marker)
    opt_logger.setLevel(logging.DEBUG)
    original = _OPTIMIZE_MODULE.DesignEvaluator
    _OPTIMIZE_MODULE.DesignEvaluator = _TimedEvaluator
    t0 = time.perf_counter()
    try:
        with capture:
            run = optimize(problem, out_dir=None, max_eval=max_eval, settings=settings, backend=backend,
                           progress=False)
    finally:
        wall = time.perf_counter() - t0
        _OPTIMIZE_MODULE.DesignEvaluator = original
        opt_logger.removeHandler(marker)
        opt_logger.setLevel(old_level)
    history = run.history
    names = stage_names(history)
    kinds = classify_evaluations(capture.text)
    rows = eval_rows(history, run.evaluator.calls, run.evaluator.start_time, kinds, names)
    iterations, markers = group_iterations(rows, names)
    fac_backend = backend or problem.analysis.backend
    factor = factor_times(run.evaluator.model, problem.design, run.densities, fac_backend, factor_repeats)
    return RunReport("", problem, run, rows, iterations, markers, names, factor, wall)


# ---------------------------------------------------------------------------------------------
# output

_SHORT = {"filter": "filter", "assembly": "assembly", "modal_factorization": "factor", "modal_eigensolve": "eigen",
          "modal_rest": "modal rest", "sensitivities": "sens", "other": "other", "optimiser": "optimiser"}


def _short(name: str) -> str:
    return _SHORT.get(name, name.replace("modal_", ""))


def _ms(v: float) -> str:
    return "     -" if v is None or not np.isfinite(v) else f"{1e3 * v:8.1f}"


def print_report(rep: RunReport, per_eval: bool) -> None:
    names = rep.names
    run = rep.run
    s = run.summary
    solver = run.evaluator.solver
    print(f"\n== {rep.label}: {s['n_elements']} elements, {s['n_free_dofs']} free dofs, "
          f"{run.evaluator.n_design} design variables, {run.evaluator.n_modes} modes, "
          f"eigen solver {type(solver).__name__}, factorisation {getattr(solver, 'backend', '?')}")
    print(f"   {s['evaluations']} evaluations, status {s['status']}, ω1 {s['omega_initial'][0]:.4g} -> "
          f"{s['omega_final'][0]:.4g} rad/s, volume {s['volume_fraction']:.4f}, optimize() wall {rep.wall:.2f} s")
    if not rep.markers:
        print("   NLopt printed no inner/outer-iteration lines: every evaluation is counted as one iteration")
    head = f"{'it':>4} {'evals':>5} {'wall':>8} " + " ".join(f"{_short(n):>10}" for n in names) + f" {'ω1 end':>10}"
    if per_eval:
        print("\nper evaluation (ms; kind = what NLopt did next: outer = iteration complete, inner = retry)")
        print(f"{'eval':>5} {'kind':>6} {'wall':>8} {'measured':>8} {'recorded':>8} "
              + " ".join(f"{_short(n):>10}" for n in names))
        for r in rep.rows:
            print(f"{r.eval:5d} {r.kind:>6} {_ms(r.wall)} {_ms(r.measured)} {_ms(r.recorded_eval)} "
                  + " ".join(f"{_ms(r.stages[n]):>10}" for n in names))
    first = rep.rows[0]
    print(f"\nstarting design (evaluation 1, before NLopt): {1e3 * first.measured:.1f} ms "
          f"(factor {_ms(first.stages.get('modal_factorization', float('nan'))).strip()} ms, "
          f"eigen {_ms(first.stages.get('modal_eigensolve', float('nan'))).strip()} ms)")
    print("\nper outer iteration (ms, stages summed over the iteration's evaluations)")
    print(head)
    for it in rep.iterations:
        tag = "" if it.complete else "  (incomplete: evaluation budget reached)"
        print(f"{it.number:4d} {len(it.evals):5d} {_ms(it.wall)} " + " ".join(f"{_ms(it.stages[n]):>10}" for n in names)
              + f" {it.evals[-1].omega1:10.4f}{tag}")
    done = [it for it in rep.iterations if it.complete]
    if not done:
        print("no complete outer iteration: raise --max-eval")
        return
    walls = np.array([it.wall for it in done])
    evals = np.array([len(it.evals) for it in done])
    total_wall = float(walls.sum())
    print(f"\nsummary over {len(done)} complete outer iterations ({int(evals.sum())} evaluations, "
          f"{evals.mean():.2f} evaluations per iteration, at most {evals.max()})")
    print(f"{'stage':>12} {'median/it ms':>13} {'mean/it ms':>11} {'total s':>9} {'fraction':>9}")
    for n in names:
        v = np.array([it.stages[n] for it in done])
        print(f"{_short(n):>12} {1e3 * np.median(v):13.1f} {1e3 * v.mean():11.1f} {v.sum():9.3f} "
              f"{v.sum() / total_wall:9.1%}")
    print(f"{'iteration':>12} {1e3 * np.median(walls):13.1f} {1e3 * walls.mean():11.1f} {total_wall:9.3f} {1.0:9.1%}")
    rows = [r for it in done for r in it.evals]
    meas = np.array([r.measured for r in rows])
    rec = np.array([r.recorded_eval for r in rows])
    ev_wall = np.array([r.wall for r in rows])
    print(f"per evaluation: median wall {1e3 * np.median(ev_wall):.1f} ms, measured evaluation "
          f"{1e3 * np.median(meas):.1f} ms, history's t_evaluation {1e3 * np.median(rec):.1f} ms"
          + ("  <- exceeds the wall time: t_evaluation counts a stage twice"
             if np.median(rec) > np.median(ev_wall) * 1.02 else ""))
    name, first_t, numeric, note = rep.factor
    if numeric:
        med = float(np.median(numeric))
        print(f"numeric factorisation of {note} at the final design ({name}): first call {1e3 * first_t:.1f} ms "
              f"(symbolic + numeric), median of {len(numeric)} numeric-only {1e3 * med:.1f} ms; "
              f"median iteration / factorisation = {np.median(walls) / med:.1f}, "
              f"median evaluation / factorisation = {np.median(ev_wall) / med:.1f}")


def _eigensolvers(text: str | None) -> Iterator[str | None]:
    if text is None:
        yield None
        return
    for item in text.split(","):
        if item.strip():
            yield item.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", default=str(ROOT / "problems" / "beam.py"), help="problem file")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override a parameter of the problem file (repeatable)")
    parser.add_argument("--max-eval", type=int, default=60, help="evaluation budget (default 60)")
    parser.add_argument("--eigensolver", default="auto",
                        help="fe.Analysis eigensolver, comma-separated to compare: auto, arpack, subspace, amg")
    parser.add_argument("--backend", default=None, help="factorisation backend (default: the problem's)")
    parser.add_argument("--factor-repeats", type=int, default=5, help="numeric factorisations of K to time")
    parser.add_argument("--per-eval", action="store_true", help="also print one row per evaluation")
    args = parser.parse_args(argv)

    base = load_problem(args.problem, parse_overrides(args.overrides))
    print(f"bench_topology: {args.problem} {' '.join(args.overrides)}; max_eval {args.max_eval}; "
          f"{platform.machine()}, {os.cpu_count()} cpus, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; numpy {np.__version__}")
    failures = []
    for solver in _eigensolvers(args.eigensolver):
        label = f"{Path(args.problem).name}, eigensolver {solver or base.analysis.eigensolver}"
        try:
            problem = base if solver is None else replace(base, analysis=replace(base.analysis, eigensolver=solver))
            rep = run_once(problem, args.max_eval, args.backend, args.factor_repeats)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next eigen solver
            failures.append((label, exc))
            print(f"\n== {label}: FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3, file=sys.stderr)
            continue
        rep.label = label
        print_report(rep, args.per_eval)
    if failures:
        print("\nfailed: " + "; ".join(f"{label} ({type(exc).__name__})" for label, exc in failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
