"""Checkpoints and ``--resume`` (issue #19).

* Our MMA: a run stopped at evaluation k (a ``should_stop`` raising KeyboardInterrupt, as Ctrl-C
  does, once or twice) and resumed ends with the same summary, bit for bit, as one run without
  a stop — on a coarse beam whose β changes every 4 evaluations, so that stages change before and
  after the stop; also the MMA object's and the driver's states on their own.
* NLopt: the resumed run finishes, the evaluation count and the history continue, and it starts a
  new NLopt run from the best point of the interrupted one.
* Real signals: ``python -m fem_eigopt`` stopped by SIGINT, SIGTERM or SIGKILL (no stop
  checkpoint, the last periodic one) exits 130/143, leaves a loadable checkpoint, ``plot`` works
  on it, and ``--resume`` ends where the uninterrupted run ends; ``plot`` on the finished run.
* One process per run directory: a second writer is refused while the run goes on, and
  ``--resume`` while another process holds the directory's lock says so in one line, exit 2;
  the lock of a killed process is gone.
* Bad ``--resume`` targets: one line, exit 2.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_bad_input import default_sigint
from test_optimizer import analytic, max_min

import fem_eigopt.optimize.run as run_module
from fem_eigopt.cli import main
from fem_eigopt.design.projection import BetaContinuation
from fem_eigopt.errors import InputError
from fem_eigopt.io.checkpoint import read_checkpoint, write_checkpoint
from fem_eigopt.io.rundir import DirectoryLock, to_jsonable
from fem_eigopt.optimize.driver import minimize
from fem_eigopt.optimize.mma import MMA
from fem_eigopt.optimize.run import optimize, resume
from fem_eigopt.plot import read_history
from fem_eigopt.problem.loading import load_problem

REPO = Path(__file__).resolve().parents[1]
BEAM = {"nx": 32, "ny": 4, "max_eval": 16, "beta_max": 8.0}
#: summary entries a resumed run must reproduce bitwise
SAME = ("status", "evaluations", "objective", "max_constraint", "omega_final", "eigenvalues_final",
        "volume_fraction", "beta", "clusters_final")


STAGED_BEAM = textwrap.dedent(f'''
    """problems/beam.py with β doubled every 4 evaluations, so that stages change within a short run."""
    import importlib.util
    from dataclasses import replace

    _spec = importlib.util.spec_from_file_location("_beam", {str(REPO / "problems" / "beam.py")!r})
    _beam = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_beam)


    def problem(nx: int = 32, ny: int = 4, max_eval: int = 16, beta_max: float = 8.0):
        p = _beam.problem(nx=nx, ny=ny, max_eval=max_eval, beta_max=beta_max)
        return replace(p, design=replace(p.design, beta_every=4))
''')


@functools.cache
def _staged_beam_file() -> Path:
    """The problem file of :data:`STAGED_BEAM` (a resume reloads the problem from its file)."""
    path = Path(tempfile.mkdtemp(prefix="fem_eigopt_resume_")) / "staged_beam.py"
    path.write_text(STAGED_BEAM)
    return path


def _problem():
    """The coarse beam with β doubled every 4 evaluations, so that stages change within the run."""
    return load_problem(_staged_beam_file(), BEAM)


def _settings(algorithm: str):
    return replace(_problem().optimizer, algorithm=algorithm)


def _stop_at(k: int):
    """``should_stop`` that stops the run like Ctrl-C once it has k evaluations."""

    def stop(history):
        if len(history) >= k:
            raise KeyboardInterrupt

    return stop


@pytest.fixture
def no_pictures(monkeypatch):
    """The pictures (seconds of GIF frames) are not what these tests are about."""
    monkeypatch.setattr(run_module, "write_run_pictures", lambda *args, **kwargs: {})


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted run (own MMA), without a run directory: checkpoints must not change it."""
    return optimize(_problem(), out_dir=None, settings=_settings("MMA"), progress=False)


def _assert_same(summary: dict, expected: dict) -> None:
    """Equal entries of ``SAME``, bit for bit (arrays element by element)."""
    for key in SAME:
        a, b = summary[key], expected[key]
        assert np.array_equal(np.asarray(a), np.asarray(b)) if isinstance(a, (list, np.ndarray)) else a == b, key


# ----------------------------------------------------------------------------------------------
# the pieces: MMA, the β schedule, the driver


