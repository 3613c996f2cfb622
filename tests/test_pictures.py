"""Pictures, animations, ParaView series and the ``plot`` command (fem_eigopt.io), issue #19.

Real run directories (a 2D beam and a 3D cantilever, 6 evaluations each), then every picture
function: files exist, are non-empty PNG/GIF of the expected pixel size, the 3D isosurface has
triangles, ``design.vtu.series`` reads back (json + meshio) in order with named point data, and
``plot_run`` re-renders a finished and an interrupted run.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import meshio
import numpy as np
import pytest
from PIL import Image

from fem_eigopt.errors import InputError
from fem_eigopt.io import pictures as P
from fem_eigopt.io.isosurface import boundary_surface, density_isosurface
from fem_eigopt.io.modes import ModeShapes
from fem_eigopt.io.paraview import read_vtu_series
from fem_eigopt.plot import add_plot_parser, plot_command, plot_run, write_run_pictures
from fem_eigopt.io.snapshots import SnapshotRecorder, load_snapshots
from fem_eigopt.optimize.run import optimize
from fem_eigopt.problem.loading import load_problem

ROOT = Path(__file__).resolve().parents[1]
WIDTH = int(P.WIDTH_IN * P.DPI)


def _run(tmp_path_factory, name: str, params: dict):
    problem = load_problem(ROOT / "problems" / name, params)
    out = tmp_path_factory.mktemp(name.replace(".py", ""))
    result = optimize(problem, out_dir=out, max_eval=6, progress=False)
    ev = result.evaluator
    solved = ev.analyse(result.result.best_x[: ev.n_design])
    # a recorder of our own, snapshots every 2 evaluations (the final one is added below), in
    # place of the run loop's (tests/test_run_outputs.py checks those)
    shutil.rmtree(result.run_dir / "snapshots")
    (result.run_dir / "design.vtu.series").unlink()
    rec = SnapshotRecorder(result.run_dir, ev.model, every=2, n_modes=4)
    for k in range(1, 6):
        rec(k, np.clip(solved["rho"] * (0.6 + 0.08 * k), 0, 1), solved["modes"], beta=1.0)
    written = write_run_pictures(result.run_dir, problem, ev.model, solved["rho"], solved["modes"], result.history,
                                 recorder=rec, beta=ev.beta)
    return {"problem": problem, "result": result, "solved": solved, "model": ev.model, "written": written,
            "run_dir": result.run_dir}


@pytest.fixture(scope="module")
def beam(tmp_path_factory):
    return _run(tmp_path_factory, "beam.py", {"nx": 24, "ny": 4})


@pytest.fixture(scope="module")
def cant3d(tmp_path_factory):
    return _run(tmp_path_factory, "cantilever3d.py", {"nx": 10, "ny": 2, "nz": 2})


def _png(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.mark.parametrize("case", ["beam", "cant3d"])
def test_every_picture_exists_with_its_size(case, request):
    run = request.getfixturevalue(case)
    d = run["run_dir"]
    for name in ("design.png", "modes.png", "convergence.png", "design.gif", "mode1.gif", "design.vtu",
                 "design.vtu.series"):
        assert name in run["written"], name
        assert (d / name).stat().st_size > 0
    w, h = _png(d / "design.png")
    assert w == WIDTH and 250 <= h <= 14 * P.DPI
    w, h = _png(d / "modes.png")
    assert w == WIDTH and 300 <= h <= 14 * P.DPI
    assert _png(d / "convergence.png") == (WIDTH, int(9.0 * P.DPI))
    with Image.open(d / "mode1.gif") as im:
        assert im.n_frames == 16
    with Image.open(d / "design.gif") as im:
        assert im.n_frames == 4  # snapshots 1, 2, 4 and the final 6


def test_3d_isosurface_has_triangles_and_no_solid_path(cant3d, tmp_path):
    mesh = cant3d["problem"].mesh
    c = mesh.p[:, mesh.t].mean(axis=1)
    solid = np.where(c[2] < 0.1, 1.0, 1e-3)  # the lower half solid
    s = density_isosurface(mesh, solid)
    assert s.method == "marching_cubes" and s.n_triangles > 0
    assert s.vertices[:, 2].max() == pytest.approx(0.1, abs=1e-3)  # the surface at the solid top
    u = np.tile([0.0, 0.0, 1.0], (mesh.p.shape[1], 1))
    assert np.allclose(s.field(u), [0, 0, 1])  # interpolation weights sum to one
    tets = mesh.to_meshtet()
    st = density_isosurface(tets, np.where(tets.p[:, tets.t].mean(axis=1)[2] < 0.1, 1.0, 1e-3))
    assert st.method == "marching_tetrahedra" and st.n_triangles > 0
    grey = np.full(mesh.t.shape[1], 0.3)
    assert density_isosurface(mesh, grey).n_triangles == 0
    fig = P.design_figure(mesh, grey, "grey", model=cant3d["model"], problem=cant3d["problem"])
    texts = [t.get_text() for t in fig.texts]
    assert any("no solid yet" in t for t in texts)
    assert _png(P.save_figure_png(fig, tmp_path / "grey.png"))[0] == WIDTH
    shapes = ModeShapes.from_modes(cant3d["model"], cant3d["solved"]["modes"], 2)
    fig = P.mode_shapes_figure(mesh, shapes, grey, 2)
    assert "no solid yet" in fig.get_suptitle()
    assert boundary_surface(mesh).n_triangles == 2 * (2 * 10 * 2 + 2 * 10 * 2 + 2 * 2 * 2)


def test_2d_no_solid_note_and_shape_pictures(beam, tmp_path):
    mesh = beam["problem"].mesh
    fig = P.design_figure(mesh, np.full(mesh.t.shape[1], 0.3), "grey")
    assert any("no solid yet" in t.get_text() for t in fig.axes[0].texts)
    X0 = mesh.p
    X1 = X0 + np.array([[0.0], [0.1]]) * np.sin(np.pi * X0[0] / 8.0)
    assert _png(P.save_figure_png(P.shape_outline_figure(mesh, X0, X1, "shape"), tmp_path / "shape.png"))[0] == WIDTH
    shapes = ModeShapes.from_modes(beam["model"], beam["solved"]["modes"], 3)
    assert _png(P.save_figure_png(P.shape_modes_figure(mesh, X1, shapes, 3), tmp_path / "sm.png"))[0] == WIDTH


def test_mode_titles_give_hz_and_rad_per_s(beam):
    shapes = ModeShapes.from_modes(beam["model"], beam["solved"]["modes"], 4)
    fig = P.mode_shapes_figure(beam["problem"].mesh, shapes, beam["solved"]["rho"], 4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4
    for i, t in enumerate(titles):
        assert f"f = {shapes.frequencies_hz[i]:.4g} Hz" in t and f"ω = {shapes.omega[i]:.4g} rad/s" in t


def test_convergence_plots_the_physical_objective(beam):
    rows = beam["result"].history
    values, label, unit = P.objective_series(beam["problem"], rows)
    omega = np.array([[r["omega1"], r["omega2"]] for r in rows])
    assert np.allclose(values, omega.min(axis=1)) and unit == "rad/s"
    assert "min(ω1, ω2)" in label
    fig = P.convergence_figure(rows, problem=beam["problem"])
    assert fig.axes[0].get_ylabel().replace("\n", " ").startswith("objective: maximise min(ω1, ω2)")
    # β changes are marked
    rows2 = [dict(r, beta=1.0 if r["eval"] <= 3 else 2.0) for r in rows]
    fig = P.convergence_figure(rows2, problem=beam["problem"])
    assert any(t.get_text() == "β = 2" for t in fig.axes[0].texts)


@pytest.mark.parametrize("case", ["beam", "cant3d"])
def test_vtu_series_reads_back_in_order(case, request):
    run = request.getfixturevalue(case)
    d = run["run_dir"]
    doc = json.loads((d / "design.vtu.series").read_text())
    assert doc["file-series-version"] == "1.0"
    assert [e["time"] for e in doc["files"]] == [1, 2, 4, 6]
    assert set(doc["files"][0]) == {"name", "time"}
    n_elem = run["model"].n_elements
    freqs = run["solved"]["modes"].frequencies_hz
    for path, time in read_vtu_series(d / "design.vtu.series"):
        m = meshio.read(path)
        assert m.cell_data["density"][0].shape == (n_elem,)
        names = [k for k in m.point_data if k.startswith("mode ")]
        assert len(names) == 4 and all(m.point_data[k].shape == (m.points.shape[0], 3) for k in names)
    assert names[0] == f"mode 1 ({freqs[0]:.4g} Hz)"  # the last snapshot is the final design
    final = meshio.read(d / "design.vtu")
    assert np.allclose(final.cell_data["density"][0], run["solved"]["rho"])
    assert "mode_1" in final.point_data and f"mode 1 ({freqs[0]:.4g} Hz)" in final.point_data
    snaps = load_snapshots(d)
    assert [s["evaluation"] for s in snaps] == [1, 2, 4, 6]


def test_plot_run_finished_and_interrupted(beam, tmp_path):
    written = plot_run(beam["run_dir"])
    assert {"design.png", "modes.png", "convergence.png", "mode1.gif", "design.gif"} <= set(written)
    # an interrupted run: only design_best.npz, no history.csv
    d = tmp_path / "interrupted"
    d.mkdir()
    shutil.copy(beam["run_dir"] / "run.json", d / "run.json")
    with np.load(beam["run_dir"] / "design.npz") as z:
        np.savez(d / "design_best.npz", design=z["design"], densities=z["densities"], eigenvalues=z["eigenvalues"],
                 beta=z["beta"])
    written = plot_run(d, ("design", "modes", "history"))
    assert {"design.png", "modes.png"} <= set(written) and "convergence.png" not in written
    assert _png(d / "modes.png")[0] == WIDTH


def test_plot_command_errors_are_one_line(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_plot_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(InputError) as err:
        plot_command(parser.parse_args(["plot", str(tmp_path / "nope")]))
    assert "nope" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match="not a run directory"):
        plot_command(parser.parse_args(["plot", str(tmp_path)]))
    with pytest.raises(InputError, match="--what"):
        plot_command(parser.parse_args(["plot", str(tmp_path), "--what", "design,bogus"]))


@pytest.mark.parametrize("with_title", [True, False])
def test_blitted_animation_frames_equal_whole_redraws(with_title):
    """The animations draw their first frame whole and then only the artists that change
    (matplotlib blitting): every frame must be the picture a whole redraw of that state gives."""
    import functools

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    from fem_eigopt.io.animation import FRAME_DPI, _blitted_frames

    squares = [np.array([[i, j], [i + 1, j], [i + 1, j + 1], [i, j + 1]], dtype=float)
               for i in range(8) for j in range(2)]
    values = [np.random.default_rng(k).random(len(squares)) for k in range(3)]

    def build():
        fig = Figure(figsize=(4, 2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        coll = PolyCollection(squares, cmap="gray_r", edgecolors="face", linewidths=0.0)
        coll.set_clim(0, 1)
        ax.add_collection(coll)
        ax.set_xlim(-1, 9)
        ax.set_ylim(-1, 3)
        return fig, ax, coll

    def show(ax, coll, k):
        coll.set_array(values[k])
        if with_title:
            ax.set_title(f"frame {k} " + "x" * (3 - k), fontsize=10)

    fig, ax, coll = build()
    artists = [coll, ax.title] if with_title else [coll]
    frames = _blitted_frames(fig, ax, artists, [functools.partial(show, ax, coll, k) for k in range(3)])
    assert len({f.tobytes() for f in frames}) == 3
    for k, frame in enumerate(frames):
        fig2, ax2, coll2 = build()
        show(ax2, coll2, k)
        np.testing.assert_array_equal(frame, P.figure_rgb(fig2, FRAME_DPI))
