"""The robust formulation's eroded realisation (``DensityDesign.erosion``).

* Its constraint rows are those of the design projected at η + Δ, checked against a dense
  generalised eigensolver on that design built independently (filter and projection by hand).
* Every response of an eroded beam, the eroded rows included: Taylor rate 2 ± 0.2 and central
  differences.
* A run with erosion stopped and resumed ends bit for bit as the uninterrupted run (the eroded
  realisation's state is in the checkpoint).
* Bad settings: one line naming the setting, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg as sla

import fem_eigopt as fe
from fem_eigopt.optimize.evaluator import DesignEvaluator
from fem_eigopt.optimize.run import optimize, resume
from fem_eigopt.problem.loading import load_problem
from fem_eigopt.sensitivity.gradcheck import check_evaluator

REPO = Path(__file__).resolve().parents[1]
COARSE = {"nx": "16", "ny": "4", "supports": "CC", "beta": "4.0", "erosion": "0.1", "symmetry": ""}


def _perturbed(ev: DesignEvaluator, x0: np.ndarray, seed: int = 2) -> np.ndarray:
    x = x0.copy()
    x[: ev.n_design] = np.clip(x0[: ev.n_design] + 0.3 * np.random.default_rng(seed).standard_normal(ev.n_design),
                               0.05, 0.95)
    return x


def test_eroded_rows_are_the_bounds_of_the_design_projected_at_eta_plus_delta():
    problem = load_problem(REPO / "problems" / "beam.py", COARSE)
    ev = DesignEvaluator(problem)
    x0, _, _ = ev.start()
    x = _perturbed(ev, x0)
    e = ev(x)
    names = ev.constraint_names
    assert names == ["bound_mode1", "bound_mode2", "volume", "volume_min",
                     "eroded_bound_mode1", "eroded_bound_mode2"]
    # the eroded design by hand: density filter weights max(0, r − distance), tanh projection at
    # η = 0.6 and β = 4, floor x_min; then K, M and a dense generalised eigensolver
    mesh, z = problem.mesh, x[: ev.n_design]
    c = mesh.p[:, mesh.t].mean(axis=1)
    r = 1.5 * np.sqrt(8.0 / 16 * 1.0 / 4)  # 1.5 × the mean element size (equal volumes: no weighting)
    w = np.maximum(0.0, r - np.linalg.norm(c[:, :, None] - c[:, None, :], axis=0))
    filtered = (w @ z) / w.sum(axis=1)
    beta, eta = 4.0, 0.6
    projected = (np.tanh(beta * eta) + np.tanh(beta * (filtered - eta))) / (np.tanh(beta * eta) + np.tanh(beta * (1 - eta)))
    rho = 1e-3 + (1 - 1e-3) * projected
    mass = np.where(rho > 0.1, rho, 0.1 * (rho / 0.1) ** 6)  # the beam's two-range mass law
    lam = sla.eigh(ev.model.stiffness(rho**3).toarray(), ev.model.mass(mass).toarray(), eigvals_only=True)[:2]
    b, lam_ref = x[ev.n_design], ev.objective._ref
    np.testing.assert_allclose(e.g[4:], b - lam / lam_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(e.info["eroded_omega"][:2], np.sqrt(lam), rtol=1e-9)
    # thinner members: the eroded design's fundamental eigenvalue differs from the design's
    assert abs(e.g[4] - e.g[0]) > 1e-3


def test_eroded_beam_gradients_pass_taylor_and_central_differences():
    problem = load_problem(REPO / "problems" / "beam.py", COARSE)
    ev = DesignEvaluator(problem)
    x0, lower, upper = ev.start()
    x = _perturbed(ev, x0, seed=5)
    ev(x)
    checks = check_evaluator(ev, x, lower, upper, ["objective"] + ev.constraint_names, n_directions=2, h0=1e-2)
    assert len(checks) == 2 * 7
    for c in checks:
        assert c.passed, (c.name, c.result)
        assert c.relative_error < 1e-5 or c.linear, (c.name, c.relative_error)


def test_run_with_erosion_resumes_bitwise(tmp_path, monkeypatch):
    import fem_eigopt.optimize.run as run_module
    monkeypatch.setattr(run_module, "write_run_pictures", lambda *args, **kwargs: {})
    params = {"nx": "32", "ny": "4", "max_eval": "12", "erosion": "0.1", "beta": "4.0"}
    problem = load_problem(REPO / "problems" / "beam.py", params)
    reference = optimize(problem, out_dir=None, progress=False)

    def stop(history):
        if len(history) >= 7:
            raise KeyboardInterrupt

    run = optimize(problem, out_dir=tmp_path, progress=False, should_stop=stop)
    assert run.summary["status"] == "INTERRUPTED"
    final = resume(run.run_dir, progress=False)
    for key in ("evaluations", "objective", "omega_final", "volume_fraction", "beta"):
        assert np.array_equal(np.asarray(final.summary[key]), np.asarray(reference.summary[key])), key
    assert np.array_equal(final.densities, reference.densities)
    eroded = final.summary["eroded_omega_final"]
    assert len(eroded) == len(final.summary["omega_final"]) and all(w > 0 for w in eroded)
    assert eroded[0] != pytest.approx(final.summary["omega_final"][0], rel=1e-3)  # another design


@pytest.mark.parametrize("kwargs, words", [
    ({"erosion": 0.5, "projection_beta": 1.0}, "design.erosion = 0.5; allowed: 0 (off) or a number with 0 < erosion < min(eta, 1 - eta) = 0.5"),
    ({"erosion": -0.1, "projection_beta": 1.0}, "design.erosion = -0.1; allowed"),
    ({"erosion": 0.1}, "design.erosion = 0.1 with projection_beta = 0.0; allowed: erosion with projection_beta > 0"),
])
def test_bad_erosion_is_one_line(kwargs, words):
    with pytest.raises(fe.InputError) as err:
        fe.DensityDesign(**kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_erosion_with_nothing_for_the_eroded_design_to_meet_is_refused():
    problem = load_problem(REPO / "problems" / "beam.py", COARSE)
    problem = replace(problem, objective=fe.MaxEigenvalue(mode=1))
    with pytest.raises(fe.InputError, match=r"design.erosion = 0.1 with objective MaxEigenvalue and no "
                                            r"eigenvalue constraint; allowed: erosion with a bound objective"):
        DesignEvaluator(problem)
