"""ParaView output: densities and mode shapes on the mesh as VTU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_vtu(path: str | Path, model, densities: np.ndarray | None = None, modes=None, n_modes: int = 6) -> Path:
    """Write the mesh with element densities and mode shapes to a ``.vtu`` file for ParaView.

    Cell data ``density``; point data ``mode_<i>`` (vertex displacements, padded to 3 components in
    2D) with the field data ``omega`` (rad/s). Written atomically (temp file + rename).
    """
    import os
    import tempfile

    import meshio
    from skfem.io.meshio import to_meshio

    mesh = model.basis.mesh
    point_data = {}
    if modes is not None:
        for i in range(min(n_modes, modes.eigenvalues.size)):
            u = model.nodal_displacements(modes.vectors[:, i])
            if u.shape[1] == 2:
                u = np.column_stack([u, np.zeros(u.shape[0])])
            point_data[f"mode_{i + 1}"] = u
    cell_data = {} if densities is None else {"density": [np.asarray(densities, dtype=float)]}
    mio = to_meshio(mesh, point_data=point_data, cell_data=cell_data, encode_cell_data=False)
    if mio.points.shape[1] == 2:
        mio.points = np.column_stack([mio.points, np.zeros(len(mio.points))])
    if modes is not None:
        mio.field_data = {"omega": np.asarray(modes.omega)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".vtu", dir=path.parent)
    os.close(fd)
    try:
        meshio.write(tmp, mio, file_format="vtu")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
