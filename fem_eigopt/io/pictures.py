"""Pictures of designs, mode shapes and convergence (matplotlib, no pyplot, no backend switching).

Figures are made with :class:`matplotlib.figure.Figure` and rendered by the Agg canvas directly,
so importing or calling these functions never changes the user's matplotlib backend and works
without a display. matplotlib is imported inside the functions (importing this module is cheap).

Pictures (all return a Figure; ``save_figure_png`` writes one atomically):

* :func:`design_figure` — 2D: densities in grey with supports, point masses, axes in m;
  3D: the ρ̄ = 0.5 isosurface (:mod:`fem_eigopt.io.isosurface`) from three views, or a note that
  no element is solid yet;
* :func:`mode_shapes_figure` — the first modes drawn deformed over the design (2D: the solid
  elements, coloured by displacement; 3D: the isosurface), f in Hz and ω in rad/s in each title;
* :func:`convergence_figure` — the objective as the physical quantity it maximises (e.g.
  min(ω1, ω2) in rad/s), the constraints on their own panel, the frequencies in Hz and rad/s,
  β changes marked, target frequencies and bounds drawn;
* :func:`shape_outline_figure`, :func:`shape_modes_figure` — shape designs: initial and final
  outlines overlaid, the modes on the final shape.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fem_eigopt.io.modes import ModeShapes, deformation_scale, mode_label
from fem_eigopt.io.rundir import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = ["save_figure_png", "figure_rgb", "design_figure", "save_design_png", "mode_shapes_figure",
           "convergence_figure", "shape_outline_figure", "shape_modes_figure", "objective_series",
           "frequency_unit", "DPI", "WIDTH_IN"]

#: resolution of every PNG (dots per inch) and the width of every figure (inches): 1200 px wide
DPI = 120
WIDTH_IN = 10.0

TWO_PI = 2.0 * np.pi
_SOLID = 0.5
_SURFACE_RGB = np.array([0.55, 0.62, 0.72])
_LIGHT = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])


# ----------------------------------------------------------------------------------------------
# figures and files


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure_png(fig, path: str | Path, dpi: int = DPI) -> Path:
    """Render ``fig`` to PNG (``dpi`` dots per inch, the figure's own size) and write it atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
    dpi : int

    Returns
    -------
    Path
        ``path``; the image is ``figsize · dpi`` pixels.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())


