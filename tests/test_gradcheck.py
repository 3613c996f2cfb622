"""fem_eigopt.sensitivity.gradcheck: the Taylor test's judgement of the asymptotic rate."""

from __future__ import annotations

import numpy as np

from fem_eigopt.optimize.driver import Evaluation
from fem_eigopt.sensitivity.gradcheck import check_evaluator


def test_check_evaluator_halves_further_until_the_asymptotic_rate_shows():
    """f(x) = 1e-6 x² + x³ at x = 0 along d = 1: at h ≥ 1e-6 the cubic dominates (rate 3); the
    halving must continue into the quadratic regime. A wrong gradient stays at rate 1 and fails."""
    def make(grad_error: float):
        def evaluate(x):
            t = float(x[0])
            return Evaluation(f=1e-3 * t**2 + t**3, grad=np.array([2e-3 * t + 3 * t**2 + grad_error]),
                              g=np.zeros(0), jac=np.zeros((0, 1)))
        return evaluate

    x, lo, hi = np.array([0.0]), np.array([-1.0]), np.array([1.0])
    good = check_evaluator(make(0.0), x, lo, hi, ["f"], n_directions=1, h0=1e-2, max_extra_steps=12)[0]
    assert good.passed and abs(good.result.rate - 2) <= 0.2
    assert good.result.steps.size > 5  # it had to go below the first five steps
    short = check_evaluator(make(0.0), x, lo, hi, ["f"], n_directions=1, h0=1e-2, max_extra_steps=0)[0]
    assert not short.passed
    wrong = check_evaluator(make(1e-4), x, lo, hi, ["f"], n_directions=1, h0=1e-2, max_extra_steps=12)[0]
    assert not wrong.passed and abs(wrong.result.rate - 1) < 0.2
