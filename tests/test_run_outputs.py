"""What the run loop itself writes into a run directory (issue #19): every picture, the snapshot
series, ``design_best.npz`` and, for shape designs, both outlines and the moved coordinates.

Coarse runs through :func:`fem_eigopt.optimize.run.optimize` (a 2D beam with a β change every 4
evaluations, a 3D cantilever started above ρ̄ = 0.5 so that its isosurface exists, a marimba
bar): files exist and are non-empty PNG/GIF of the expected size, the 3D isosurface has
triangles, ``design.vtu.series`` reads back with meshio in evaluation order ending with the final
design, and ``design_best.npz`` holds the best feasible evaluation of the last continuation stage.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import meshio
import numpy as np
import pytest
from PIL import Image

from fem_eigopt.io import pictures as P
from fem_eigopt.io.isosurface import density_isosurface
from fem_eigopt.io.paraview import read_vtu_series
from fem_eigopt.io.snapshots import load_snapshots
from fem_eigopt.optimize.run import optimize
from fem_eigopt.plot import read_history
from fem_eigopt.problem.loading import load_problem

ROOT = Path(__file__).resolve().parents[1]
WIDTH = int(P.WIDTH_IN * P.DPI)
BEAM = {"nx": 32, "ny": 4, "max_eval": 12, "beta_max": 8.0}


def _run(tmp_path_factory, name: str, params: dict, beta_every: int | None = None):
    problem = load_problem(ROOT / "problems" / name, params)
    if beta_every is not None:  # β changes within the short run
        problem = replace(problem, design=replace(problem.design, beta_every=beta_every))
    return problem, optimize(problem, out_dir=tmp_path_factory.mktemp(name.replace(".py", "")), progress=False)


@pytest.fixture(scope="module")
def beam(tmp_path_factory):
    return _run(tmp_path_factory, "beam.py", BEAM, beta_every=4)


@pytest.fixture(scope="module")
def cant3d(tmp_path_factory):
    return _run(tmp_path_factory, "cantilever3d.py", {"nx": 10, "ny": 2, "nz": 2, "volfrac": 0.6, "max_eval": 6})


@pytest.fixture(scope="module")
def bar(tmp_path_factory):
    return _run(tmp_path_factory, "bar_tuning.py", {"nx": 20, "ny": 2, "max_eval": 6})


def _png(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def _gif_frames(path: Path) -> int:
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as im:
        assert im.format == "GIF"
        return im.n_frames


@pytest.mark.parametrize("case", ["beam", "cant3d", "bar"])
def test_the_run_writes_every_picture(case, request):
    _, run = request.getfixturevalue(case)
    d = run.run_dir
    w, h = _png(d / "design.png")
    assert w == WIDTH and 250 <= h <= 14 * P.DPI
    w, h = _png(d / "modes.png")
    assert w == WIDTH and 300 <= h <= 14 * P.DPI
    assert _png(d / "convergence.png") == (WIDTH, int(9.0 * P.DPI))
    assert _gif_frames(d / "mode1.gif") == 16
    evaluations = run.summary["evaluations"]
    assert _gif_frames(d / "design.gif") == evaluations  # a snapshot per evaluation up to 60
    assert (d / "design.vtu").stat().st_size > 0
    assert (d / "checkpoint.pkl").stat().st_size > 0


def test_3d_isosurface_of_the_final_design_has_triangles(cant3d):
    problem, run = cant3d
    surface = density_isosurface(problem.mesh, run.densities)
    assert surface.n_triangles > 0
    assert 0.0 <= surface.vertices[:, 0].min() and surface.vertices[:, 0].max() <= 1.0 + 1e-12


@pytest.mark.parametrize("case", ["beam", "cant3d"])
def test_series_reads_back_in_evaluation_order(case, request):
    _, run = request.getfixturevalue(case)
    d = run.run_dir
    n = run.summary["evaluations"]
    entries = read_vtu_series(d / "design.vtu.series")
    assert [t for _, t in entries] == list(range(1, n + 1))
    densities = [meshio.read(path).cell_data["density"][0] for path, _ in entries]
    assert all(r.shape == (run.evaluator.model.n_elements,) for r in densities)
    # the last entry is the final design (stored in single precision), like design.vtu
    assert np.allclose(densities[-1], run.densities, atol=1e-6)
    assert np.allclose(meshio.read(d / "design.vtu").cell_data["density"][0], run.densities)
    # snapshots record what was evaluated: the volume of each one is the history's
    rows = read_history(d / "history.csv")
    volumes = run.evaluator.chain.volume_fraction
    for snap, row in zip(load_snapshots(d)[:-1], rows):
        assert snap["evaluation"] == int(row["eval"])
        assert volumes(snap["densities"])[0] == pytest.approx(float(row["volume_fraction"]), abs=1e-6)


def test_design_best_is_the_best_feasible_design_of_the_last_stage(beam):
    _, run = beam
    rows = read_history(run.run_dir / "history.csv")
    assert sorted({float(r["beta"]) for r in rows}) == [1.0, 2.0, 4.0]  # β changed at 4 and 8
    stage = [r for r in rows if float(r["beta"]) == run.summary["beta"] and float(r["max_g"]) <= 1e-6]
    best = min(stage, key=lambda r: float(r["f"]))
    with np.load(run.run_dir / "design_best.npz") as z:
        assert int(z["stage"]) == 2 and float(z["beta"]) == 4.0
        assert int(z["evaluation"]) == int(best["eval"])
        assert float(z["objective"]) == pytest.approx(float(best["f"]), rel=1e-9)
        assert float(z["max_constraint"]) <= 1e-6
        densities = z["densities"]
    volume = run.evaluator.chain.volume_fraction(densities)[0]
    assert volume == pytest.approx(float(best["volume_fraction"]), abs=1e-8)


def test_shape_design_outlines_and_coordinates(bar):
    problem, run = bar
    d = run.run_dir
    assert _png(d / "shape.png")[0] == WIDTH
    with np.load(d / "design.npz") as z:
        final, initial = z["coordinates"], z["initial_coordinates"]
    assert final.shape == initial.shape == problem.mesh.p.shape
    assert np.max(np.abs(final - initial)) > 1e-6  # the profile moved
    design = problem.design
    assert np.allclose(initial, design.shape_map.coordinates(design.initial_parameters()), rtol=0, atol=1e-15)
    snaps = load_snapshots(d)
    assert [s["evaluation"] for s in snaps] == list(range(1, run.summary["evaluations"] + 1))
    assert np.allclose(snaps[-1]["coordinates"], final)
    summary = json.loads((d / "summary.json").read_text())
    assert summary["design"] == "shape"
