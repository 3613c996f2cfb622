"""A response written in the problem file: values and partials of (λ, φ, ρ); the adjoint is ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from fem_eigopt.errors import InputError
from fem_eigopt.responses.base import ModalState, Partials, Response


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
