"""Command line: ``python -m fem_eigopt [run|modal|check-grad|info] PROBLEM.py [--set KEY=VALUE ...]``,
``python -m fem_eigopt --resume RUN_DIR`` and ``python -m fem_eigopt plot RUN_DIR``.

Without a command name, ``run`` is assumed (``--resume RUN_DIR`` is an option of ``run``).

Console
-------
Results (the final summary and table, ``modal``'s table, ``info``) go to **stdout**; logs go to
**stderr**. This module is the only place that configures logging: one handler on the root
logger writes to stderr, and while a run is going and stderr is a terminal it draws a ``rich``
progress display (evaluation k/N, elapsed time, ETA, the current objective, the first angular
frequencies and the β stage) from the progress records of :mod:`fem_eigopt.optimize.run`. When
stderr is not a terminal every evaluation is one plain log line (no control characters).
``--quiet``: no progress and no log below WARNING (stdout keeps the final summary);
``-v``/``--verbose``: the per-evaluation table on a terminal too, the header repeated;
``-vv``: debug messages as well.

Exit codes
----------
0 success; 1 a failed gradient check; 2 bad input — one line on stderr naming the file or option,
the value and what is allowed (``--debug`` prints the traceback before that line and still exits
with 2), also ``--resume`` of a finished run or of a directory without a readable checkpoint;
130 interrupted by Ctrl-C (SIGINT); 143 terminated (SIGTERM) — both after writing the run
directory with ``"status": "INTERRUPTED"`` and its checkpoint (``--resume`` continues it);
141 stdout closed early (``| head``), quietly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence, TextIO

# Before numpy and scipy load OpenBLAS: its threads make ARPACK's tall-skinny vector work several
# times slower (200 × 100 quads: 2.8 s vs 0.63 s per modal solve on a busy 2-core machine), and
# nothing here does large dense algebra. The factorisation's threads are set by PARDISO itself.
# A value the user exported wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from fem_eigopt import __version__  # noqa: E402
from fem_eigopt.errors import InputError  # noqa: E402

logger = logging.getLogger(__name__)

COMMANDS = ("run", "modal", "check-grad", "info", "plot", "sweep")

#: exit codes
EXIT_INPUT, EXIT_SIGINT, EXIT_SIGTERM, EXIT_PIPE = 2, 130, 143, 141

#: the attribute of the progress records (fem_eigopt.optimize.run.PROGRESS_ATTR, repeated here so
#: that configuring the console imports no numerical code)
_PROGRESS_ATTR = "fem_eigopt_progress"


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside the optimiser (which has its own handler): ends like Ctrl-C, exit 143."""

    signal_name = "SIGTERM"


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message}")


def _add_console(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="-v: one line per evaluation on a terminal too (header repeated); -vv: debug messages")
    p.add_argument("-q", "--quiet", action="store_true", help="only the final summary (and errors)")
    p.add_argument("--debug", action="store_true", help="show tracebacks (the exit code stays 2)")


