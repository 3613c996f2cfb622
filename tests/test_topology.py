"""Topology optimisation: the evaluator's gradients, the responses, and short runs of every problem file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fem_eigopt as fe
from fem_eigopt.optimize.evaluator import DesignEvaluator
from fem_eigopt.optimize.run import optimize
from fem_eigopt.problem.loading import load_problem
from fem_eigopt.sensitivity.gradcheck import check_evaluator

REPO = Path(__file__).resolve().parents[1]
#: shape designs: check-grad and coarse runs in tests/test_shape_design.py
SHAPE_PROBLEMS = {"bar_tuning.py", "bar_tuning_3d.py", "beam_profile.py", "bracket_hole.py"}
PROBLEMS = sorted(p.name for p in (REPO / "problems").glob("*.py") if p.name not in SHAPE_PROBLEMS)

# Coarse settings per problem file, small enough for a few seconds per run.
COARSE = {
    "beam.py": {"nx": "32", "ny": "4"},
    "bracket.py": {"nx": "20", "ny": "10"},
    "cantilever3d.py": {"nx": "8", "ny": "2", "nz": "2"},
    "gap.py": {"nx": "32", "ny": "4"},
    "mode_shape.py": {"nx": "32", "ny": "4"},
}


def coarse(name: str, **extra: str) -> fe.Problem:
    over = dict(COARSE.get(name, {}))
    over.update(extra)
    return load_problem(REPO / "problems" / name, over)


def perturbed_start(evaluator: DesignEvaluator, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x0, lower, upper = evaluator.start()
    rng = np.random.default_rng(seed)
    x = x0.copy()
    n = evaluator.n_design
    x[:n] = np.clip(x0[:n] + rng.uniform(-0.1, 0.1, n), 0.2, 0.95)
    return x, lower, upper


def test_every_problem_file_has_coarse_settings():
    assert set(PROBLEMS) <= set(COARSE), f"add coarse settings for {set(PROBLEMS) - set(COARSE)}"


@pytest.mark.parametrize("name", sorted(COARSE))
def test_check_grad_passes_on_every_problem_file(name):
    """Taylor rate 2 ± 0.2 (or exact linearity) and central differences for every response."""
    problem = coarse(name)
    evaluator = DesignEvaluator(problem)
    x, lower, upper = perturbed_start(evaluator)
    evaluator(x)
    names = [evaluator.objective.name] + evaluator.constraint_names
    checks = check_evaluator(evaluator, x, lower, upper, names, n_directions=1, seed=5)
    assert len(checks) == len(names)
    for c in checks:
        assert c.passed, (c.name, c.result.rate, c.result.remainders)
        if not c.linear:
            assert abs(c.result.rate - 2.0) <= 0.2
        assert c.relative_error < 1e-5, (c.name, c.result.directional_derivative, c.central_difference)


def test_check_grad_detects_a_wrong_gradient():
    """The check must fail when the gradient is wrong (a test that cannot fail is a bug)."""
    problem = coarse("beam.py")
    evaluator = DesignEvaluator(problem)
    x, lower, upper = perturbed_start(evaluator)
    evaluator(x)

    def wrong(xx):
        e = evaluator(xx)
        jac = e.jac.copy()
        jac[:, : evaluator.n_design] *= 1.01  # a 1 % error in the density part of the gradients
        return fe.Evaluation(e.f, e.grad, e.g, jac, e.info)

    names = ["objective"] + evaluator.constraint_names
    checks = check_evaluator(wrong, x, lower, upper, names, n_directions=1)
    bad = [c for c in checks if c.name.startswith("bound_mode")]
    assert len(bad) == 2
    for c in bad:
        assert not c.passed
        assert c.relative_error > 1e-3  # central differences see the 1 % error too
        assert c.result.rates[-1] < c.result.rates[0] < 2.0  # the remainder turns first order as h falls


def test_user_response_and_ks_and_target_gradients():
    """User-defined response, KS aggregate, target frequencies, keep-out band: Taylor tests."""
    base = coarse("beam.py")

    def ratio(lam, vec, rho):
        # (λ2/λ1 − 16)²: tune the first two modes to 1:4 in frequency
        r = lam[1] / lam[0]
        d = np.zeros_like(lam)
        d[0] = 2 * (r - 16) * (-lam[1] / lam[0] ** 2)
        d[1] = 2 * (r - 16) / lam[0]
        return (r - 16) ** 2, d, None, None

    variants = [
        fe.UserResponse(ratio, name="ratio", needs_modes=2),
        fe.MaxMinEigenvalues(n=3, method="ks", aggregation=20.0),
        fe.MaxMinEigenvalues(n=3, method="pnorm", aggregation=8.0),
        fe.TargetFrequencies({1: 15.0, 2: 50.0}),
        fe.MaxGap(lower_mode=1, kind="ratio"),
        fe.MaxEigenvalue(mode=fe.TrackedMode(2), quantity="frequency"),
    ]
    for objective in variants:
        problem = base.with_changes(objective=objective,
                                    constraints=[fe.VolumeConstraint(0.5), fe.KeepOutBand(20.0, 30.0, modes=(1, 2))])
        evaluator = DesignEvaluator(problem)
        x, lower, upper = perturbed_start(evaluator)
        evaluator(x)
        names = [evaluator.objective.name] + evaluator.constraint_names
        for c in check_evaluator(evaluator, x, lower, upper, names, n_directions=1, seed=2):
            assert c.passed, (objective.name, c.name, c.result.rate)
            assert c.relative_error < 1e-5, (objective.name, c.name, c.relative_error)


def test_bound_formulation_evaluation_structure():
    """Objective −β; one constraint β − λ_j/λ_ref per bound mode plus the volume constraint."""
    evaluator = DesignEvaluator(coarse("beam.py", n_bound="3", beta="0"))
    x0, lower, upper = evaluator.start()
    e = evaluator(x0)
    assert evaluator.n_bounds == 1 and x0.size == evaluator.n_design + 1
    assert e.f == pytest.approx(-x0[-1])
    assert evaluator.constraint_names == ["bound_mode1", "bound_mode2", "bound_mode3", "volume", "volume_min"]
    lam = e.info["eigenvalues"]
    np.testing.assert_allclose(e.g[:3], x0[-1] - lam[:3] / lam[0], rtol=1e-12)
    assert e.g[3] == pytest.approx(-1e-6, rel=1e-6)  # starts just inside the volume bound
    assert e.g[4] == pytest.approx(1.0 - 0.5 * (1 - 1e-6) / (0.999 * 0.5), rel=1e-12)  # floor: 99.9 % of it
    assert e.info["volume_fraction"] == pytest.approx(0.5 * (1 - 1e-6), rel=1e-9)
    assert evaluator(x0) is e  # cached on x: one evaluation serves objective and constraints


def test_passive_solid_elements_stay_solid():
    evaluator = DesignEvaluator(coarse("bracket.py"))
    rho = evaluator.chain.forward(evaluator.initial_design() * 0 + 0.3)
    solid = evaluator.chain.design_map.solid
    assert solid.sum() > 0
    np.testing.assert_allclose(rho[solid], 1.0)
    assert evaluator.n_design == evaluator.model.n_elements - solid.sum()


# Regression numbers of short coarse runs with the default optimiser (our MMA for density
# designs; obtained once with this code and pardiso). They guard the whole pipeline: problem
# file → evaluator → optimiser → summary. The physics is checked by the Taylor tests above and
# test_theory.py. Entries: evaluations, summary key, index into it, relative tolerance of the
# final value. MMA rescales each variable's asymptotes by the sign of its last two steps, which
# can amplify rounding-level differences between linear-algebra libraries; with NLopt's MMA the
# beam's ω1 after 12 evaluations differed by 3.5 % between two library versions, hence 5 % for
# the beam's final value, and for every file the objective at the 3rd evaluation, before any
# such amplification, to 1e-6.
SHORT_RUNS = {
    "beam.py": (12, "omega_final", 0, 5e-2),
    "bracket.py": (12, "volume_fraction", None, 1e-4),
    "cantilever3d.py": (8, "omega_final", 0, 1e-4),
    "gap.py": (12, "omega_final", 1, 1e-4),
    "mode_shape.py": (10, "objective", None, 1e-4),
}


@pytest.mark.parametrize("name", sorted(SHORT_RUNS))
def test_short_run_of_every_problem_file(name, tmp_path):
    n_eval, key, index, rel = SHORT_RUNS[name]
    run = optimize(coarse(name), out_dir=tmp_path, max_eval=n_eval, progress=False)
    s = run.summary
    assert s["evaluations"] == n_eval
    assert s["status"] == "MAXEVAL_REACHED"
    for k in ("problem", "status", "objective", "evaluations", "omega_initial", "omega_final",
              "frequencies_hz_initial", "frequencies_hz_final", "volume_fraction", "wall_time_s"):
        assert k in s
    files = {p.name for p in run.run_dir.iterdir()}
    assert {"summary.json", "run.json", "history.csv", "design.npz", "design.png", "convergence.png",
            "design.vtu"} <= files
    assert not any(f.endswith(".tmp") for f in files)
    on_disk = json.loads((run.run_dir / "summary.json").read_text())
    assert on_disk["omega_final"] == pytest.approx(s["omega_final"])
    np.testing.assert_allclose(np.asarray(s["frequencies_hz_final"]) * 2 * np.pi, s["omega_final"], rtol=1e-12)
    value = s[key] if index is None else s[key][index]
    assert value == pytest.approx(REFERENCE[name], rel=rel)
    history = (run.run_dir / "history.csv").read_text().splitlines()
    third = dict(zip(history[0].split(","), history[3].split(",")))
    assert float(third["eval"]) == 3
    assert float(third["f"]) == pytest.approx(OBJECTIVE_AT_THIRD_EVALUATION[name], rel=1e-6)


OBJECTIVE_AT_THIRD_EVALUATION: dict[str, float] = {
    "beam.py": -0.9787270912,  # with the beam's erosion: the eroded bounds hold b lower
    "bracket.py": 0.9014310637052331,
    "cantilever3d.py": -1.0791000000000002,
    "gap.py": -13.48748575311837,
    "mode_shape.py": 0.5700067863443495,
}

REFERENCE: dict[str, float] = {
    "beam.py": 85.24758690983468,
    "bracket.py": 0.45787085037878,
    "cantilever3d.py": 382.9244115565383,
    "gap.py": 280.6954865337182,
    "mode_shape.py": 0.7552317625920005,
}
