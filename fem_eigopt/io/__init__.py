"""Results on disk: run directories written atomically, pictures, ParaView files.

In: a finished or running optimisation (model, densities, modes, history). Out: files.

Modules: ``rundir`` (atomic writes, JSON/CSV/NPZ, new run directories), ``pictures``
(matplotlib figures: design, mode shapes, convergence, shape outlines), ``modes`` (vertex mode
shapes), ``isosurface`` (3D designs as ρ̄ = 0.5 surfaces), ``paraview`` (VTU, ``.vtu.series``),
``snapshots`` (designs kept during a run), ``animation`` (GIF/MP4), ``plot`` (every picture of a
run, at its end or re-rendered later: ``plot`` command).
"""
