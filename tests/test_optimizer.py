"""Tests of the generic NLopt driver on analytic problems with known optima.

Run as a script (``python tests/test_optimizer.py``) to print the step-size table of
docs/design.md (evaluations until each analytic optimum is reached, NLopt against our MMA).
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from scipy.optimize import minimize as scipy_minimize

from fem_eigopt.errors import InputError
from fem_eigopt.optimize.driver import Evaluation, OptimizerSettings, minimize

# ----------------------------------------------------------------------------------------------
# problems


def analytic(**changes) -> OptimizerSettings:
    """Settings for the analytic problems: stop on a relative design change of 1e-6, budget 500.

    The defaults are those of a topology run (no ``xtol`` stop, a stop once ‖Δx‖∞ < 1e-6 for 5
    evaluations); the analytic optima are reached to a tighter relative accuracy with ``xtol_rel``,
    and the evaluation counts asserted here were measured with these settings.
    """
    base = {"algorithm": "LD_MMA", "max_eval": 500, "xtol_rel": 1e-6, "stagnation_tol": 1e-12, "stagnation_evals": 3}
    return OptimizerSettings(**{**base, **changes})


def beam_coefficients(n: int) -> np.ndarray:
    """Svanberg's cantilever: segment j of n contributes ((n-j+1)³ - (n-j)³)/x_j³ to the tip
    deflection; n = 5 gives 61, 37, 19, 7, 1 (Svanberg 1987, section 5)."""
    k = np.arange(n, 0, -1, dtype=float)
    return k**3 - (k - 1) ** 3


def beam(n: int = 5, cap: float = 1.0):
    """min 0.0624 Σx s.t. Σ c_j/x_j³ ≤ cap; returns evaluate, x*, f* (closed form: x_j ∝ c_j^¼)."""
    c = beam_coefficients(n)

    def evaluate(x):
        return Evaluation(
            f=0.0624 * x.sum(),
            grad=np.full(n, 0.0624),
            g=np.array([np.sum(c / x**3) / cap - 1.0]),
            jac=(-3.0 * c / x**4 / cap)[None, :],
        )

    # Lagrange: 0.0624 = 3 μ c_j / x_j⁴ → x_j = t c_j^¼, and the constraint is active
    q = c**0.25
    t = (q.sum() / cap) ** (1.0 / 3.0)
    x_star = t * q
    return evaluate, x_star, 0.0624 * x_star.sum()


def quadratic(n: int = 10):
    """min ½‖x − a‖² s.t. bᵀx ≤ d (active at the optimum): x* = a − (bᵀa − d)/‖b‖² b."""
    rng = np.random.default_rng(3)
    a = rng.uniform(0.5, 1.5, n)
    b = rng.uniform(0.5, 2.0, n)
    d = 0.5 * b @ a

    def evaluate(x):
        r = x - a
        return Evaluation(f=0.5 * r @ r, grad=r, g=np.array([b @ x - d]), jac=b[None, :])

    x_star = a - (b @ a - d) / (b @ b) * b
    return evaluate, x_star, 0.5 * np.sum((x_star - a) ** 2)


TRIANGLE = 0.5 * np.array([[np.cos(t), np.sin(t)] for t in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3)])


def max_min():
    """max_x min_j f_j(x), f_j = 1 − ‖x − p_j‖², p_j the vertices of a triangle of circumradius ½
    centred at 0: the optimum is x = 0, min f_j = 1 − ¼ = 0.75.

    Bound formulation with z = (x, β): minimise −β subject to β − f_j(x) ≤ 0.
    """

    def evaluate(z):
        x, beta = z[:2], z[2]
        d = x[None, :] - TRIANGLE  # (3, 2)
        fj = 1.0 - np.sum(d**2, axis=1)
        jac = np.zeros((3, 3))
        jac[:, :2] = 2.0 * d  # ∂(β − f_j)/∂x = 2 (x − p_j)
        jac[:, 2] = 1.0
        return Evaluation(f=-beta, grad=np.array([0.0, 0.0, -1.0]), g=beta - fj, jac=jac, info={"fj": fj})

    return evaluate, np.array([0.0, 0.0, 0.75]), -0.75


def counting(evaluate):
    """Wrap evaluate to count calls and remember the points."""
    points = []

    def wrapped(x):
        points.append(x.copy())
        return evaluate(x)

    return wrapped, points


# ----------------------------------------------------------------------------------------------
# optima


def test_beam_reference_agrees_with_slsqp():
    evaluate, x_star, f_star = beam()
    ref = scipy_minimize(
        lambda x: evaluate(x).f, np.full(5, 5.0), jac=lambda x: evaluate(x).grad, method="SLSQP",
        bounds=[(1e-3, 10.0)] * 5,
        constraints=[{"type": "ineq", "fun": lambda x: -evaluate(x).g, "jac": lambda x: -evaluate(x).jac}],
        options={"ftol": 1e-12, "maxiter": 200},
    )
    assert ref.success
    assert ref.fun == pytest.approx(f_star, rel=1e-7)
    np.testing.assert_allclose(ref.x, x_star, rtol=1e-4)
    # the numbers quoted by Svanberg (1987)
    assert f_star == pytest.approx(1.340, abs=5e-4)
    np.testing.assert_allclose(x_star, [6.016, 5.309, 4.494, 3.502, 2.153], atol=1e-3)


@pytest.mark.parametrize("algorithm", ["LD_MMA", "LD_CCSAQ"])
def test_beam_reaches_svanberg_optimum(algorithm):
    evaluate, x_star, f_star = beam()
    res = minimize(evaluate, np.full(5, 5.0), 1e-3, 10.0, analytic(algorithm=algorithm), 1)
    assert res.success, res.message
    assert res.status in ("XTOL_REACHED", "FTOL_REACHED", "STAGNATION")
    assert res.best_fun == pytest.approx(f_star, rel=1e-3)
    assert res.best_constraints[0] <= 1e-8
    np.testing.assert_allclose(res.best_x, x_star, rtol=1e-3)
    assert res.nfev == len(res.history) < 100


def test_quadratic_with_linear_constraint_hits_kkt_point():
    evaluate, x_star, f_star = quadratic()
    res = minimize(evaluate, np.zeros(10), -5.0, 5.0, analytic(xtol_rel=1e-8), 1)
    assert res.success, res.message
    assert res.best_fun == pytest.approx(f_star, rel=1e-4)
    np.testing.assert_allclose(res.best_x, x_star, atol=1e-4)


def test_max_min_bound_formulation():
    evaluate, z_star, f_star = max_min()
    z0 = np.array([1.0, 0.7, 0.0])
    z0[2] = evaluate(z0).g.max() * -1 + z0[2] - 0.1  # start feasible: β = min f_j − 0.1
    res = minimize(evaluate, z0, [-2, -2, -10], [2, 2, 10], analytic(xtol_rel=1e-8), 3)
    assert res.success, res.message
    assert -res.best_fun == pytest.approx(0.75, abs=1e-5)
    np.testing.assert_allclose(res.best_x, z_star, atol=1e-4)
    # at the max-min point all three f_j are equal (all constraints active)
    np.testing.assert_allclose(res.history[-1].info["fj"], 0.75, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# bookkeeping


def test_one_evaluation_serves_objective_and_constraints():
    import nlopt

    evaluate, _, _ = beam()
    wrapped, points = counting(evaluate)
    res = minimize(wrapped, np.full(5, 5.0), 1e-3, 10.0, analytic(max_eval=25), 1)
    assert res.status == "MAXEVAL_REACHED" and not res.success
    assert len(points) == res.nfev == len(res.history) == 25
    assert len({p.tobytes() for p in points}) == 25  # never the same point twice

    # what NLopt itself asks for on the same problem: objective and constraint at every point
    calls = {"f": 0, "g": 0}
    c = beam_coefficients(5)

    def f(x, grad):
        calls["f"] += 1
        grad[:] = 0.0624
        return 0.0624 * x.sum()

    def g(result, x, grad):
        calls["g"] += 1
        result[:] = np.sum(c / x**3) - 1
        grad[:] = -3 * c / x**4

    opt = nlopt.opt(nlopt.LD_MMA, 5)
    opt.set_lower_bounds(1e-3), opt.set_upper_bounds(10.0)
    opt.set_min_objective(f)
    opt.add_inequality_mconstraint(g, [1e-8])
    opt.set_maxeval(25)
    opt.optimize(np.full(5, 5.0))
    assert calls == {"f": 25, "g": 25}  # 50 callbacks, which our driver served with 25 evaluations


def test_history_records_and_best_point():
    evaluate, _, f_star = beam()
    res = minimize(evaluate, np.full(5, 5.0), 1e-3, 10.0, analytic(), 1)
    h = res.history
    assert [r.eval for r in h] == list(range(1, len(h) + 1))
    assert np.isnan(h[0].change) and h[0].f == pytest.approx(0.0624 * 25)
    assert all(r.change >= 0 for r in h[1:])
    assert all(b.time >= a.time for a, b in zip(h, h[1:]))
    feasible = [r.f for r in h if r.max_g <= 1e-8]
    assert res.best_fun == min(feasible)


# ----------------------------------------------------------------------------------------------
# step-size control and restarts


def test_nlopt_refuses_a_move_limit():
    """NLopt's MMA/CCSA have no move limit: ``move_limit`` is our MMA's, a fraction of each
    variable's range, and an NLopt algorithm refuses it rather than ignore it."""
    for algorithm in ("LD_MMA", "LD_CCSAQ"):
        with pytest.raises(InputError) as err:
            OptimizerSettings(algorithm=algorithm, move_limit=0.1)
        message = str(err.value)
        assert f"move_limit = 0.1 with algorithm = {algorithm!r}; allowed: None" in message
        assert "algorithm = 'MMA'" in message and "\n" not in message
    assert OptimizerSettings(algorithm="MMA", move_limit=0.1).move_limit == 0.1


