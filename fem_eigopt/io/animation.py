"""Animations: the design's evolution (GIF, MP4 when ffmpeg exists) and an oscillating mode shape.

Frames are rendered with matplotlib's Agg canvas (one figure reused for all frames) and assembled
with Pillow; the MP4 is encoded by piping raw frames to ``ffmpeg`` when it is on the PATH. Files
are written atomically.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fem_eigopt.io.modes import ModeShapes, deformation_scale, mode_label
from fem_eigopt.io.rundir import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = ["save_gif", "save_mp4", "design_frames", "mode_frames", "design_animation", "mode_animation"]

FRAME_DPI = 90
FRAME_WIDTH_IN = 9.0


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 6.0, hold_last: float = 1.5) -> Path:
    """Write RGB frames (each (height, width, 3) uint8) as a looping GIF.

    Parameters
    ----------
    frames : sequence of ndarray
    path : str or Path
    fps : float
        Frames per second.
    hold_last : float
        Seconds the last frame stays (the final design), 0 for an even loop.
    """
    from PIL import Image

    if not frames:
        raise ValueError("no frames")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)).quantize(colors=192, method=Image.Quantize.MEDIANCUT)
              for f in frames]
    dt = int(round(1000.0 / fps))
    durations = [dt] * len(images)
    if hold_last > 0:
        durations[-1] = max(dt, int(1000 * hold_last))
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0,
                   optimize=False, disposal=1)
    return atomic_write_bytes(path, buf.getvalue())


def save_mp4(frames: Sequence[np.ndarray], path: str | Path, fps: float = 6.0) -> Path | None:
    """Encode RGB frames as H.264 MP4 with ``ffmpeg``; None (logged) when ffmpeg is missing or fails."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None or not frames:
        return None
    path = Path(path)
    h, w = frames[0].shape[:2]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", f"{fps:g}", "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", tmp]
    try:
        data = b"".join(np.ascontiguousarray(f[:, :, :3], dtype=np.uint8).tobytes() for f in frames)
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=600)
        if proc.returncode != 0:
            logger.warning("ffmpeg failed (%d): %s", proc.returncode, proc.stderr.decode(errors="replace").strip()[:200])
            os.unlink(tmp)
            return None
        os.replace(tmp, path)
        return path
    except Exception as exc:
        logger.warning("MP4 not written: %s: %s", type(exc).__name__, exc)
        if os.path.exists(tmp):
            os.unlink(tmp)
        return None


def _pick(n: int, max_frames: int) -> np.ndarray:
    """Indices of at most ``max_frames`` of ``n`` items, first and last included."""
    if n <= max_frames:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_frames)).astype(int))


def _frame_figure(height: float):
    from fem_eigopt.io.pictures import _figure

    return _figure((FRAME_WIDTH_IN, height))


def _blitted_frames(fig, ax, artists: Sequence, updates: Sequence[Callable[[], None]]) -> list[np.ndarray]:
    """Frames of a 2D figure in which only ``artists`` change: one frame per update.

    The first frame is drawn whole (constrained layout, axes, colour bar); its background without
    the changing artists is kept, and every frame restores it and draws just those (matplotlib's
    blitting). Drawing every frame whole, ticks and labels included, was most of a small run's
    picture time.
    """
    from fem_eigopt.io.pictures import figure_rgb

    for artist in artists:
        artist.set_animated(True)
    frames: list[np.ndarray] = []
    background = None
    for update in updates:
        update()
        if background is None:
            figure_rgb(fig, FRAME_DPI)  # lays out and draws all but the animated artists
            fig.set_layout_engine("none")
            background = fig.canvas.copy_from_bbox(fig.bbox)
        fig.canvas.restore_region(background)
        for artist in artists:
            ax.draw_artist(artist)
        frames.append(np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy())
    return frames


