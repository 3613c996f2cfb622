"""Console, provenance and the modal/info/--version commands (issue #19, items 4, 5, 7).

Results on stdout, logs on stderr; plain lines (no control characters) when stderr is not a
terminal, a rich progress display when it is; ``--quiet``/``--verbose``; ``run.log``;
``run.json``'s provenance; ``summary.json``'s success; file modes from the umask; ``modal``
analysing the optimiser's first design and writing its modes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fem_eigopt.cli import ConsoleHandler, main

REPO = Path(__file__).resolve().parents[1]
BEAM = "problems/beam.py"
TINY = ("nx=24", "ny=4")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n


def cli(*args: str, umask: int | None = None) -> subprocess.CompletedProcess:
    def set_umask():
        if umask is not None:
            os.umask(umask)

    return subprocess.run([sys.executable, "-m", "fem_eigopt", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, preexec_fn=set_umask)


def rows(text: str) -> list[list[str]]:
    """The per-evaluation table rows of a log (lines starting with an evaluation number)."""
    return [line.split() for line in text.splitlines() if re.match(r"^\s*\d+\s+-?\d", line)]


@pytest.fixture(scope="module")
def beam_run(tmp_path_factory):
    """One tiny beam run through a real interpreter, stdout and stderr to pipes, umask 027."""
    out = tmp_path_factory.mktemp("runs")
    proc = cli(BEAM, "--set", *TINY, "max_eval=5", "--out", str(out), umask=0o027)
    assert proc.returncode == 0, proc.stderr
    return proc, next(out.glob("beam/*"))


def test_summary_on_stdout_log_on_stderr(beam_run):
    proc, run_dir = beam_run
    # stdout: the summary and the final table, nothing of the log
    assert proc.stdout.startswith("beam: MAXEVAL_REACHED after 5 evaluations")
    assert f"results: {run_dir}" in proc.stdout
    assert len([r for r in rows(proc.stdout)]) == 6  # one row per mode
    assert "design variables" not in proc.stdout
    # stderr: one plain line per evaluation, the last one included, the header once
    evals = [int(r[0]) for r in rows(proc.stderr)]
    assert evals == [1, 2, 3, 4, 5]
    assert proc.stderr.count("objective      max g") == 1
    assert not CONTROL.search(proc.stderr) and not CONTROL.search(proc.stdout)


def test_run_directory_files(beam_run):
    proc, run_dir = beam_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "MAXEVAL_REACHED"
    assert summary["success"] is True  # a normal end at max_eval
    assert summary["evaluations"] == 5
    log = (run_dir / "run.log").read_text()
    messages = "\n".join(line.split(": ", 1)[-1] for line in log.splitlines())
    assert [int(r[0]) for r in rows(messages)] == [1, 2, 3, 4, 5]
    assert "run directory" in log
    # umask 027: files 0640, like open() would make them (also the VTU from mkstemp)
    for name in ("summary.json", "run.json", "history.csv", "design.npz", "design.vtu", "design.png", "run.log"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o640, name


def test_provenance_in_run_json(beam_run):
    _, run_dir = beam_run
    run = json.loads((run_dir / "run.json").read_text())
    assert "-m fem_eigopt run problems/beam.py --set nx=24 ny=4 max_eval=5" in run["command_line"]
    assert run["solver"]["eigensolver"] == "LanczosSolver"  # auto on a small 2D model
    assert run["solver"]["backend"] in ("pardiso", "superlu", "cholmod")
    for name in ("fem_eigopt", "numpy", "scipy", "scikit-fem", "nlopt", "mkl", "python"):
        assert name in run["versions"]
    assert run["versions"]["numpy"] == np.__version__
    assert isinstance(run["threads"]["libraries"], list)
    assert run["machine"]["cores"] >= 1 and "cpu" in run["machine"]
    if (REPO / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", run["git"]["commit"])


def test_quiet_prints_only_the_summary(tmp_path):
    proc = cli(BEAM, "--set", *TINY, "max_eval=3", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout.startswith("beam: MAXEVAL_REACHED after 3 evaluations")
    # run.log keeps the whole log all the same
    assert len(rows("\n".join(line.split(": ", 1)[-1] for line in
                              next(tmp_path.glob("beam/*/run.log")).read_text().splitlines()))) == 3


def test_verbose_repeats_the_header(capsys, monkeypatch, tmp_path):
    from fem_eigopt.optimize.run import HEADER_EVERY

    monkeypatch.chdir(REPO)
    n = HEADER_EVERY + 3
    code = main([BEAM, "--set", *TINY, f"max_eval={n}", "beta=0", "--no-output", "-v"])
    out, err = capsys.readouterr()
    assert code == 0
    assert [int(r[0]) for r in rows(err)] == list(range(1, n + 1))
    assert err.count("objective      max g") == 2
    assert out.startswith("beam: ")


def test_progress_display_on_a_terminal():
    """The rich display draws k/N and the current numbers; the table rows stay off the console."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    handler = ConsoleHandler(stream, live=True, table=False, threshold=logging.DEBUG)
    log = logging.getLogger("fem_eigopt.test_console")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        attr = "fem_eigopt_progress"
        log.info("start", extra={attr: {"event": "start", "total": 10, "problem": "beam"}})
        for k in (1, 2, 3):
            log.info(f"{k:5d} row", extra={attr: {"event": "evaluation", "eval": k, "total": 10, "f": -1.5,
                                                  "max_g": -1e-3, "omega": [68.4, 258.3], "beta": 2.0, "stage": 2}})
        log.info("a message")
        handler.progress.refresh()
        log.info("end", extra={attr: {"event": "end"}})
    finally:
        log.removeHandler(handler)
        handler.close()
    text = stream.getvalue()
    assert "3/10" in text and "β 2 (stage 2)" in text and "68.4" in text
    assert "a message" in text
    assert "    1 row" not in text and "end\n" not in text