def test_requested_restart_keeps_history_continuous_and_converges():
    evaluate, x_star, f_star = beam()
    restarts_at = {8, 20}

    def callback(record):
        return "restart" if record.eval in restarts_at else None

    res = minimize(evaluate, np.full(5, 5.0), 1e-3, 10.0, analytic(), 1, callback=callback)
    check_restarted_at_8_and_20(res)
    assert res.success
    assert res.best_fun == pytest.approx(f_star, rel=1e-3)


def check_restarted_at_8_and_20(res) -> None:
    """History of a run whose callback asked for restarts after evaluations 8 and 20 (also used by
    tests/test_mma.py): continuous numbering, three runs, each new run starting (re-evaluated) at
    the best point of the one before."""
    h = res.history
    assert [r.eval for r in h] == list(range(1, len(h) + 1))
    assert res.nrun == 3
    runs = [r.run for r in h]
    assert runs == sorted(runs) and set(runs) == {0, 1, 2}
    assert [r.eval for r in h if r.run > 0 and np.isnan(r.change)] == [9, 21]
    first_of_run1 = next(r for r in h if r.run == 1)
    best_run0 = min(r.f for r in h if r.run == 0 and r.max_g <= 1e-8)
    assert first_of_run1.f == pytest.approx(best_run0, rel=1e-14)