def test_mma_state_continues_bitwise():
    evaluate, _, _ = max_min()
    lower, upper = np.array([-1.0, -1.0, 0.0]), np.array([1.0, 1.0, 2.0])

    def iterate(mma, x, steps):
        out = []
        for _ in range(steps):
            ev = evaluate(x)
            x = mma.step(x, ev.f, ev.grad, ev.g, ev.jac)
            out.append(x)
        return out

    a = MMA(3, 3, lower, upper, move=0.2)
    first = iterate(a, np.array([0.3, -0.2, 0.1]), 4)
    state = pickle.loads(pickle.dumps(a.state()))
    rest = iterate(a, first[-1], 6)
    b = MMA(3, 3, lower, upper, move=0.2)
    b.set_state(state)
    assert all(np.array_equal(p, q) for p, q in zip(iterate(b, first[-1], 6), rest))
    with pytest.raises(ValueError, match="n = 3"):
        MMA(4, 3, -1.0, 1.0).set_state(state)


def test_beta_continuation_state():
    a = BetaContinuation(beta0=1.0, factor=2.0, beta_max=8.0, every=3)
    for _ in range(4):
        a.step()
    b = BetaContinuation(beta0=1.0, factor=2.0, beta_max=8.0, every=3)
    b.set_state(a.state())
    assert (b.beta, b.iterations_at_level) == (2.0, 1)
    assert [a.step() for _ in range(8)] == [b.step() for _ in range(8)]
    with pytest.raises(InputError, match=r"beta = 16.0.*\[1.0, 8.0\]"):
        b.set_state({"beta": 16.0, "iterations_at_level": 0})


@pytest.mark.parametrize("algorithm", ["MMA", "LD_MMA"])
def test_driver_resumes_from_every_state(algorithm):
    """Our MMA from any state, and NLopt from the state between two runs (after the requested
    restart): the same history to the end; NLopt within a run: a new run, history kept."""
    evaluate, _, f_star = max_min()
    settings = analytic(algorithm=algorithm, max_eval=40, xtol_rel=0.0, stagnation_tol=0.0)
    args = (evaluate, np.array([0.3, -0.2, 0.1]), [-1.0, -1.0, 0.0], [1.0, 1.0, 2.0], settings, 3)
    states = []
    full = minimize(*args, callback=lambda r: "restart" if r.eval == 12 else None, checkpoint=states.append)
    assert len(states) >= 20 and sum(s.between_runs for s in states) == 1
    for state in [s for i, s in enumerate(states) if i % 7 == 0 or s.between_runs]:
        state = pickle.loads(pickle.dumps(state))
        res = minimize(*args, callback=lambda r: "restart" if r.eval == 12 else None, resume=state)
        assert res.nfev == full.nfev == 40
        assert [r.eval for r in res.history] == list(range(1, 41))
        k = state.n_history
        assert [r.f for r in res.history[:k]] == [r.f for r in full.history[:k]]
        if algorithm == "MMA" or state.between_runs:
            assert [r.f for r in res.history] == [r.f for r in full.history]
            assert res.nrun == full.nrun and np.array_equal(res.best_x, full.best_x)
        else:
            assert res.history[k].run == state.run_index + 1
            assert res.history[k].f == state.run_best[1].f  # restarted at the best point
            assert res.best_fun == pytest.approx(f_star, abs=1e-3)


# ----------------------------------------------------------------------------------------------
# whole runs


@pytest.mark.parametrize("stops", [(6,), (9,), (3, 11)], ids=["at-6", "at-9-new-stage", "twice"])
def test_own_mma_resumed_ends_as_the_uninterrupted_run(stops, reference, tmp_path, no_pictures):
    run = optimize(_problem(), out_dir=tmp_path, settings=_settings("MMA"), progress=False,
                   should_stop=_stop_at(stops[0]))
    assert run.summary["status"] == "INTERRUPTED" and run.summary["evaluations"] == stops[0]
    checkpoint = read_checkpoint(run.run_dir)
    # the state between two iterations: the evaluation in progress at the stop is done again
    assert (checkpoint["status"], checkpoint["evaluations"]) == ("INTERRUPTED", stops[0] - 1)
    for k in stops[1:]:
        run = resume(run.run_dir, progress=False, should_stop=_stop_at(k))
        assert run.summary["status"] == "INTERRUPTED" and run.summary["evaluations"] == k
    final = resume(run.run_dir, progress=False)
    _assert_same(final.summary, reference.summary)
    assert [r.f for r in final.result.history] == [r.f for r in reference.result.history]
    assert np.array_equal(final.densities, reference.densities)
    rows = read_history(final.run_dir / "history.csv")
    assert [int(r["eval"]) for r in rows] == list(range(1, 17))
    assert [int(r["run"]) for r in rows] == [r.run for r in reference.result.history]
    assert sorted({float(r["beta"]) for r in rows}) == [1.0, 2.0, 4.0, 8.0]
    info = json.loads((final.run_dir / "run.json").read_text())
    assert [r["from_evaluation"] for r in info["resumes"]] == [k - 1 for k in stops]
    assert read_checkpoint(final.run_dir)["finished"] is True


