"""Whether a density design's solid part holds together between its supports.

* ``solid_pieces`` on hand-made patterns whose pieces are counted by eye: elements sharing an
  edge or only a corner (a diagonal member's staircase) join, a gap of one element does not;
  2D quads and 3D hexahedra.
* ``design_connectivity`` on the CC beam: a solid beam is one piece joining both clamps, a void
  strip at mid-span leaves two cantilevers (supports not joined, with a warning), an island is
  floating material in its volume share, a support in void is not joined.
* A run's ``summary.json`` reports the three numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import skfem

from fem_eigopt.design.density import solid_pieces
from fem_eigopt.fem.assembly import build_model
from fem_eigopt.optimize.run import design_connectivity, optimize
from fem_eigopt.problem.loading import load_problem

REPO = Path(__file__).resolve().parents[1]


def _grid(nx: int, ny: int) -> tuple[skfem.MeshQuad, np.ndarray]:
    mesh = skfem.MeshQuad.init_tensor(np.arange(nx + 1.0), np.arange(ny + 1.0))
    c = mesh.p[:, mesh.t].mean(axis=1)
    return mesh, np.floor(c).astype(int)  # (column, row) of every element


@pytest.mark.parametrize("cells, n", [
    ([], 0),
    ([(0, 0)], 1),
    ([(0, 0), (1, 0), (1, 1)], 1),          # an L through edges
    ([(0, 0), (1, 1), (2, 2)], 1),          # a diagonal staircase: corners shared
    ([(0, 0), (2, 0)], 2),                  # one element of void between
    ([(0, 0), (3, 0), (3, 1), (0, 2)], 3),
])
def test_solid_pieces_counts_edge_joined_elements(cells, n):
    mesh, ij = _grid(4, 3)
    rho = np.full(ij.shape[1], 0.2)
    for col, row in cells:
        rho[(ij[0] == col) & (ij[1] == row)] = 0.9
    labels, count = solid_pieces(mesh, rho)
    assert count == n
    assert np.all(labels[rho <= 0.5] == -1) and sorted(set(labels[rho > 0.5])) == list(range(n))
    if cells == [(0, 0), (1, 0), (1, 1)]:
        assert len(set(labels[rho > 0.5])) == 1


def test_solid_pieces_in_3d():
    mesh = skfem.MeshHex.init_tensor(np.arange(4.0), np.arange(3.0), np.arange(2.0))
    c = np.floor(mesh.p[:, mesh.t].mean(axis=1))
    diagonal = (c[0] == c[1])                             # (0,0) and (1,1): an edge in common
    assert solid_pieces(mesh, diagonal.astype(float))[1] == 1
    apart = (c[1] == 0) & (c[0] != 1)                     # (0,0) and (2,0): void between
    assert solid_pieces(mesh, apart.astype(float))[1] == 2


def _beam(supports="CC"):
    problem = load_problem(REPO / "problems" / "beam.py", {"nx": "16", "ny": "4", "supports": supports})
    model = build_model(problem)
    x = model.basis.mesh.p[:, model.basis.mesh.t].mean(axis=1)
    return model, x, np.full(model.n_elements, 0.5 * 0.25)


def test_cc_beam_joined_split_floating_and_unsupported(caplog):
    model, c, volumes = _beam()
    solid = np.ones(model.n_elements)
    assert design_connectivity(model, solid, volumes) == {"solid_pieces": 1, "supports_joined": True,
                                                          "floating_solid_fraction": 0.0}
    split = np.where(np.abs(c[0] - 4.0) < 0.5, 1e-3, 1.0)  # two elements of void at mid-span
    with caplog.at_level(logging.WARNING):
        out = design_connectivity(model, split, volumes)
    assert out == {"solid_pieces": 2, "supports_joined": False, "floating_solid_fraction": 0.0}
    assert "does not join the supports" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        design_connectivity(model, split, volumes, warn=False)
    assert caplog.text == ""
    island = split.copy()
    island[np.abs(c[0] - 1.0) < 0.5] = 1e-3  # cut 1.5 < x < 3.5 off the left clamp: an island
    out = design_connectivity(model, island, volumes)
    floating = (c[0] > 1.5) & (c[0] < 3.5)
    assert out["solid_pieces"] == 3 and out["supports_joined"] is False
    assert out["floating_solid_fraction"] == pytest.approx(floating.sum() / (island > 0.5).sum(), rel=1e-12)
    unsupported = np.where(c[0] > 7.5, 1e-3, 1.0)  # the right clamp in void
    assert design_connectivity(model, unsupported, volumes)["supports_joined"] is False


def test_run_summary_reports_connectivity():
    problem = load_problem(REPO / "problems" / "beam.py", {"nx": "32", "ny": "4", "max_eval": "6"})
    s = optimize(problem, out_dir=None, progress=False).summary
    assert {"solid_pieces", "supports_joined", "floating_solid_fraction"} <= set(s)
    assert isinstance(s["supports_joined"], bool) and 0.0 <= s["floating_solid_fraction"] <= 1.0


def test_the_printed_summary_says_when_the_design_falls_apart():
    from fem_eigopt.cli import summary_text

    base = {"problem": "beam", "status": "MAXEVAL_REACHED", "success": True, "evaluations": 6, "wall_time_s": 1.0,
            "message": "", "objective_name": "f", "objective": -1.0, "volume_fraction": 0.5, "beta": 1.0,
            "omega_initial": [1.0], "omega_final": [2.0], "frequencies_hz_final": [0.3]}
    joined = summary_text(dict(base, solid_pieces=1, supports_joined=True, floating_solid_fraction=0.0,
                               grey_fraction=0.01), None)
    assert "join" not in joined and "floats" not in joined
    assert ", volume fraction 0.5000, grey 1.0 %, β 1" in joined.splitlines()[1]
    assert "grey" not in summary_text(base, None)  # no grey fraction: a shape design
    grey = summary_text(dict(base, solid_pieces=3, supports_joined=False, floating_solid_fraction=0.25,
                             grey_fraction=0.3), None)
    assert "join" not in grey and "floats" not in grey  # a grey design's solid part is noise
    apart = summary_text(dict(base, solid_pieces=3, supports_joined=False, floating_solid_fraction=0.25,
                              grey_fraction=0.01), None)
    assert apart.splitlines()[-2:] == ["the solid design (ρ̄ > 0.5, 3 piece(s)) does not join the supports",
                                       "25.0 % of the solid material floats (pieces that touch no support)"]
