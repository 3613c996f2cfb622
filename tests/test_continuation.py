"""β continuation safeguards: bound variables reset at restarts, the restart step, the volume floor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import fem_eigopt as fe
from fem_eigopt.optimize.driver import OptimizerSettings, minimize
from fem_eigopt.optimize.evaluator import DesignEvaluator
from fem_eigopt.problem.loading import load_problem

REPO = Path(__file__).resolve().parents[1]


def beam(**extra: str) -> fe.Problem:
    return load_problem(REPO / "problems" / "beam.py", {"nx": "32", "ny": "4", **extra})


def test_restart_point_puts_the_bound_variable_just_below_the_lowest_eigenvalue():
    evaluator = DesignEvaluator(beam(beta="0"))
    x0, lower, upper = evaluator.start()
    x = x0.copy()
    x[-1] = 40.0  # far above min(λ1, λ2)/λ_ref: every bound constraint violated
    assert np.max(evaluator(x).g[:2]) > 1.0
    y = evaluator.restart_point(x)
    np.testing.assert_array_equal(y[:-1], x[:-1])  # densities untouched
    g = evaluator(y).g
    assert np.max(g[:2]) == pytest.approx(-0.001 * y[-1] / 0.999, rel=1e-9)  # 0.1 % inside, binding mode


def test_gap_restart_bounds_are_feasible():
    problem = load_problem(REPO / "problems" / "gap.py", {"nx": "32", "ny": "4"})
    evaluator = DesignEvaluator(problem)
    x0, _, _ = evaluator.start()
    x = x0.copy()
    x[evaluator.n_design:] = [0.1, 40.0]
    y = evaluator.restart_point(x)
    e = evaluator(y)
    bound_rows = [i for i, n in enumerate(evaluator.constraint_names) if n.startswith("gap_")]
    assert bound_rows and np.max(e.g[bound_rows]) < 0


def test_volume_floor_values_and_gradient():
    problem = beam()
    problem = replace(problem, constraints=[fe.VolumeConstraint(0.5, min_fraction=0.45)])
    evaluator = DesignEvaluator(problem)
    x0, _, _ = evaluator.start()
    e = evaluator(x0)
    names = evaluator.constraint_names
    i_max, i_min = names.index("volume"), names.index("volume_min")
    vf = e.info["volume_fraction"]
    assert e.g[i_max] == pytest.approx(vf / 0.5 - 1.0, rel=1e-12)
    assert e.g[i_min] == pytest.approx(1.0 - vf / 0.45, rel=1e-12)
    np.testing.assert_allclose(e.jac[i_min], -e.jac[i_max] * 0.5 / 0.45, rtol=1e-12)
    with pytest.raises(fe.InputError, match="min_fraction"):
        fe.VolumeConstraint(0.5, min_fraction=0.6)


def test_requested_restart_uses_on_restart_and_restart_step():
    """A quadratic bowl: after a requested restart the run starts from on_restart(best point), and
    restart_step caps NLopt's first move of the new run."""
    target = np.array([0.8, 0.2, 0.6])
    evaluations: list[np.ndarray] = []

    def evaluate(x):
        evaluations.append(x.copy())
        r = x - target
        return fe.Evaluation(f=float(r @ r), grad=2 * r, g=np.zeros(0), jac=np.zeros((0, 3)))

    starts = []

    def on_restart(x):
        starts.append(x.copy())
        return np.full(3, 0.5)

    asked = {"done": False}

    def callback(record):
        if record.eval == 3 and not asked["done"]:
            asked["done"] = True
            return "restart"
        return None

    settings = OptimizerSettings(algorithm="LD_MMA", max_eval=8, xtol_rel=0.0, restart_step=0.01)
    minimize(evaluate, np.full(3, 0.1), 0.0, 1.0, settings, callback=callback, on_restart=on_restart)
    assert len(starts) == 1
    np.testing.assert_array_equal(evaluations[3], np.full(3, 0.5))  # the new run starts where on_restart said
    assert np.max(np.abs(evaluations[4] - evaluations[3])) <= 0.9 * 0.01 + 1e-12  # first step ≤ 0.9 σ


def test_initial_steps_scale_the_bound_variable_by_its_value():
    evaluator = DesignEvaluator(beam())
    x0, lower, upper = evaluator.start()
    x = x0.copy()
    x[-1] = 6.0
    steps = evaluator.initial_steps(x, None)
    np.testing.assert_allclose(steps[:-1], 0.5 * (1 - 1e-3))
    assert steps[-1] == pytest.approx(0.3)
    assert evaluator.initial_steps(x, 0.1)[0] == 0.1
    x[-1] = 0.0
    assert evaluator.initial_steps(x, None)[-1] == 0.01


def test_restart_point_brings_the_projected_volume_back_inside_its_limit():
    evaluator = DesignEvaluator(beam(beta="1"))
    x0, lower, upper = evaluator.start()
    n = evaluator.n_design
    x = x0.copy()
    # a design whose projection at a sharper β holds more than 50 % material
    x[:n] = np.where(np.arange(n) % 3 == 0, 0.3, 0.62)
    evaluator.set_beta(8.0)
    vf = evaluator.chain.volume_fraction(evaluator.chain.forward(x[:n]))[0]
    assert vf > 0.5
    y = evaluator.restart_point(x)
    e = evaluator(y)
    assert e.info["volume_fraction"] == pytest.approx(0.5, abs=1e-5)
    assert e.info["volume_fraction"] <= 0.5
    shift = x[:n] - y[:n]
    assert np.ptp(shift[(y[:n] > 1e-3) & (x[:n] < 1)]) < 1e-12  # one uniform shift
    assert np.max(e.g) <= 0  # every constraint satisfied at the restart point


def test_restart_point_restores_a_volume_floor():
    evaluator = DesignEvaluator(beam(beta="0"))
    x0, lower, upper = evaluator.start()
    n = evaluator.n_design
    x = x0.copy()
    x[:n] = 0.4  # below the floor at 99.9 % of 0.5
    y = evaluator.restart_point(x)
    e = evaluator(y)
    assert 0.4995 <= e.info["volume_fraction"] <= 0.4995 * (1 + 1e-5)
    assert np.max(e.g) <= 0

