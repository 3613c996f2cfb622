"""Parameter sweeps (fem_eigopt.sweeps): spec parsing, samples, engines, failures, resume.

Every case is a tiny optimisation of problems/beam.py (24 × 4 quads, 8 evaluations, about a
second). The tests assert numbers and statuses, never timings.
"""

from __future__ import annotations

import argparse
import csv
import json
import textwrap
from pathlib import Path

import pytest

from fem_eigopt.cli import main as cli_main
from fem_eigopt.errors import InputError
from fem_eigopt.io.rundir import DirectoryLock
from fem_eigopt.sweeps.command import add_sweep_parser, cmd_sweep
from fem_eigopt.sweeps.runner import run_sweep
from fem_eigopt.sweeps.spec import build_spec, draw_sample, expand_cases, load_sweep_file, parse_values


REPO = Path(__file__).resolve().parents[1]
BEAM = REPO / "problems" / "beam.py"
TINY = ["nx=24", "ny=4", "max_eval=8"]
GRID = ["--grid", "volfrac=0.3,0.5", "--grid", "supports=SS,CC"]
# columns that differ between two runs of the same case
VOLATILE = {"run_dir", "wall_time_s"}


def main(argv: list[str]) -> int:
    """``python -m fem_eigopt sweep ARGV`` in this process."""
    return cli_main(["sweep", *argv])