def test_nlopt_resumed_run_continues_count_and_history(tmp_path, no_pictures, caplog):
    run = optimize(_problem(), out_dir=tmp_path, settings=_settings("LD_MMA"), progress=False,
                   should_stop=_stop_at(6))
    state = read_checkpoint(run.run_dir)["driver"]
    assert state.n_history == 5 and state.mma is None
    with caplog.at_level("INFO", logger="fem_eigopt"):
        final = resume(run.run_dir, progress=False)
    assert "NLopt's own state is not kept" in caplog.text
    h = final.result.history
    assert final.summary["status"] == "MAXEVAL_REACHED" and final.summary["evaluations"] == 16
    assert [r.eval for r in h] == list(range(1, 17))
    assert [r.f for r in h[:5]] == [r.f for r in run.result.history[:5]]
    assert h[5].run == h[4].run + 1  # a new NLopt run ...
    assert h[5].f == state.run_best[1].f  # ... from the best point of the interrupted one
    assert [int(r["eval"]) for r in read_history(final.run_dir / "history.csv")] == list(range(1, 17))


# ----------------------------------------------------------------------------------------------
# one process per run directory

HOLD_LOCK = ("import sys; from fem_eigopt.io.rundir import DirectoryLock; "
             "held = DirectoryLock(sys.argv[1], 'run').acquire(); print('held', flush=True); sys.stdin.read()")


def test_a_run_directory_is_written_by_one_process_at_a_time(reference, tmp_path, capsys, monkeypatch, no_pictures):
    seen = []

    def second_writer_then_stop(history):
        if len(history) == 2:  # while the run goes on, nobody else may take its directory
            run_dir = next(tmp_path.glob("*/*"))
            with pytest.raises(InputError, match="in use by another process"):
                DirectoryLock(run_dir, "run").acquire()
            seen.append(run_dir)
        if len(history) >= 4:
            raise KeyboardInterrupt

    run = optimize(_problem(), out_dir=tmp_path, settings=_settings("MMA"), progress=False,
                   should_stop=second_writer_then_stop)
    assert run.summary["status"] == "INTERRUPTED" and seen == [run.run_dir]
    # the stopped run let its lock go; now another process holds it: --resume says so, in one line
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run.run_dir)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.chdir(REPO)
        assert main(["--resume", str(run.run_dir)]) == 2
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and f"{run.run_dir}: in use by another process" in lines[0] and out == ""
        assert read_checkpoint(run.run_dir)["status"] == "INTERRUPTED"  # untouched
    finally:
        holder.kill()  # SIGKILL: the operating system drops the lock of a process however it ends
        holder.wait()
    final = resume(run.run_dir, progress=False)
    _assert_same(final.summary, reference.summary)


# ----------------------------------------------------------------------------------------------
# the command line with real signals

BEAM_MMA = textwrap.dedent(f'''
    """The coarse beam of tests/test_resume.py with our own MMA."""
    import importlib.util
    from dataclasses import replace

    _spec = importlib.util.spec_from_file_location("_beam", {str(REPO / "problems" / "beam.py")!r})
    _beam = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_beam)


    def problem(max_eval: int = 40):
        p = _beam.problem(nx=32, ny=4, max_eval=max_eval, beta_max=8.0)
        return replace(p, design=replace(p.design, beta_every=10), optimizer=replace(p.optimizer, algorithm="MMA"))
''')


@pytest.fixture(scope="module")
def beam_mma(tmp_path_factory):
    """The problem file, and its uninterrupted run (no run directory)."""
    path = tmp_path_factory.mktemp("problem") / "beam_mma.py"
    path.write_text(BEAM_MMA)
    return path, optimize(load_problem(path), out_dir=None, progress=False)


