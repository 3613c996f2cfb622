"""Heaviside projection of filtered densities and its β-continuation schedule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from fem_eigopt.errors import InputError

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- #
# projection


@dataclass(frozen=True)
class HeavisideProjection:
    """Smoothed Heaviside (tanh) projection of Wang, Lazarov & Sigmund (2011), eq. (8).

    ::

        x̄ = (tanh(βη) + tanh(β(x̃ − η))) / (tanh(βη) + tanh(β(1 − η)))

    maps [0, 1] onto [0, 1] monotonically, pushing densities below η towards 0 and above towards 1
    more sharply as β grows. ``beta = 0`` (or ``None``) is the identity.

    Parameters
    ----------
    beta : float or None
        Sharpness β >= 0.
    eta : float
        Threshold η in [0, 1].
    """

    beta: float | None = 0.0
    eta: float = 0.5

    def __post_init__(self) -> None:
        beta = 0.0 if self.beta is None else self.beta
        if not (np.isfinite(beta) and beta >= 0.0):
            raise InputError(f"projection beta = {self.beta!r}; allowed: a number >= 0 (0 = no projection)")
        if not 0.0 <= self.eta <= 1.0:
            raise InputError(f"projection eta = {self.eta!r}; allowed: 0 <= eta <= 1")
        object.__setattr__(self, "beta", float(beta))

    @property
    def is_identity(self) -> bool:
        """Whether β = 0."""
        return self.beta == 0.0

    def _denominator(self) -> float:
        b, e = self.beta, self.eta
        return np.tanh(b * e) + np.tanh(b * (1.0 - e))

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Projected densities x̄, shape of ``x``."""
        x = np.asarray(x, dtype=float)
        if self.is_identity:
            return x.copy()
        b, e = self.beta, self.eta
        return (np.tanh(b * e) + np.tanh(b * (x - e))) / self._denominator()

    def derivative(self, x: np.ndarray) -> np.ndarray:
        """Element-wise dx̄/dx̃ = β (1 − tanh²(β(x̃ − η))) / (tanh(βη) + tanh(β(1 − η)))."""
        x = np.asarray(x, dtype=float)
        if self.is_identity:
            return np.ones_like(x)
        b, e = self.beta, self.eta
        return b * (1.0 - np.tanh(b * (x - e)) ** 2) / self._denominator()

    def jvp(self, x: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """``diag(dx̄/dx̃) dx`` at the filtered densities ``x``."""
        return self.derivative(x) * np.asarray(dx, dtype=float)

    def vjp(self, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """``diag(dx̄/dx̃) dy`` at the filtered densities ``x`` (the Jacobian is diagonal, so = jvp)."""
        return self.derivative(x) * np.asarray(dy, dtype=float)


@dataclass
class BetaContinuation:
    """β schedule for the projection: start at ``beta0``, multiply by ``factor`` up to ``beta_max``.

    β grows when ``every`` iterations have passed since the last change, or (if ``tolerance`` is
    given) when the design change of an iteration falls below ``tolerance`` after at least
    ``min_every`` iterations at the current β. Call :meth:`step` once per optimiser iteration; it
    returns True when β changed, which is the caller's cue to rebuild the projection and restart
    MMA (its asymptotes and history belong to the old problem).

    Parameters
    ----------
    beta0, factor, beta_max : float
        First β (> 0), growth factor (> 1) and the cap (>= beta0). The last step is clipped to
        ``beta_max``.
    every : int or None
        Iterations per β level; ``None`` leaves only the tolerance trigger.
    tolerance : float or None
        Design-change threshold (e.g. max |Δz|) that also triggers the next level.
    min_every : int
        Iterations at a level before the tolerance trigger may act.

    Attributes
    ----------
    beta : float
        The current β.
    iterations_at_level : int
        Iterations done at the current β.
    """

    beta0: float = 1.0
    factor: float = 2.0
    beta_max: float = 32.0
    every: int | None = 50
    tolerance: float | None = None
    min_every: int = 1
    beta: float = field(init=False)
    iterations_at_level: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.beta0) and self.beta0 > 0.0):
            raise InputError(f"continuation beta0 = {self.beta0!r}; allowed: a number > 0")
        if not (np.isfinite(self.factor) and self.factor > 1.0):
            raise InputError(f"continuation factor = {self.factor!r}; allowed: a number > 1")
        if not self.beta_max >= self.beta0:
            raise InputError(f"continuation beta_max = {self.beta_max!r}; allowed: a number >= beta0 = {self.beta0}")
        if self.every is not None and not (isinstance(self.every, (int, np.integer)) and self.every >= 1):
            raise InputError(f"continuation every = {self.every!r}; allowed: an integer >= 1 or None")
        if self.tolerance is not None and not self.tolerance > 0.0:
            raise InputError(f"continuation tolerance = {self.tolerance!r}; allowed: a number > 0 or None")
        if self.every is None and self.tolerance is None:
            raise InputError("continuation every = None and tolerance = None; allowed: at least one of them set")
        if not (isinstance(self.min_every, (int, np.integer)) and self.min_every >= 1):
            raise InputError(f"continuation min_every = {self.min_every!r}; allowed: an integer >= 1")
        self.reset()

    def reset(self) -> None:
        """Back to ``beta0`` with no iterations done."""
        self.beta = float(self.beta0)
        self.iterations_at_level = 0

    def state(self) -> dict:
        """The schedule's position: ``beta`` and ``iterations_at_level`` (for checkpoints)."""
        return {"beta": float(self.beta), "iterations_at_level": int(self.iterations_at_level)}

    def set_state(self, state: dict) -> None:
        """Continue from a :meth:`state` of a schedule with the same settings (resuming a run).

        Raises
        ------
        InputError
            ``beta`` is not a number in [beta0, beta_max], or ``iterations_at_level`` < 0.
        """
        beta, its = state.get("beta"), state.get("iterations_at_level")
        if not (isinstance(beta, (int, float)) and self.beta0 <= beta <= self.beta_max):
            raise InputError(f"continuation state beta = {beta!r}; allowed: a number in "
                             f"[beta0, beta_max] = [{self.beta0}, {self.beta_max}]")
        if not (isinstance(its, (int, np.integer)) and its >= 0):
            raise InputError(f"continuation state iterations_at_level = {its!r}; allowed: an integer >= 0")
        self.beta = float(beta)
        self.iterations_at_level = int(its)

    @property
    def finished(self) -> bool:
        """Whether β has reached ``beta_max``."""
        return self.beta >= self.beta_max

    def step(self, change: float | None = None) -> bool:
        """Record one finished iteration (with its design change) and raise β if due.

        Returns
        -------
        bool
            True if β changed (the new value is in :attr:`beta`).
        """
        self.iterations_at_level += 1
        if self.finished:
            return False
        due = self.every is not None and self.iterations_at_level >= self.every
        if (self.tolerance is not None and change is not None and change < self.tolerance
                and self.iterations_at_level >= self.min_every):
            due = True
        if not due:
            return False
        old = self.beta
        self.beta = float(min(self.beta * self.factor, self.beta_max))
        self.iterations_at_level = 0
        logger.debug("projection beta %.4g -> %.4g", old, self.beta)
        return True