def figure_rgb(fig, dpi: int = DPI) -> np.ndarray:
    """The rendered figure as an RGB image, shape (height, width, 3), uint8 (animation frames)."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()


def _no_solid_note(ax, densities: np.ndarray, three_d: bool = False) -> None:
    rho_max = float(np.max(densities)) if np.size(densities) else 0.0
    text = (f"no solid yet: every physical density ≤ {_SOLID} (max ρ̄ = {rho_max:.3f})\n"
            + ("the design is still grey: shown is the whole domain, grey by density" if three_d
             else "the design is still grey: no element is solid yet"))
    kw = dict(ha="center", va="center", fontsize=11, color="darkred",
              bbox=dict(boxstyle="round", fc="lightyellow", ec="darkred"))
    if three_d:  # on the figure, above the 3D surfaces
        bb = ax.get_position()
        ax.figure.text(0.5 * (bb.x0 + bb.x1), 0.5 * (bb.y0 + bb.y1), text, zorder=10, **kw)
    else:
        ax.text(0.5, 0.5, text, transform=ax.transAxes, **kw)


# ----------------------------------------------------------------------------------------------
# 2D helpers


def _coords(mesh, coordinates: np.ndarray | None) -> np.ndarray:
    return mesh.p if coordinates is None else np.asarray(coordinates, dtype=float)


def _polygons(mesh, p: np.ndarray) -> np.ndarray:
    """Element polygons (n_elem, n_corners, 2) from vertex coordinates p (2, n_vertices)."""
    return np.transpose(p[:, mesh.t], (2, 1, 0))


def _supports(model) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """Fixed vertex locations grouped by the fixed components: [(xy (dim, n), components), ...]."""
    if model is None or getattr(model, "fixed_dofs", None) is None or model.fixed_dofs.size == 0:
        return []
    fixed = model.fixed_dofs
    locs = model.basis.doflocs[:, fixed]
    comp = model.dof_component[fixed]
    scale = float(np.max(np.ptp(model.basis.mesh.p, axis=1))) or 1.0
    keys = np.round(locs / (1e-9 * scale)).astype(np.int64)
    _, inv = np.unique(keys.T, axis=0, return_inverse=True)
    inv = np.ravel(inv)
    n = inv.max() + 1
    masks = np.zeros((n, model.dim), dtype=bool)
    masks[inv, comp] = True
    first = np.zeros(n, dtype=np.int64)
    first[inv[::-1]] = np.arange(inv.size)[::-1]
    pts = locs[:, first]
    groups = []
    for combo in np.unique(masks, axis=0):
        sel = np.all(masks == combo, axis=1)
        groups.append((pts[:, sel], tuple(int(c) for c in np.flatnonzero(combo))))
    return groups


def _support_label(components: tuple[int, ...], dim: int) -> str:
    names = "xyz"
    fixed = " = ".join(f"u{names[c]}" for c in components) + " = 0"
    return f"support ({'all' if len(components) == dim else 'partly'}: {fixed})"


def _draw_supports_2d(ax, model) -> None:
    for pts, comps in _supports(model):
        full = len(comps) == model.dim
        ax.plot(pts[0], pts[1], linestyle="none", marker="^", markersize=9 if pts.shape[1] < 6 else 6,
                markerfacecolor="tab:red" if full else "white", markeredgecolor="tab:red", markeredgewidth=1.5,
                label=_support_label(comps, model.dim), zorder=5, clip_on=False)


def _draw_masses_2d(ax, problem) -> None:
    from matplotlib.patches import Circle

    for i, pm in enumerate(getattr(problem, "point_masses", ()) or ()):
        at = np.asarray(pm.at, dtype=float)
        ax.plot(at[0], at[1], linestyle="none", marker="o", markersize=11, markerfacecolor="tab:orange",
                markeredgecolor="k", label=f"point mass {pm.mass:.4g} kg" if i < 4 else None, zorder=6,
                clip_on=False)
        if pm.radius > 0:
            ax.add_patch(Circle((at[0], at[1]), pm.radius, fill=False, ls="--", ec="tab:orange", zorder=6))


def _legend(ax, **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        seen = {}
        for h, lab in zip(handles, labels):
            seen.setdefault(lab, h)
        ax.legend(list(seen.values()), list(seen.keys()), fontsize=8, framealpha=0.85, **kw)


def _height_2d(p: np.ndarray, panels: int = 1, extra: float = 1.0, pad: float = 1.25) -> float:
    span = np.ptp(p, axis=1)
    aspect = span[1] / max(span[0], 1e-300)
    return float(np.clip(panels * ((WIDTH_IN - 1.6) * aspect * pad + 0.55) + extra, 2.5, 14.0))


# ----------------------------------------------------------------------------------------------
# 3D helpers


def _face_normals(tri: np.ndarray) -> np.ndarray:
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)


def _draw_surface(ax, verts: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Add a Lambert-shaded triangle surface (vertices (n, 3), faces (m, 3)) to a 3D axes."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    tri = verts[faces]
    shade = 0.35 + 0.65 * np.abs(_face_normals(tri) @ _LIGHT)
    base = np.broadcast_to(_SURFACE_RGB, (faces.shape[0], 3)) if colors is None else colors[:, :3]
    rgb = np.clip(base * shade[:, None], 0.0, 1.0)
    coll = Poly3DCollection(tri, facecolors=rgb, edgecolors="none", linewidths=0.0)
    ax.add_collection3d(coll)


def _box_edges(ax, lo: np.ndarray, hi: np.ndarray) -> None:
    xs = [lo[0], hi[0]]
    ys = [lo[1], hi[1]]
    zs = [lo[2], hi[2]]
    for y in ys:
        for z in zs:
            ax.plot(xs, [y, y], [z, z], color="0.6", lw=0.6)
    for x in xs:
        for z in zs:
            ax.plot([x, x], ys, [z, z], color="0.6", lw=0.6)
    for x in xs:
        for y in ys:
            ax.plot([x, x], [y, y], zs, color="0.6", lw=0.6)


def _setup_3d(ax, lo: np.ndarray, hi: np.ndarray, view: tuple[float, float], labels: bool = True) -> None:
    span = np.maximum(hi - lo, 1e-12)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    from matplotlib.ticker import MaxNLocator

    ax.set_box_aspect(np.maximum(span, 0.04 * span.max()), zoom=1.05)
    ax.view_init(elev=view[0], azim=view[1])
    for axis, extent in zip((ax.xaxis, ax.yaxis, ax.zaxis), span):
        axis.set_major_locator(MaxNLocator(max(2, min(5, int(6 * extent / span.max()) + 1))))
    if view[0] in (0, 90) or view[1] in (0, -90, 90):
        ax.set_proj_type("ortho")
    if labels:
        ax.set_xlabel("x [m]", fontsize=8, labelpad=2)
        ax.set_ylabel("y [m]", fontsize=8, labelpad=2)
        ax.set_zlabel("z [m]", fontsize=8, labelpad=2)
    ax.tick_params(labelsize=7, pad=0)


def _draw_supports_3d(ax, model) -> None:
    for pts, comps in _supports(model):
        full = len(comps) == model.dim
        ax.scatter(pts[0], pts[1], pts[2], s=6, marker="^", c="tab:red" if full else "white", edgecolors="tab:red",
                   depthshade=False, label=_support_label(comps, model.dim))


def _draw_masses_3d(ax, problem) -> None:
    for i, pm in enumerate(getattr(problem, "point_masses", ()) or ()):
        at = np.asarray(pm.at, dtype=float)
        ax.scatter([at[0]], [at[1]], [at[2]], s=70, marker="o", c="tab:orange", edgecolors="k", depthshade=False,
                   label=f"point mass {pm.mass:.4g} kg" if i < 4 else None)


_VIEWS_3D = (("isometric", (24.0, -58.0)), ("side (x–z)", (0.0, -90.0)), ("top (x–y)", (90.0, -90.0)))


# ----------------------------------------------------------------------------------------------
# design


def design_figure(mesh, densities: np.ndarray, title: str = "", *, model=None, problem=None,
                  coordinates: np.ndarray | None = None, surface=None):
    """The design: grey densities (2D) or the ρ̄ = 0.5 isosurface from three views (3D).

    Parameters
    ----------
    mesh : skfem.Mesh
    densities : ndarray (n_elem,)
        Physical densities ρ̄ in [0, 1] (black / solid surface = 1).
    title : str
    model : Model, optional
        Its fixed dofs are drawn as supports (filled triangle: all components fixed; open: some).
    problem : Problem, optional
        Its point masses are drawn (orange dot, mass in kg; dashed circle = the spreading radius).
    coordinates : ndarray (dim, n_vertices), optional
        Moved vertex coordinates (m) instead of ``mesh.p``.
    surface : Surface, optional
        A precomputed isosurface (3D).

    Returns
    -------
    matplotlib.figure.Figure
        2D: 1200 px wide, height from the domain's aspect ratio; 3D: 1200 × 960 px.
    """
    densities = np.asarray(densities, dtype=float)
    p = _coords(mesh, coordinates)
    if mesh.dim() == 2:
        from matplotlib.collections import PolyCollection

        fig = _figure((WIDTH_IN, _height_2d(p, extra=1.1)))
        ax = fig.add_subplot()
        coll = PolyCollection(_polygons(mesh, p), array=densities, cmap="gray_r", edgecolors="face", linewidths=0.0)
        coll.set_clim(0.0, 1.0)
        ax.add_collection(coll)
        _draw_supports_2d(ax, model)
        _draw_masses_2d(ax, problem)
        span = np.ptp(p, axis=1)
        m = 0.02 * span.max()
        ax.set_xlim(p[0].min() - m, p[0].max() + m)
        ax.set_ylim(p[1].min() - m, p[1].max() + m)
        ax.set_aspect("equal")
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
        fig.colorbar(coll, ax=ax, label="physical density ρ̄", shrink=0.9, location="bottom", aspect=50,
                     fraction=0.08, pad=0.02)
        _legend(ax, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=3, borderaxespad=0.2)
        if not np.any(densities > _SOLID):
            _no_solid_note(ax, densities)
        if title:
            ax.set_title(title, loc="left")
        return fig

    import matplotlib as mpl

    from fem_eigopt.io.isosurface import boundary_surface, density_isosurface, nodal_average

    if surface is None:
        surface = density_isosurface(mesh, densities, coordinates=coordinates)
    colors = None
    shown = surface
    if surface.n_triangles == 0:  # no solid yet: the domain's boundary, grey by density
        shown = boundary_surface(mesh, coordinates)
        nodal = nodal_average(mesh, densities)
        colors = mpl.colormaps["gray_r"](np.clip(nodal[shown.faces].mean(axis=1), 0, 1) * 0.8 + 0.1)
    lo, hi = p.min(axis=1), p.max(axis=1)
    span = np.maximum(hi - lo, 1e-12)
    slender = np.sort(span)[1] / span.max() < 0.5
    if slender:
        h_side = float(np.clip((WIDTH_IN - 1.2) * span[2] / span[0] + 0.7, 1.3, 4.0))
        h_top = float(np.clip((WIDTH_IN - 1.2) * span[1] / span[0] + 0.7, 1.3, 4.0))
        fig = _figure((WIDTH_IN, 4.2 + h_side + h_top + 0.8))
        gs = fig.add_gridspec(3, 1, height_ratios=[4.2, h_side, h_top])
        ax_iso = fig.add_subplot(gs[0], projection="3d")
        ax_side, ax_top = fig.add_subplot(gs[1]), fig.add_subplot(gs[2])
    else:
        fig = _figure((WIDTH_IN, 4.6))
        gs = fig.add_gridspec(1, 3)
        ax_iso = fig.add_subplot(gs[0], projection="3d")
        ax_side, ax_top = fig.add_subplot(gs[1]), fig.add_subplot(gs[2])
    _draw_surface(ax_iso, shown.vertices, shown.faces, colors)
    _box_edges(ax_iso, lo, hi)
    _draw_supports_3d(ax_iso, model)
    _draw_masses_3d(ax_iso, problem)
    _setup_3d(ax_iso, lo, hi, _VIEWS_3D[0][1])
    ax_iso.set_title("isometric view", fontsize=9)
    for ax, (a, b, depth, name) in ((ax_side, (0, 2, 1, "side view (looking along +y)")),
                                    (ax_top, (0, 1, 2, "top view (looking along −z)"))):
        flip = depth == 2  # looking down: the nearest faces have the largest z
        _draw_projection(ax, shown.vertices, shown.faces, (a, b), depth, colors, nearest_high=flip)
        _draw_projected_marks(ax, model, problem, (a, b))
        m = 0.03 * span.max()
        ax.set_xlim(lo[a] - m, hi[a] + m)
        ax.set_ylim(lo[b] - m, hi[b] + m)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{'xyz'[a]} [m]", fontsize=8)
        ax.set_ylabel(f"{'xyz'[b]} [m]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(name, fontsize=9)
    if surface.n_triangles == 0:
        _no_solid_note(ax_iso, densities, three_d=True)
    _legend(ax_iso, loc="upper left")
    head = title or "design"
    what = (f"surface ρ̄ = {_SOLID}, {surface.n_triangles} triangles" if surface.n_triangles else
            "no solid yet: domain boundary, grey by density")
    fig.suptitle(f"{head}\n{what} (thin grey lines: the design domain)", fontsize=11)
    return fig


def _draw_projection(ax, verts: np.ndarray, faces: np.ndarray, plane: tuple[int, int], depth: int,
                     colors: np.ndarray | None = None, nearest_high: bool = False) -> None:
    """Orthographic view of a triangle surface on a 2D axes (painter's algorithm, Lambert shading)."""
    from matplotlib.collections import PolyCollection

    if faces.shape[0] == 0:
        return
    tri = verts[faces]
    normal = _face_normals(tri)
    view = np.zeros(3)
    view[depth] = 1.0
    shade = 0.3 + 0.45 * np.abs(normal[:, depth]) + 0.25 * np.abs(normal @ _LIGHT)
    base = np.broadcast_to(_SURFACE_RGB, (faces.shape[0], 3)) if colors is None else colors[:, :3]
    rgb = np.clip(base * shade[:, None], 0.0, 1.0)
    d = tri[:, :, depth].mean(axis=1)
    order = np.argsort(d if nearest_high else -d, kind="stable")  # far first
    poly = tri[order][:, :, list(plane)]
    ax.add_collection(PolyCollection(poly, facecolors=rgb[order], edgecolors=rgb[order], linewidths=0.2))


def _draw_projected_marks(ax, model, problem, plane: tuple[int, int]) -> None:
    a, b = plane
    for pts, comps in _supports(model):
        full = len(comps) == model.dim
        ax.plot(pts[a], pts[b], ls="none", marker="^", ms=5, mfc="tab:red" if full else "white", mec="tab:red",
                zorder=5, clip_on=False)
    for pm in getattr(problem, "point_masses", ()) or ():
        ax.plot(pm.at[a], pm.at[b], ls="none", marker="o", ms=9, mfc="tab:orange", mec="k", zorder=6, clip_on=False)


def save_design_png(mesh, densities: np.ndarray, path: str | Path, title: str = "", **kw: Any) -> Path:
    """Write the design picture (see :func:`design_figure`, same keywords) to ``path``."""
    return save_figure_png(design_figure(mesh, densities, title, **kw), path)


# ----------------------------------------------------------------------------------------------
# mode shapes


def _mode_grid(n: int, slender: bool) -> tuple[int, int]:
    if slender or n == 1:
        return n, 1
    return int(np.ceil(n / 2)), 2


def mode_shapes_figure(mesh, shapes: ModeShapes, densities: np.ndarray | None = None, n: int = 4, title: str = "",
                       *, coordinates: np.ndarray | None = None, model=None, problem=None, surface=None,
                       amplitude: float = 0.08):
    """The first ``n`` mode shapes drawn deformed over the design.

    Parameters
    ----------
    mesh : skfem.Mesh
    shapes : ModeShapes
        Vertex displacements and eigenvalues of the modes.
    densities : ndarray (n_elem,), optional
        Physical densities; None draws every element as solid (shape designs, solid structures).
        2D: the elements with ρ̄ > 0.5 are drawn deformed, coloured by the displacement magnitude,
        over the undeformed design in light grey (all elements in grey by density when none is
        solid yet). 3D: the ρ̄ = 0.5 isosurface, deformed and coloured.
    n : int
        Number of modes drawn (at most ``shapes.n``).
    title : str
    coordinates : ndarray (dim, n_vertices), optional
        Moved vertex coordinates (m).
    model, problem : optional
        Supports and point masses drawn on the 2D undeformed design.
    surface : Surface, optional
        Precomputed 3D isosurface.
    amplitude : float
        Largest drawn displacement as a fraction of the structure's largest extent.

    Returns
    -------
    matplotlib.figure.Figure
        1200 px wide. Each panel's title gives f in Hz and ω in rad/s.
    """
    import matplotlib as mpl

    p = _coords(mesh, coordinates)
    n = max(1, min(int(n), shapes.n))
    rho = np.ones(mesh.t.shape[1]) if densities is None else np.asarray(densities, dtype=float)
    cmap = mpl.colormaps["viridis"]
    norm = mpl.colors.Normalize(0.0, 1.0)
    if mesh.dim() == 2:
        from matplotlib.collections import PolyCollection

        span = np.ptp(p, axis=1)
        slender = span[1] / max(span[0], 1e-300) < 0.6
        rows, cols = _mode_grid(n, slender)
        # each panel shows the domain plus the exaggerated deformation on both sides
        panel_w = (WIDTH_IN - 1.2) / cols
        panel_h = panel_w * (span[1] + 2 * amplitude * span.max()) / max(span[0], 1e-300) + 0.45
        fig = _figure((WIDTH_IN, float(np.clip(rows * panel_h + 1.1, 2.5, 14.0))))
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        solid = rho > _SOLID
        polys0 = _polygons(mesh, p)
        for i, ax in enumerate(axes):
            if i >= n:
                ax.set_visible(False)
                continue
            u = shapes.displacements[i]
            scale = deformation_scale(p, u, amplitude)
            pd = p + scale * u.T
            mag = np.linalg.norm(u, axis=1)
            mag = mag / (mag.max() or 1.0)
            emag = mag[mesh.t].mean(axis=0)
            under = PolyCollection(polys0, array=rho, cmap="gray_r", edgecolors="none", alpha=0.18)
            under.set_clim(0, 1)
            ax.add_collection(under)
            if np.any(solid):
                deformed = PolyCollection(_polygons(mesh, pd)[solid], array=emag[solid], cmap=cmap, norm=norm,
                                          edgecolors="face", linewidths=0.2)
            else:
                deformed = PolyCollection(_polygons(mesh, pd), array=rho, cmap="gray_r", edgecolors="face",
                                          linewidths=0.0)
                deformed.set_clim(0, 1)
            ax.add_collection(deformed)
            if i == 0:
                _draw_supports_2d(ax, model)
                _draw_masses_2d(ax, problem)
            m = 0.02 * span.max()
            ax.set_xlim(p[0].min() - m, p[0].max() + m)
            # every panel the same window: the domain plus the largest drawn displacement
            reach = amplitude * span.max() + m
            ax.set_ylim(p[1].min() - reach, p[1].max() + reach)
            ax.set_aspect("equal")
            ax.set_title(mode_label(i, shapes.eigenvalues[i]), fontsize=10)
            ax.set_ylabel("y [m]")
            ax.tick_params(labelsize=8)
            if not np.any(solid) and i == 0:
                _no_solid_note(ax, rho)
        for ax in axes[max(0, n - cols):n]:
            ax.set_xlabel("x [m]")
        if np.any(solid):
            sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
            fig.colorbar(sm, ax=axes[:n].tolist(), label="|u| / max |u| (mode shape, arbitrary scale)",
                         location="bottom", shrink=0.6, aspect=50, fraction=0.04, pad=0.01)
        fig.suptitle((title + "\n" if title else "")
                     + f"first {n} mode shapes (deformation exaggerated; light grey: undeformed design)", fontsize=11)
        return fig

    from fem_eigopt.io.isosurface import boundary_surface, density_isosurface

    if surface is None:
        surface = density_isosurface(mesh, rho, coordinates=coordinates)
    no_solid = surface.n_triangles == 0
    if no_solid:  # no solid yet: the modes on the domain's boundary
        surface = boundary_surface(mesh, coordinates)
    rows, cols = _mode_grid(n, False)
    fig = _figure((WIDTH_IN, 3.4 * rows + 1.0))
    lo0, hi0 = p.min(axis=1), p.max(axis=1)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        u = shapes.displacements[i]
        scale = deformation_scale(p, u, amplitude)
        us = surface.field(u)
        vd = surface.vertices + scale * us
        mag = np.linalg.norm(us, axis=1)
        mag = mag / (mag.max() or 1.0)
        _draw_surface(ax, vd, surface.faces, cmap(norm(mag[surface.faces].mean(axis=1))))
        lo = np.minimum(lo0, vd.min(axis=0))
        hi = np.maximum(hi0, vd.max(axis=0))
        _box_edges(ax, lo0, hi0)
        _setup_3d(ax, lo, hi, _VIEWS_3D[0][1])
        ax.set_title(mode_label(i, shapes.eigenvalues[i]), fontsize=10)
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=fig.axes, label="|u| / max |u| (mode shape, arbitrary scale)", location="bottom",
                 shrink=0.5, aspect=50, fraction=0.03)
    where = (f"on the whole domain (no solid yet: every ρ̄ ≤ {_SOLID})" if no_solid else
             f"on the surface ρ̄ = {_SOLID}")
    fig.suptitle((title + "\n" if title else "")
                 + f"first {n} mode shapes {where} (deformation exaggerated)", fontsize=11)
    return fig


