"""Command line: ``python -m fem_eigopt [run|modal|info] PROBLEM.py [--set KEY=VALUE ...]``.

Without a command name, ``run`` is assumed. Bad input ends with one line on stderr naming what was
wrong and what is allowed, and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

# Before numpy and scipy load OpenBLAS: its threads make ARPACK's tall-skinny vector work several
# times slower (200 × 100 quads: 2.8 s vs 0.63 s per modal solve on a busy 2-core machine), and
# nothing here does large dense algebra. The factorisation's threads are set by PARDISO itself.
# A value the user exported wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from fem_eigopt.errors import InputError  # noqa: E402

logger = logging.getLogger("fem_eigopt")

COMMANDS = ("run", "modal", "check-grad", "info")


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("problem", help="problem file (a .py file defining problem(**params))")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override a parameter of the problem file (repeatable)")
    p.add_argument("--backend", default=None,
                   help="factorisation backend: auto, pardiso, superlu, cholmod (default: the problem's)")
    p.add_argument("--eigensolver", default=None,
                   help="eigen solver: auto, arpack, subspace, amg (default: the problem's; see Analysis)")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fem_eigopt", description="Eigenfrequency design optimisation.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    p_run = sub.add_parser("run", help="optimise the problem (default command)")
    _add_common(p_run)
    p_run.add_argument("--out", default="results", help="root folder of run directories (default: results)")
    p_run.add_argument("--max-eval", type=int, default=None, help="evaluation budget (default: the problem's)")
    p_run.add_argument("--no-output", action="store_true", help="write no run directory")
    p_modal = sub.add_parser("modal", help="modal analysis of the initial design")
    _add_common(p_modal)
    p_modal.add_argument("--modes", type=int, default=None, help="number of modes (default: the problem's)")
    p_modal.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p_check = sub.add_parser("check-grad", help="Taylor test of the objective and every constraint")
    _add_common(p_check)
    p_check.add_argument("--directions", type=int, default=2, help="random directions (default 2)")
    p_check.add_argument("--seed", type=int, default=0, help="seed of the random design and directions")
    p_check.add_argument("--h0", type=float, default=1e-2, help="largest step (default 1e-2)")
    p_info = sub.add_parser("info", help="parameters of a problem file and installed backends")
    p_info.add_argument("problem", help="problem file")
    p_info.add_argument("--debug", action="store_true")
    p_info.add_argument("-v", "--verbose", action="store_true")
    return parser


def _load(args):
    from fem_eigopt.problem.loading import load_problem, parse_overrides

    problem = load_problem(args.problem, parse_overrides(args.overrides))
    if getattr(args, "eigensolver", None) is not None:
        from dataclasses import replace

        from fem_eigopt.problem.definition import EIGENSOLVERS

        if args.eigensolver not in EIGENSOLVERS:
            raise InputError(f"--eigensolver {args.eigensolver!r}: allowed: {', '.join(EIGENSOLVERS)}")
        problem = replace(problem, analysis=replace(problem.analysis, eigensolver=args.eigensolver))
    return problem


def _modal_table(result) -> str:
    modes = result.modes
    marks = {}
    for n, c in enumerate(modes.clusters):
        for i in c:
            marks[i] = f"cluster {n + 1} (x{len(c)})"
    lines = [f"{'mode':>4}  {'lambda':>14}  {'omega [rad/s]':>14}  {'f [Hz]':>12}  cluster"]
    for i, (lam, om, f) in enumerate(zip(modes.eigenvalues, modes.omega, modes.frequencies_hz)):
        lines.append(f"{i + 1:>4}  {lam:>14.6e}  {om:>14.6f}  {f:>12.6f}  {marks.get(i, '')}")
    return "\n".join(lines)


def cmd_modal(args) -> int:
    from fem_eigopt.optimize.modal_analysis import modal_analysis

    problem = _load(args)
    if args.modes is not None and args.modes < 1:
        raise InputError(f"--modes {args.modes}: allowed: an integer >= 1")
    result = modal_analysis(problem, n_modes=args.modes, backend=args.backend)
    modes, model = result.modes, result.model
    if getattr(args, "json", False):
        out = {
            "problem": problem.name,
            "source": problem.source,
            "parameters": {k: v for k, v in problem.parameters.items() if _jsonable(v)},
            "eigenvalues": modes.eigenvalues.tolist(),
            "omega": modes.omega.tolist(),
            "frequencies_hz": modes.frequencies_hz.tolist(),
            "clusters": [list(c) for c in modes.clusters],
            "n_elements": model.n_elements,
            "n_dofs": model.n_dofs,
            "n_free_dofs": model.n_free,
            "shift": modes.shift,
            "backend": result.solver.backend,
        }
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        print(f"{problem.name}: {model.n_elements} elements, {model.n_free} free dofs, "
              f"backend {result.solver.backend}, shift {modes.shift:.3e}")
        print(_modal_table(result))
    return 0


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def cmd_run(args) -> int:
    """Optimise the problem; write the run directory; exit 130 when interrupted."""
    from fem_eigopt.optimize.run import optimize

    problem = _load(args)
    run = optimize(problem, out_dir=None if args.no_output else args.out, max_eval=args.max_eval,
                   backend=args.backend)
    if run.run_dir is not None:
        print(f"results: {run.run_dir}")
    return 130 if run.result.status == "INTERRUPTED" else 0


def cmd_check_grad(args) -> int:
    """Taylor remainder test of every response at a randomly perturbed starting design."""
    from fem_eigopt.optimize.evaluator import DesignEvaluator
    from fem_eigopt.sensitivity.gradcheck import check_evaluator

    problem = _load(args)
    if args.directions < 1:
        raise InputError(f"--directions {args.directions}: allowed: an integer >= 1")
    if not 0 < args.h0 < 1:
        raise InputError(f"--h0 {args.h0}: allowed: 0 < h0 < 1")
    evaluator = DesignEvaluator(problem, backend=args.backend)
    x0, lower, upper = evaluator.start()
    # A perturbed design exercises non-uniform densities; keep away from the bounds and from the
    # kink of the two-range mass law at 0.1.
    rng = np.random.default_rng(args.seed)
    n = evaluator.n_design
    x = x0.copy()
    x[:n] = np.clip(x0[:n] + rng.uniform(-0.1, 0.1, n), max(0.15, problem.design.x_min + 0.05), 0.95)
    evaluator(x)
    names = [evaluator.objective.name] + evaluator.constraint_names
    checks = check_evaluator(evaluator, x, lower, upper, names, n_directions=args.directions, h0=args.h0,
                             seed=args.seed + 1)
    print(f"{problem.name}: {x.size} variables, {len(names) - 1} constraints, {args.directions} directions")
    print(f"{'response':<28} {'dir':>3} {'g.d':>12} {'central diff':>12} {'rel err':>9}  "
          f"{'remainders (h halves)':<50} {'rate':>6}  ok")
    ok_all = True
    for c in checks:
        rem = " ".join(f"{r:9.2e}" for r in c.result.remainders)
        rate = "linear" if c.linear else f"{c.result.rate:6.3f}"
        ok_all &= c.passed
        print(f"{c.name[:28]:<28} {c.direction:>3} {c.result.directional_derivative:12.5e} "
              f"{c.central_difference:12.5e} {c.relative_error:9.2e}  {rem:<50} {rate:>6}  "
              f"{'yes' if c.passed else 'NO'}")
    print("all rates 2 ± 0.2" if ok_all else "FAILED: some rate is not 2 ± 0.2")
    return 0 if ok_all else 1


def cmd_info(args) -> int:
    from fem_eigopt.linalg.factorization import available_backends, default_backend
    from fem_eigopt.problem.loading import problem_parameters

    params = problem_parameters(args.problem)
    print(f"{args.problem}: parameters (--set KEY=VALUE):")
    for k, v in params.items():
        print(f"  {k} = {v!r}")
    print(f"factorisation backends here: {', '.join(available_backends())} (default {default_backend()})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fem_eigopt`` and ``fem-eigopt``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "run")
    debug = "--debug" in argv
    verbose = "-v" in argv or "--verbose" in argv
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    logging.getLogger("skfem").setLevel(logging.DEBUG if verbose else logging.WARNING)
    np.set_printoptions(precision=6)
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 2
        return {"run": cmd_run, "modal": cmd_modal, "check-grad": cmd_check_grad,
                "info": cmd_info}[args.command](args)
    except InputError as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