def _table(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _numbers(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def _sweep_dir(capsys) -> Path:
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("sweep: "))
    return Path(line.split("sweep: ", 1)[1])


def _killer(tmp_path: Path) -> Path:
    """A problem file whose factory ends its own process for some parameter values."""
    path = tmp_path / "killer.py"
    path.write_text(textwrap.dedent(f"""
        import importlib.util, os, signal
        _spec = importlib.util.spec_from_file_location("_beam_for_sweep_test", {str(BEAM)!r})
        _beam = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_beam)

        def problem(nx: int = 24, ny: int = 4, volfrac: float = 0.5, max_eval: int = 8, mode: str = "none"):
            if mode == "exit":
                os._exit(1)
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "raise":
                raise RuntimeError("boom")
            return _beam.problem(nx=nx, ny=ny, volfrac=volfrac, max_eval=max_eval)
    """))
    return path


# ----------------------------------------------------------------------------------------------
# spec


def test_values_lists_ranges_and_types():
    assert parse_values("0.3:0.6:7", 0.5, "--grid volfrac") == [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]
    assert parse_values("SS,CC", "SS", "--grid supports") == ["SS", "CC"]
    assert parse_values("16:64:4", 160, "--grid nx") == [16, 32, 48, 64]
    assert parse_values("40,80", 160, "--grid nx") == [40, 80]
    assert all(isinstance(v, int) for v in parse_values("40,80", 160, "--grid nx"))
    assert parse_values([0.3, 1], 0.5, "--grid volfrac") == [0.3, 1.0]
    assert parse_values("true,false", True, "--grid flag") == [True, False]
    assert parse_values("1.5,None", None, "--grid filter_radius") == [1.5, None]
    spec = build_spec(BEAM, grid={"volfrac": "0.3,0.5", "supports": "SS,CC"}, fixed={"nx": "24", "ny": 4})
    assert spec.fixed == {"nx": 24, "ny": 4}
    cases = expand_cases(spec)
    assert [c.parameters for c in cases] == [{"volfrac": 0.3, "supports": "SS"}, {"volfrac": 0.3, "supports": "CC"},
                                             {"volfrac": 0.5, "supports": "SS"}, {"volfrac": 0.5, "supports": "CC"}]
    assert cases[0].overrides == {"nx": 24, "ny": 4, "volfrac": 0.3, "supports": "SS"}
    assert len({c.id for c in cases}) == 4
    zipped = expand_cases(build_spec(BEAM, grid={"supports": "SS,CC"}, zip={"nx": "24,48", "ny": "4,8"}))
    assert [(c.parameters["nx"], c.parameters["ny"]) for c in zipped] == [(24, 4), (48, 8)] * 2


def test_unknown_key_names_it_and_lists_the_accepted_ones():
    with pytest.raises(InputError) as err:
        build_spec(BEAM, grid={"volfrc": "0.3,0.5"})
    msg = str(err.value)
    assert "volfrc" in msg and "accepted:" in msg and "volfrac" in msg and "supports" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("kwargs, words", [
    (dict(grid={"nx": "24,1.5"}), ["--grid nx", "1.5", "int"]),
    (dict(grid={"volfrac": "0.3,abc"}), ["--grid volfrac", "abc", "float"]),
    (dict(grid={"nx": "10:20:4"}), ["--grid nx", "10:20:4", "integer"]),
    (dict(grid={"volfrac": "0.3:0.6:x"}), ["--grid volfrac", "start:stop:count"]),
    (dict(grid={"volfrac": "0.3,0.3"}), ["--grid volfrac", "twice"]),
    (dict(grid={"supports": "SS"}, zip={"nx": "24,48", "ny": "4"}), ["--zip", "equal lengths"]),
    (dict(grid={"volfrac": "0.3"}, fixed={"volfrac": "0.4"}), ["--set volfrac", "--grid"]),
    (dict(sample=4, ranges={}), ["--sample", "--range"]),
    (dict(sample=4, ranges={"supports": "0:1"}), ["--range supports", "numeric"]),
    (dict(sample=4, ranges={"volfrac": "0.6:0.3"}), ["--range volfrac", "low < high"]),
    (dict(sample=4, method="halton", ranges={"volfrac": "0.3:0.6"}), ["--method", "halton", "lhs, sobol"]),
    (dict(grid={"volfrac": "0.3"}, engine="mpi"), ["--engine", "mpi", "process, dask"]),
    (dict(), ["nothing varies"]),
])
def test_bad_input_is_one_line(kwargs, words):
    with pytest.raises(InputError) as err:
        build_spec(BEAM, **kwargs)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.mark.parametrize("method", ["lhs", "sobol"])
def test_samples_are_reproducible_with_a_seed(method):
    def cases(seed):
        spec = build_spec(BEAM, sample=8, method=method, ranges={"volfrac": "0.3:0.6", "nx": "20:40"}, seed=seed)
        return [c.parameters for c in expand_cases(spec)]

    a, b, c = cases(7), cases(7), cases(8)
    assert a == b and a != c and len(a) == 8
    assert all(0.3 <= p["volfrac"] <= 0.6 and 20 <= p["nx"] <= 40 and isinstance(p["nx"], int) for p in a)
    if method == "lhs":  # one point in each of the 8 strata of every dimension
        strata = sorted(int((p["volfrac"] - 0.3) / 0.3 * 8) for p in a)
        assert strata == list(range(8))
    spec = build_spec(BEAM, sample=3, ranges={"volfrac": "0.3:0.6"})
    assert spec.sample.seed is not None  # drawn and recorded
    assert draw_sample(spec.sample, spec.defaults) == draw_sample(spec.sample, spec.defaults)


def test_sweep_file(tmp_path):
    study = load_sweep_file(REPO / "problems" / "beam_volfrac.toml")
    assert study.grid == {"volfrac": [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6], "supports": ["SS", "CC"]}
    assert len(expand_cases(study)) == 14
    path = tmp_path / "s.toml"
    path.write_text(f'problem = {str(BEAM)!r}\nworkers = 2\n[grid]\nvolfrac = [0.3, 0.5]\n[set]\nnx = 24\n'
                    f'[sample]\nn = 2\nseed = 3\nrange = {{ ny = [4, 8] }}\n')
    spec = load_sweep_file(path, fixed={"max_eval": "8"})
    assert spec.workers == 2 and spec.fixed == {"nx": 24, "max_eval": 8}
    assert len(expand_cases(spec)) == 4
    path.write_text(f'problem = {str(BEAM)!r}\n[grid]\nvolfrac = [0.3]\nengin = "dask"\n')
    with pytest.raises(InputError, match="accepted"):
        load_sweep_file(path)
    path.write_text(f'problem = {str(BEAM)!r}\nengin = "dask"\n[grid]\nvolfrac = [0.3]\n')
    with pytest.raises(InputError, match="unknown key 'engin'; accepted: problem, grid"):
        load_sweep_file(path)


def test_command_bad_input_exit_2(capsys, tmp_path):
    assert main([str(BEAM), "--grid", "volfrc=0.3,0.5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "volfrc" in err and "accepted:" in err
    assert main([str(BEAM), "--grid", "volfrac=0.3", "--workers", "zero", "--out", str(tmp_path)]) == 2
    assert "--workers" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_subparser_hook(tmp_path):
    """The CLI hooks the command in through add_sweep_parser / cmd_sweep."""
    parser = argparse.ArgumentParser(prog="fem_eigopt")
    add_sweep_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", str(BEAM), "--grid", "volfrac=0.3,0.5", "--set", "nx=24", "ny=4",
                              "--workers", "2", "--out", str(tmp_path), "--resume", str(tmp_path)])
    assert args.command == "sweep" and args.grid == ["volfrac=0.3,0.5"] and args.overrides == ["nx=24", "ny=4"]
    with pytest.raises(InputError, match="--resume"):
        cmd_sweep(args)  # a spec and --resume together


# ----------------------------------------------------------------------------------------------
# running sweeps


@pytest.fixture(scope="module")
def process_sweep(tmp_path_factory) -> Path:
    """The 4-case sweep on the process engine with 2 workers."""
    out = tmp_path_factory.mktemp("process")
    code = main([str(BEAM), *GRID, "--set", *TINY, "--workers", "2", "--engine", "process", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    (sweep_dir,) = (out / "beam").glob("sweep-*")
    return sweep_dir


def _check_sweep_dir(sweep_dir: Path) -> list[dict]:
    rows = _table(sweep_dir)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    columns = list(rows[0])
    for col in ("case", "volfrac", "supports", "status", "objective", "omega1", "omega2", "f1", "volume_fraction",
                "grey_fraction", "supports_joined", "evaluations", "wall_time_s", "run_dir", "message"):
        assert col in columns, col
    assert columns[:4] == ["case", "volfrac", "supports", "status"]
    assert [(r["volfrac"], r["supports"]) for r in rows] == [("0.3", "SS"), ("0.3", "CC"), ("0.5", "SS"), ("0.5", "CC")]
    for r in rows:
        assert int(r["evaluations"]) == 8
        assert abs(float(r["volume_fraction"]) - float(r["volfrac"])) < 0.01
        assert float(r["omega1"]) > 0 and float(r["f1"]) == pytest.approx(float(r["omega1"]) / (2 * 3.141592653589793))
        run = sweep_dir / r["run_dir"]
        for name in ("summary.json", "run.json", "history.csv", "design.npz", "design.png", "convergence.png"):
            assert (run / name).is_file(), (run, name)
        summary = json.loads((run / "summary.json").read_text())
        assert float(r["grey_fraction"]) == pytest.approx(summary["grey_fraction"], rel=1e-9)
        assert r["supports_joined"] == str(summary["supports_joined"])
    # clamped ends are stiffer than pinned ones; more material is stiffer and heavier
    by = {(r["volfrac"], r["supports"]): float(r["omega1"]) for r in rows}
    assert by[("0.3", "CC")] > by[("0.3", "SS")] and by[("0.5", "CC")] > by[("0.5", "SS")]
    for name in ("plot_volfrac.png", "plot_supports.png", "designs.png"):
        data = (sweep_dir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, name
    assert (sweep_dir / "sweep.json").is_file() and "ok" in (sweep_dir / "sweep.log").read_text()
    return rows


def test_process_engine_four_cases(process_sweep):
    _check_sweep_dir(process_sweep)


def test_dask_engine_same_numbers(process_sweep, tmp_path, capsys):
    pytest.importorskip("distributed")
    code = main([str(BEAM), *GRID, "--set", *TINY, "--workers", "2", "--engine", "dask", "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    rows = _check_sweep_dir(_sweep_dir(capsys))
    assert _numbers(rows) == _numbers(_table(process_sweep))


@pytest.mark.parametrize("engine", ["process", "dask"])
def test_dead_worker_fails_only_its_case(engine, tmp_path, capsys):
    if engine == "dask":
        pytest.importorskip("distributed")
    code = main([str(_killer(tmp_path)), "--grid", "mode=none,exit,kill,raise", "--workers", "2", "--engine", engine,
                 "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 1  # some case failed
    rows = {r["mode"]: r for r in _table(_sweep_dir(capsys))}
    assert rows["none"]["status"] == "ok" and float(rows["none"]["omega1"]) > 0
    assert rows["exit"]["status"] == "failed" and "died" in rows["exit"]["message"]
    assert rows["kill"]["status"] == "failed" and "died" in rows["kill"]["message"]
    if engine == "process":  # the pool knows how its worker ended
        assert "exit code 1" in rows["exit"]["message"] and "SIGKILL" in rows["kill"]["message"]
    assert rows["raise"]["status"] == "failed" and "RuntimeError: boom" in rows["raise"]["message"]


@pytest.mark.parametrize("engine", ["process", pytest.param("dask", marks=pytest.mark.slow)])  # dask: 17 s
def test_interrupt_then_resume_runs_only_the_missing_cases(engine, process_sweep, tmp_path):
    if engine == "dask":
        pytest.importorskip("distributed")
    spec = build_spec(BEAM, grid={"volfrac": "0.3,0.5", "supports": "SS,CC"},
                      fixed=dict(t.split("=") for t in TINY), workers=2, engine=engine, out=tmp_path)
    seen = []

    def ctrl_c_after_first_case(case, record):
        seen.append(case.id)
        if len(seen) == 1:
            raise KeyboardInterrupt  # as one Ctrl-C in the sweep's loop

    first = run_sweep(spec, progress=False, callback=ctrl_c_after_first_case)
    assert first.interrupted
    statuses = {r["case"]: r["status"] for r in first.rows}
    not_ok = {c for c, s in statuses.items() if s != "ok"}
    assert statuses[seen[0]] == "ok" and 1 <= len(not_ok) <= 3
    assert set(statuses.values()) <= {"ok", "interrupted", "missing"}

    with DirectoryLock(first.sweep_dir, "sweep"):  # as another process still running the sweep
        with pytest.raises(InputError, match=f"{first.sweep_dir}: in use by another process"):
            run_sweep(resume=first.sweep_dir, progress=False)
    second = run_sweep(resume=first.sweep_dir, progress=False)
    assert not second.interrupted
    assert set(second.ran) == not_ok  # only what was missing
    assert _numbers(_table(first.sweep_dir)) == _numbers(_table(process_sweep))

    # a case whose record is lost is run again, and only that one
    lost = _table(first.sweep_dir)[2]["case"]
    (first.sweep_dir / "cases" / f"{lost}.json").unlink()
    third = run_sweep(resume=first.sweep_dir, progress=False)
    assert third.ran == [lost]
    assert _numbers(_table(first.sweep_dir)) == _numbers(_table(process_sweep))


def test_python_api_returns_the_table(tmp_path):
    import fem_eigopt as fe
    import fem_eigopt.sweeps as sw
    import fem_eigopt.sweeps.runner as sweeps_runner

    table = sw.sweep(BEAM, grid={"volfrac": [0.3, 0.5]}, set={"nx": 24, "ny": 4, "max_eval": 8}, workers=2,
                     out=tmp_path, progress=False)
    try:
        import pandas  # noqa: F401
    except ImportError:
        rows = table
    else:
        assert table.attrs["sweep_dir"]
        rows = table.to_dict("records")
    assert [r["volfrac"] for r in rows] == [0.3, 0.5]
    assert all(r["status"] == "ok" for r in rows)
    assert rows[1]["omega1"] > rows[0]["omega1"]
    # the flat API's fe.sweep is the function, not the subpackage
    assert fe.sweep is sweeps_runner.sweep