# ----------------------------------------------------------------------------------------------
# shape designs


def _outline_segments(mesh, p: np.ndarray) -> np.ndarray:
    """Boundary edges (n_edges, 2, 2) of a 2D mesh at coordinates p."""
    facets = mesh.facets[:, mesh.boundary_facets()]
    return np.transpose(p[:, facets], (2, 1, 0))


def shape_outline_figure(mesh, initial: np.ndarray, final: np.ndarray, title: str = "", *, model=None, problem=None):
    """Initial and final shapes of a shape design overlaid.

    Parameters
    ----------
    mesh : skfem.Mesh
        The mesh (connectivity; its own coordinates are not used).
    initial, final : ndarray (dim, n_vertices)
        Vertex coordinates (m) before and after the optimisation.
    title : str
    model, problem : optional
        Supports and point masses drawn (2D).

    Returns
    -------
    matplotlib.figure.Figure
        2D: the final mesh in light grey, the initial outline dashed, the final outline solid.
        3D: the boundary faces of the final shape, the initial shape's bounding edges.
    """
    initial = np.asarray(initial, dtype=float)
    final = np.asarray(final, dtype=float)
    if mesh.dim() == 2:
        from matplotlib.collections import LineCollection, PolyCollection

        allp = np.concatenate([initial, final], axis=1)
        fig = _figure((WIDTH_IN, _height_2d(allp, extra=0.9)))
        ax = fig.add_subplot()
        ax.add_collection(PolyCollection(_polygons(mesh, final), facecolors="0.85", edgecolors="0.65",
                                         linewidths=0.3))
        ax.add_collection(LineCollection(_outline_segments(mesh, initial), colors="tab:blue", linestyles="--",
                                         linewidths=1.3, label="initial shape"))
        ax.add_collection(LineCollection(_outline_segments(mesh, final), colors="k", linewidths=1.8,
                                         label="final shape"))
        _draw_supports_2d(ax, model)
        _draw_masses_2d(ax, problem)
        m = 0.03 * np.ptp(allp, axis=1).max()
        ax.set_xlim(allp[0].min() - m, allp[0].max() + m)
        ax.set_ylim(allp[1].min() - m, allp[1].max() + m)
        ax.set_aspect("equal")
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
        move = float(np.max(np.linalg.norm(final - initial, axis=0)))
        ax.set_title((title + "\n" if title else "") + f"initial (dashed) and final (solid) outlines; "
                     f"largest vertex move {move:.4g} m", fontsize=10)
        _legend(ax, loc="best")
        return fig
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    fig = _figure((WIDTH_IN, 7.0))
    ax = fig.add_subplot(projection="3d")
    faces = mesh.facets[:, mesh.boundary_facets()]
    tri = np.transpose(final[:, faces], (2, 1, 0))
    shade = 0.35 + 0.65 * np.abs(_face_normals(tri[:, :3]) @ _LIGHT)
    ax.add_collection3d(Poly3DCollection(tri, facecolors=np.clip(_SURFACE_RGB * shade[:, None], 0, 1),
                                         edgecolors="none"))
    lo = np.minimum(initial.min(axis=1), final.min(axis=1))
    hi = np.maximum(initial.max(axis=1), final.max(axis=1))
    _box_edges(ax, initial.min(axis=1), initial.max(axis=1))
    _setup_3d(ax, lo, hi, _VIEWS_3D[0][1])
    ax.set_title((title + "\n" if title else "") + "final shape (surface); grey box: initial bounding box",
                 fontsize=10)
    return fig