def _stopped_subprocess(problem: Path, out: Path, sig: int) -> subprocess.CompletedProcess:
    """``python -m fem_eigopt PROBLEM`` sent ``sig`` once it logged its fifth evaluation."""
    proc = subprocess.Popen([sys.executable, "-m", "fem_eigopt", str(problem), "--out", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, "the run ended before its fifth evaluation"
        if line.split()[:1] == ["5"]:
            break
    os.kill(proc.pid, sig)
    out_text, err_text = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out_text, err_text)


@pytest.mark.parametrize("sig, code, status", [
    (signal.SIGTERM, 143, "INTERRUPTED"),
    pytest.param(signal.SIGINT, 130, "INTERRUPTED", marks=pytest.mark.slow),
    pytest.param(signal.SIGKILL, -signal.SIGKILL, "RUNNING", marks=pytest.mark.slow),
], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_signal_then_plot_then_resume(sig, code, status, beam_mma, tmp_path, capsys, monkeypatch, no_pictures):
    problem, reference = beam_mma
    proc = _stopped_subprocess(problem, tmp_path, sig)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    run_dir = next(tmp_path.glob("beam_mma/*"))
    checkpoint = read_checkpoint(run_dir)
    assert checkpoint["status"] == status and not checkpoint["finished"]
    done = checkpoint["evaluations"]
    assert 4 <= done < 40 and checkpoint["driver"].n_history == done
    assert checkpoint["settings"].algorithm == "MMA"
    monkeypatch.chdir(REPO)
    # plot on the stopped run (a killed one has only design_best.npz)
    assert main(["plot", str(run_dir), "--what", "design,history"]) == 0
    out = capsys.readouterr().out.split()
    assert str(run_dir / "design.png") in out and str(run_dir / "convergence.png") in out
    assert main(["--resume", str(run_dir), "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("beam_mma: MAXEVAL_REACHED after 40 evaluations")
    _assert_same(json.loads((run_dir / "summary.json").read_text()), json.loads(json.dumps(to_jsonable(reference.summary))))
    # plot on the finished run; a second resume says it is finished
    assert main(["plot", str(run_dir), "--what", "design,history"]) == 0
    assert str(run_dir / "design.png") in capsys.readouterr().out.split()
    assert main(["--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the run is finished (MAXEVAL_REACHED after 40 evaluations" in err[0]


# ----------------------------------------------------------------------------------------------
# bad --resume targets


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """Folders to resume: empty, a damaged and a foreign checkpoint, one without run.json."""
    root = tmp_path_factory.mktemp("targets")
    for name in ("empty", "garbage", "foreign", "norunjson"):
        (root / name).mkdir()
    (root / "garbage" / "checkpoint.pkl").write_bytes(b"\x80\x05not a pickle at all")
    (root / "foreign" / "checkpoint.pkl").write_bytes(pickle.dumps({"some": "dict"}))
    write_checkpoint(root / "norunjson", {"status": "INTERRUPTED", "evaluations": 3})
    return root


BAD = [
    (["--resume", "{tmp}/nope"], ["nope", "no such run directory", "checkpoint.pkl"]),
    (["--resume", "{tmp}/empty"], ["empty/checkpoint.pkl", "no checkpoint", "allowed"]),
    (["--resume", "{tmp}/garbage"], ["garbage/checkpoint.pkl", "unreadable checkpoint", "allowed"]),
    (["--resume", "{tmp}/foreign"], ["foreign/checkpoint.pkl", "not a fem_eigopt checkpoint"]),
    (["--resume", "{tmp}/norunjson"], ["norunjson", "no run.json"]),
    (["--resume", "{tmp}/empty", "--set", "nx=3"], ["--resume", "--set", "not allowed with --resume", "allowed"]),
    (["run", "--resume", "{tmp}/empty", "problems/beam.py"], ["PROBLEM.py", "not allowed with --resume"]),
    (["run", "--resume", "{tmp}/empty", "--max-eval", "5"], ["--max-eval", "not allowed with --resume"]),
    (["run"], ["no PROBLEM.py", "--resume RUN_DIR"]),
]


@pytest.mark.parametrize("args, words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_resume_targets(args, words, targets, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code = main([a.replace("{tmp}", str(targets)) for a in args])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and out == ""
    for word in words:
        assert word in lines[0], (word, lines[0])