def _add_common(p: argparse.ArgumentParser, optional_problem: bool = False) -> None:
    p.add_argument("problem", nargs="?" if optional_problem else None,
                   help="problem file (a .py file defining problem(**params))")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override a parameter of the problem file (repeatable)")
    p.add_argument("--backend", default=None,
                   help="factorisation backend: auto, pardiso, superlu, cholmod (default: the problem's)")
    p.add_argument("--eigensolver", default=None,
                   help="eigen solver: auto, arpack, subspace, amg (default: the problem's; see Analysis)")
    _add_console(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (errors raise :class:`InputError`)."""
    parser = _Parser(prog="fem_eigopt", description="Eigenfrequency design optimisation.")
    parser.add_argument("--version", action="version", version=f"fem_eigopt {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    p_run = sub.add_parser("run", help="optimise the problem (default command)")
    _add_common(p_run, optional_problem=True)
    p_run.add_argument("--resume", metavar="RUN_DIR", default=None,
                       help="continue the stopped run of RUN_DIR from its checkpoint (no PROBLEM.py)")
    p_run.add_argument("--out", default=None, help="root folder of run directories (default: results)")
    p_run.add_argument("--max-eval", type=int, default=None, help="evaluation budget (default: the problem's)")
    p_run.add_argument("--no-output", action="store_true", help="write no run directory")
    p_modal = sub.add_parser("modal", help="modal analysis of the design the optimiser evaluates first, "
                                           "or of a run's design (--design)")
    _add_common(p_modal, optional_problem=True)
    p_modal.add_argument("--modes", type=int, default=None, help="number of modes (default: the problem's)")
    p_modal.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p_modal.add_argument("--out", default=None, metavar="DIR",
                         help="write modes.vtu, modes.json, design.png and mode_<i>.png into DIR")
    p_modal.add_argument("--design", default=None, metavar="RUN_DIR",
                         help="analyse the final design of a run (its directory, or a design.npz / "
                              "design_best.npz) with the run's problem and parameters; --set overrides them, "
                              "e.g. element=quad2 for a check with quadratic elements")
    p_check = sub.add_parser("check-grad", help="Taylor test of the objective and every constraint")
    _add_common(p_check)
    p_check.add_argument("--directions", type=int, default=2, help="random directions (default 2)")
    p_check.add_argument("--seed", type=int, default=0, help="seed of the random design and directions")
    p_check.add_argument("--h0", type=float, default=1e-2, help="largest step (default 1e-2)")
    p_info = sub.add_parser("info", help="a problem file's description and parameters, installed backends")
    p_info.add_argument("problem", help="problem file")
    _add_console(p_info)
    from fem_eigopt.plot import add_plot_parser  # imports no matplotlib

    _add_console(add_plot_parser(sub))
    return parser


# ----------------------------------------------------------------------------------------------
# console


def _bar_columns(*texts: str, bar_width: int | None = 40) -> list:
    """rich progress columns of the run and sweep bars: the name, the bar, done/total, ``texts``,
    the elapsed time and the time to go."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return [TextColumn("[bold]{task.description}"), BarColumn(bar_width=bar_width), MofNCompleteColumn(),
            *(TextColumn(t) for t in texts), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]


class ConsoleHandler(logging.Handler):
    """Log records to stderr; on a terminal, a rich progress display of a run.

    Parameters
    ----------
    stream : file
        Where the log lines go (stderr).
    live : bool
        Draw the progress display (stderr is a terminal and not ``--quiet``).
    table : bool
        Print the per-evaluation rows and headers (always when not ``live``; ``-v`` when live).
    threshold : int
        Records below this level are not printed (WARNING with ``--quiet``).
    """

    def __init__(self, stream: TextIO, live: bool, table: bool, threshold: int) -> None:
        super().__init__(level=logging.NOTSET)
        self.stream = stream
        self.live = live
        self.table = table
        self.threshold = threshold
        self.progress = None
        self.task = None
        self.setFormatter(logging.Formatter("%(message)s"))

    # -- progress display
    def _start(self, data: dict) -> None:
        from rich.console import Console
        from rich.progress import Progress
        from rich.text import Text

        class _RunProgress(Progress):
            """The bar line, then a line with the current numbers."""

            status = ""

            def get_renderables(self):
                yield self.make_tasks_table(self.tasks)
                yield Text(self.status, no_wrap=True, overflow="ellipsis")

        self._stop()
        console = Console(file=self.stream, stderr=True)
        self.progress = _RunProgress(*_bar_columns("elapsed", bar_width=None),
                                     console=console, transient=False, redirect_stdout=False,
                                     redirect_stderr=False, expand=True)
        self.task = self.progress.add_task(str(data.get("problem") or "run"), total=data.get("total"))
        self.progress.start()

    def _update(self, data: dict) -> None:
        if self.progress is None:
            self._start(data)
        omega = " ".join(f"{w:.4g}" for w in data.get("omega", []))
        self.progress.status = (f"  f {data['f']:.6g}  β {data.get('beta', 0):g} (stage {data.get('stage', 1)})  "
                                f"max g {data['max_g']:.2g}  ω {omega} rad/s")
        self.progress.update(self.task, completed=data["eval"], total=data.get("total"))

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def close(self) -> None:
        self._stop()
        super().close()

    # -- records
    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = getattr(record, _PROGRESS_ATTR, None)
            if data is not None:
                event = data.get("event")
                if self.live:
                    if event == "start":
                        self._start(data)
                    elif event == "evaluation":
                        self._update(data)
                    elif event == "end":
                        self._stop()
                if event == "end":
                    return  # the summary on stdout says it
                if event in ("header", "evaluation") and not self.table:
                    return
            if record.levelno < self.threshold:
                return
            text = self.format(record)
            if self.progress is not None:
                self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                self.stream.write(text + "\n")
                self.stream.flush()
        except Exception:
            self.handleError(record)


