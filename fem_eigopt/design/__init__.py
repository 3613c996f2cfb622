"""Design parametrisations: from the optimiser's vector to what the finite-element model needs.

In: the design vector x (MMA's variables). Out: physical element densities ρ̄ (topology) with the
material interpolations E(ρ̄), ρ_m(ρ̄), or mesh vertex coordinates X(p) (shape) — each stage with its
transpose (vector–Jacobian product) for the chain rule back to x.

Modules: ``density`` (passive regions and the whole density chain), ``filters`` (density and
Helmholtz filters), ``projection`` (Heaviside projection, β-continuation), ``interpolation``
(SIMP, RAMP, mass laws), ``shape`` (shape maps p → X).
"""
