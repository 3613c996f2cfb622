"""Running a sweep: the sweep directory, the case records, progress, interruption and resume.

A sweep directory ``<out>/<problem>/sweep-<stamp>-<hash>/`` holds

* ``sweep.json`` — the spec and the case list (what ``--resume`` reads back);
* ``runs/<problem>/<stamp>-<hash>/`` — one normal run directory per case;
* ``cases/<id>.json`` (the case's record: status, message, run directory, the run's summary),
  ``cases/<id>.png`` (its final design), ``cases/<id>.log`` (its log) — written as each case ends,
  so an interrupted sweep keeps every finished case;
* ``summary.csv``, ``plot_<key>.png``, ``designs.png`` (the contact sheet) — see
  :mod:`fem_eigopt.sweeps.study`;
* ``sweep.log`` — cases started, finished, failed.

A resumed sweep runs the cases without a record, those interrupted, and those whose run
directory has gone; cases that failed are kept unless ``rerun_failed``. While a sweep runs its
cases it holds the lock of its directory (:class:`~fem_eigopt.io.rundir.DirectoryLock`): a second
``--resume`` of it is refused, with one line, until the first one ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from fem_eigopt.errors import InputError
from fem_eigopt.io.rundir import DirectoryLock, atomic_write_bytes, atomic_write_text, write_json
from fem_eigopt.sweeps.spec import (
    Case,
    SampleSpec,
    SweepSpec,
    build_spec,
    case_to_json,
    cases_from_json,
    expand_cases,
    load_sweep_file,
)

logger = logging.getLogger(__name__)

__all__ = ["SweepResult", "run_sweep", "sweep", "load_sweep_dir"]

SWEEP_FORMAT = 1


@dataclass
class SweepResult:
    """What a sweep produced.

    Attributes
    ----------
    sweep_dir : Path
    rows : list of dict
        The rows of ``summary.csv``.
    ran : list of str
        Ids of the cases run by this call (a resumed sweep: only the missing ones).
    interrupted : bool
        True when Ctrl-C (or a callback's KeyboardInterrupt) stopped the sweep.
    """

    sweep_dir: Path
    rows: list[dict] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """Cases per status (``ok``, ``failed``, ``interrupted``, ``missing``)."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out


# ----------------------------------------------------------------------------------------------
# the sweep directory


def _new_sweep_dir(spec: SweepSpec, cases: list[Case]) -> Path:
    from fem_eigopt.io.rundir import to_jsonable

    text = json.dumps(to_jsonable({"problem": spec.problem.name, "cases": [c.overrides for c in cases]}),
                      sort_keys=True)
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    base = Path(spec.out) / spec.problem.stem
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"sweep-{stamp}-{digest}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"sweep-{stamp}-{digest}-{n}"
    (path / "cases").mkdir(parents=True)
    return path


def _spec_from_json(data: Mapping[str, Any], sweep_dir: Path) -> SweepSpec:
    s = data["spec"]
    sample = s.get("sample")
    return SweepSpec(problem=Path(data["problem_path"]), grid=s.get("grid", {}), zip=s.get("zip", {}),
                     sample=None if sample is None else SampleSpec(
                         n=sample["n"], method=sample["method"], seed=sample["seed"],
                         ranges={k: tuple(v) for k, v in sample["range"].items()}),
                     fixed=s.get("set", {}), defaults=data.get("defaults", {}), engine=s.get("engine", "process"),
                     workers=s.get("workers"), scheduler=s.get("scheduler"), out=Path(s.get("out", "results")),
                     retries=int(s.get("retries", 0)))


def load_sweep_dir(sweep_dir: str | Path) -> tuple[SweepSpec, list[Case], dict]:
    """Read ``sweep.json`` of a sweep directory.

    Returns
    -------
    (SweepSpec, list of Case, dict)
        The spec, the cases and the raw JSON.

    Raises
    ------
    InputError
        Not a sweep directory.
    """
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        raise InputError(f"--resume {sweep_dir}: no sweep.json there; allowed: a sweep directory "
                         f"(results/<problem>/sweep-...)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != SWEEP_FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        return _spec_from_json(data, sweep_dir), cases_from_json(data["cases"]), data
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--resume {sweep_dir}: sweep.json unreadable ({exc})") from None


def _read_records(sweep_dir: Path, cases: list[Case]) -> dict[str, dict]:
    records = {}
    for case in cases:
        path = sweep_dir / "cases" / f"{case.id}.json"
        if path.is_file():
            try:
                records[case.id] = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                logger.warning("%s: unreadable; the case is run again", path)
    return records


def _needs_run(record: dict | None, sweep_dir: Path, rerun_failed: bool) -> bool:
    if record is None or record.get("status") in ("interrupted", "missing"):
        return True
    if record.get("status") == "failed":
        return rerun_failed
    run_dir = record.get("run_dir")
    if run_dir and (sweep_dir / "runs").is_dir() and not (Path(run_dir) / "summary.json").is_file():
        # the run directory is gone on this machine, where the sweep's runs are
        return str(Path(run_dir).resolve()).startswith(str((sweep_dir / "runs").resolve()))
    return False


def _save_record(sweep_dir: Path, record: dict) -> None:
    cid = record["id"]
    picture = record.get("thumbnail")
    if picture:
        atomic_write_bytes(sweep_dir / "cases" / f"{cid}.png", picture)
    if record.get("log"):
        atomic_write_text(sweep_dir / "cases" / f"{cid}.log", record["log"])
    write_json(sweep_dir / "cases" / f"{cid}.json", {k: v for k, v in record.items() if k not in ("thumbnail", "log")})


def _pictures(sweep_dir: Path, cases: list[Case]) -> dict[str, bytes | None]:
    out = {}
    for case in cases:
        p = sweep_dir / "cases" / f"{case.id}.png"
        out[case.id] = p.read_bytes() if p.is_file() else None
    return out


def write_outputs(sweep_dir: Path, cases: list[Case], varying: list[str]) -> list[dict]:
    """Rebuild ``summary.csv``, the plots and the contact sheet from the case records.

    Returns
    -------
    list of dict
        The table's rows.
    """
    from fem_eigopt.sweeps.study import contact_sheet, parameter_plots, table_rows, write_table

    records = _read_records(sweep_dir, cases)
    rows = table_rows(cases, records, varying, sweep_dir)
    write_table(sweep_dir / "summary.csv", rows, varying)
    try:
        parameter_plots(sweep_dir, rows, varying)
        contact_sheet(sweep_dir / "designs.png", rows, varying, _pictures(sweep_dir, cases))
    except Exception:  # pictures must never cost the table
        logger.exception("sweep pictures failed; summary.csv is complete")
    return rows


# ----------------------------------------------------------------------------------------------
# progress


#: attribute of the sweep's progress records: ``{"event": "update"|"end", "done", "total", "running",
#: "failed", "label"}``; the CLI draws them as a progress bar, a library caller sees plain lines
SWEEP_PROGRESS = "sweep_progress"


class _Progress:
    """The sweep's progress as log records (done/total, running, failed), one per change.

    Library code draws nothing: the records go to the ``fem_eigopt.sweeps`` logger, at INFO when
    ``enabled`` (a plain line each, or the CLI's progress bar), else at DEBUG.
    """

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.level = logging.INFO if enabled else logging.DEBUG
        self.total, self.label = total, label
        self.last: tuple[int, int, int] | None = None

    def update(self, done: int, running: int, failed: int) -> None:
        if (done, running, failed) == self.last:
            return
        self.last = (done, running, failed)
        logger.log(self.level, "%s: %d/%d done, %d running, %d failed", self.label, done, self.total, running,
                   failed, extra={SWEEP_PROGRESS: {"event": "update", "done": done, "total": self.total,
                                                   "running": running, "failed": failed, "label": self.label}})

    def stop(self) -> None:
        logger.log(self.level, "%s: stopped", self.label, extra={SWEEP_PROGRESS: {"event": "end"}})


# ----------------------------------------------------------------------------------------------
# running


def run_sweep(spec: SweepSpec | None = None, *, resume: str | Path | None = None, engine: str | None = None,
              workers: int | None = None, scheduler: str | None = None, retries: int | None = None,
              rerun_failed: bool = False, max_eval: int | None = None, progress: bool = True,
              callback: Callable[[Case, dict], None] | None = None) -> SweepResult:
    """Run a sweep, or complete an interrupted one.

    Parameters
    ----------
    spec : SweepSpec, optional
        What to run (:func:`fem_eigopt.sweeps.spec.build_spec`); not with ``resume``.
    resume : str or Path, optional
        A sweep directory to complete: only its missing (and interrupted) cases run.
    engine, workers, scheduler, retries : optional
        Replace the spec's (or the resumed sweep's) settings.
    rerun_failed : bool
        With ``resume``: run the failed cases again too.
    max_eval : int, optional
        Evaluation budget of every case (default: the problem's).
    progress : bool
        Log the progress (done/total, running, failed) at INFO, as records the CLI draws as a
        progress bar; False: at DEBUG.
    callback : callable, optional
        ``callback(case, record)`` in the calling thread after each case's record is saved; a
        KeyboardInterrupt raised there stops the sweep like Ctrl-C.

    Returns
    -------
    SweepResult
        ``interrupted`` is True after Ctrl-C: the outputs cover the finished cases, and
        ``run_sweep(resume=result.sweep_dir)`` completes the sweep.

    Raises
    ------
    InputError
        Bad settings, or a resume directory that is not a sweep.
    """
    if (spec is None) == (resume is None):
        raise InputError("sweep: give a spec or --resume SWEEP_DIR (one of them)")
    if resume is not None:
        sweep_dir = Path(resume)
        spec, cases, data = load_sweep_dir(sweep_dir)
        source_bytes = _problem_bytes(spec.problem)
        if data.get("problem_sha1") and hashlib.sha1(source_bytes).hexdigest() != data["problem_sha1"]:
            logger.warning("%s changed since the sweep started; the missing cases use the file as it is now",
                           spec.problem)
    else:
        cases = expand_cases(spec)
        sweep_dir = _new_sweep_dir(spec, cases)
        source_bytes = _problem_bytes(spec.problem)
        from fem_eigopt.io.rundir import to_jsonable

        write_json(sweep_dir / "sweep.json", {
            "format": SWEEP_FORMAT, "problem_path": str(spec.problem.resolve()),
            "problem_sha1": hashlib.sha1(source_bytes).hexdigest(), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "spec": spec.to_json(), "varying": spec.varying, "defaults": to_jsonable(spec.defaults),
            "cases": [case_to_json(c) for c in cases]})
    if engine is not None or scheduler is not None:
        spec = replace(spec, engine="dask" if scheduler is not None else engine, scheduler=scheduler)
    if workers is not None:
        spec = replace(spec, workers=workers)
    if retries is not None:
        spec = replace(spec, retries=retries)
    if spec.workers is not None and spec.workers < 1:
        raise InputError(f"--workers {spec.workers}: allowed: an integer >= 1")
    varying = spec.varying
    with DirectoryLock(sweep_dir, "sweep"):  # one process runs a sweep's cases at a time
        return _logged_execute(spec, cases, sweep_dir, source_bytes, varying, rerun_failed=rerun_failed,
                               max_eval=max_eval, progress=progress, callback=callback, resumed=resume is not None)


def _logged_execute(spec: SweepSpec, cases: list[Case], sweep_dir: Path, source: bytes, varying: list[str],
                    **options: Any) -> SweepResult:
    """:func:`_execute` with the sweep's records also going to ``sweep.log``."""
    from fem_eigopt.sweeps.engines import make_engine, plan_threads

    handler = logging.FileHandler(sweep_dir / "sweep.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    sweep_logger = logging.getLogger("fem_eigopt.sweeps")
    previous_level = sweep_logger.level
    sweep_logger.addHandler(handler)
    if sweep_logger.getEffectiveLevel() > logging.INFO:
        sweep_logger.setLevel(logging.INFO)
    try:
        return _execute(spec, cases, sweep_dir, source, varying, make_engine=make_engine, plan_threads=plan_threads,
                        **options)
    finally:
        sweep_logger.removeHandler(handler)
        sweep_logger.setLevel(previous_level)
        handler.close()


def _problem_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the problem file ({exc})") from None


def _execute(spec: SweepSpec, cases: list[Case], sweep_dir: Path, source: bytes, varying: list[str], *,
             rerun_failed: bool, max_eval: int | None, progress: bool, callback, make_engine, plan_threads,
             resumed: bool) -> SweepResult:
    records = _read_records(sweep_dir, cases)
    todo = [c for c in cases if _needs_run(records.get(c.id), sweep_dir, rerun_failed)]
    by_id = {c.id: c for c in cases}
    result = SweepResult(sweep_dir=sweep_dir)
    logger.info("%s %s: %d cases, %d to run (%s), engine %s", "resuming" if resumed else "sweep", sweep_dir,
                len(cases), len(todo), ", ".join(varying), spec.engine)
    if todo:
        n_workers, threads = plan_threads(spec.workers, len(todo))
        if spec.scheduler is not None:
            threads = 1
        runs_root = (sweep_dir / "runs").resolve()
        tasks = [{"id": c.id, "overrides": c.overrides, "problem_path": str(spec.problem.resolve()),
                  "problem_source": source, "out_dir": str(runs_root), "threads": threads, "max_eval": max_eval,
                  "thumbnail": True} for c in todo]
        engine = make_engine(spec.engine, n_workers, threads, scheduler=spec.scheduler, retries=spec.retries)
        done_before = len(cases) - len(todo)
        failed = sum(1 for r in records.values() if r.get("status") == "failed" and r["id"] not in {c.id for c in todo})
        bar = _Progress(progress, len(cases), f"sweep {spec.problem.stem}")
        bar.update(done_before, 0, failed)
        done = done_before
        interrupted_at: float | None = None
        try:
            engine.start(tasks)
            logger.info("engine %s: %d workers × %d BLAS threads", spec.engine, n_workers, threads)
            while engine.active():
                try:
                    event = engine.next_event(timeout=0.25)
                    if event is not None and event.kind == "start":
                        logger.info("case %s started%s: %s", event.task_id,
                                    f" (retry {event.attempt})" if event.attempt else "",
                                    _label(by_id[event.task_id]))
                    elif event is not None:
                        record = event.record
                        _save_record(sweep_dir, record)
                        result.ran.append(record["id"])
                        status = record["status"]
                        if status == "ok":
                            done += 1
                            s = record.get("summary") or {}
                            om = s.get("omega_final") or []
                            logger.info("case %s ok: objective %.6g, ω1 %s, %d evaluations, %.1f s", record["id"],
                                        s.get("objective"), f"{om[0]:.6g}" if om else "?", s.get("evaluations") or 0,
                                        record.get("elapsed_s", 0.0))
                        elif status == "failed":
                            done += 1
                            failed += 1
                            logger.warning("case %s failed: %s", record["id"], record["message"])
                        else:
                            logger.warning("case %s %s: %s", record["id"], status, record["message"])
                        if callback is not None:
                            callback(by_id[record["id"]], record)
                    bar.update(done, engine.running(), failed)
                except KeyboardInterrupt:
                    if interrupted_at is None:
                        interrupted_at = time.monotonic()
                        result.interrupted = True
                        logger.warning("interrupted: no new case starts; the running cases stop and save "
                                       "(process) or finish (dask); Ctrl-C again to stop at once")
                        engine.interrupt()
                    else:
                        logger.warning("stopping at once")
                        engine.kill()
                        break
        finally:
            bar.stop()
            engine.close()
    rows = write_outputs(sweep_dir, cases, varying)
    result.rows = rows
    counts = result.counts
    logger.info("sweep %s: %s", sweep_dir, ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if result.interrupted:
        logger.warning("interrupted: %d of %d cases done; complete with --resume %s",
                       counts.get("ok", 0) + counts.get("failed", 0), len(cases), sweep_dir)
    return result


def _label(case: Case) -> str:
    from fem_eigopt.sweeps.study import format_value

    return ", ".join(f"{k}={format_value(v)}" for k, v in case.parameters.items())


def sweep(problem: str | Path | None = None, grid: Mapping[str, Any] | None = None,
          zip: Mapping[str, Any] | None = None, sample: int | None = None, method: str = "lhs",
          ranges: Mapping[str, Any] | None = None, seed: int | None = None, set: Mapping[str, Any] | None = None,
          engine: str | None = None, workers: int | None = None, scheduler: str | None = None,
          out: str | Path | None = None, resume: str | Path | None = None, retries: int | None = None,
          max_eval: int | None = None, progress: bool = True, callback: Callable | None = None) -> Any:
    """Run a parameter sweep of a problem file and return its table (for notebooks and scripts).

    Parameters
    ----------
    problem : str or Path
        A problem file (``.py``) or a sweep file (``.toml``; the other arguments then replace or
        extend its entries). Not needed with ``resume``.
    grid : mapping, optional
        ``{key: values}``: a list, ``"a,b,c"`` or ``"start:stop:count"``; Cartesian product.
    zip : mapping, optional
        ``{key: values}`` varied together.
    sample, method, ranges, seed : optional
        ``sample`` points (``"lhs"`` or ``"sobol"``) in ``ranges`` ``{key: (low, high)}``.
    set : mapping, optional
        Fixed parameters of every case.
    engine : {"process", "dask"}, optional
    workers : int, optional
    scheduler : str, optional
        A running Dask scheduler's address.
    out : str or Path, optional
        Root of the sweep directory (default ``results``).
    resume : str or Path, optional
        Complete this sweep directory instead.
    retries : int, optional
    max_eval : int, optional
        Evaluation budget of every case.
    progress : bool
        Log the progress at INFO (see :func:`run_sweep`).
    callback : callable, optional
        ``callback(case, record)`` after each case.

    Returns
    -------
    pandas.DataFrame or list of dict
        The rows of ``summary.csv`` (a DataFrame when pandas is installed); ``.attrs["sweep_dir"]``
        (DataFrame) names the sweep directory, as does the key ``sweep_dir`` of every dict.

    Raises
    ------
    InputError
        Bad input (the message names the option, the value and what is allowed).
    KeyboardInterrupt
        After Ctrl-C, once the finished cases and the outputs are saved (``resume`` completes it).
    """
    if resume is not None:
        result = run_sweep(resume=resume, engine=engine, workers=workers, scheduler=scheduler, retries=retries,
                           max_eval=max_eval, progress=progress, callback=callback)
    else:
        if problem is None:
            raise InputError("sweep: no problem file given; allowed: a .py problem file or a .toml sweep file")
        kwargs = dict(grid=grid, zip=zip, sample=sample, ranges=ranges, seed=seed, fixed=set, engine=engine,
                      workers=workers, scheduler=scheduler, out=out, retries=retries)
        if str(problem).endswith(".toml"):
            spec = load_sweep_file(problem, method=method if sample is not None else None, **kwargs)
        else:
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
            spec = build_spec(problem, method=method, **kwargs)
        result = run_sweep(spec, max_eval=max_eval, progress=progress, callback=callback)
    if result.interrupted:
        raise KeyboardInterrupt(f"sweep interrupted; complete it with sweep(resume={str(result.sweep_dir)!r})")
    try:
        import pandas as pd
    except ImportError:
        return [{**r, "sweep_dir": str(result.sweep_dir)} for r in result.rows]
    frame = pd.DataFrame(result.rows)
    frame.attrs["sweep_dir"] = str(result.sweep_dir)
    return frame
