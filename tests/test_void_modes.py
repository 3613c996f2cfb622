"""Local modes of the void elements: found, reported, and kept apart from the structure's modes.

* ``void_fraction`` (global mass matrices of the void part) against the element-by-element
  kinetic energies of a dense eigensolver's modes; 0 for a solid structure, 1 for an all-void one.
* A run's ``summary.json`` lists them (``void_modes``) and the printed table marks them.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg as sla

from fem_eigopt.cli import summary_text
from fem_eigopt.fem.assembly import build_model
from fem_eigopt.optimize.run import optimize
from fem_eigopt.problem.loading import load_problem
from fem_eigopt.responses.base import void_fraction
from fem_eigopt.sensitivity.eigenvalues import element_energies

REPO = Path(__file__).resolve().parents[1]


def _modes(model, rho, mass_scale, k=8):
    lam, vec = sla.eigh(model.stiffness(rho**3).toarray(), model.mass(mass_scale).toarray(),
                        subset_by_index=[0, k - 1])
    return lam, vec


def test_void_fraction_matches_element_energies_and_the_limits():
    problem = load_problem(REPO / "problems" / "beam.py", {"nx": "16", "ny": "4", "supports": "CC"})
    model = build_model(problem)
    centroids_x = np.repeat(np.arange(16) + 0.5, 4) * 0.5  # elements x-major on fe.rectangle
    rho = np.where(centroids_x < 4.0, 1.0, 0.09)  # the right half a light, weak "void"
    mass_scale, _ = problem.design.mass(rho)
    _, vectors = _modes(model, rho, mass_scale)
    fractions = void_fraction(model, vectors, rho, mass_scale)
    _, eM = element_energies(model, vectors)
    kinetic = eM * mass_scale[:, None]
    np.testing.assert_allclose(fractions, kinetic[rho < 0.1].sum(0) / kinetic.sum(0), rtol=1e-10, atol=1e-12)
    assert fractions.max() > 0.5 and fractions.min() < 0.5  # both kinds among the first 8 modes
    solid = np.ones_like(rho)
    assert np.all(void_fraction(model, _modes(model, solid, solid)[1], solid, solid) == 0.0)
    light = np.full_like(rho, 0.05)
    scale, _ = problem.design.mass(light)
    np.testing.assert_allclose(void_fraction(model, _modes(model, light, scale)[1], light, scale), 1.0, rtol=1e-12)


def test_a_run_lists_its_void_modes_and_the_table_marks_them():
    problem = load_problem(REPO / "problems" / "beam.py", {"nx": "32", "ny": "4", "max_eval": "8"})
    run = optimize(problem, out_dir=None, progress=False)
    s = run.summary
    rho = run.densities
    mass_scale, _ = problem.design.mass(rho)
    model = build_model(problem)
    fractions = void_fraction(model, _modes(model, rho, mass_scale, k=len(s["omega_final"]))[1], rho, mass_scale)
    assert s["void_modes"] == [i + 1 for i in np.flatnonzero(fractions > 0.5)]
    marked = dict(s, void_modes=[3])
    rows = summary_text(marked, None).splitlines()
    assert rows[5].endswith("  void") and not rows[4].endswith("void")  # header on row 2: mode 3 on row 5
    assert rows[-1].startswith("void: a local mode of the void elements")
    assert "void" not in summary_text(dict(s, void_modes=[]), None)


@pytest.mark.parametrize("void", [set(), {2}])
def test_modes_picture_titles_name_the_void_modes(void, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import fem_eigopt.io.pictures as P
    from fem_eigopt.io import snapshots
    from fem_eigopt.io.modes import ModeShapes

    titles = []
    monkeypatch.setattr(P, "save_figure_png", lambda fig, path: titles.extend(a.get_title() for a in fig.axes))
    problem = load_problem(REPO / "problems" / "beam.py", {"nx": "16", "ny": "4"})
    model = build_model(problem)
    rho = np.ones(model.n_elements)
    lam, vec = _modes(model, rho, rho, k=3)
    shapes = ModeShapes.from_modes(model, SimpleNamespace(eigenvalues=lam, vectors=vec))
    snapshots._modes_png(tmp_path / "modes.png", problem, model, rho, shapes, 3, None, None, void)
    mode_titles = [t for t in titles if t.startswith("mode ")]
    assert len(mode_titles) == 3
    assert [("local mode of the void" in t) for t in mode_titles] == [i + 1 in void for i in range(3)]
