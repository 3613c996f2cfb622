"""The problem: what a user describes, and how a problem file becomes one.

In: a problem file (a Python module with a ``problem(**parameters)`` factory) and ``--set`` overrides.
Out: a frozen :class:`~fem_eigopt.problem.definition.Problem` — mesh, element, material, supports,
point masses, analysis settings, design parametrisation, objective, constraints, optimiser settings.

Modules: ``definition`` (the Problem and its parts), ``mesh`` (mesh builders and file import),
``loading`` (problem files, overrides and their checks).
"""
