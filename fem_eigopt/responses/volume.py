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
