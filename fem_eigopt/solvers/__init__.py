"""Modal solvers: the leading eigenpairs of K x = λ M x.

In: K, M (free dofs, one pattern) for a sequence of designs. Out: :class:`~fem_eigopt.solvers.modes.Modes`
— eigenvalues, M-normalised sign-fixed mode shapes, clusters of repeated eigenvalues — and counts of
the work done. Every solver implements :class:`~fem_eigopt.solvers.base.EigenSolver`.

Modules: ``base`` (the interface), ``modes`` (the Modes type and the conventions every solver
shares), ``lanczos`` (shift-invert ARPACK), ``lobpcg`` (the one LOBPCG kernel), ``subspace``
(LOBPCG warm-started, preconditioned by a kept factorisation), ``amg`` (LOBPCG preconditioned by
algebraic multigrid, no factorisation), ``auto`` (which solver a model gets).
"""
