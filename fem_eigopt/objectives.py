"""Objectives and constraints as functions of eigenvalues, eigenvectors and densities.

Every response is an object with

* ``n_bounds``: how many auxiliary *bound variables* it adds to the design vector (the bound
  formulation of Bendsøe, Olhoff & Taylor 1983 / Du & Olhoff 2007: maximise β subject to
  β − λ_j ≤ 0 stays differentiable when eigenvalues coalesce, where max min λ_j does not);
* ``prepare(state)``: called once at the starting design to fix reference values (scaling) and
  references for mode tracking; returns the starting values of its bound variables;
* ``evaluate(state, bounds) -> list[Partials]``: values and partial derivatives with respect to
  eigenvalues, eigenvectors, physical densities and bound variables. An objective returns one
  item; a constraint returns one item per scalar constraint ``g ≤ 0``.

The evaluator (:mod:`fem_eigopt.evaluate`) turns the partials into design gradients with the
element-by-element adjoint and the chain rule through the interpolation, projection, filter and
design map. Everything is *minimised*; "maximise" objectives negate. Values are scaled by a
reference computed at the starting design (e.g. λ1 of the initial design) so that MMA sees
numbers of order one.

Units: eigenvalues λ in (rad/s)², frequencies in Hz where a field says ``_hz``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "Partials",
    "ModalState",
    "Response",
    "MaxEigenvalue",
    "MaxMinEigenvalues",
    "MaxGap",
    "TargetFrequencies",
    "MinVolume",
    "VolumeConstraint",
    "FrequencyBound",
    "KeepOutBand",
    "EigenvectorObjective",
    "ModeAmplitudeAt",
    "UserResponse",
    "TrackedMode",
    "mac_matrix",
]

TWO_PI = 2.0 * np.pi


@dataclass
class ModalState:
    """What a response may look at, for one design.

    Attributes
    ----------
    eigenvalues : ndarray (k,)
        λ (rad/s)², ascending.
    vectors : ndarray (n_free, k)
        M-normalised mode shapes on the free dofs.
    densities : ndarray (n_elem,)
        Physical (filtered, projected) densities; ones for a structure without density design.
    element_volumes : ndarray (n_elem,)
        Element volumes (areas × thickness in 2D) in m³.
    clusters : list of tuple
        Repeated-eigenvalue clusters (indices).
    mass_matrix : sparse (n_free, n_free)
        M of this design (for MAC and eigenvector functionals).
    model : Model
        The discretised structure (dof maps).
    iteration : int
        Evaluation counter.
    """

    eigenvalues: np.ndarray
    vectors: np.ndarray
    densities: np.ndarray
    element_volumes: np.ndarray
    clusters: list
    mass_matrix: Any
    model: Any
    iteration: int = 0
    info: dict = field(default_factory=dict)


@dataclass
class Partials:
    """Value and partial derivatives of one scalar response.

    Attributes
    ----------
    value : float
    d_eigenvalues : ndarray (k,) or None
        ∂g/∂λ_i.
    d_vectors : ndarray (n_free, k) or None
        ∂g/∂φ_i (needs an eigenvector adjoint solve per non-zero column).
    d_densities : ndarray (n_elem,) or None
        Explicit ∂g/∂ρ̄_e (volume, or a user function of the densities).
    d_bounds : ndarray (n_bounds_total,) or None
        ∂g/∂b for the auxiliary bound variables (filled by the evaluator's offsets).
    name : str
        For history and messages.
    """

    value: float
    d_eigenvalues: np.ndarray | None = None
    d_vectors: np.ndarray | None = None
    d_densities: np.ndarray | None = None
    d_bounds: dict[int, float] = field(default_factory=dict)
    name: str = ""


def _unit(k: int, i: int, scale: float = 1.0) -> np.ndarray:
    out = np.zeros(k)
    out[i] = scale
    return out


def mac_matrix(A: np.ndarray, B: np.ndarray, W=None) -> np.ndarray:
    """Modal assurance criterion between the columns of A (n, p) and B (n, q), shape (p, q).

    MAC_ij = (a_iᵀ W b_j)² / ((a_iᵀ W a_i)(b_jᵀ W b_j)) with W the identity or a weighting matrix
    (e.g. the mass matrix; Allemang & Brown 1982).
    """
    WA = A if W is None else W @ A
    WB = B if W is None else W @ B
    num = (WA.T @ B) ** 2
    den = np.outer(np.einsum("ij,ij->j", A, WA), np.einsum("ij,ij->j", B, WB))
    return num / den


class TrackedMode:
    """Follow "the mode that looks like this one" instead of a fixed mode number.

    At the starting design the reference shape is mode ``start_mode`` (1-based); at every later
    design the tracked mode is the one with the largest MAC against the reference. With
    ``update=True`` the reference becomes the matched mode at each evaluation (tracking through
    gradual shape changes); with ``False`` it stays the initial shape. The MAC matrix between the
    previous and current modes is stored in ``last_mac`` for the history.
    """

    def __init__(self, start_mode: int = 1, update: bool = True) -> None:
        if start_mode < 1:
            raise InputError(f"TrackedMode start_mode = {start_mode!r}; allowed: an integer >= 1")
        self.start_mode = int(start_mode)
        self.update = update
        self.reference: np.ndarray | None = None
        self.previous: np.ndarray | None = None
        self.last_index = self.start_mode - 1
        self.last_mac: np.ndarray | None = None

    def prepare(self, state: ModalState) -> None:
        self.reference = state.vectors[:, self.start_mode - 1].copy()
        self.previous = state.vectors.copy()
        self.last_index = self.start_mode - 1

    def index(self, state: ModalState) -> int:
        """0-based index of the tracked mode in ``state``."""
        if self.reference is None:
            self.prepare(state)
        mac = mac_matrix(self.reference[:, None], state.vectors, state.mass_matrix)[0]
        i = int(np.argmax(mac))
        if self.previous is not None and self.previous.shape == state.vectors.shape:
            self.last_mac = mac_matrix(self.previous, state.vectors, state.mass_matrix)
            logger.debug("MAC(previous modes, current modes):\n%s", np.array2string(self.last_mac, precision=3))
        state.info.setdefault("tracked_modes", []).append(
            {"mode": i + 1, "mac": float(mac[i]),
             "mac_matrix": None if self.last_mac is None else self.last_mac.round(4).tolist()})
        if i != self.last_index:
            logger.info("mode tracking: the tracked mode moved from %d to %d (MAC %.3f)",
                        self.last_index + 1, i + 1, mac[i])
        self.last_index = i
        if self.update:
            self.reference = state.vectors[:, i].copy()
        self.previous = state.vectors.copy()
        return i


def _mode_index(mode, state: ModalState) -> int:
    if isinstance(mode, TrackedMode):
        return mode.index(state)
    return int(mode) - 1


def _prepare_mode(mode, state: ModalState) -> None:
    if isinstance(mode, TrackedMode):
        mode.prepare(state)


def _check_mode(mode, what: str) -> None:
    if isinstance(mode, TrackedMode):
        return
    if not (isinstance(mode, (int, np.integer)) and mode >= 1):
        raise InputError(f"{what} = {mode!r}; allowed: a mode number >= 1 (1 = fundamental) or TrackedMode")


class Response:
    """Base class of objectives and constraints (see the module docstring)."""

    n_bounds = 0
    #: highest mode number (1-based) the response needs; the modal solve must compute more
    max_mode = 1
    name = "response"

    def prepare(self, state: ModalState) -> np.ndarray:
        return np.zeros(self.n_bounds)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:  # pragma: no cover
        raise NotImplementedError

    def bound_limits(self) -> list[tuple[float, float]]:
        return [(0.0, np.inf)] * self.n_bounds

    def restart_bounds(self, state: ModalState, bounds: np.ndarray) -> np.ndarray:
        """Bound variables for a restart at ``state`` (the problem changed, e.g. the projection β):
        by default unchanged. Bound formulations return values just inside their constraints."""
        return bounds

    def describe(self, value: float) -> str:
        return f"{self.name}={value:.6g}"


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


def _volume_fraction(state: ModalState) -> tuple[float, np.ndarray]:
    v = state.element_volumes
    total = v.sum()
    return float(v @ state.densities / total), v / total


@dataclass
class MinVolume(Response):
    """Minimise the material volume fraction Σ v_e ρ̄_e / Σ v_e (the mass of the design material)."""

    def __post_init__(self) -> None:
        self.name = "volume"

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        vf, dvf = _volume_fraction(state)
        return [Partials(vf, d_densities=dvf, name=self.name)]


@dataclass
class VolumeConstraint(Response):
    """Volume fraction at most ``max_fraction``: Σ v_e ρ̄_e / (V · vf*) − 1 ≤ 0.

    ``min_fraction`` adds 1 − vf / vf_min ≤ 0 (constraint ``volume_min``). Eigenfrequency
    maximisation needs it with mass laws that vanish faster than the stiffness at low density
    (two-range, x⁶): the all-void design x = x_min has λ ∝ E(x)/ρ(x) ∝ x³/x⁶ → large, a spurious
    optimum that MMA may run to once projection has made most densities 0 or 1 (a CC beam went
    from ω1 = 400 to a void design with ω1 = 28 900 rad/s and volume 0.001).
    """

    max_fraction: float = 0.5
    min_fraction: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.max_fraction <= 1:
            raise InputError(f"VolumeConstraint.max_fraction = {self.max_fraction!r}; allowed: 0 < vf <= 1")
        if self.min_fraction is not None and not 0 < self.min_fraction < self.max_fraction:
            raise InputError(f"VolumeConstraint.min_fraction = {self.min_fraction!r}; allowed: "
                             f"0 < vf_min < max_fraction = {self.max_fraction}")
        self.name = "volume"

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        vf, dvf = _volume_fraction(state)
        out = [Partials(vf / self.max_fraction - 1.0, d_densities=dvf / self.max_fraction, name=self.name)]
        if self.min_fraction is not None:
            out.append(Partials(1.0 - vf / self.min_fraction, d_densities=-dvf / self.min_fraction,
                                name="volume_min"))
        return out


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


@dataclass
class ModeAmplitudeAt:
    """Squared modal displacement at the mesh vertex nearest ``point``, in ``component`` (0 = x).

    A specification bound to the model when the optimisation starts (the dof numbers are not known
    in the problem file); the bound functional is :class:`fem_eigopt.adjoint.ModalAmplitude`.
    """

    point: tuple
    component: int = 1

    def bind(self, model) -> Callable:
        from .adjoint import ModalAmplitude

        p = np.asarray(self.point, dtype=float)
        mesh_p = model.basis.mesh.p
        if p.size != mesh_p.shape[0] or not 0 <= self.component < mesh_p.shape[0]:
            raise InputError(f"ModeAmplitudeAt point {self.point!r}, component {self.component!r}; allowed: "
                             f"{mesh_p.shape[0]} coordinates and a component 0..{mesh_p.shape[0] - 1}")
        vertex = int(np.argmin(np.linalg.norm(mesh_p - p[:, None], axis=0)))
        dof = int(model.basis.nodal_dofs[self.component, vertex])
        return ModalAmplitude.at_global_dofs(model, [dof])


@dataclass
class EigenvectorObjective(Response):
    """A functional of one mode shape, g(φ_mode), minimised (or maximised with ``sign=-1``).

    ``functional`` is a callable ``phi -> (value, dg_dphi)`` with phi (n_free,) M-normalised (see
    the functionals of :mod:`fem_eigopt.adjoint`: ModalAmplitude, QuadraticForm, ModalAssurance),
    or a specification with ``bind(model) -> callable`` such as :class:`ModeAmplitudeAt`. The
    evaluator does the eigenvector adjoint solve. ``mode`` may be a :class:`TrackedMode`.
    Values are scaled by the value at the starting design.
    """

    functional: Any = None
    mode: Any = 1
    sign: float = 1.0
    name: str = "eigenvector_functional"

    def __post_init__(self) -> None:
        if not (callable(self.functional) or hasattr(self.functional, "bind")):
            raise InputError("EigenvectorObjective.functional must be callable phi -> (value, dg_dphi) "
                             "or have bind(model)")
        _check_mode(self.mode, "EigenvectorObjective.mode")
        self.max_mode = self.mode if isinstance(self.mode, int) else self.mode.start_mode + 2
        self._ref = 1.0
        self._bound = None

    def _function(self, state: ModalState) -> Callable:
        if self._bound is None:
            f = self.functional
            self._bound = f.bind(state.model) if hasattr(f, "bind") else f
        return self._bound

    def prepare(self, state: ModalState) -> np.ndarray:
        _prepare_mode(self.mode, state)
        i = _mode_index(self.mode, state)
        v, _ = self._function(state)(state.vectors[:, i])
        self._ref = abs(float(v)) or 1.0
        return np.zeros(0)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        i = _mode_index(self.mode, state)
        v, dphi = self._function(state)(state.vectors[:, i])
        D = np.zeros_like(state.vectors)
        D[:, i] = self.sign * np.asarray(dphi) / self._ref
        return [Partials(self.sign * float(v) / self._ref, d_vectors=D, name=self.name)]


@dataclass
class UserResponse(Response):
    """A user-defined objective or constraint written in the problem file.

    ``function(eigenvalues, eigenvectors, densities) -> (value, d_eigenvalues, d_eigenvectors,
    d_densities)`` where eigenvalues (k,), eigenvectors (n_free, k) and densities (n_elem,); any of
    the partials may be ``None`` (zero). fem_eigopt does the adjoint and the chain rule;
    ``fem_eigopt check-grad`` verifies the partials by finite differences of the whole chain.
    As a constraint it means ``value <= 0``.
    """

    function: Callable = None
    name: str = "user"
    needs_modes: int = 1

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise InputError("UserResponse.function must be callable (eigenvalues, eigenvectors, densities)")
        self.max_mode = int(self.needs_modes)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        try:
            out = self.function(state.eigenvalues, state.vectors, state.densities)
            value, dl, dv, dr = out
        except Exception as exc:
            raise InputError(f"user response {self.name!r} failed: {type(exc).__name__}: {exc}") from exc
        k, n = state.eigenvalues.size, state.densities.size
        dl = None if dl is None else np.asarray(dl, dtype=float)
        dv = None if dv is None else np.asarray(dv, dtype=float)
        dr = None if dr is None else np.asarray(dr, dtype=float)
        if dl is not None and dl.shape != (k,):
            raise InputError(f"user response {self.name!r}: d_eigenvalues has shape {dl.shape}; expected ({k},)")
        if dv is not None and dv.shape != state.vectors.shape:
            raise InputError(f"user response {self.name!r}: d_eigenvectors has shape {dv.shape}; expected {state.vectors.shape}")
        if dr is not None and dr.shape != (n,):
            raise InputError(f"user response {self.name!r}: d_densities has shape {dr.shape}; expected ({n},)")
        return [Partials(float(value), dl, dv, dr, name=self.name)]
