"""One case of a sweep, as run inside a worker process (a process-pool worker or a Dask worker).

:func:`run_case` takes a task (a plain dict, so it pickles for either engine) and returns a record
(a plain dict): it loads the problem with the case's overrides, runs
:func:`fem_eigopt.optimize.run.optimize` into a normal run directory with its console quiet (the
case's log is captured and returned), reads the run's ``summary.json`` back and renders a small
picture of the final design for the sweep's contact sheet. It never raises: an exception becomes
``status = "failed"`` with its message, Ctrl-C becomes ``status = "interrupted"``.

Importing this module loads nothing heavy: the worker processes set their BLAS thread limits
(:func:`init_process_worker`) before numpy is imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import signal
import socket
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Iterator

logger = logging.getLogger(__name__)

__all__ = ["run_case", "init_process_worker", "thread_environment", "THREAD_VARIABLES"]

#: environment variables that limit the threads of BLAS/LAPACK/MKL/OpenMP libraries
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

# SIGINT in a process-pool worker: raised as KeyboardInterrupt only while a case runs (the
# optimiser then stops with status INTERRUPTED and writes its run directory), ignored otherwise,
# so an idle worker does not die and break the pool, and a second signal does not interrupt the
# checkpoint.
_state = {"running": False, "interrupted": False}


def thread_environment(threads: int) -> dict[str, str]:
    """``{variable: str(threads)}`` for every variable of :data:`THREAD_VARIABLES`."""
    return {name: str(int(threads)) for name in THREAD_VARIABLES}


def _on_sigint(signum, frame) -> None:
    if _state["running"] and not _state["interrupted"]:
        _state["interrupted"] = True
        raise KeyboardInterrupt


def init_process_worker(threads: int) -> None:
    """Initializer of a process-pool worker: BLAS thread limits, and the SIGINT policy above.

    Parameters
    ----------
    threads : int
        Threads per worker (workers × threads ≤ cores). Set in the environment, which the
        libraries read when they load (numpy is not loaded yet in a fresh worker), and through
        threadpoolctl for any already loaded.
    """
    os.environ.update(thread_environment(threads))
    signal.signal(signal.SIGINT, _on_sigint)


@contextlib.contextmanager
def _captured_log(level: int = logging.INFO) -> Iterator[io.StringIO]:
    """Collect the package's log records (and warnings) of one case in memory; none reach a console."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    pkg = logging.getLogger("fem_eigopt")
    previous = (pkg.level, pkg.propagate)
    pkg.addHandler(handler)
    pkg.setLevel(level)
    pkg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield buf
        for w in caught:
            buf.write(f"warning: {w.category.__name__}: {w.message} ({w.filename}:{w.lineno})\n")
    finally:
        pkg.removeHandler(handler)
        pkg.setLevel(previous[0])
        pkg.propagate = previous[1]


def _problem_file(task: dict) -> Path:
    """The problem file on this machine: the original path if it holds the shipped text, else a copy.

    A Dask worker on another machine may not see the client's file: the task carries its text and
    the worker writes it to its temporary directory (same file name, so the problem's name is kept).
    """
    path = Path(task["problem_path"])
    source: bytes = task["problem_source"]
    try:
        if path.is_file() and path.read_bytes() == source:
            return path
    except OSError:
        pass
    digest = hashlib.sha1(source).hexdigest()[:12]
    copy = Path(tempfile.gettempdir()) / "fem_eigopt_sweep" / digest / path.name
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(source)
        os.replace(tmp, copy)
    return copy


