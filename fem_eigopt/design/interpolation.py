"""Material interpolations: element stiffness and mass scale factors as functions of density.

Every interpolation is a callable object ``f(x) -> (value, derivative)`` acting element-wise on a
density array ``x`` of shape ``(n_elem,)``. The values multiply the element matrices computed once
for the solid material (E0, ρ0), so ``K(x) = Σ_e E(x_e)/E0 · K_e`` and likewise for M.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fem_eigopt.errors import InputError

__all__ = [
    "SIMP",
    "RAMP",
    "LinearMass",
    "TwoRangeMass",
    "PolynomialMass",
    "Interpolation",
]


class Interpolation:
    """Base class: ``__call__(x) -> (f(x), f'(x))``, both shaped like ``x``."""

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class SIMP(Interpolation):
    """Solid isotropic material with penalisation: ``E(x) = E_min + x^p (1 - E_min)`` (relative to E0).

    Bendsøe (1989); with the "modified SIMP" floor ``E_min`` of Sigmund (2007). With ``e_min = 0``
    (the default) and a lower bound ``x_min`` on the design, this is the classical ``x^p`` law used
    by Du & Olhoff (2007).
    """

    penalty: float = 3.0
    e_min: float = 0.0

    def __post_init__(self) -> None:
        if not self.penalty >= 1.0:
            raise InputError(f"SIMP penalty = {self.penalty!r}; allowed: a number >= 1")
        if not 0.0 <= self.e_min < 1.0:
            raise InputError(f"SIMP e_min = {self.e_min!r}; allowed: 0 <= e_min < 1")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=float)
        p = self.penalty
        value = self.e_min + (1.0 - self.e_min) * x**p
        deriv = (1.0 - self.e_min) * p * x ** (p - 1.0)
        return value, deriv


@dataclass(frozen=True)
class RAMP(Interpolation):
    """Rational approximation of material properties: ``E(x) = x / (1 + q (1 - x))`` (Stolpe & Svanberg 2001)."""

    q: float = 8.0

    def __post_init__(self) -> None:
        if not self.q >= 0.0:
            raise InputError(f"RAMP q = {self.q!r}; allowed: a number >= 0")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=float)
        d = 1.0 + self.q * (1.0 - x)
        return x / d, (1.0 + self.q) / d**2


@dataclass(frozen=True)
class LinearMass(Interpolation):
    """Mass proportional to density: ``ρ(x) = x`` (relative to ρ0)."""

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=float)
        return x.copy(), np.ones_like(x)


@dataclass(frozen=True)
class TwoRangeMass(Interpolation):
    """Du & Olhoff (2007) two-range mass law that suppresses localised modes in void regions.

    ``ρ(x) = x`` for ``x > threshold`` and ``ρ(x) = c x^6`` below it, with ``c = threshold^-5`` so
    that ρ is continuous at the threshold (Du & Olhoff 2007, Struct. Multidisc. Optim. 34:91–110,
    eq. 10, threshold 0.1). The derivative jumps at the threshold (1 vs 6).
    """

    threshold: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"TwoRangeMass threshold = {self.threshold!r}; allowed: 0 < threshold < 1")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=float)
        c = self.threshold**-5
        low = x <= self.threshold
        # the powers only where they are used (the same numbers as evaluating them everywhere)
        x_low = x[low]
        value = x.copy()
        value[low] = c * x_low**6
        deriv = np.ones_like(x)
        deriv[low] = 6.0 * c * x_low**5
        return value, deriv


@dataclass(frozen=True)
class PolynomialMass(Interpolation):
    """Smooth mass laws without a kink: ``ρ(x) = x`` above ``threshold``, ``Σ c_k x^k`` below.

    The two continuous variants named by Du & Olhoff-type studies: ``c0 x^6`` with ``c0 = 1e5``,
    and ``c1 x^6 + c2 x^7`` with ``c1 = 6e5``, ``c2 = -5e6`` (both meet ρ = x at x = 0.1 with a
    matching value; the second also matches the slope). ``coefficients`` maps exponent → factor.
    """

    coefficients: tuple[tuple[int, float], ...] = ((6, 1e5),)
    threshold: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"PolynomialMass threshold = {self.threshold!r}; allowed: 0 < threshold < 1")
        if len(self.coefficients) == 0:
            raise InputError("PolynomialMass coefficients = (); allowed: ((exponent, factor), ...), at least one")
        for item in self.coefficients:
            try:
                k, c = item
            except (TypeError, ValueError):
                raise InputError(f"PolynomialMass coefficient {item!r}; allowed: a pair (exponent, factor)") from None
            if not (isinstance(k, (int, np.integer)) and k >= 1) or not np.isfinite(c):
                raise InputError(f"PolynomialMass coefficient ({k!r}, {c!r}); allowed: an integer exponent >= 1 "
                                 "and a finite factor")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=float)
        low_value = sum(c * x**k for k, c in self.coefficients)
        low_deriv = sum(k * c * x ** (k - 1) for k, c in self.coefficients)
        low = x <= self.threshold
        return np.where(low, low_value, x), np.where(low, low_deriv, 1.0)
