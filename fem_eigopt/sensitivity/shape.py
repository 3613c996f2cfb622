"""Eigenvalue shape sensitivities: dλ/dX element by element and the chain p → X → λ.
"""

from __future__ import annotations

import logging

import numpy as np

from fem_eigopt.design.shape import ShapeMap
from fem_eigopt.fem.assembly import Model
from fem_eigopt.fem.geometry import coordinate_gradient
from fem_eigopt.solvers.modes import Modes

logger = logging.getLogger(__name__)

def eigenvalue_coordinate_gradients(
    model: Model,
    modes: Modes,
    s_K: np.ndarray | None = None,
    s_M: np.ndarray | None = None,
    X: np.ndarray | None = None,
) -> np.ndarray:
    """dλ_i/dX = φ_iᵀ(∂K/∂X − λ_i ∂M/∂X)φ_i for every mode (Fox & Kapoor 1968).

    Parameters
    ----------
    model : Model
        The model the modes belong to (at coordinates ``X``).
    modes : Modes
        M-normalised eigenpairs on the free dofs (``vectors`` (n_free, k)). Valid for simple
        eigenvalues; for a repeated one the result is one element of the non-smooth cluster
        derivative (a warning is logged).
    s_K, s_M : ndarray (n_elem,), optional
        Element scale factors with which K and M were assembled (default 1).
    X : ndarray (dim, n_vertices), optional
        Vertex coordinates of the analysed geometry (m); default the model's own.

    Returns
    -------
    ndarray (k, dim, n_vertices)
        Gradients of the eigenvalues ((rad/s)² per metre).
    """
    if modes.clusters:
        logger.warning("eigenvalue_coordinate_gradients: repeated eigenvalues %s are not differentiable; "
                       "the gradients of their members are not meaningful", modes.clusters)
    out = []
    for i, eigenvalue in enumerate(np.asarray(modes.eigenvalues, dtype=float)):
        phi_e = model.element_values(np.asarray(modes.vectors)[:, i:i + 1])
        out.append(coordinate_gradient(model, phi_e, phi_e, wK=[1.0], wM=[-eigenvalue], s_K=s_K, s_M=s_M, X=X))
    return np.stack(out) if out else np.empty((0,) + np.shape(X if X is not None else model.basis.mesh.p))


# ----------------------------------------------------------------------------------------------
# the chain p → X → λ


def eigenvalue_parameter_gradients(
    model0: Model,
    shape_map: ShapeMap,
    p: np.ndarray,
    modes_at_p: Modes,
    s_K: np.ndarray | None = None,
    s_M: np.ndarray | None = None,
) -> np.ndarray:
    """dλ_i/dp_j for the eigenpairs of the model at X(p).

    Parameters
    ----------
    model0 : Model
        The reference model (dofs, material, mesh topology); its own coordinates are not used.
    shape_map : ShapeMap
    p : ndarray (n_params,)
        Shape parameters at which ``modes_at_p`` were computed (from
        ``model_at_coordinates(model0, shape_map.coordinates(p))``).
    modes_at_p : Modes
        M-normalised, simple eigenpairs at p.
    s_K, s_M : ndarray (n_elem,), optional
        Element scale factors used in the assembly.

    Returns
    -------
    ndarray (k, n_params)
        Eigenvalue gradients ((rad/s)² per unit of p).
    """
    X = shape_map.coordinates(p)
    dX = eigenvalue_coordinate_gradients(model0, modes_at_p, s_K=s_K, s_M=s_M, X=X)
    return shape_map.vjp(p, dX)