def test_stagnation_stops():
    evaluate, _, _ = beam()
    settings = analytic(xtol_rel=0.0, stagnation_tol=1e-3, stagnation_evals=2, max_eval=300)
    res = minimize(evaluate, np.full(5, 5.0), 1e-3, 10.0, settings, 1)
    assert res.status == "STAGNATION"
    assert all(r.change < 1e-3 for r in res.history[-2:])
    assert res.history[-3].change >= 1e-3


def test_should_stop():
    evaluate, _, _ = beam()
    res = minimize(evaluate, np.full(5, 5.0), 1e-3, 10.0, analytic(), 1, should_stop=lambda h: len(h) >= 4)
    assert res.status == "FORCED_STOP" and res.nfev == 4 and not res.success


# ----------------------------------------------------------------------------------------------
# graceful stop


def test_keyboard_interrupt_returns_best_of_the_first_six():
    evaluate, _, _ = beam()
    seen = []

    def interrupted(x):
        if len(seen) == 6:
            raise KeyboardInterrupt
        ev = evaluate(x)
        seen.append((x.copy(), ev))
        return ev

    res = minimize(interrupted, np.full(5, 5.0), 1e-3, 10.0, analytic(), 1)
    assert res.status == "INTERRUPTED" and not res.success
    assert res.nfev == 6
    feasible = [(ev.f, x) for x, ev in seen if ev.g.max() <= 1e-8]
    assert len(feasible) >= 2  # so "best" is a real choice
    f_best, x_best = min(feasible, key=lambda t: t[0])
    np.testing.assert_array_equal(res.best_x, x_best)
    assert res.best_fun == f_best


def test_sigterm_interrupts_and_handler_is_restored():
    evaluate, _, _ = beam()
    before = signal.getsignal(signal.SIGTERM)
    count = [0]

    def terminated(x):
        count[0] += 1
        if count[0] == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode, inside this call
        return evaluate(x)

    res = minimize(terminated, np.full(5, 5.0), 1e-3, 10.0, analytic(), 1)
    assert res.status == "INTERRUPTED" and "SIGTERM" in res.message
    assert res.nfev == 4  # the fifth evaluation was interrupted before it returned
    assert signal.getsignal(signal.SIGTERM) is before


def test_error_in_evaluate_propagates():
    def broken(x):
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        minimize(broken, np.ones(2), 0.0, 2.0)


