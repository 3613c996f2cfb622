"""Objectives and constraints: functions of eigenvalues, eigenvectors and densities.

In: a :class:`~fem_eigopt.responses.base.ModalState` (modes, densities, model) and bound
variables. Out: :class:`~fem_eigopt.responses.base.Partials` — values and their partial
derivatives — which the evaluator turns into design gradients with the adjoint.

Modules: ``base`` (the Response interface, mode tracking), ``eigenvalue``, ``eigenvector``,
``volume``, ``user`` (responses written in the problem file).
"""
