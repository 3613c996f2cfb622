"""The finite-element model: element matrices once, K and M re-assembled for each design.

In: a Problem (mesh, element, material, supports, point masses) and, per design, element scale
factors s_K, s_M (or moved vertex coordinates). Out: a :class:`~fem_eigopt.fem.assembly.Model` whose
``stiffness(s_K)`` and ``mass(s_M)`` return K and M on the free dofs on one fixed sparse pattern.

Modules: ``assembly`` (element matrices by scikit-fem, the fixed-pattern re-assembly, supports
eliminated), ``geometry`` (models at moved vertices, derivatives of element forms with respect to
the vertex coordinates, mesh validity).
"""