# ----------------------------------------------------------------------------------------------
# input errors


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"algorithm": "LD_SLSQP"}, "algorithm = 'LD_SLSQP'; allowed: None, LD_MMA, LD_CCSAQ"),
        ({"max_eval": 0}, "max_eval = 0"),
        ({"max_eval": 2.5}, "max_eval = 2.5"),
        ({"xtol_rel": -1.0}, "xtol_rel = -1.0"),
        ({"ftol_rel": float("nan")}, "ftol_rel = nan"),
        ({"algorithm": "LD_MMA", "move_limit": 0.0}, "move_limit = 0.0 with algorithm = 'LD_MMA'"),
        ({"restart_step": -0.1}, "restart_step = -0.1"),
        ({"stagnation_evals": True}, "stagnation_evals = True"),
        ({"nlopt_params": {"verbosity": "loud"}}, "nlopt_params = {'verbosity': 'loud'}"),
    ],
)
def test_bad_settings_raise_input_error(kwargs, text):
    with pytest.raises(InputError) as err:
        OptimizerSettings(**kwargs)
    assert text in str(err.value) and "allowed" in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_problem_input_raises_input_error():
    evaluate, _, _ = beam()
    with pytest.raises(InputError, match=r"x0\[0\] = 11.0"):
        minimize(evaluate, np.full(5, 11.0), 1e-3, 10.0, n_constraints=1)
    with pytest.raises(InputError, match="lower has 2 entries"):
        minimize(evaluate, np.full(5, 5.0), [0, 0], 10.0, n_constraints=1)
    with pytest.raises(InputError, match=r"evaluate\(x\).g has 1 entries; allowed: n_constraints = 2"):
        minimize(evaluate, np.full(5, 5.0), 1e-3, 10.0, n_constraints=2)
    with pytest.raises(InputError, match="callback returned 'again'"):
        minimize(evaluate, np.full(5, 5.0), 1e-3, 10.0, n_constraints=1, callback=lambda r: "again")


# ----------------------------------------------------------------------------------------------
# measurement (not a test): python tests/test_optimizer.py


def evaluations_to_optimum(res, f_star, rel=1e-4, feas=1e-6):
    """First evaluation number whose f is within rel of f* and max g ≤ feas (None if never)."""
    for r in res.history:
        if r.max_g <= feas and abs(r.f - f_star) <= rel * abs(f_star):
            return r.eval
    return None


def _measure():  # pragma: no cover - prints the table for the module docstring
    cases = {
        "beam n=5": (beam(5), np.full(5, 5.0), 1e-3, 10.0, 1),
        "beam n=40": (beam(40), np.full(40, 50.0), 1e-3, 100.0, 1),
        "quadratic n=10": (quadratic(10), np.zeros(10), -5.0, 5.0, 1),
        "max-min n=3": (max_min(), np.array([1.0, 0.7, -1.2]), [-2, -2, -10], [2, 2, 10], 3),
    }
    variants = {"plain MMA": {}, "plain CCSAQ": {"algorithm": "LD_CCSAQ"}}
    for frac in (0.05, 0.1, 0.2, 0.5):  # our MMA: move_limit is a fraction of each range
        variants[f"our MMA move {frac:g}"] = {"algorithm": "MMA", "move_limit": frac}
    print(f"{'variant':28s}" + "".join(f"{k:>22s}" for k in cases))
    for name, kw in variants.items():
        row = f"{name:28s}"
        for (ev_fs, x0, lo, hi, m) in cases.values():
            evaluate, _, f_star = ev_fs
            s = OptimizerSettings(max_eval=300, xtol_rel=1e-10, stagnation_tol=0.0, **kw)
            res = minimize(evaluate, x0, lo, hi, s, m)
            k = evaluations_to_optimum(res, f_star)
            err = abs(res.best_fun - f_star) / abs(f_star)
            row += f"{('—' if k is None else str(k)):>6s} / {res.nfev:3d} {err:8.1e}"
        print(row)


if __name__ == "__main__":  # pragma: no cover
    _measure()


def test_nlopt_cycling_on_evaluated_points_ends_the_run():
    """NLopt asking again and again for points it already has must not loop forever."""
    import nlopt

    from fem_eigopt.optimize.driver import OptimizerSettings, _Driver

    def evaluate(x):
        return Evaluation(f=float(x @ x), grad=2 * x, g=np.zeros(0), jac=np.zeros((0, 2)))

    driver = _Driver(evaluate, 2, 0, OptimizerSettings(max_eval=50), None, None)
    x = np.array([0.3, 0.4])
    grad = np.zeros(2)
    assert driver.objective(x, grad) == pytest.approx(0.25)
    with pytest.raises(nlopt.ForcedStop):
        for _ in range(_Driver.MAX_REPEATS + 1):
            driver.objective(x, grad)
    assert driver.stop.reason == "STAGNATION"
    assert len(driver.history) == 1
