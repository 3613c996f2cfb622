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
    """Directional derivative of ``f`` at ``x`` along ``direction`` by central differences."""
    x = np.asarray(x, dtype=float)
    d = np.asarray(direction, dtype=float)
    return (float(f(x + h * d)) - float(f(x - h * d))) / (2.0 * h)