def shape_modes_figure(mesh, final: np.ndarray, shapes: ModeShapes, n: int = 4, title: str = "", **kw: Any):
    """The first ``n`` mode shapes on the final shape of a shape design (all elements solid).

    Parameters
    ----------
    mesh : skfem.Mesh
    final : ndarray (dim, n_vertices)
        Final vertex coordinates (m).
    shapes : ModeShapes
    n : int
    title : str
    **kw
        Passed to :func:`mode_shapes_figure` (``model``, ``problem``, ``amplitude``).
    """
    return mode_shapes_figure(mesh, shapes, None, n, title, coordinates=final, **kw)


# ----------------------------------------------------------------------------------------------
# convergence

_HZ_RESPONSES = ("TargetFrequencies", "FrequencyBound", "KeepOutBand")
_OBJECTIVE_OWNED = re.compile(r"^g_(bound_mode|gap_below_mode|gap_above_mode)\d+$")


def _num(v: Any) -> float:
    if v is None or v == "":
        return np.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


def _column(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([_num(h.get(key)) for h in history], dtype=float)


def _omega_matrix(history: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """ω (rad/s) of every row, shape (n_rows, n_modes); from ``omega1..`` columns or ``omega`` arrays."""
    if history and "omega" in history[0] and not isinstance(history[0]["omega"], (int, float, str)):
        k = min(np.size(h["omega"]) for h in history)
        return np.array([np.asarray(h["omega"], dtype=float)[:k] for h in history])
    k = 0
    while history and f"omega{k + 1}" in history[0]:
        k += 1
    return np.column_stack([_column(history, f"omega{j + 1}") for j in range(k)]) if k else np.zeros((len(history), 0))


def frequency_unit(problem) -> str:
    """``"Hz"`` when the problem states frequencies in Hz (targets, bounds, bands, ``quantity="frequency"``),
    else ``"rad/s"``."""
    if problem is None:
        return "rad/s"
    for r in [problem.objective, *problem.constraints]:
        if type(r).__name__ in _HZ_RESPONSES or getattr(r, "quantity", None) == "frequency":
            return "Hz"
    return "rad/s"


def objective_series(problem, history: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, str, str]:
    """The objective of each history row as the physical quantity it optimises.

    Parameters
    ----------
    problem : Problem or None
    history : sequence of dict
        Rows with ``f``, ``omega1..`` (rad/s), ``volume_fraction``.

    Returns
    -------
    values : ndarray (n_rows,)
    label : str
        Axis label naming the quantity and its unit.
    unit : str
        ``"rad/s"``, ``"Hz"`` or ``""``; for frequencies the values are in rad/s (the caller adds
        a Hz axis) unless ``unit == "Hz"``.
    """
    f = _column(history, "f")
    obj = getattr(problem, "objective", None)
    kind = type(obj).__name__
    om = _omega_matrix(history)
    k = om.shape[1]
    name = getattr(obj, "name", "objective")
    if kind == "MaxEigenvalue" and isinstance(getattr(obj, "mode", None), int) and obj.mode <= k:
        m = obj.mode
        if obj.quantity == "frequency":
            return om[:, m - 1] / TWO_PI, f"objective: maximise f{m} [Hz]", "Hz"
        return om[:, m - 1], f"objective: maximise ω{m} [rad/s]", "rad/s"
    if kind == "MaxMinEigenvalues" and getattr(obj, "modes", None) and max(obj.modes) <= k:
        idx = [m - 1 for m in obj.modes]
        inner = ", ".join(f"ω{m}" for m in obj.modes)
        return om[:, idx].min(axis=1), f"objective: maximise min({inner}) [rad/s]", "rad/s"
    if kind == "MaxGap" and obj.lower_mode < k:
        n = obj.lower_mode
        if obj.kind == "ratio":
            return om[:, n] ** 2 / np.maximum(om[:, n - 1] ** 2, 1e-300), f"objective: maximise λ{n + 1}/λ{n} [-]", ""
        return om[:, n] - om[:, n - 1], f"objective: maximise ω{n + 1} − ω{n} [rad/s]", "rad/s"
    if kind == "MinVolume":
        return _column(history, "volume_fraction"), "objective: minimise volume fraction [-]", ""
    if kind == "TargetFrequencies":
        return f, "objective: Σ w (f/f* − 1)² [-]", ""
    return f, f"objective {name} as minimised (scaled) [-]", ""


def _targets(problem) -> tuple[list[tuple[float, str]], list[tuple[float, float, str]]]:
    """Target lines [(f_hz, label)] and bands [(lo_hz, hi_hz, label)] of the problem's responses."""
    lines: list[tuple[float, str]] = []
    bands: list[tuple[float, float, str]] = []
    if problem is None:
        return lines, bands
    for r in [problem.objective, *problem.constraints]:
        kind = type(r).__name__
        if kind == "TargetFrequencies":
            for m, hz in r.targets.items():
                lines.append((float(hz), f"target f{m if isinstance(m, int) else '(tracked)'}"))
        elif kind == "FrequencyBound":
            if r.lower_hz is not None:
                lines.append((float(r.lower_hz), f"f{r.mode} ≥ {r.lower_hz:.4g} Hz"))
            if r.upper_hz is not None:
                lines.append((float(r.upper_hz), f"f{r.mode} ≤ {r.upper_hz:.4g} Hz"))
        elif kind == "KeepOutBand":
            bands.append((float(r.low_hz), float(r.high_hz), "keep-out band"))
    return lines, bands


def _beta_changes(history: Sequence[Mapping[str, Any]], it: np.ndarray) -> list[tuple[float, str]]:
    beta = _column(history, "beta")
    run = _column(history, "run")
    marks = []
    for i in range(1, len(history)):
        b_changed = np.isfinite(beta[i]) and np.isfinite(beta[i - 1]) and beta[i] != beta[i - 1]
        r_changed = np.isfinite(run[i]) and np.isfinite(run[i - 1]) and run[i] != run[i - 1]
        if b_changed or r_changed:
            marks.append((float(it[i]), f"β = {beta[i]:.3g}" if np.isfinite(beta[i]) else "restart"))
    return marks


def convergence_figure(history: Sequence[Mapping[str, Any]], n_omega: int = 4, problem=None,
                       unit: str | None = None):
    """Objective, constraints and the first frequencies against the evaluation number.

    Parameters
    ----------
    history : sequence of dict
        One row per evaluation: ``eval``, ``f``, ``max_g``, ``beta``, ``run``, ``volume_fraction``,
        ``omega1..`` (rad/s) and ``g_<name>`` columns (``history.csv`` rows, strings accepted), or
        the older ``{"eval", "f", "max_g", "omega": array}`` rows.
    n_omega : int
        Frequencies drawn.
    problem : Problem, optional
        Names the objective (drawn as its physical quantity, :func:`objective_series`), gives the
        frequency unit (:func:`frequency_unit`) and the targets drawn.
    unit : {"Hz", "rad/s"}, optional
        Unit of the frequency panel's left axis (default from the problem); the other unit is on
        the right axis.

    Returns
    -------
    matplotlib.figure.Figure
        1200 × 1080 px: objective, constraints (g ≤ 0 feasible, infeasible side shaded),
        frequencies; dotted vertical lines where β (the projection sharpness) changed.
    """
    fig = _figure((WIDTH_IN, 9.0))
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True, height_ratios=[1.0, 0.8, 1.2])
    it = _column(history, "eval")
    if not np.all(np.isfinite(it)):
        it = np.arange(1, len(history) + 1, dtype=float)

    # objective
    values, label, obj_unit = objective_series(problem, history)
    ax1.plot(it, values, color="k", lw=1.5)
    ax1.set_ylabel(label if len(label) < 42 else label.replace(": ", ":\n", 1), fontsize=9)
    if obj_unit == "rad/s":
        sec = ax1.secondary_yaxis("right", functions=(lambda w: w / TWO_PI, lambda f: f * TWO_PI))
        sec.set_ylabel("[Hz]", fontsize=9)
    if len(values) and np.isfinite(values[-1]):
        ax1.set_title(f"objective: {values[0]:.5g} → {values[-1]:.5g}"
                      + (f" {obj_unit}" if obj_unit else "")
                      + (f" ({values[-1] / TWO_PI:.5g} Hz)" if obj_unit == "rad/s" else ""), fontsize=10)
    ax1.grid(alpha=0.3)

    # constraints
    gcols = [k for k in (history[0].keys() if history else []) if k.startswith("g_") and not _OBJECTIVE_OWNED.match(k)]
    if gcols:
        for k in gcols:
            ax2.plot(it, _column(history, k), lw=1.2, label=k[2:])
    else:
        ax2.plot(it, _column(history, "max_g"), lw=1.2, label="largest constraint")
    ax2.axhline(0.0, color="k", lw=0.8)
    ax2.set_ylabel("constraints g\n(≤ 0 feasible) [-]", fontsize=9)
    lo, hi = ax2.get_ylim()
    hi = max(hi, abs(lo) * 0.1, 1e-12)
    ax2.axhspan(0.0, hi, color="tab:red", alpha=0.08, lw=0)
    ax2.set_ylim(lo, hi)
    vf = _column(history, "volume_fraction")
    if np.any(np.isfinite(vf)):
        ax2.text(0.99, 0.04, f"volume fraction {vf[np.isfinite(vf)][-1]:.4f}", transform=ax2.transAxes,
                 ha="right", va="bottom", fontsize=8)
    ax2.legend(fontsize=8, loc="upper right", ncols=min(4, max(1, len(gcols))))
    ax2.grid(alpha=0.3)

    # frequencies
    unit = unit or frequency_unit(problem)
    om = _omega_matrix(history)[:, :n_omega]
    c = 1.0 / TWO_PI if unit == "Hz" else 1.0
    sym = "f" if unit == "Hz" else "ω"
    for j in range(om.shape[1]):
        ax3.plot(it, om[:, j] * c, lw=1.3, label=f"{sym}{j + 1}")
    lines, bands = _targets(problem)
    cz = 1.0 if unit == "Hz" else TWO_PI
    for hz, lab in lines:
        ax3.axhline(hz * cz, color="tab:red", ls="--", lw=1.0)
        ax3.text(it[0] if len(it) else 0, hz * cz, " " + lab, color="tab:red", fontsize=8, va="bottom")
    for a, b, lab in bands:
        ax3.axhspan(a * cz, b * cz, color="tab:red", alpha=0.12, lw=0, label=lab)
    ax3.set_ylabel(f"{sym} [{unit}]")
    other = (lambda v: v * TWO_PI, lambda v: v / TWO_PI) if unit == "Hz" else (lambda v: v / TWO_PI, lambda v: v * TWO_PI)
    sec = ax3.secondary_yaxis("right", functions=other)
    sec.set_ylabel("[rad/s]" if unit == "Hz" else "[Hz]")
    ax3.set_xlabel("evaluation")
    ax3.legend(fontsize=8, loc="best", ncols=2)
    ax3.grid(alpha=0.3)

    for x, lab in _beta_changes(history, it):
        for ax in (ax1, ax2, ax3):
            ax.axvline(x, color="tab:purple", ls=":", lw=1.0)
        ax1.text(x, 1.0, lab, transform=ax1.get_xaxis_transform(), color="tab:purple", fontsize=8,
                 ha="left", va="top")
    name = getattr(problem, "name", "") or ""
    fig.suptitle(f"{name + ': ' if name else ''}convergence over {len(history)} evaluations"
                 + (" (dotted: β changes)" if _beta_changes(history, it) else ""), fontsize=11)
    return fig
