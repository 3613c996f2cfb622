"""Gradient verification: Taylor remainder tests and central differences.

For a smooth f and a correct gradient g, the first-order Taylor remainder

    r(h) = | f(x + h d) - f(x) - h gᵀd |

falls as h²; with a wrong gradient it falls only as h. :func:`taylor_test` evaluates r at a
geometric sequence of steps and fits the observed rate log(r_{i+1}/r_i) / log(h_{i+1}/h_i).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["TaylorResult", "taylor_test", "central_difference"]


@dataclass
class TaylorResult:
    """Outcome of a Taylor test along one direction.

    Attributes
    ----------
    steps : ndarray (n,)
        Step sizes h.
    remainders : ndarray (n,)
        |f(x+hd) - f(x) - h gᵀd|.
    rates : ndarray (n-1,)
        Observed convergence rate between consecutive steps.
    rate : float
        Least-squares slope of log r against log h over the steps whose remainders are above the
        round-off floor (the number that should be 2).
    directional_derivative : float
        gᵀd.
    """

    steps: np.ndarray
    remainders: np.ndarray
    rates: np.ndarray
    rate: float
    directional_derivative: float

    def passed(self, expected: float = 2.0, tol: float = 0.2) -> bool:
        """Whether the fitted rate is ``expected ± tol``."""
        return bool(abs(self.rate - expected) <= tol)


def taylor_test(
    f: Callable[[np.ndarray], float],
    gradient: np.ndarray,
    x: np.ndarray,
    direction: np.ndarray,
    h0: float = 1e-2,
    n_steps: int = 5,
    factor: float = 0.5,
    f0: float | None = None,
    floor: float | None = None,
) -> TaylorResult:
    """Taylor remainder test of ``gradient`` (the gradient of ``f`` at ``x``) along ``direction``.

    Parameters
    ----------
    f : callable
        Scalar function of an array shaped like ``x``.
    gradient : ndarray
        Claimed gradient at ``x`` (same shape as ``x``).
    x, direction : ndarray
        Point and direction (same shape). Scale ``h0`` to the size of ``direction``.
    h0, n_steps, factor : float, int, float
        Steps ``h0 * factor**i`` for ``i < n_steps``.
    f0 : float, optional
        ``f(x)`` if already known.
    floor : float, optional
        Remainders below this are round-off and excluded from the fit; default
        ``1e-13 * (|f0| + 1e-300)`` times the number of entries' square root.
    """
    x = np.asarray(x, dtype=float)
    d = np.asarray(direction, dtype=float)
    f0 = float(f(x)) if f0 is None else float(f0)
    slope = float(np.vdot(np.asarray(gradient, dtype=float), d))
    steps = h0 * factor ** np.arange(n_steps)
    remainders = np.array([abs(float(f(x + h * d)) - f0 - h * slope) for h in steps])
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.log(remainders[1:] / remainders[:-1]) / np.log(factor)
    floor = 1e-13 * max(abs(f0), 1e-300) if floor is None else floor
    ok = remainders > floor
    if ok.sum() >= 2:
        rate = float(np.polyfit(np.log(steps[ok]), np.log(remainders[ok]), 1)[0])
    else:  # remainders at round-off level: f is (locally) linear, the gradient exact to precision
        rate = float("nan")
    return TaylorResult(steps, remainders, rates, rate, slope)


def central_difference(f: Callable[[np.ndarray], float], x: np.ndarray, direction: np.ndarray,
                       h: float = 1e-6) -> float:
    """Directional derivative of ``f`` at ``x`` along ``direction`` by central differences.

    Parameters
    ----------
    f : callable
        Scalar function of a vector of shape (n,).
    x, direction : ndarray (n,)
    h : float, default 1e-6
        Step, in the units of ``x`` per unit of ``direction``.

    Returns
    -------
    float
        ``(f(x + h d) − f(x − h d)) / (2h)``: units of f per unit step; error O(h²).
    """
    x = np.asarray(x, dtype=float)
    d = np.asarray(direction, dtype=float)
    return (float(f(x + h * d)) - float(f(x - h * d))) / (2.0 * h)


@dataclass
class ResponseCheck:
    """Taylor test of one scalar response (objective or constraint) along one direction."""

    name: str
    direction: int
    result: TaylorResult
    linear: bool
    central_difference: float

    @property
    def passed(self) -> bool:
        return self.linear or self.result.passed()

    @property
    def relative_error(self) -> float:
        """|gᵀd − central difference| / max(|gᵀd|, |cd|, tiny)."""
        a, b = self.result.directional_derivative, self.central_difference
        return abs(a - b) / max(abs(a), abs(b), 1e-300)


def check_evaluator(evaluate: Callable, x: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                    names: list[str], n_directions: int = 2, h0: float = 1e-2, n_steps: int = 5,
                    seed: int = 0, cd_step: float = 1e-6, max_extra_steps: int = 6) -> list[ResponseCheck]:
    """Taylor-test the objective and every constraint of ``evaluate(x) -> Evaluation`` at ``x``.

    One random direction (uniform in [-1, 1] per entry, zero where a step would leave the bounds)
    serves all responses: each step costs one evaluation, whatever the number of constraints.
    A response whose remainders are all at round-off level relative to ``h·|gᵀd|`` is linear along
    the direction (e.g. a volume constraint through a linear filter) and passes.

    The rate is fitted over the last ``n_steps`` steps with remainders above round-off. When a
    response's rate is not 2 ± 0.2, the step keeps halving (at most ``max_extra_steps`` more
    evaluations): rate 2 is an asymptotic property, and a small quadratic term (a nearly linear
    response) or a near-double eigenvalue (curvature ~ 1/gap) delays it to steps below the
    starting ``h0``. A wrong gradient leaves a remainder ~ h·error, rate 1 at every step, and
    still fails.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=float)
    out: list[ResponseCheck] = []
    e0 = evaluate(x)
    values0 = np.concatenate([[e0.f], e0.g])
    grads0 = np.vstack([e0.grad[None, :], e0.jac]) if e0.g.size else e0.grad[None, :]

    def values(h: float) -> np.ndarray:
        e = evaluate(x + h * d)
        return np.concatenate([[e.f], e.g])

    for k in range(n_directions):
        d = rng.uniform(-1.0, 1.0, x.size)
        room = np.minimum(upper - x, x - lower)
        d[room < h0] = 0.0  # keep every step inside the bounds
        steps = list(h0 * 0.5 ** np.arange(n_steps))
        vals = [values(h) for h in steps]
        ep, em = evaluate(x + cd_step * d), evaluate(x - cd_step * d)
        cd = (np.concatenate([[ep.f], ep.g]) - np.concatenate([[em.f], em.g])) / (2 * cd_step)
        slopes = grads0 @ d
        extra = 0
        while True:
            checks = [_response_check(names[r], k, np.asarray(steps), np.asarray(vals)[:, r], values0[r],
                                      float(slopes[r]), float(cd[r]), n_steps) for r in range(values0.size)]
            if all(c.passed for c in checks) or extra >= max_extra_steps:
                break
            steps.append(steps[-1] * 0.5)
            vals.append(values(steps[-1]))
            extra += 1
        out.extend(checks)
    return out


def _response_check(name: str, direction: int, steps: np.ndarray, values: np.ndarray, value0: float,
                    slope: float, cd: float, n_fit: int) -> ResponseCheck:
    """Remainders, pairwise rates and the rate fitted over the last ``n_fit`` steps above round-off."""
    rem = np.abs(values - value0 - steps * slope)
    floor = 1e-9 * (abs(value0) + steps * abs(slope) + 1e-300)
    linear = bool(np.all(rem <= floor))
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.log(rem[1:] / rem[:-1]) / np.log(0.5)
    fit = np.flatnonzero(rem > floor)[-n_fit:]
    rate = float(np.polyfit(np.log(steps[fit]), np.log(rem[fit]), 1)[0]) if fit.size >= 2 else float("nan")
    return ResponseCheck(name, direction, TaylorResult(steps, rem, rates, rate, slope), linear, cd)
