"""Geometric constraints of shape designs: minimum thickness and maximum depth of cut of a profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fem_eigopt.errors import InputError
from fem_eigopt.responses.base import ModalState, Partials, Response


@dataclass
class ProfileThickness(Response):
    """h(x_k) ≥ h_lim at sample abscissae, h_lim = max(min_thickness, H0 − max_depth).

    For a :class:`~fem_eigopt.design.shape.ProfileShapeMap` h is affine in p, so the constraints
    ``1 − h(x_k) / h_lim ≤ 0`` are linear with exact partials ∂/∂p = −B(x_k)/h_lim. The depth of
    cut is H0 − h(x) (H0: the reference mesh's thickness). For ``kind="linear"`` and
    ``"bspline"`` parameter bounds give the same guarantee everywhere (h lies within the
    control values / coefficients); this constraint is for the natural cubic spline, which can
    undershoot between its controls.

    Parameters
    ----------
    min_thickness : float or None
        Smallest allowed thickness (m).
    max_depth : float or None
        Largest allowed depth of cut below the reference thickness (m).
    points : sequence of float or None
        Sample abscissae (m); None: every distinct vertex abscissa of the mesh.
    """

    min_thickness: float | None = None
    max_depth: float | None = None
    points: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if self.min_thickness is None and self.max_depth is None:
            raise InputError("ProfileThickness needs min_thickness and/or max_depth (m)")
        for n in ("min_thickness", "max_depth"):
            v = getattr(self, n)
            if v is not None and not (np.isfinite(v) and v > 0):
                raise InputError(f"ProfileThickness.{n} = {v!r}; allowed: None or a length > 0 (m)")
        self.name = "profile_thickness"
        self._jac: np.ndarray | None = None

    def prepare(self, state: ModalState) -> np.ndarray:
        shape_map = state.shape_map
        if shape_map is None or not hasattr(shape_map, "profile_jacobian"):
            raise InputError("ProfileThickness needs a ShapeDesign with a ProfileShapeMap")
        x = np.unique(shape_map.base[shape_map.along]) if self.points is None else np.asarray(self.points, float)
        self._jac = shape_map.profile_jacobian(x)
        self._offset = shape_map.profile(np.zeros(shape_map.n_params), x)  # h = jac @ p + offset
        limits = [v for v in (self.min_thickness,
                              None if self.max_depth is None else shape_map.height - self.max_depth) if v is not None]
        self._limit = max(limits)
        if not self._limit > 0:
            raise InputError(f"ProfileThickness: max_depth = {self.max_depth} leaves no thickness; allowed: < "
                             f"{shape_map.height}")
        return np.zeros(0)

    def evaluate(self, state: ModalState, bounds: np.ndarray) -> list[Partials]:
        if self._jac is None:
            self.prepare(state)
        h = self._jac @ state.parameters + self._offset
        return [Partials(float(1.0 - h[k] / self._limit), d_parameters=-self._jac[k] / self._limit,
                         name=f"thickness{k + 1}") for k in range(h.size)]
