"""The ``sweep`` command: ``python -m fem_eigopt sweep PROBLEM.py|SWEEP.toml [options]``.

:func:`build_parser` is the command's parser, :func:`cmd_sweep` runs the sweep and returns its
result; the CLI (:mod:`fem_eigopt.cli`) configures the output, draws the progress and prints
the outcome (one line and exit code 2 for bad input, 130 after Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, Sequence

from fem_eigopt.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["add_sweep_parser", "build_parser", "configure_sweep_parser", "cmd_sweep"]

EPILOG = """\
examples:
  sweep problems/beam.py --grid volfrac=0.3:0.6:7 --grid supports=SS,CC --set nx=64 ny=8 --workers 2
  sweep problems/beam.py --sample 16 --method sobol --range volfrac=0.3:0.6 --seed 1
  sweep problems/beam_volfrac.toml --engine dask
  sweep --resume results/beam/sweep-20261204-101500-1a2b3c4d
"""


def configure_sweep_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the sweep options to ``p`` (a sub-parser or a stand-alone parser)."""
    p.add_argument("problem", nargs="?", default=None,
                   help="problem file (.py with problem(**params)) or sweep file (.toml); not with --resume")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=VALUES",
                   help="values of a parameter: a,b,c or start:stop:count (repeatable; Cartesian product)")
    p.add_argument("--zip", action="append", default=[], metavar="KEY=VALUES",
                   help="values varied together with the other --zip keys (equal lengths)")
    p.add_argument("--sample", type=str, default=None, metavar="N",
                   help="N quasi-random points in the --range boxes")
    p.add_argument("--method", default=None, help="sampling method: lhs (default) or sobol")
    p.add_argument("--range", dest="ranges", action="append", default=[], metavar="KEY=LOW:HIGH",
                   help="range of a sampled parameter (repeatable)")
    p.add_argument("--seed", default=None, help="seed of the sample (default: drawn and recorded)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="fixed parameter of every case (repeatable)")
    p.add_argument("--engine", default=None, help="process (default) or dask")
    p.add_argument("--workers", default=None, help="parallel cases (default: the cores)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running Dask scheduler (tcp://host:8786); implies --engine dask")
    p.add_argument("--out", default=None, help="root of the sweep directory (default: results)")
    p.add_argument("--resume", default=None, metavar="SWEEP_DIR", help="complete an interrupted sweep")
    p.add_argument("--rerun-failed", action="store_true", help="with --resume: run the failed cases again")
    p.add_argument("--retries", default=None, help="re-runs of a failed case (default 0)")
    p.add_argument("--max-eval", default=None, help="evaluation budget of every case (default: the problem's)")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sweep`` to the CLI's sub-parsers (``parser.add_subparsers(...)``); returns its parser."""
    p = subparsers.add_parser("sweep", help="run a grid or sample of parameters as separate runs",
                              description="Run a parameter sweep: each case a normal run directory; "
                                          "summary.csv, plots and a contact sheet in the sweep directory.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    return configure_sweep_parser(p)


def _assignments(items: Sequence[str], option: str) -> dict[str, str]:
    from fem_eigopt.sweeps.spec import parse_assignment

    out: dict[str, str] = {}
    for item in items:
        key, value = parse_assignment(item, option)
        if key in out:
            raise InputError(f"{option} {key}: given twice; allowed: one {option} per parameter")
        out[key] = value
    return out


def _int_option(value: str | None, option: str, lo: int) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        raise InputError(f"{option} {value!r}: allowed: an integer >= {lo}") from None
    if n < lo:
        raise InputError(f"{option} {value!r}: allowed: an integer >= {lo}")
    return n


def cmd_sweep(args: argparse.Namespace):
    """Run the ``sweep`` command's sweep; the CLI prints its outcome (:func:`fem_eigopt.cli`).

    Returns
    -------
    SweepResult

    Raises
    ------
    InputError
        Bad input, before any case runs.
    """
    from fem_eigopt.sweeps.runner import run_sweep
    from fem_eigopt.sweeps.spec import build_spec, load_sweep_file

    workers = _int_option(args.workers, "--workers", 1)
    retries = _int_option(args.retries, "--retries", 0)
    max_eval = _int_option(args.max_eval, "--max-eval", 1)
    sample = _int_option(args.sample, "--sample", 1)
    seed = _int_option(args.seed, "--seed", 0)
    progress = not args.no_progress
    if args.resume is not None:
        given = [o for o, v in (("PROBLEM", args.problem), ("--grid", args.grid), ("--zip", args.zip),
                                ("--sample", args.sample), ("--range", args.ranges), ("--set", args.overrides),
                                ("--out", args.out), ("--seed", args.seed), ("--method", args.method)) if v]
        if given:
            raise InputError(f"--resume {args.resume}: {', '.join(given)} given too; allowed with --resume: "
                             f"--engine, --workers, --scheduler, --retries, --rerun-failed, --max-eval")
        result = run_sweep(resume=args.resume, engine=args.engine, workers=workers, scheduler=args.scheduler,
                           retries=retries, rerun_failed=args.rerun_failed, max_eval=max_eval, progress=progress)
    else:
        if args.problem is None:
            raise InputError("sweep: no PROBLEM given; allowed: a .py problem file, a .toml sweep file, "
                             "or --resume SWEEP_DIR")
        if args.rerun_failed:
            raise InputError("--rerun-failed: allowed only with --resume SWEEP_DIR")
        from fem_eigopt.problem.loading import parse_overrides

        kwargs = dict(grid=_assignments(args.grid, "--grid"), zip=_assignments(args.zip, "--zip"), sample=sample,
                      ranges=_assignments(args.ranges, "--range"), seed=seed,
                      fixed=parse_overrides(args.overrides), engine=args.engine, workers=workers,
                      scheduler=args.scheduler, out=args.out, retries=retries, method=args.method)
        if args.problem.endswith(".toml"):
            spec = load_sweep_file(args.problem, **kwargs)
        else:
            spec = build_spec(args.problem, **{k: v for k, v in kwargs.items() if v is not None})
        result = run_sweep(spec, max_eval=max_eval, progress=progress)
    return result


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The stand-alone parser of :func:`main`."""
    p = _Parser(prog="fem_eigopt sweep", description="Run a parameter sweep of a problem file.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    return configure_sweep_parser(p)