def design_frames(mesh, snapshots: Sequence[dict], max_frames: int = 60, title: str = "") -> list[np.ndarray]:
    """Frames of the design's evolution, one per snapshot (at most ``max_frames``).

    Parameters
    ----------
    mesh : skfem.Mesh
    snapshots : sequence of dict
        ``evaluation``, ``densities`` (n_elem,), optional ``beta``, ``shapes``, ``coordinates``
        (:func:`fem_eigopt.io.snapshots.load_snapshots`).
    max_frames : int
    title : str

    Returns
    -------
    list of ndarray (height, width, 3) uint8
        2D: densities in grey; 3D: the ρ̄ = 0.5 isosurface, isometric view.
    """
    from fem_eigopt.io.pictures import figure_rgb

    snaps = [snapshots[i] for i in _pick(len(snapshots), max_frames)]
    frames = []
    if not snaps:
        return frames
    if mesh.dim() == 2:
        from matplotlib.collections import PolyCollection

        from fem_eigopt.io.pictures import _height_2d, _polygons

        p0 = snaps[-1].get("coordinates", mesh.p)
        fig = _frame_figure(_height_2d(p0, extra=0.6) * FRAME_WIDTH_IN / 10.0)
        ax = fig.add_subplot()
        coll = PolyCollection(_polygons(mesh, p0), cmap="gray_r", edgecolors="face", linewidths=0.0)
        coll.set_clim(0.0, 1.0)
        ax.add_collection(coll)
        allp = np.concatenate([s.get("coordinates", mesh.p) for s in (snaps[0], snaps[-1])], axis=1)
        m = 0.02 * np.ptp(allp, axis=1).max()
        ax.set_xlim(allp[0].min() - m, allp[0].max() + m)
        ax.set_ylim(allp[1].min() - m, allp[1].max() + m)
        ax.set_aspect("equal")
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
        fig.colorbar(coll, ax=ax, label="physical density ρ̄", location="right", shrink=0.8)

        def show(s: dict) -> None:
            coll.set_array(np.asarray(s["densities"], dtype=float))
            if "coordinates" in s:
                coll.set_verts(_polygons(mesh, s["coordinates"]))
            ax.set_title(_frame_title(title, s), fontsize=10)

        return _blitted_frames(fig, ax, [coll, ax.title], [functools.partial(show, s) for s in snaps])

    from fem_eigopt.io.isosurface import boundary_surface, density_isosurface, nodal_average
    from fem_eigopt.io.pictures import _VIEWS_3D, _box_edges, _draw_surface, _no_solid_note, _setup_3d

    import matplotlib as mpl

    p = mesh.p
    lo, hi = p.min(axis=1), p.max(axis=1)
    fig = _frame_figure(5.0)
    for s in snaps:
        fig.clear()
        ax = fig.add_subplot(projection="3d")
        rho = np.asarray(s["densities"], dtype=float)
        coords = s.get("coordinates")
        surf = density_isosurface(mesh, rho, coordinates=coords, max_triangles=30_000)
        if surf.n_triangles:
            _draw_surface(ax, surf.vertices, surf.faces)
        else:
            b = boundary_surface(mesh, coords)
            nodal = nodal_average(mesh, rho)
            _draw_surface(ax, b.vertices, b.faces,
                          mpl.colormaps["gray_r"](np.clip(nodal[b.faces].mean(axis=1), 0, 1) * 0.8 + 0.1))
        _box_edges(ax, lo, hi)
        _setup_3d(ax, lo, hi, _VIEWS_3D[0][1])
        ax.set_title(_frame_title(title, s), fontsize=10)
        if not surf.n_triangles:
            _no_solid_note(ax, rho, three_d=True)
        frames.append(figure_rgb(fig, FRAME_DPI))
    return frames


def _frame_title(title: str, snap: dict) -> str:
    parts = [title] if title else []
    parts.append(f"evaluation {snap['evaluation']}")
    beta = snap.get("beta", np.nan)
    if beta is not None and np.isfinite(beta):
        parts.append(f"β = {beta:.3g}")
    shapes = snap.get("shapes")
    if shapes is not None and shapes.n:
        parts.append(f"f1 = {shapes.frequencies_hz[0]:.4g} Hz (ω1 = {shapes.omega[0]:.4g} rad/s)")
    rho = np.asarray(snap["densities"])
    parts.append(f"solid (ρ̄ > 0.5) {np.mean(rho > 0.5):.0%} of elements")
    return " · ".join(parts)