def configure_console(verbose: int = 0, quiet: bool = False, stream: TextIO | None = None) -> ConsoleHandler:
    """Configure logging for the command line: the root logger at INFO (DEBUG with ``-vv``) and
    one :class:`ConsoleHandler` on ``stream`` (stderr); replaces the handlers this function set before.

    Parameters
    ----------
    verbose : int
        0, 1 (``-v``) or 2 (``-vv``).
    quiet : bool
        Only WARNING and above; no progress display.
    stream : file, optional
        Default ``sys.stderr``.

    Returns
    -------
    ConsoleHandler
    """
    stream = sys.stderr if stream is None else stream
    isatty = bool(getattr(stream, "isatty", lambda: False)())
    live = isatty and not quiet and os.environ.get("TERM") != "dumb"
    handler = ConsoleHandler(stream, live=live, table=(not live or verbose >= 1) and not quiet,
                             threshold=logging.WARNING if quiet else logging.DEBUG)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    # INFO even with --quiet: run.log gets the INFO records; the handler filters the console
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.getLogger("skfem").setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    logging.captureWarnings(True)
    return handler


class SweepDisplay(logging.Handler):
    """The console of the ``sweep`` command: the runner's progress records
    (:data:`fem_eigopt.sweeps.runner.SWEEP_PROGRESS`) as one rich progress line when stderr is a
    terminal, the sweep's warnings and errors printed above it; plain log lines otherwise."""

    def __init__(self, stream: TextIO, live: bool, threshold: int) -> None:
        super().__init__(level=logging.NOTSET)
        self.stream, self.live, self.threshold = stream, live, threshold
        self.progress = None
        self.task = None
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        from fem_eigopt.sweeps.runner import SWEEP_PROGRESS

        try:
            data = getattr(record, SWEEP_PROGRESS, None)
            if self.live and data is not None:
                self._draw(data)
            elif record.levelno >= (logging.WARNING if self.live else self.threshold):
                text = self.format(record)
                if self.progress is not None:
                    self.progress.console.print(text, markup=False, highlight=False)
                else:
                    self.stream.write(text + "\n")
                    self.stream.flush()
        except Exception:
            self.handleError(record)

    def _draw(self, data: dict) -> None:
        if data["event"] == "end":
            self.close()
            return
        if self.progress is None:
            from rich.console import Console
            from rich.progress import Progress

            self.progress = Progress(*_bar_columns("running {task.fields[running]}  failed {task.fields[failed]}"),
                                     console=Console(file=self.stream), transient=False)
            self.task = self.progress.add_task(data["label"], total=data["total"], running=0, failed=0)
            self.progress.start()
        self.progress.update(self.task, completed=data["done"], running=data["running"], failed=data["failed"])

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        super().close()


