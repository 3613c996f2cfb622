"""Bad input, all of it (issue #19, item 8): one line on stderr, exit code 2, no traceback.

Every case names the option or file, the value and what is allowed. ``--debug`` adds the
traceback and keeps the exit code. Signals: SIGTERM ends a run with 143, SIGINT with 130, both
with ``"status": "INTERRUPTED"`` in ``summary.json``; a reader closing stdout ends quietly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fem_eigopt.cli import main

REPO = Path(__file__).resolve().parents[1]
BEAM = "problems/beam.py"
TINY = ("nx=24", "ny=4")  # 96 quads: every case that gets as far as a model stays fast

FILES = {
    "syntax.py": "def problem(:\n",
    "nofactory.py": '"""No factory."""\nx = 1\n',
    "raises.py": "def problem(n: int = 1):\n    raise RuntimeError('boom in the factory')\n",
    "returns_int.py": "def problem():\n    return 42\n",
    "missing_import.py": "import no_such_module_xyz\n\ndef problem():\n    pass\n",
    "required.py": textwrap.dedent('''
        import fem_eigopt as fe


        def problem(nx: int):
            return None
    '''),
    "notes.txt": "not a problem file\n",
}


def _files(tmp: Path) -> None:
    for name, text in FILES.items():
        (tmp / name).write_text(text)


# (arguments, words the one line must contain); "{tmp}" is the folder of FILES
BAD = [
    # problem files
    (("modal", "no_such_problem.py"), ["no_such_problem.py", "no such problem file"]),
    (("modal", "{tmp}/notes.txt"), ["notes.txt", "not a Python problem file", ".py"]),
    (("modal", "{tmp}"), ["not a Python problem file"]),
    (("modal", "problems/beam_volfrac.toml"), ["beam_volfrac.toml", "not a Python problem file"]),
    (("run", "{tmp}/syntax.py"), ["syntax.py", "importing the problem file failed", "SyntaxError"]),
    (("run", "{tmp}/missing_import.py"), ["missing_import.py", "ModuleNotFoundError", "no_such_module_xyz"]),
    (("modal", "{tmp}/nofactory.py"), ["nofactory.py", "defines no function problem"]),
    (("modal", "{tmp}/raises.py"), ["raises.py", "RuntimeError", "boom in the factory"]),
    (("modal", "{tmp}/returns_int.py"), ["returns_int.py", "returned int", "fem_eigopt.Problem"]),
    (("modal", "{tmp}/required.py"), ["required.py", "'nx'", "--set nx=VALUE"]),
    (("info", "no_such_problem.py"), ["no_such_problem.py", "no such problem file"]),
    # --set
    (("modal", BEAM, "--set", "colour=red"), ["'colour'", "accepted", "nx", "supports"]),
    (("modal", BEAM, "--set", "nx=abc"), ["nx", "'abc'", "int"]),
    (("modal", BEAM, "--set", "nx=2.5"), ["nx", "'2.5'", "int"]),
    (("modal", BEAM, "--set", "filter_radius=abc"), ["filter_radius", "'abc'", "float or None"]),
    (("modal", BEAM, "--set", "volfrac=nan"), ["volfrac", "'nan'", "float"]),
    (("modal", BEAM, "--set", "nx"), ["--set", "'nx'", "KEY=VALUE"]),
    (("modal", BEAM, "--set", "=3"), ["--set", "'=3'", "KEY=VALUE"]),
    (("modal", BEAM, "--set", "supports=XY"), ["supports = 'XY'", "'SS', 'CC'"]),
    (("modal", BEAM, "--set", *TINY, "method=magic"), ["method = 'magic'", "'bound'", "'ks'"]),
    (("modal", BEAM, "--set", *TINY, "element=quad9"), ["element = 'quad9'", "quad1"]),
    (("modal", BEAM, "--set", "nx=0"), ["nx = 0", "integer >= 1"]),
    (("modal", BEAM, "--set", "nx=100000", "ny=10000"), ["nx=100000", "ny=10000", "GB", "available", "cells"]),
    (("modal", BEAM, "--set", *TINY, "beta=-1"), ["design.projection_beta = -1.0", ">= 0"]),
    (("modal", BEAM, "--set", *TINY, "volfrac=1.5"), ["design.initial = 1.5", "[x_min, 1]"]),
    # options
    (("modal", BEAM, "--modes", "abc"), ["--modes", "'abc'"]),
    (("modal", BEAM, "--modes", "0"), ["--modes", ">= 1"]),
    (("modal", BEAM, "--set", *TINY, "--modes", "100000"), ["100000", "free dofs"]),
    (("modal", BEAM, "--backend", "magic"), ["--backend", "'magic'", "superlu"]),
    (("modal", BEAM, "--eigensolver", "magic"), ["--eigensolver", "'magic'", "arpack"]),
    (("modal", BEAM, "--colour"), ["unrecognized arguments", "--colour"]),
    (("modal", BEAM, "--set", *TINY, "--out", "/proc/x"), ["--out", "/proc/x", "cannot write"]),
    (("run", BEAM, "--set", *TINY, "--out", "/proc/x"), ["--out", "/proc/x", "cannot write"]),
    (("run", BEAM, "--set", *TINY, "--out", "{tmp}/notes.txt"), ["--out", "notes.txt", "cannot write"]),
    (("run", BEAM, "--max-eval", "0"), ["--max-eval", "0", ">= 1"]),
    (("run", BEAM, "--max-eval", "many"), ["--max-eval", "'many'"]),
    (("check-grad", BEAM, "--directions", "0"), ["--directions", ">= 1"]),
    (("check-grad", BEAM, "--h0", "2"), ["--h0", "0 < h0 < 1"]),
    (("frobnicate.py",), ["frobnicate.py", "no such problem file"]),
    (("modal", BEAM, "--set", *TINY, "--design", "{tmp}/notes.txt"), ["--design", "notes.txt", "unreadable",
                                                                      "design.npz"]),
    (("modal", "--design", "{tmp}"), ["--design", "unreadable", "run directory"]),
    (("modal",), ["modal", "no problem file", "--design RUN_DIR"]),
]


def _args(args, tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in args]


def assert_one_line_error(code: int, out: str, err: str, words) -> None:
    assert code == 2, (code, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert out == ""


def test_the_table_is_large_enough():
    assert len(BAD) >= 25


@pytest.mark.parametrize("args, words", BAD, ids=[" ".join(a[:4]) for a, _ in BAD])
def test_bad_input(args, words, tmp_path, capsys, monkeypatch):
    _files(tmp_path)
    monkeypatch.chdir(REPO)
    code = main(_args(args, tmp_path))
    out, err = capsys.readouterr()
    assert_one_line_error(code, out, err, [w.replace("{tmp}", str(tmp_path)) for w in words])


@pytest.mark.parametrize("index", [0, 14, 22, 32])
def test_bad_input_subprocess(index, tmp_path):
    """A few through a real interpreter: the exit status and stderr a shell sees."""
    _files(tmp_path)
    args, words = BAD[index]
    proc = subprocess.run([sys.executable, "-m", "fem_eigopt", *_args(args, tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, words)


@pytest.mark.parametrize("index", [0, 7, 14, 32])
def test_debug_keeps_exit_code_2(index, tmp_path, capsys, monkeypatch):
    _files(tmp_path)
    monkeypatch.chdir(REPO)
    args, words = BAD[index]
    code = main([*_args(args, tmp_path), "--debug"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and words[0] in last


def test_broken_pipe_ends_quietly():
    """``modal … | head -1``: the reader closes stdout; no traceback, no message."""
    proc = subprocess.Popen([sys.executable, "-m", "fem_eigopt", "modal", BEAM, "--set", *TINY, "--modes", "150"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the table is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def default_sigint() -> None:
    """``preexec_fn`` of a child that must stop on SIGINT: a shell that starts the tests in the
    background makes them ignore SIGINT, the children inherit that, and a Python started with
    SIGINT ignored never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_until_evaluating(tmp_path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "fem_eigopt", BEAM, "--set", *TINY, "max_eval=100000",
                             "beta=0", "--out", str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for the third evaluation row on stderr
        line = proc.stderr.readline()
        if line.split()[:1] == ["3"]:
            return proc
        assert line, "the run ended before its third evaluation"
    raise AssertionError("no evaluation within 120 s")


@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_signal_stops_the_run_and_writes_status(sig, code, name, tmp_path):
    proc = _run_until_evaluating(tmp_path)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    summary = json.loads(next(tmp_path.glob("beam/*/summary.json")).read_text())
    assert summary["status"] == "INTERRUPTED"
    assert summary["success"] is False
    assert summary["interrupted_by"] == name
    assert summary["evaluations"] >= 3
    assert "INTERRUPTED" in out  # the summary is printed on stdout