def thumbnail_png(mesh: Any, densities: Any, width_px: int = 480) -> bytes:
    """A small picture of a design (no axes, no colour bar) for the contact sheet.

    Parameters
    ----------
    mesh : skfem.Mesh
        The problem's mesh (2D: element polygons in grey scale; 3D: the run's design figure).
    densities : ndarray (n_elem,)
        Physical densities.
    width_px : int
        Width of the picture in pixels.

    Returns
    -------
    bytes
        PNG data.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    densities = np.asarray(densities, dtype=float)
    p, t = mesh.p, mesh.t
    buf = io.BytesIO()
    if mesh.dim() == 2:
        from matplotlib.collections import PolyCollection

        span = np.ptp(p, axis=1)
        aspect = span[1] / max(span[0], 1e-300)
        dpi = 100
        fig = Figure(figsize=(width_px / dpi, max(0.2, width_px * aspect / dpi)), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        coll = PolyCollection(np.transpose(p[:, t], (2, 1, 0)), array=densities, cmap="gray_r", edgecolors="face",
                              linewidths=0.0)
        coll.set_clim(0.0, 1.0)
        ax.add_collection(coll)
        ax.set_xlim(p[0].min(), p[0].max())
        ax.set_ylim(p[1].min(), p[1].max())
        ax.set_axis_off()
        fig.savefig(buf, format="png", dpi=dpi)
    else:
        from fem_eigopt.io.pictures import design_figure

        fig = design_figure(mesh, densities)
        fig.savefig(buf, format="png", dpi=60)
    return buf.getvalue()


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def run_case(task: dict) -> dict:
    """Run one case of a sweep; never raises.

    Parameters
    ----------
    task : dict
        ``id``, ``overrides`` (parameters for the factory), ``problem_path``, ``problem_source``
        (bytes of the problem file), ``out_dir`` (root of the case's run directory), ``threads``
        (BLAS threads, or None to leave them), ``max_eval`` (or None), ``thumbnail`` (bool).

    Returns
    -------
    dict
        ``id``, ``status`` (``"ok"``, ``"failed"`` or ``"interrupted"``), ``message``,
        ``run_dir`` (str or None), ``summary`` (the run's ``summary.json``, or None),
        ``thumbnail`` (PNG bytes or None), ``log`` (the case's log text), ``host``, ``pid``,
        ``elapsed_s``.
    """
    t0 = time.perf_counter()
    record: dict[str, Any] = {"id": task["id"], "status": "failed", "message": "", "run_dir": None, "summary": None,
                              "thumbnail": None, "log": "", "host": socket.gethostname(), "pid": os.getpid(),
                              "elapsed_s": 0.0}
    _state["running"], _state["interrupted"] = True, False
    try:
        with _captured_log() as log:
            try:
                record.update(_run(task))
            except KeyboardInterrupt:
                record["status"], record["message"] = "interrupted", "interrupted before the run finished"
            except Exception as exc:  # isolate the case: the sweep goes on
                from fem_eigopt.errors import InputError

                record["status"] = "failed"
                record["message"] = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
                logger.error("case %s failed:\n%s", task["id"], traceback.format_exc())
        record["log"] = log.getvalue()
    except KeyboardInterrupt:
        record["status"], record["message"] = "interrupted", "interrupted"
    finally:
        _state["running"] = False
    record["message"] = " ".join(str(record["message"]).split())  # one line
    record["elapsed_s"] = time.perf_counter() - t0
    return record


def _run(task: dict) -> dict:
    from threadpoolctl import threadpool_limits

    from fem_eigopt.optimize.run import optimize
    from fem_eigopt.problem.loading import load_problem

    path = _problem_file(task)
    threads = task.get("threads")
    limits = threadpool_limits(limits=int(threads)) if threads else contextlib.nullcontext()
    with limits:
        problem = load_problem(path, task["overrides"])
        run = optimize(problem, out_dir=task["out_dir"], max_eval=task.get("max_eval"), progress=True)
    out: dict[str, Any] = {"run_dir": None if run.run_dir is None else str(Path(run.run_dir).resolve())}
    summary = None
    if run.run_dir is not None:
        with open(Path(run.run_dir) / "summary.json", encoding="utf-8") as fh:
            summary = json.load(fh)
    out["summary"] = summary
    status = str(run.result.status)
    if status == "INTERRUPTED":
        out["status"], out["message"] = "interrupted", "interrupted; the run directory holds the design so far"
    elif summary is None or not _finite(summary.get("objective")):
        out["status"] = "failed"
        out["message"] = f"objective is {None if summary is None else summary.get('objective')!r} (NaN or missing)"
    else:
        out["status"], out["message"] = "ok", ""
    if task.get("thumbnail", True):
        try:
            out["thumbnail"] = thumbnail_png(problem.mesh, run.densities)
        except Exception:  # a picture must never cost the numbers
            logger.exception("case %s: the design picture failed", task["id"])
    return out
