"""Results on disk: run directories written atomically, pictures, ParaView files.

In: a finished or running optimisation (model, densities, modes, history). Out: files.

Modules: ``rundir`` (atomic writes, JSON/CSV/NPZ, new run directories), ``pictures``
(matplotlib figures), ``paraview`` (VTU).
"""