def mode_frames(mesh, shapes: ModeShapes, densities: np.ndarray | None = None, mode: int = 0, n_frames: int = 16,
                coordinates: np.ndarray | None = None, amplitude: float = 0.08, title: str = "") -> list[np.ndarray]:
    """Frames of one mode oscillating: u(t) = sin(2π t / n_frames) · φ over one period.

    Parameters
    ----------
    mesh : skfem.Mesh
    shapes : ModeShapes
    densities : ndarray (n_elem,), optional
        Physical densities (2D: solid elements drawn, 3D: the isosurface); None = all solid.
    mode : int
        0-based mode index.
    n_frames : int
    coordinates : ndarray (dim, n_vertices), optional
        Moved vertex coordinates (m).
    amplitude : float
        Largest displacement as a fraction of the structure's size.
    title : str

    Returns
    -------
    list of ndarray (height, width, 3) uint8
    """
    import matplotlib as mpl

    from fem_eigopt.io.pictures import figure_rgb

    p = mesh.p if coordinates is None else np.asarray(coordinates, dtype=float)
    rho = np.ones(mesh.t.shape[1]) if densities is None else np.asarray(densities, dtype=float)
    u = shapes.displacements[mode]
    scale = deformation_scale(p, u, amplitude)
    phases = np.sin(2 * np.pi * np.arange(n_frames) / n_frames)
    label = (title + " · " if title else "") + mode_label(mode, shapes.eigenvalues[mode])
    cmap = mpl.colormaps["viridis"]
    mag = np.linalg.norm(u, axis=1)
    mag = mag / (mag.max() or 1.0)
    frames = []
    if mesh.dim() == 2:
        from matplotlib.collections import PolyCollection

        from fem_eigopt.io.pictures import _height_2d, _polygons

        span = np.ptp(p, axis=1)
        solid = rho > 0.5
        if not np.any(solid):
            solid = rho >= np.quantile(rho, 0.5)
        fig = _frame_figure(float(np.clip(_height_2d(p, extra=0.5, pad=1.0 + 2.2 * amplitude * span.max()
                                                     / max(span[1], 1e-300)) * FRAME_WIDTH_IN / 10.0, 2.0, 9.0)))
        ax = fig.add_subplot()
        under = PolyCollection(_polygons(mesh, p), array=rho, cmap="gray_r", edgecolors="none", alpha=0.15)
        under.set_clim(0, 1)
        ax.add_collection(under)
        coll = PolyCollection(_polygons(mesh, p)[solid], array=mag[mesh.t].mean(axis=0)[solid], cmap=cmap,
                              edgecolors="face", linewidths=0.2)
        coll.set_clim(0, 1)
        ax.add_collection(coll)
        reach = 1.05 * amplitude * span.max() + 0.02 * span.max()
        ax.set_xlim(p[0].min() - reach, p[0].max() + reach)
        ax.set_ylim(p[1].min() - reach, p[1].max() + reach)
        ax.set_aspect("equal")
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
        ax.set_title(label, fontsize=10)

        def move(phase: float) -> None:
            coll.set_verts(_polygons(mesh, p + phase * scale * u.T)[solid])

        return _blitted_frames(fig, ax, [coll], [functools.partial(move, ph) for ph in phases])

    from fem_eigopt.io.isosurface import boundary_surface, density_isosurface
    from fem_eigopt.io.pictures import _VIEWS_3D, _box_edges, _draw_surface, _setup_3d

    surf = density_isosurface(mesh, rho, coordinates=coordinates, max_triangles=30_000)
    if surf.n_triangles == 0:
        surf = boundary_surface(mesh, coordinates)
    us = surf.field(u)
    smag = np.linalg.norm(us, axis=1)
    colors = cmap(smag[surf.faces].mean(axis=1) / (smag.max() or 1.0))
    lo = p.min(axis=1) - amplitude * np.ptp(p, axis=1).max()
    hi = p.max(axis=1) + amplitude * np.ptp(p, axis=1).max()
    fig = _frame_figure(5.0)
    for ph in phases:
        fig.clear()
        ax = fig.add_subplot(projection="3d")
        _draw_surface(ax, surf.vertices + ph * scale * us, surf.faces, colors)
        _box_edges(ax, p.min(axis=1), p.max(axis=1))
        _setup_3d(ax, lo, hi, _VIEWS_3D[0][1])
        ax.set_title(label, fontsize=10)
        frames.append(figure_rgb(fig, FRAME_DPI))
    return frames


def design_animation(mesh, snapshots: Sequence[dict], path: str | Path, fps: float = 6.0, mp4: bool = True,
                     max_frames: int = 60, title: str = "") -> list[Path]:
    """``design.gif`` (and ``design.mp4`` when ffmpeg exists) of the design's evolution.

    Parameters
    ----------
    mesh : skfem.Mesh
    snapshots : sequence of dict
        See :func:`design_frames`.
    path : str or Path
        The GIF; the MP4 goes next to it with the suffix ``.mp4``.
    fps : float
    mp4 : bool
        Also try the MP4.
    max_frames : int
    title : str

    Returns
    -------
    list of Path
        The files written.
    """
    frames = design_frames(mesh, snapshots, max_frames, title)
    if not frames:
        return []
    path = Path(path)
    written = [save_gif(frames, path, fps)]
    if mp4:
        hold = frames + [frames[-1]] * int(fps * 1.5)
        out = save_mp4(hold, path.with_suffix(".mp4"), fps)
        if out is not None:
            written.append(out)
    return written


def mode_animation(mesh, shapes: ModeShapes, path: str | Path, densities: np.ndarray | None = None, mode: int = 0,
                   n_frames: int = 16, coordinates: np.ndarray | None = None, fps: float = 12.0,
                   title: str = "") -> Path:
    """A looping GIF of mode ``mode`` (0-based) oscillating over the design (see :func:`mode_frames`)."""
    frames = mode_frames(mesh, shapes, densities, mode, n_frames, coordinates, title=title)
    return save_gif(frames, path, fps, hold_last=0.0)