def test_modal_analyses_the_optimisers_first_design():
    """``modal`` and evaluation 1 of ``run`` see the same design (projection, filter, volume shift)."""
    from fem_eigopt.optimize.modal_analysis import modal_analysis
    from fem_eigopt.optimize.run import optimize
    from fem_eigopt.problem.loading import load_problem

    problem = load_problem(REPO / BEAM, {"nx": "24", "ny": "4", "beta": "4", "beta_max": "8"})
    modal = modal_analysis(problem)
    run = optimize(problem, out_dir=None, max_eval=2, progress=False)
    first = run.result.history[0].info
    assert modal.design == "first evaluation"
    np.testing.assert_allclose(modal.modes.eigenvalues, first["eigenvalues"][: modal.modes.eigenvalues.size],
                               rtol=1e-9)
    # the raw initial densities (uniform 0.5) give other numbers: β = 4 lifts the voids to x_min
    from fem_eigopt.optimize.modal_analysis import initial_scale_factors

    stiff, mass = initial_scale_factors(problem, modal.model)
    raw = modal.solver.solve(modal.model.stiffness(stiff), modal.model.mass(mass)).eigenvalues
    assert abs(raw[0] / modal.modes.eigenvalues[0] - 1) > 1e-6


def test_modal_out_writes_modes(tmp_path, capsys, monkeypatch):
    import meshio

    monkeypatch.chdir(REPO)
    code = main(["modal", BEAM, "--set", *TINY, "--modes", "3", "--out", str(tmp_path / "m"), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    result = json.loads(out)
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"modes.vtu", "modes.json", "design.png", "mode_1.png", "mode_2.png", "mode_3.png"} <= files
    mesh = meshio.read(tmp_path / "m" / "modes.vtu")
    assert {"mode_1", "mode_2", "mode_3"} <= set(mesh.point_data)
    assert len(mesh.cell_data["density"][0]) == 96
    saved = json.loads((tmp_path / "m" / "modes.json").read_text())
    np.testing.assert_allclose(saved["omega"], result["omega"], rtol=1e-12)
    assert (tmp_path / "m" / "mode_1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_info_shows_docstring_defaults_and_allowed_values(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["info", BEAM]) == 0
    out = capsys.readouterr().out
    assert "Du & Olhoff (2007) beam" in out  # the docstring
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "'SS'" in lines["supports"] and "C`` the end edge clamped" in out  # any pair of C, S, F
    assert "'bound', 'simple', 'ks', 'pnorm'" in lines["method"]
    assert "None" in lines["filter_radius"] and "float or None" in lines["filter_radius"]
    assert "160" in lines["nx"] and "int" in lines["nx"]
    assert "'difference', 'ratio'" in [line for line in _info("problems/gap.py", capsys, monkeypatch)
                                       if line.strip().startswith("kind")][0]


def _info(path: str, capsys, monkeypatch) -> list[str]:
    monkeypatch.chdir(REPO)
    assert main(["info", path]) == 0
    return capsys.readouterr().out.splitlines()


def test_version(capsys):
    from fem_eigopt import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fem_eigopt {__version__}"
