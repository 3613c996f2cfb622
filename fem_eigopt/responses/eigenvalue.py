"""Eigenvalue responses: maximise one or the smallest of several, gaps, targets, bounds, keep-out bands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from fem_eigopt.errors import InputError
from fem_eigopt.responses.base import (
    TWO_PI,
    ModalState,
    Partials,
    Response,
    _check_mode,
    _mode_index,
    _prepare_mode,
    _unit,
)

logger = logging.getLogger(__name__)

@dataclass
class MaxEigenvalue(Response):
    """Maximise one eigenvalue λ_mode (simple), i.e. minimise −λ_mode / λ_ref.

    ``quantity`` chooses what is maximised: "lambda" (λ), "omega" (√λ) or "frequency" (√λ/2π);
    they share the optimum but not the scaling of the gradients. Inside a cluster of repeated
    eigenvalues the gradient of a single eigenvalue does not exist: prefer
    :class:`MaxMinEigenvalues` (bound formulation), which stays correct there.
    """

    mode: Any = 1
    quantity: str = "lambda"

    def __post_init__(self) -> None:
        _check_mode(self.mode, "MaxEigenvalue.mode")
        if self.quantity not in ("lambda", "omega", "frequency"):
            raise InputError(f"MaxEigenvalue.quantity = {self.quantity!r}; allowed: 'lambda', 'omega', 'frequency'")
        self.max_mode = self.mode if isinstance(self.mode, int) else self.mode.start_mode + 2
        self.name = f"max_{self.quantity}{self.mode if isinstance(self.mode, int) else '_tracked'}"
        self._ref = 1.0

    def _q(self, lam: float) -> tuple[float, float]:
        if self.quantity == "lambda":
            return lam, 1.0
        om = np.sqrt(max(lam, 1e-300))
        c = 1.0 if self.quantity == "omega" else 1.0 / TWO_PI
        return c * om, c * 0.5 / om

    def prepare(self, state: ModalState) -> np.ndarray:
        _prepare_mode(self.mode, state)
        i = _mode_index(self.mode, state)
        self._ref = abs(self._q(state.eigenvalues[i])[0]) or 1.0
        return np.zeros(0)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        i = _mode_index(self.mode, state)
        if any(i in cl for cl in state.clusters):
            logger.debug("MaxEigenvalue: mode %d is in a cluster; its gradient is a generalised one", i + 1)
        q, dq = self._q(state.eigenvalues[i])
        k = state.eigenvalues.size
        return [Partials(-q / self._ref, d_eigenvalues=_unit(k, i, -dq / self._ref), name=self.name)]


@dataclass
class MaxMinEigenvalues(Response):
    """Maximise the smallest of the first ``n`` eigenvalues (or of the listed modes).

    ``method="bound"`` (default; Du & Olhoff 2007, eqs. 5–7): an extra variable β, objective −β,
    constraints β − λ_j/λ_ref ≤ 0 for every j. Correct when the optimum is a multiple eigenvalue,
    where the evaluator gives cluster members consistent (generalised) gradients.
    ``method="ks"``: the Kreisselmeier–Steinhauser lower bound −(1/ρ) log Σ exp(−ρ λ_j/λ_ref) as a
    single smooth objective (no extra variable); ``method="pnorm"``: (Σ (λ_j/λ_ref)^−p)^(−1/p).
    """

    n: int = 1
    method: str = "bound"
    aggregation: float = 50.0
    modes: Sequence[int] | None = None
    quantity: str = "lambda"

    def __post_init__(self) -> None:
        if self.modes is None:
            if not (isinstance(self.n, (int, np.integer)) and self.n >= 1):
                raise InputError(f"MaxMinEigenvalues.n = {self.n!r}; allowed: an integer >= 1")
            self.modes = tuple(range(1, self.n + 1))
        self.modes = tuple(int(m) for m in self.modes)
        for m in self.modes:
            _check_mode(m, "MaxMinEigenvalues.modes")
        if self.method not in ("bound", "ks", "pnorm"):
            raise InputError(f"MaxMinEigenvalues.method = {self.method!r}; allowed: 'bound', 'ks', 'pnorm'")
        if self.quantity not in ("lambda", "omega"):
            raise InputError(f"MaxMinEigenvalues.quantity = {self.quantity!r}; allowed: 'lambda', 'omega'")
        self.n_bounds = 1 if self.method == "bound" else 0
        self.max_mode = max(self.modes)
        self.name = f"maxmin_{self.quantity}{list(self.modes)}_{self.method}"
        self._ref = 1.0

    def _scaled(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.quantity == "lambda":
            return lam / self._ref, np.full_like(lam, 1.0 / self._ref)
        om = np.sqrt(np.clip(lam, 1e-300, None))
        return om / self._ref, 0.5 / (om * self._ref)

    def prepare(self, state: ModalState) -> np.ndarray:
        lam = state.eigenvalues[[m - 1 for m in self.modes]]
        self._ref = 1.0
        self._ref = float(np.min(self._scaled(lam)[0])) or 1.0
        return np.array([0.99]) if self.method == "bound" else np.zeros(0)

    def restart_bounds(self, state: ModalState, bounds: np.ndarray) -> np.ndarray:
        if self.method != "bound":
            return bounds
        s, _ = self._scaled(state.eigenvalues[[m - 1 for m in self.modes]])
        return np.array([0.999 * float(np.min(s))])

    def bound_limits(self) -> list[tuple[float, float]]:
        # β is λ/λ_ref: a range of a few tens keeps MMA's initial asymptotes (half the range) sane
        return [(0.0, 50.0)] if self.method == "bound" else []

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        idx = np.array([m - 1 for m in self.modes])
        k = state.eigenvalues.size
        s, ds = self._scaled(state.eigenvalues[idx])
        if self.method == "bound":
            beta = float(bounds[0])
            out = [Partials(-beta, d_bounds={0: -1.0}, name=self.name)]
            for j, i in enumerate(idx):
                d = np.zeros(k)
                d[i] = -ds[j]
                out.append(Partials(beta - s[j], d_eigenvalues=d, d_bounds={0: 1.0}, name=f"bound_mode{i + 1}"))
            return out
        d = np.zeros(k)
        if self.method == "ks":
            r = self.aggregation
            m = s.min()
            w = np.exp(-r * (s - m))
            value = m - np.log(w.sum()) / r  # lower bound of min(s)
            d[idx] = -(w / w.sum()) * ds
            return [Partials(-value, d_eigenvalues=d, name=self.name)]
        p = self.aggregation
        total = np.sum(s**-p)
        value = total ** (-1.0 / p)
        d[idx] = -(value / total) * s ** (-p - 1) * ds  # −∂value/∂λ
        return [Partials(-value, d_eigenvalues=d, name=self.name)]


@dataclass
class MaxGap(Response):
    """Maximise the gap between eigenvalues ``lower_mode`` and ``lower_mode + 1``.

    Bound formulation of Du & Olhoff (2007), section 4: two bound variables β_lo ≥ λ_j (j ≤ n) and
    β_hi ≤ λ_j (n < j ≤ n + above); the objective is −(β_hi − β_lo) ("difference") or
    −β_hi/β_lo ("ratio"), all scaled by λ_n of the starting design.
    """

    lower_mode: int = 1
    kind: str = "difference"
    above: int = 2

    def __post_init__(self) -> None:
        _check_mode(self.lower_mode, "MaxGap.lower_mode")
        if self.kind not in ("difference", "ratio"):
            raise InputError(f"MaxGap.kind = {self.kind!r}; allowed: 'difference', 'ratio'")
        if self.above < 1:
            raise InputError(f"MaxGap.above = {self.above!r}; allowed: an integer >= 1")
        self.n_bounds = 2
        self.max_mode = self.lower_mode + self.above
        self.name = f"max_gap{self.lower_mode}_{self.lower_mode + 1}_{self.kind}"
        self._ref = 1.0

    def prepare(self, state: ModalState) -> np.ndarray:
        n = self.lower_mode
        self._ref = float(state.eigenvalues[n - 1]) or 1.0
        lam = state.eigenvalues / self._ref
        return np.array([lam[n - 1] * 1.001, lam[n] * 0.999])

    def bound_limits(self) -> list[tuple[float, float]]:
        return [(0.0, 50.0), (0.0, 50.0)]

    def restart_bounds(self, state: ModalState, bounds: np.ndarray) -> np.ndarray:
        n = self.lower_mode
        lam = state.eigenvalues / self._ref
        return np.array([float(np.max(lam[:n])) * 1.001, float(np.min(lam[n:n + self.above])) * 0.999])

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        n = self.lower_mode
        k = state.eigenvalues.size
        lam = state.eigenvalues / self._ref
        b_lo, b_hi = float(bounds[0]), float(bounds[1])
        if self.kind == "difference":
            out = [Partials(-(b_hi - b_lo), d_bounds={0: 1.0, 1: -1.0}, name=self.name)]
        else:
            out = [Partials(-b_hi / b_lo, d_bounds={0: b_hi / b_lo**2, 1: -1.0 / b_lo}, name=self.name)]
        for j in range(n):  # λ_j − β_lo ≤ 0
            out.append(Partials(lam[j] - b_lo, d_eigenvalues=_unit(k, j, 1.0 / self._ref), d_bounds={0: -1.0},
                                name=f"gap_below_mode{j + 1}"))
        for j in range(n, n + self.above):  # β_hi − λ_j ≤ 0
            out.append(Partials(b_hi - lam[j], d_eigenvalues=_unit(k, j, -1.0 / self._ref), d_bounds={1: 1.0},
                                name=f"gap_above_mode{j + 1}"))
        return out


@dataclass
class TargetFrequencies(Response):
    """Minimise Σ_i w_i (f_i / f*_i − 1)² for target frequencies f*_i (Hz) of chosen modes.

    ``targets`` maps mode number (1-based) or :class:`TrackedMode` keys to the target in Hz.
    """

    targets: dict = field(default_factory=dict)
    weights: dict | None = None

    def __post_init__(self) -> None:
        if not self.targets:
            raise InputError("TargetFrequencies.targets is empty; allowed: {mode: frequency_hz, ...}")
        for m, f in self.targets.items():
            _check_mode(m, "TargetFrequencies mode")
            if not (np.isfinite(f) and f > 0):
                raise InputError(f"TargetFrequencies target for mode {m} = {f!r}; allowed: a frequency > 0 (Hz)")
        self.max_mode = max(m if isinstance(m, int) else m.start_mode + 2 for m in self.targets)
        self.name = "target_frequencies"

    def prepare(self, state: ModalState) -> np.ndarray:
        for m in self.targets:
            _prepare_mode(m, state)
        return np.zeros(0)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        k = state.eigenvalues.size
        d = np.zeros(k)
        value = 0.0
        for m, target in self.targets.items():
            i = _mode_index(m, state)
            w = 1.0 if self.weights is None else float(self.weights.get(m, 1.0))
            lam = max(state.eigenvalues[i], 1e-300)
            f = np.sqrt(lam) / TWO_PI
            r = f / target - 1.0
            value += w * r * r
            d[i] += w * 2.0 * r / target * (1.0 / (TWO_PI * 2.0 * np.sqrt(lam)))
        return [Partials(value, d_eigenvalues=d, name=self.name)]


@dataclass
class FrequencyBound(Response):
    """Keep a frequency of one mode above ``lower_hz`` and/or below ``upper_hz``.

    Constraints 1 − λ/λ_low ≤ 0 and λ/λ_up − 1 ≤ 0 with λ_low = (2π f_low)².
    """

    mode: Any = 1
    lower_hz: float | None = None
    upper_hz: float | None = None

    def __post_init__(self) -> None:
        _check_mode(self.mode, "FrequencyBound.mode")
        if self.lower_hz is None and self.upper_hz is None:
            raise InputError("FrequencyBound needs lower_hz and/or upper_hz (Hz)")
        for n, v in (("lower_hz", self.lower_hz), ("upper_hz", self.upper_hz)):
            if v is not None and not (np.isfinite(v) and v > 0):
                raise InputError(f"FrequencyBound.{n} = {v!r}; allowed: a frequency > 0 (Hz)")
        if self.lower_hz is not None and self.upper_hz is not None and self.lower_hz >= self.upper_hz:
            raise InputError(f"FrequencyBound: lower_hz {self.lower_hz} >= upper_hz {self.upper_hz}")
        self.max_mode = self.mode if isinstance(self.mode, int) else self.mode.start_mode + 2
        self.name = f"frequency_bound_mode{self.mode}"

    def prepare(self, state: ModalState) -> np.ndarray:
        _prepare_mode(self.mode, state)
        return np.zeros(0)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        i = _mode_index(self.mode, state)
        k = state.eigenvalues.size
        lam = state.eigenvalues[i]
        out = []
        if self.lower_hz is not None:
            lo = (TWO_PI * self.lower_hz) ** 2
            out.append(Partials(1.0 - lam / lo, d_eigenvalues=_unit(k, i, -1.0 / lo), name=f"f{i + 1}>={self.lower_hz:.4g}Hz"))
        if self.upper_hz is not None:
            up = (TWO_PI * self.upper_hz) ** 2
            out.append(Partials(lam / up - 1.0, d_eigenvalues=_unit(k, i, 1.0 / up), name=f"f{i + 1}<={self.upper_hz:.4g}Hz"))
        return out


@dataclass
class KeepOutBand(Response):
    """No eigenfrequency of the listed modes inside ``(low_hz, high_hz)``.

    Being outside an interval is not a convex (or even connected) condition, so each mode keeps the
    side it starts on: a mode below the band at the starting design is constrained to stay below
    ``low_hz``; a mode above, to stay above ``high_hz``; a mode starting inside the band is pushed
    to the nearer edge (logged).
    """

    low_hz: float = 0.0
    high_hz: float = 0.0
    modes: Sequence[int] = (1,)

    def __post_init__(self) -> None:
        if not (0 < self.low_hz < self.high_hz):
            raise InputError(f"KeepOutBand ({self.low_hz}, {self.high_hz}) Hz; allowed: 0 < low_hz < high_hz")
        self.modes = tuple(int(m) for m in self.modes)
        for m in self.modes:
            _check_mode(m, "KeepOutBand.modes")
        self.max_mode = max(self.modes)
        self.name = f"keep_out_{self.low_hz}-{self.high_hz}Hz"
        self._bounds: list[FrequencyBound] = []

    def prepare(self, state: ModalState) -> np.ndarray:
        self._bounds = []
        for m in self.modes:
            f = np.sqrt(max(state.eigenvalues[m - 1], 0.0)) / TWO_PI
            below = f <= self.low_hz or (f < self.high_hz and f - self.low_hz < self.high_hz - f)
            if self.low_hz < f < self.high_hz:
                logger.info("keep-out band: mode %d starts inside (%.4g Hz); pushed %s", m, f,
                            "down" if below else "up")
            self._bounds.append(FrequencyBound(m, upper_hz=self.low_hz) if below else FrequencyBound(m, lower_hz=self.high_hz))
        return np.zeros(0)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        return [p for b in self._bounds for p in b.evaluate(state, bounds)]