def _sweep_main(argv: list[str]) -> int:
    """``python -m fem_eigopt sweep ARGS``: 0 all cases ok, 1 some failed, 2 bad input, 130 interrupted."""
    from fem_eigopt.sweeps.command import build_parser, cmd_sweep

    # like the run command: single-threaded OpenBLAS in this process before numpy loads
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    debug = "--debug" in argv
    verbose = "-v" in argv or "--verbose" in argv
    stream = sys.stderr
    live = (bool(getattr(stream, "isatty", lambda: False)()) and "--no-progress" not in argv
            and os.environ.get("TERM") != "dumb")
    display = SweepDisplay(stream, live=live, threshold=logging.DEBUG if verbose else logging.INFO)
    package = logging.getLogger("fem_eigopt")
    previous = (package.level, package.propagate)
    package.addHandler(display)
    package.setLevel(logging.DEBUG if verbose else logging.INFO)
    package.propagate = False
    try:
        result = cmd_sweep(build_parser().parse_args(argv))
    except InputError as exc:
        if debug:
            raise
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        package.removeHandler(display)
        display.close()
        package.setLevel(previous[0])
        package.propagate = previous[1]
    counts = result.counts
    print(f"sweep: {result.sweep_dir}")
    print("cases: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if result.interrupted:
        sys.stderr.write(f"interrupted; complete it with: python -m fem_eigopt sweep --resume {result.sweep_dir}\n")
        return 130
    return 1 if counts.get("failed") else 0


# ----------------------------------------------------------------------------------------------
# commands


def _load(args: argparse.Namespace, run_dir: Path | None = None):
    """The problem of ``args`` (its file and ``--set`` values), or of the run in ``run_dir`` with
    ``--set`` overriding the run's parameters; ``--eigensolver`` replaces the problem's."""
    from fem_eigopt.problem.loading import load_problem, parse_overrides

    _check_choice("--backend", args.backend)
    if args.eigensolver is not None:
        from fem_eigopt.problem.definition import EIGENSOLVERS

        if args.eigensolver not in EIGENSOLVERS:
            raise InputError(f"--eigensolver {args.eigensolver!r}: allowed: {', '.join(EIGENSOLVERS)}")
    if run_dir is None:
        problem = load_problem(args.problem, parse_overrides(args.overrides))
    else:
        from fem_eigopt.optimize.run import run_problem

        problem = run_problem(run_dir, parse_overrides(args.overrides))[1]
    if args.eigensolver is not None:
        from dataclasses import replace

        problem = replace(problem, analysis=replace(problem.analysis, eigensolver=args.eigensolver))
    return problem


def _check_choice(option: str, value: str | None) -> None:
    if value is None:
        return
    from fem_eigopt.linalg.factorization import _BACKENDS

    allowed = ("auto", *_BACKENDS)
    if value not in allowed:
        raise InputError(f"{option} {value!r}: allowed: {', '.join(allowed)}")


def _writable_folder(option: str, folder: str) -> Path:
    """Create ``folder`` (with parents) or raise an InputError naming ``option``."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".fem_eigopt_write_test_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"{option} {folder}: cannot write there ({reason}); allowed: a folder you can "
                         "create and write") from exc
    return path


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


def _modal_problem(args: argparse.Namespace):
    """The problem ``modal`` analyses and the densities given by ``--design`` (or None).

    ``--design`` names a run directory (its latest design, its own problem with ``--set`` on
    top) or a saved design file (with PROBLEM.py, or the problem of the run directory it is in).
    """
    from fem_eigopt.optimize.run import latest_design_file, read_design

    if args.design is None:
        if args.problem is None:
            raise InputError("modal: no problem file; allowed: modal PROBLEM.py, or modal --design RUN_DIR")
        return _load(args), None
    path = Path(args.design)
    run_dir = path if path.is_dir() else path.parent if (path.parent / "run.json").is_file() else None
    try:
        arrays = read_design((latest_design_file(path) or path / "design.npz") if path.is_dir() else path)
    except InputError as exc:
        raise InputError(f"--design {exc}") from None
    if "densities" not in arrays:
        raise InputError(f"--design {args.design}: holds no densities (it has {', '.join(arrays)}); allowed: the "
                         "run directory of a density design, or its design.npz")
    if args.problem is None and run_dir is None:
        raise InputError(f"--design {args.design}: not in a run directory (no run.json beside it); allowed: "
                         "a run directory, or its design.npz, or PROBLEM.py with the run's --set values")
    problem = _load(args) if args.problem is not None else _load(args, run_dir)
    return problem, np.asarray(arrays["densities"], dtype=float)


def cmd_modal(args: argparse.Namespace) -> int:
    """Modal analysis of the design the optimiser evaluates first (or of ``--design``'s
    densities); table or JSON on stdout."""
    from fem_eigopt.optimize.modal_analysis import modal_analysis, write_modes

    if args.modes is not None and args.modes < 1:
        raise InputError(f"--modes {args.modes}: allowed: an integer >= 1")
    out_dir = _writable_folder("--out", args.out) if args.out is not None else None
    problem, densities = _modal_problem(args)
    result = modal_analysis(problem, n_modes=args.modes, backend=args.backend, densities=densities)
    modes, model = result.modes, result.model
    if out_dir is not None:
        try:
            files = write_modes(result, out_dir, name=problem.name)
        except OSError as exc:
            raise InputError(f"--out {args.out}: writing {exc.filename or 'the modes'} failed "
                             f"({exc.strerror or exc}); allowed: a writable folder") from exc
        logger.info("modes written to %s (%d files)", out_dir, len(files))
    if getattr(args, "json", False):
        out = {
            "problem": problem.name,
            "source": problem.source,
            "parameters": {k: v for k, v in problem.parameters.items() if _jsonable(v)},
            "design": result.design,
            "design_file": args.design,
            "eigenvalues": modes.eigenvalues.tolist(),
            "omega": modes.omega.tolist(),
            "frequencies_hz": modes.frequencies_hz.tolist(),
            "clusters": [list(c) for c in modes.clusters],
            "n_elements": model.n_elements,
            "n_dofs": model.n_dofs,
            "n_free_dofs": model.n_free,
            "shift": modes.shift,
            "backend": result.solver.backend,
            "out": None if out_dir is None else str(out_dir),
        }
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        print(f"{problem.name}: {model.n_elements} elements, {model.n_free} free dofs, "
              f"backend {result.solver.backend}, shift {modes.shift:.3e}, design: {result.design}")
        print(_modal_table(result))
    return 0


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def summary_text(summary: dict, run_dir: Path | None) -> str:
    """The final summary of a run as printed on stdout: status, objective and a frequency table."""
    ok = "" if summary.get("success") else " (not a normal end)"
    lines = [(f"{summary['problem']}: {summary['status']}{ok} after {summary['evaluations']} evaluations, "
              f"{summary['wall_time_s']:.1f} s — {summary['message']}"),
             f"objective {summary['objective_name']} = {summary['objective']:.8g}"
             + ("" if summary.get("max_constraint") is None else f", max constraint {summary['max_constraint']:.3g}")
             + f", volume fraction {summary['volume_fraction']:.4f}"
             + ("" if summary.get("grey_fraction") is None else f", grey {100 * summary['grey_fraction']:.1f} %")
             + f", β {summary['beta']:g}",
             f"{'mode':>4}  {'ω initial [rad/s]':>18}  {'ω final [rad/s]':>16}  {'f final [Hz]':>13}"]
    void = set(summary.get("void_modes", ()))
    for i, (w0, w1, f1) in enumerate(zip(summary["omega_initial"], summary["omega_final"],
                                         summary["frequencies_hz_final"])):
        lines.append(f"{i + 1:>4}  {w0:>18.6f}  {w1:>16.6f}  {f1:>13.6f}" + ("  void" if i + 1 in void else ""))
    if void:
        lines.append("void: a local mode of the void elements (most of its kinetic energy where ρ̄ < 0.1), "
                     "not a mode of the structure")
    from fem_eigopt.optimize.run import CRISP_ENOUGH

    crisp = summary.get("grey_fraction", 1.0) <= CRISP_ENOUGH  # the solid part of a grey design is noise
    if crisp and summary.get("supports_joined") is False:
        lines.append(f"the solid design (ρ̄ > 0.5, {summary['solid_pieces']} piece(s)) does not join the supports")
    if crisp and summary.get("floating_solid_fraction", 0.0) > 0.01:
        lines.append(f"{100 * summary['floating_solid_fraction']:.1f} % of the solid material floats "
                     "(pieces that touch no support)")
    if run_dir is not None:
        lines.append(f"results: {run_dir}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    """Optimise the problem (or, with ``--resume``, continue a stopped run); write the run
    directory; exit 130 (SIGINT) or 143 (SIGTERM) when stopped."""
    from fem_eigopt.optimize.run import optimize

    if args.resume is not None:
        return _cmd_resume(args)
    if args.problem is None:
        raise InputError("run: no PROBLEM.py; allowed: run PROBLEM.py [options] or --resume RUN_DIR")
    if args.max_eval is not None and args.max_eval < 1:
        raise InputError(f"--max-eval {args.max_eval}: allowed: an integer >= 1")
    out = "results" if args.out is None else args.out
    if not args.no_output:
        _writable_folder("--out", out)
    problem = _load(args)
    run = optimize(problem, out_dir=None if args.no_output else out, max_eval=args.max_eval,
                   backend=args.backend, progress=True, command_line=[sys.executable, "-m", "fem_eigopt",
                                                                     *args.argv])
    return _run_ended(run)


#: ``run`` options that ``--resume`` refuses (the run continues with what it was started with)
_NOT_WITH_RESUME = (("problem", "PROBLEM.py"), ("overrides", "--set"), ("out", "--out"), ("max_eval", "--max-eval"),
                    ("backend", "--backend"), ("eigensolver", "--eigensolver"), ("no_output", "--no-output"))


def _cmd_resume(args: argparse.Namespace) -> int:
    """``--resume RUN_DIR``: continue the run in its directory (exit codes as ``run``)."""
    from fem_eigopt.optimize.run import resume

    given = [flag for name, flag in _NOT_WITH_RESUME if getattr(args, name) not in (None, False, [])]
    if given:
        raise InputError(f"--resume {args.resume}: {given[0]} {'is' if len(given) == 1 else 'and others are'} "
                         "not allowed with --resume (the run continues with the problem and settings it was "
                         "started with); allowed: --resume RUN_DIR [-v] [-q] [--debug]")
    run = resume(args.resume, progress=True, command_line=[sys.executable, "-m", "fem_eigopt", *args.argv])
    return _run_ended(run)


def _run_ended(run) -> int:
    """Print the summary of a finished or stopped run; its exit code."""
    print(summary_text(run.summary, run.run_dir))
    if run.result.status == "INTERRUPTED":
        return EXIT_SIGTERM if run.result.interrupted_by == "SIGTERM" else EXIT_SIGINT
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``plot RUN_DIR``: re-render the run's pictures; print the files written, one per line."""
    from fem_eigopt.plot import plot_command

    written = plot_command(args)
    for name in sorted(written):
        print(written[name])
    return 0


def cmd_check_grad(args: argparse.Namespace) -> int:
    """Taylor remainder test of every response at a randomly perturbed starting design."""
    from fem_eigopt.optimize.shape_evaluator import make_evaluator
    from fem_eigopt.problem.definition import ShapeDesign
    from fem_eigopt.sensitivity.gradcheck import check_evaluator

    if args.directions < 1:
        raise InputError(f"--directions {args.directions}: allowed: an integer >= 1")
    if not 0 < args.h0 < 1:
        raise InputError(f"--h0 {args.h0}: allowed: 0 < h0 < 1")
    problem = _load(args)
    evaluator = make_evaluator(problem, backend=args.backend)
    x0, lower, upper = evaluator.start()
    if isinstance(problem.design, ShapeDesign):
        # shape parameters moved by up to 5 % of their range, kept inside the bounds
        x = evaluator.perturbed_start(x0, seed=args.seed)
    else:
        # A perturbed design exercises non-uniform densities; keep away from the bounds and from
        # the kink of the two-range mass law at 0.1.
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


def _default_text(value: Any) -> str:
    import inspect

    return "(required)" if value is inspect.Parameter.empty else repr(value)


def cmd_info(args: argparse.Namespace) -> int:
    """The problem file's docstring, its parameters (default, type, allowed values), the backends."""
    from fem_eigopt.linalg.factorization import available_backends, default_backend
    from fem_eigopt.problem.loading import parameter_specs, problem_description

    specs = parameter_specs(args.problem)
    doc = problem_description(args.problem)
    print(f"{args.problem}")
    print(doc if doc else "(the problem file has no docstring)")
    print()
    print("parameters (--set KEY=VALUE):")
    width = max([len(s.name) for s in specs] + [4])
    dwidth = max([len(_default_text(s.default)) for s in specs] + [7])
    print(f"  {'name':<{width}}  {'default':<{dwidth}}  allowed")
    for s in specs:
        allowed = s.type + (": " + ", ".join(repr(v) for v in s.allowed) if s.allowed else "")
        print(f"  {s.name:<{width}}  {_default_text(s.default):<{dwidth}}  {allowed}")
    if not specs:
        print("  (none)")
    print()
    print(f"factorisation backends here: {', '.join(available_backends())} (default {default_backend()})")
    return 0


# ----------------------------------------------------------------------------------------------
# entry point


def _argv_flag(argv: Sequence[str], *flags: str) -> bool:
    return any(a in flags for a in argv)


def _verbosity(argv: Sequence[str]) -> int:
    n = 0
    for a in argv:
        if a == "--verbose":
            n += 1
        elif a.startswith("-") and not a.startswith("--") and set(a[1:]) == {"v"}:
            n += len(a) - 1
    return n


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fem_eigopt`` and ``fem-eigopt``; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        See the module docstring.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sweep":  # its own parser, progress display and exit codes
        return _sweep_main(argv[1:])
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "run")
    debug = "--debug" in argv
    handler = configure_console(verbose=_verbosity(argv), quiet=_argv_flag(argv, "-q", "--quiet"))
    np.set_printoptions(precision=6)
    previous_sigterm = None
    try:
        previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (tests calling main in a thread)
        pass
    try:
        try:
            args = build_parser().parse_args(argv)
            args.argv = argv
            if args.command is None:
                build_parser().print_help()
                return EXIT_INPUT
            code = {"run": cmd_run, "modal": cmd_modal, "check-grad": cmd_check_grad,
                    "info": cmd_info, "plot": cmd_plot}[args.command](args)
            sys.stdout.flush()
            return code
        except SystemExit as exc:  # --help, --version
            sys.stdout.flush()
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_INPUT)
        except BrokenPipeError:
            raise
        except KeyboardInterrupt as exc:
            handler.close()
            terminated = getattr(exc, "signal_name", None) == "SIGTERM"
            sys.stderr.write("terminated (SIGTERM)\n" if terminated else "interrupted (Ctrl-C)\n")
            return EXIT_SIGTERM if terminated else EXIT_SIGINT
        except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback with --debug
            handler.close()
            if debug:
                traceback.print_exc(file=sys.stderr)
            sys.stderr.write(_one_line(exc) + "\n")
            sys.stderr.flush()
            return EXIT_INPUT if _is_input_error(exc) else 1
    except BrokenPipeError:
        # the reader went away (| head): no message; stop Python's own flush at exit from failing
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_PIPE
    finally:
        handler.close()
        logging.getLogger().removeHandler(handler)
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _is_input_error(exc: BaseException) -> bool:
    return isinstance(exc, (InputError, OSError, MemoryError))


def _one_line(exc: BaseException) -> str:
    """``error: <message>`` on one line: InputError's message, an OSError's file and reason."""
    if isinstance(exc, InputError):
        text = str(exc)
    elif isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        text = f"{where}: {exc.strerror or type(exc).__name__}" if where else f"{exc.strerror or exc}"
    elif isinstance(exc, MemoryError):
        text = f"out of memory ({exc or 'MemoryError'}); allowed: a smaller model (fewer elements or modes)"
    else:
        text = f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
    return "error: " + " ".join(text.split())
