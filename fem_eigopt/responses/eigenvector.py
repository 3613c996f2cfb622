"""Eigenvector responses: modal amplitudes, quadratic forms of mode shapes, MAC against a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from fem_eigopt.errors import InputError
from fem_eigopt.fem.assembly import Model
from fem_eigopt.responses.base import (
    ModalState,
    Partials,
    Response,
    _check_mode,
    _mode_index,
    _prepare_mode,
)
from fem_eigopt.sensitivity.eigenvalues import _gather, element_quadratic_forms

# ---------------------------------------------------------------------------------------------
# Example eigenvector functionals: callables phi -> (value, dg/dphi)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModalAmplitude:
    """Weighted sum of squared modal amplitudes, ``g(φ) = Σ_j w_j φ[dof_j]²``.

    Squares make g independent of the sign convention of the mode shape. With M-normalised modes
    the amplitude is in m/√kg (mass-normalised displacement).

    Parameters
    ----------
    dofs : ndarray of int (n,)
        Positions among the **free** dofs (see :meth:`at_global_dofs`).
    weights : ndarray (n,), optional
        w_j, default 1.
    """

    dofs: np.ndarray
    weights: np.ndarray | None = None

    @classmethod
    def at_global_dofs(cls, model: Model, dofs: Sequence[int],
                       weights: Sequence[float] | None = None) -> "ModalAmplitude":
        """Build from global dof numbers; a fixed dof (amplitude always zero) is an input error."""
        d = np.asarray(dofs, dtype=int)
        if np.any(d < 0) or np.any(d >= model.n_dofs):
            raise InputError(f"amplitude dofs = {d.tolist()}; allowed: 0..{model.n_dofs - 1}")
        free = model.free_index[d]
        if np.any(free < 0):
            raise InputError(f"amplitude dofs {d[free < 0].tolist()} are fixed by supports; allowed: free dofs")
        return cls(free, None if weights is None else np.asarray(weights, dtype=float))

    def __call__(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient ``∂g/∂φ`` (n_free,)."""
        w = np.ones(len(self.dofs)) if self.weights is None else self.weights
        a = phi[self.dofs]
        grad = np.zeros_like(phi, dtype=float)
        np.add.at(grad, self.dofs, 2.0 * w * a)
        return float(w @ a**2), grad


@dataclass(frozen=True)
class QuadraticForm:
    """``g(φ) = ‖L φ‖²`` for a sparse (or dense) ``L`` of shape (r, n_free).

    E.g. L selecting the vertical dofs of a boundary (their modal energy), or a difference operator
    (a curvature measure).
    """

    L: sp.spmatrix

    def __call__(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient ``2 Lᵀ L φ`` (n_free,)."""
        Lphi = self.L @ phi
        return float(Lphi @ Lphi), 2.0 * (self.L.T @ Lphi)


@dataclass(frozen=True)
class ModalAssurance:
    """Modal assurance criterion with a **fixed** weighting W (Allemang & Brown 1982)::

        MAC(φ, φ_t) = (φ_tᵀ W φ)² / ((φ_tᵀ W φ_t)(φᵀ W φ))

    W must be symmetric positive (semi-)definite and independent of the design, e.g. the mass
    matrix of the solid structure ``model.mass()`` (M0) or the identity. Because W is fixed, the
    whole design dependence is through φ and :func:`eigenvector_adjoint` gives the full gradient.
    For the design-dependent M(s) as weighting use :func:`mass_weighted_mac` (explicit term).
    MAC is invariant to the scaling and sign of both vectors; 1 means parallel.

    Parameters
    ----------
    target : ndarray (n_free,)
    W : sparse matrix (n_free, n_free)
    """

    target: np.ndarray
    W: sp.spmatrix

    def __call__(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient ``∂MAC/∂φ`` (n_free,)."""
        value, grad, _ = _mac_parts(self.W, phi, self.target)
        return value, grad


def _mac_parts(W, phi, target):
    Wt, Wp = W @ target, W @ phi
    a, b, c = float(target @ Wp), float(target @ Wt), float(phi @ Wp)
    value = a * a / (b * c)
    grad = (2.0 * a / (b * c)) * Wt - (2.0 * a * a / (b * c * c)) * Wp
    return value, grad, (a, b, c)


def mass_weighted_mac(model: Model, M: sp.csr_matrix, phi: np.ndarray,
                      target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """MAC weighted by the current, design-dependent mass matrix M(s), with its explicit term.

    ``MAC = (φ_tᵀ M φ)² / ((φ_tᵀ M φ_t)(φᵀ M φ))`` depends on s_M directly through M as well as
    through φ. The total gradient is ``eigenvector_adjoint(..., dg_dphi)`` (the φ path) plus the
    explicit part returned here (φ, φ_t held fixed)::

        ∂MAC/∂s_M,e = 2a/(bc) φ_t,eᵀM_eφ_e − a²/(b²c) φ_t,eᵀM_eφ_t,e − a²/(bc²) φ_eᵀM_eφ_e

    with ``a = φ_tᵀMφ``, ``b = φ_tᵀMφ_t``, ``c = φᵀMφ``. The point masses are constant.

    Parameters
    ----------
    model : Model
    M : csr_matrix (n_free, n_free)
        The current mass matrix.
    phi, target : ndarray (n_free,)

    Returns
    -------
    value : float
    dg_dphi : ndarray (n_free,)
    dg_dsM_explicit : ndarray (n_elem,)
    """
    value, grad, (a, b, c) = _mac_parts(M, phi, target)
    pe = _gather(model, phi)
    te = _gather(model, target)
    Mp = np.einsum("eab,eb->ea", model.Me, pe)
    explicit = ((2.0 * a / (b * c)) * np.einsum("ea,ea->e", te, Mp)
                - (a * a / (b * b * c)) * element_quadratic_forms(model.Me, te)
                - (a * a / (b * c * c)) * np.einsum("ea,ea->e", pe, Mp))
    return value, grad, explicit




@dataclass
class ModeAmplitudeAt:
    """Squared modal displacement at the mesh vertex nearest ``point``, in ``component`` (0 = x).

    A specification bound to the model when the optimisation starts (the dof numbers are not known
    in the problem file); the bound functional is :class:`fem_eigopt.responses.eigenvector.ModalAmplitude`.
    """

    point: tuple
    component: int = 1

    def bind(self, model) -> Callable:
        from fem_eigopt.responses.eigenvector import ModalAmplitude

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
    the functionals of :mod:`fem_eigopt.sensitivity.eigenvalues`: ModalAmplitude, QuadraticForm, ModalAssurance),
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
