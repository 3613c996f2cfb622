"""Sensitivities, element by element: never a global ∂K.

In: a Model, Modes and partial derivatives of a response with respect to eigenvalues and
eigenvectors. Out: gradients with respect to the element scale factors s_K, s_M (or vertex
coordinates X), ready for the chain rule through the design parametrisation.

Modules: ``eigenvalues`` (simple and repeated eigenvalues, element energies), ``eigenvectors``
(adjoint solves for eigenvector functionals), ``shape`` (dλ/dX and the chain p → X → λ),
``gradcheck`` (Taylor tests and central differences).
"""
