"""Pictures of designs and convergence (matplotlib, no pyplot, no backend switching).

Figures are made with :class:`matplotlib.figure.Figure` and rendered by the Agg canvas directly,
so importing or calling these functions never changes the user's matplotlib backend and works
without a display.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from fem_eigopt.io.rundir import atomic_write_bytes


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure_png(fig, path: str | Path, dpi: int = 120) -> Path:
    """Render ``fig`` to PNG and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())


def design_figure(mesh, densities: np.ndarray, title: str = ""):
    """Element densities: a grey-scale map in 2D (black = solid), solid elements (ρ̄ > 0.5) in 3D."""
    densities = np.asarray(densities, dtype=float)
    p, t = mesh.p, mesh.t
    if mesh.dim() == 2:
        span = np.ptp(p, axis=1)
        aspect = span[1] / max(span[0], 1e-300)
        fig = _figure((8.0, max(1.5, 8.0 * aspect + 0.8)))
        ax = fig.add_subplot()
        from matplotlib.collections import PolyCollection

        verts = np.transpose(p[:, t], (2, 1, 0))  # (n_elem, n_vertices, 2)
        if t.shape[0] == 4:  # scikit-fem quads: counter-clockwise vertex order
            verts = verts[:, [0, 1, 2, 3]]
        coll = PolyCollection(verts, array=densities, cmap="gray_r", edgecolors="face", linewidths=0.0)
        coll.set_clim(0.0, 1.0)
        ax.add_collection(coll)
        ax.set_xlim(p[0].min(), p[0].max())
        ax.set_ylim(p[1].min(), p[1].max())
        ax.set_aspect("equal")
        fig.colorbar(coll, ax=ax, label="density", shrink=0.8)
    else:
        fig = _figure((8.0, 5.0))
        ax = fig.add_subplot(projection="3d")
        c = p[:, t].mean(axis=1)
        solid = densities > 0.5
        ax.scatter(c[0, solid], c[1, solid], c[2, solid], c=densities[solid], cmap="gray_r", vmin=0, vmax=1,
                   s=8, marker="s", depthshade=True)
        ax.set_box_aspect(np.ptp(p, axis=1))
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_zlabel("z")
    if title:
        ax.set_title(title)
    return fig


def save_design_png(mesh, densities: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Write the design picture (see :func:`design_figure`) to ``path``."""
    return save_figure_png(design_figure(mesh, densities, title), path)


def convergence_figure(history: Sequence[dict], n_omega: int = 4):
    """Objective, max constraint and the first angular frequencies against the evaluation number."""
    fig = _figure((8.0, 6.0))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    it = np.array([h["eval"] for h in history])
    ax1.plot(it, [h["f"] for h in history], label="objective (scaled)")
    ax1.plot(it, [h["max_g"] for h in history], label="max constraint", alpha=0.7)
    ax1.axhline(0.0, color="k", lw=0.5)
    ax1.legend()
    omega = np.array([np.asarray(h["omega"])[:n_omega] for h in history])
    for j in range(omega.shape[1]):
        ax2.plot(it, omega[:, j], label=f"ω{j + 1}")
    ax2.set_xlabel("evaluation")
    ax2.set_ylabel("ω [rad/s]")
    ax2.legend()
    return fig
