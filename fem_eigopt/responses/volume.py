"""Volume responses: minimise the volume, or keep it below a fraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fem_eigopt.errors import InputError
from fem_eigopt.responses.base import ModalState, Partials, Response


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
class VolumeLimit(Response):
    """Material volume V = Σ_e ρ̄_e v_e within limits relative to a reference volume.

    Constraints ``V / (max_ratio · V_ref) − 1 ≤ 0`` (name ``volume_max``) and
    ``1 − V / (min_ratio · V_ref) ≤ 0`` (``volume_min``); ``min_ratio = max_ratio`` is not allowed
    (use e.g. 0.999 and 1 for a fixed volume). Partials: ∂V/∂ρ̄_e = v_e and ∂V/∂v_e = ρ̄_e, so the
    same constraint is exact for density designs (element volumes constant) and for shape designs
    (the shape evaluator chains ∂V/∂v_e through dv_e/dX and dX/dp). With a uniform material the
    mass is ρ V: a volume limit is a mass limit.

    Parameters
    ----------
    max_ratio, min_ratio : float or None
        Limits of V / V_ref (at least one).
    reference : float or None
        V_ref (m³); None: the volume of the starting design.
    """

    max_ratio: float | None = 1.0
    min_ratio: float | None = None
    reference: float | None = None

    def __post_init__(self) -> None:
        if self.max_ratio is None and self.min_ratio is None:
            raise InputError("VolumeLimit needs max_ratio and/or min_ratio")
        for n in ("max_ratio", "min_ratio", "reference"):
            v = getattr(self, n)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise InputError(f"VolumeLimit.{n} = {v!r}; allowed: None or a number > 0")
        if self.max_ratio is not None and self.min_ratio is not None and not self.min_ratio < self.max_ratio:
            raise InputError(f"VolumeLimit.min_ratio = {self.min_ratio!r}; allowed: < max_ratio = {self.max_ratio}")
        self.name = "volume_limit"
        self._ref = self.reference

    def prepare(self, state: ModalState) -> np.ndarray:
        if self.reference is None:
            self._ref = float(state.element_volumes @ state.densities)
        return np.zeros(0)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        if self._ref is None:
            self.prepare(state)
        V = float(state.element_volumes @ state.densities)
        out = []
        if self.max_ratio is not None:
            c = 1.0 / (self.max_ratio * self._ref)
            out.append(Partials(V * c - 1.0, d_densities=state.element_volumes * c,
                                d_element_volumes=state.densities * c, name="volume_max"))
        if self.min_ratio is not None:
            c = 1.0 / (self.min_ratio * self._ref)
            out.append(Partials(1.0 - V * c, d_densities=-state.element_volumes * c,
                                d_element_volumes=-state.densities * c, name="volume_min"))
        return out
