"""Engines that run the cases of a sweep: a process pool on this machine, or a Dask cluster.

Both take tasks (dicts for :func:`fem_eigopt.sweeps.worker.run_case`) and hand back records as
:class:`Event` objects through :meth:`Engine.next_event`, polled by the caller's loop in the main
thread (so Ctrl-C and the progress display stay there). No scheduling of our own: the process
engine is the standard library's :class:`concurrent.futures.ProcessPoolExecutor`, the Dask
engine is ``dask.distributed``.

``process``
    ``workers`` lanes, each a one-process :class:`~concurrent.futures.ProcessPoolExecutor`
    (``spawn`` start method) fed by one thread. A lane's worker process is reused from case to
    case; when it dies (``os._exit``, SIGKILL, out of memory) only that lane's executor breaks,
    so exactly the case it was running is recorded ``failed`` ("worker process died ...") and
    the lane starts a fresh process for the next case. BLAS/MKL/OpenMP threads per worker are
    ``threads`` (workers × threads ≤ cores), set before numpy loads in the worker.
``dask``
    A :class:`distributed.LocalCluster` of ``workers`` single-threaded worker processes (BLAS
    threads limited through the nanny's environment), or the running cluster at ``scheduler``.
    The scheduler's ``allowed-failures`` is 0 on a local cluster, so a case whose worker dies is
    not re-run on the next worker: it fails with ``KilledWorker``.

Interruption: :meth:`Engine.interrupt` starts no new case; the process engine sends SIGINT to
the running workers (the optimiser stops with status INTERRUPTED and writes its run directory),
the Dask engine submits nothing more (cases are submitted only as workers free up, one per
worker thread) and lets the running cases finish.
:meth:`Engine.kill` stops everything at once.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

logger = logging.getLogger(__name__)

__all__ = ["Event", "Engine", "ProcessEngine", "DaskEngine", "make_engine", "available_cores", "plan_threads"]


@dataclass
class Event:
    """What an engine reports.

    Attributes
    ----------
    kind : str
        ``"start"`` (a case was handed to a worker; ``record`` is None) or ``"done"``.
    task_id : str
    record : dict or None
        The record of :func:`fem_eigopt.sweeps.worker.run_case` (``"done"`` only).
    attempt : int
        0 for the first run, 1.. for retries.
    """

    kind: str
    task_id: str
    record: dict | None = None
    attempt: int = 0


def available_cores() -> int:
    """Cores this process may run on (``sched_getaffinity``, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_threads(workers: int | None, n_cases: int, cores: int | None = None) -> tuple[int, int]:
    """Workers and BLAS threads per worker such that workers × threads ≤ cores.

    Parameters
    ----------
    workers : int or None
        Requested workers (None: one per core).
    n_cases : int
        Cases to run (no more workers than cases).
    cores : int, optional
        Cores available (default :func:`available_cores`).

    Returns
    -------
    (int, int)
        ``(workers, threads)``; with more workers than cores, one thread each (and a warning).
    """
    cores = cores or available_cores()
    workers = cores if workers is None else workers
    workers = max(1, min(workers, max(1, n_cases)))
    if workers > cores:
        logger.warning("%d workers on %d cores: the cases share cores (one BLAS thread each)", workers, cores)
    return workers, max(1, cores // workers)


def _failed(task_id: str, message: str, status: str = "failed") -> dict:
    return {"id": task_id, "status": status, "message": message, "run_dir": None, "summary": None,
            "thumbnail": None, "log": "", "host": None, "pid": None, "elapsed_s": 0.0}


class Engine:
    """Interface of the engines (see the module docstring)."""

    name = "engine"

    def start(self, tasks: Sequence[dict]) -> None:
        """Begin running ``tasks`` (in order, ``workers`` at a time)."""
        raise NotImplementedError

    def next_event(self, timeout: float) -> Event | None:
        """The next event, or None after ``timeout`` seconds without one."""
        raise NotImplementedError

    def active(self) -> bool:
        """True while some task has not reported ``done`` and may still run."""
        raise NotImplementedError

    def running(self) -> int:
        """Cases running now (an estimate for Dask)."""
        raise NotImplementedError

    def interrupt(self) -> None:
        """Start no new case; let (or make) the running ones stop and record themselves."""
        raise NotImplementedError

    def kill(self) -> None:
        """Stop everything now."""
        raise NotImplementedError

    def close(self) -> None:
        """Release processes and clusters."""


# ----------------------------------------------------------------------------------------------
# process pool


class _Lane:
    """One worker process behind a one-process ProcessPoolExecutor."""

    def __init__(self, threads: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from fem_eigopt.sweeps.worker import init_process_worker

        self.executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=init_process_worker, initargs=(threads,))
        self.pid: int | None = self.executor.submit(os.getpid).result()
        processes = getattr(self.executor, "_processes", None) or {}
        self.process = processes.get(self.pid)  # to read its exit code if it dies

    def death(self) -> str:
        """Why the worker died, for the failed case's message."""
        code = None
        if self.process is not None:
            self.process.join(timeout=1.0)
            code = self.process.exitcode
        if code is None:
            how = "exit status unknown"
        elif code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        return f"worker process {self.pid} died ({how}) while running this case"

    def close(self, wait: bool = True) -> None:
        self.executor.shutdown(wait=wait, cancel_futures=True)


class ProcessEngine(Engine):
    """Cases on a process pool of this machine (see the module docstring).

    Parameters
    ----------
    workers : int
        Parallel cases.
    threads : int
        BLAS/MKL threads per worker.
    retries : int
        Re-runs of a failed case.
    """

    name = "process"

    def __init__(self, workers: int, threads: int, retries: int = 0) -> None:
        self.workers, self.threads, self.retries = workers, threads, retries
        self._events: queue.Queue = queue.Queue()
        self._pending: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._killed = threading.Event()
        self._lanes: dict[int, _Lane] = {}
        self._busy: set[int] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._alive = 0

    def start(self, tasks: Sequence[dict]) -> None:
        self._pending.extend(tasks)
        n = min(self.workers, len(tasks))
        self._alive = n
        for i in range(n):
            t = threading.Thread(target=self._lane_loop, args=(i,), name=f"sweep-lane-{i}", daemon=True)
            self._threads.append(t)
            t.start()

    def _lane_loop(self, i: int) -> None:
        from concurrent.futures.process import BrokenProcessPool

        from fem_eigopt.sweeps.worker import run_case

        lane: _Lane | None = None
        try:
            while not self._stop.is_set():
                try:
                    task = self._pending.popleft()
                except IndexError:
                    break
                for attempt in range(self.retries + 1):
                    if self._stop.is_set() and attempt > 0:
                        break
                    try:
                        if lane is None:
                            lane = _Lane(self.threads)
                            with self._lock:
                                self._lanes[i] = lane
                        self._events.put(Event("start", task["id"], attempt=attempt))
                        with self._lock:
                            self._busy.add(i)
                        record = lane.executor.submit(run_case, task).result()
                    except BrokenProcessPool:
                        # Ctrl-C reaches the workers with the main process: one that dies of it
                        # is "interrupted" once the main loop has seen its KeyboardInterrupt
                        self._stop.wait(0.5)
                        if self._stop.is_set():
                            record = _failed(task["id"], "interrupted: the worker was stopped", "interrupted")
                        else:
                            record = _failed(task["id"], lane.death() if lane is not None else "worker died")
                        if lane is not None:
                            lane.close(wait=False)
                        lane = None
                        with self._lock:
                            self._lanes.pop(i, None)
                    except Exception as exc:  # e.g. a task that does not pickle
                        record = _failed(task["id"], f"{type(exc).__name__}: {exc}")
                    finally:
                        with self._lock:
                            self._busy.discard(i)
                    if record["status"] != "failed" or attempt == self.retries:
                        break
                    logger.info("case %s failed (%s); retry %d of %d", task["id"], record["message"], attempt + 1,
                                self.retries)
                self._events.put(Event("done", task["id"], record, attempt))
        finally:
            if lane is not None:
                lane.close(wait=not self._killed.is_set())
            with self._lock:
                self._lanes.pop(i, None)
            self._events.put(None)  # this lane is finished

    def next_event(self, timeout: float) -> Event | None:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is None:
            self._alive -= 1
            return None
        return event

    def active(self) -> bool:
        return self._alive > 0 or not self._events.empty()

    def running(self) -> int:
        with self._lock:
            return len(self._busy)

    def _signal_workers(self, sig: int) -> None:
        with self._lock:
            pids = [lane.pid for i, lane in self._lanes.items() if lane.pid is not None and
                    (i in self._busy or sig == signal.SIGKILL)]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass

    def interrupt(self) -> None:
        self._stop.set()
        self._signal_workers(signal.SIGINT)

    def kill(self) -> None:
        self._stop.set()
        self._killed.set()
        self._signal_workers(signal.SIGKILL)

    def close(self) -> None:
        for t in self._threads:
            t.join(timeout=30.0)


# ----------------------------------------------------------------------------------------------
# Dask


class DaskEngine(Engine):
    """Cases on a Dask cluster (see the module docstring).

    Parameters
    ----------
    workers : int
        Worker processes of the local cluster (ignored with ``scheduler``).
    threads : int
        BLAS/MKL threads per worker of the local cluster.
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); None starts a LocalCluster.
    retries : int
        Re-runs of a failed case.
    """

    name = "dask"

    def __init__(self, workers: int, threads: int, scheduler: str | None = None, retries: int = 0) -> None:
        from fem_eigopt.errors import InputError

        try:
            import dask
            import distributed
        except ImportError:
            raise InputError("--engine dask: dask.distributed is not installed; allowed: --engine process, or "
                             "pip install \"fem-eigopt[sweep]\"") from None
        self._dask, self._distributed = dask, distributed
        self.workers, self.threads, self.scheduler, self.retries = workers, threads, scheduler, retries
        self._cluster = None
        self._client = None
        self._events: queue.Queue = queue.Queue()
        self._futures: dict[Any, tuple[dict, int]] = {}
        self._pending: collections.deque = collections.deque()
        self._remaining = 0
        self._stopping = False
        self._collector: threading.Thread | None = None
        self._as_completed = None
        self._log_level: int | None = None

    def _connect(self) -> None:
        from fem_eigopt.errors import InputError
        from fem_eigopt.sweeps.worker import thread_environment

        distributed = self._distributed
        # the cluster's own lines (workers registering, restarting, comms closing) would drown the
        # sweep's; a worker's death is in the case's record and in sweep.log
        self._log_level = logging.getLogger("distributed").level
        logging.getLogger("distributed").setLevel(logging.ERROR if self.scheduler else logging.CRITICAL)
        if self.scheduler is not None:
            try:
                self._client = distributed.Client(self.scheduler, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise InputError(f"--scheduler {self.scheduler}: no Dask scheduler answers there ({exc}); "
                                 f"allowed: the address of a running scheduler, e.g. tcp://host:8786") from None
            logger.info("Dask scheduler %s: %d workers", self.scheduler,
                        len(self._client.scheduler_info().get("workers", {})))
            return
        # A dead worker fails its case instead of moving it to the next worker. Ctrl-C in the
        # terminal reaches every process of its group: the local workers ignore SIGINT (inherited
        # from here at their start, and set again by a plugin on workers the nanny restarts), so
        # that their running cases finish while the sweep stops.
        import threading as _threading

        main = _threading.current_thread() is _threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            with self._dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = distributed.LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                                         processes=True, scheduler_kwargs={"dashboard": False},
                                                         env=thread_environment(self.threads),
                                                         silence_logs=logging.ERROR)
                self._client = distributed.Client(self._cluster)
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        self._client.register_plugin(_ignore_sigint_plugin(), name="fem-eigopt-ignore-sigint")
        logger.info("Dask LocalCluster started (%d workers)", self.workers)

    def _capacity(self) -> int:
        """Cases in flight at once: one per thread of the workers alive now (a worker that died is
        not counted while its nanny restarts it, so no case waits behind another on one worker)."""
        try:
            alive = sum(self._client.nthreads().values())
        except Exception:
            alive = 1
        if self._cluster is not None:
            alive = min(alive, self.workers)
        return max(1, alive)

    def start(self, tasks: Sequence[dict]) -> None:
        self._connect()
        self._pending = collections.deque((task, 0) for task in tasks)
        self._remaining = len(tasks)
        self._as_completed = self._distributed.as_completed()
        self._fill()
        self._collector = threading.Thread(target=self._collect, name="sweep-dask", daemon=True)
        self._collector.start()

    def _fill(self) -> None:
        """Submit waiting cases until every worker thread has one.

        Cases are handed to the cluster only as workers free up (Dask's documented pattern of
        submitting from ``as_completed``): a worker then never holds a second case that its death
        would fail too, and Ctrl-C has nothing queued on the cluster to cancel.
        """
        from fem_eigopt.sweeps.worker import run_case

        capacity = self._capacity()
        while self._pending and len(self._futures) < capacity and not self._stopping:
            task, attempt = self._pending.popleft()
            future = self._client.submit(run_case, task, pure=False, key=f"sweep_case-{task['id']}-{attempt}-"
                                                                          f"{time.time_ns()}")
            self._futures[future] = (task, attempt)
            self._as_completed.add(future)

    def _collect(self) -> None:
        try:
            for future in self._as_completed:
                task, attempt = self._futures.pop(future)
                if future.cancelled():
                    continue
                try:
                    record = future.result()
                except Exception as exc:
                    name = type(exc).__name__
                    if name == "KilledWorker":
                        record = _failed(task["id"], f"worker process died while running this case ({name})")
                    elif name == "CancelledError":
                        continue
                    else:
                        record = _failed(task["id"], f"{name}: {exc}")
                future.release()
                if record["status"] == "failed" and attempt < self.retries and not self._stopping:
                    logger.info("case %s failed (%s); retry %d of %d", task["id"], record["message"], attempt + 1,
                                self.retries)
                    self._pending.appendleft((task, attempt + 1))
                else:
                    self._remaining -= 1
                    self._events.put(Event("done", task["id"], record, attempt))
                self._fill()
        except Exception:  # the client went away (kill/close)
            logger.debug("Dask collector stopped", exc_info=True)
        finally:
            self._events.put(None)

    def next_event(self, timeout: float) -> Event | None:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        return event

    def active(self) -> bool:
        alive = self._collector is not None and self._collector.is_alive()
        return alive or not self._events.empty()

    def running(self) -> int:
        return len(self._futures)

    def interrupt(self) -> None:
        self._stopping = True  # nothing new is submitted; the running cases finish

    def kill(self) -> None:
        self._stopping = True
        try:
            self._client.cancel(list(self._futures))
        except Exception:
            pass
        self.close()

    def close(self) -> None:
        for obj in (self._client, self._cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    logger.debug("closing %r failed", obj, exc_info=True)
        self._client = self._cluster = None
        if self._collector is not None:
            self._collector.join(timeout=10.0)
        if self._log_level is not None:
            logging.getLogger("distributed").setLevel(self._log_level)
            self._log_level = None


def _ignore_sigint_plugin() -> Any:
    """A Dask worker plugin that makes its worker process ignore SIGINT (see DaskEngine)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreSigint(WorkerPlugin):
        def setup(self, worker: Any) -> None:
            import signal as _signal

            try:
                _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
            except ValueError:  # not the main thread of the worker process
                pass

    return IgnoreSigint()


def make_engine(name: str, workers: int, threads: int, scheduler: str | None = None, retries: int = 0) -> Engine:
    """The engine called ``name`` (``"process"`` or ``"dask"``)."""
    if name == "dask":
        return DaskEngine(workers, threads, scheduler=scheduler, retries=retries)
    return ProcessEngine(workers, threads, retries=retries)
