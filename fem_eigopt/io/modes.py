"""Mode shapes at the mesh vertices, ready to draw or to write (pictures, animations, VTU).

In: eigenvalues λ (rad/s)² and eigenvectors on the free dofs of a
:class:`~fem_eigopt.fem.assembly.Model`. Out: :class:`ModeShapes`, the vertex displacements of
each mode with its frequency, independent of the model (snapshots store them as they are).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["ModeShapes", "deformation_scale", "mode_label"]

TWO_PI = 2.0 * np.pi


@dataclass
class ModeShapes:
    """Vertex displacements of the first modes of one design.

    Attributes
    ----------
    eigenvalues : ndarray (k,)
        λ = ω² in (rad/s)², ascending.
    displacements : ndarray (k, n_vertices, dim)
        Mode shape i at the mesh vertices (M-normalised, so in m·kg^-1/2; only the shape matters).
    """

    eigenvalues: np.ndarray
    displacements: np.ndarray

    def __post_init__(self) -> None:
        self.eigenvalues = np.atleast_1d(np.asarray(self.eigenvalues, dtype=float))
        self.displacements = np.asarray(self.displacements, dtype=float)
        if self.displacements.ndim != 3 or self.displacements.shape[0] != self.eigenvalues.size:
            raise ValueError(f"displacements of shape {self.displacements.shape}; expected "
                             f"({self.eigenvalues.size}, n_vertices, dim)")

    @property
    def n(self) -> int:
        """Number of modes k."""
        return int(self.eigenvalues.size)

    @property
    def omega(self) -> np.ndarray:
        """Angular frequencies ω = √λ (rad/s), shape (k,); round-off below zero gives 0."""
        return np.sqrt(np.clip(self.eigenvalues, 0.0, None))

    @property
    def frequencies_hz(self) -> np.ndarray:
        """Frequencies f = ω / 2π (Hz), shape (k,)."""
        return self.omega / TWO_PI

    def names(self) -> list[str]:
        """Point-data names with the frequency, e.g. ``"mode 1 (27.73 Hz)"``, one per mode."""
        return [f"mode {i + 1} ({f:.4g} Hz)" for i, f in enumerate(self.frequencies_hz)]

    def first(self, n: int) -> "ModeShapes":
        """The first ``n`` modes."""
        return ModeShapes(self.eigenvalues[:n], self.displacements[:n])

    @classmethod
    def from_vectors(cls, model, eigenvalues: np.ndarray, vectors: np.ndarray, n: int | None = None) -> "ModeShapes":
        """Vertex displacements from eigenvectors on the free dofs.

        Parameters
        ----------
        model : Model
            The model the vectors belong to (``nodal_displacements`` maps them to the vertices).
        eigenvalues : ndarray (k,)
            λ in (rad/s)².
        vectors : ndarray (n_free, k)
            Mode shapes on the free dofs.
        n : int, optional
            Keep the first ``n`` modes (default all).
        """
        lam = np.atleast_1d(np.asarray(eigenvalues, dtype=float))
        vec = np.asarray(vectors)
        k = lam.size if n is None else min(int(n), lam.size, vec.shape[1])
        disp = np.stack([model.nodal_displacements(vec[:, i]) for i in range(k)]) if k else \
            np.zeros((0, model.basis.mesh.p.shape[1], model.dim))
        return cls(lam[:k], disp)

    @classmethod
    def from_modes(cls, model, modes, n: int | None = None) -> "ModeShapes":
        """From a :class:`~fem_eigopt.solvers.modes.Modes` (``eigenvalues``, ``vectors``)."""
        return cls.from_vectors(model, modes.eigenvalues, modes.vectors, n)


def mode_label(i: int, eigenvalue: float) -> str:
    """``"mode 1: f = 11.82 Hz, ω = 74.25 rad/s"`` for mode index ``i`` (0-based) and λ in (rad/s)²."""
    om = float(np.sqrt(max(float(eigenvalue), 0.0)))
    return f"mode {i + 1}: f = {om / TWO_PI:.4g} Hz, ω = {om:.4g} rad/s"


def deformation_scale(coordinates: np.ndarray, displacement: np.ndarray, fraction: float = 0.1) -> float:
    """Factor that makes the largest drawn displacement ``fraction`` of the structure's size.

    Parameters
    ----------
    coordinates : ndarray (dim, n_vertices)
        Vertex coordinates (m).
    displacement : ndarray (n_vertices, dim)
        A mode shape.
    fraction : float
        Largest displacement / largest extent of the bounding box.

    Returns
    -------
    float
        The scale factor (1 when the mode is zero).
    """
    size = float(np.max(np.ptp(np.asarray(coordinates), axis=1)))
    umax = float(np.max(np.linalg.norm(displacement, axis=1))) if displacement.size else 0.0
    return fraction * size / umax if umax > 0 else 1.0
