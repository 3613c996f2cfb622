"""The outputs of a sweep: the summary table, parameter plots and the contact sheet of designs.

* :func:`table_rows` — one row per case (parameters, status, objective, ω and f of the modes the
  runs report, volume fraction, evaluations, wall time, run directory, message), from the case
  records (each holding the run's ``summary.json``);
* :func:`write_table` — ``summary.csv``;
* :func:`parameter_plots` — for each varying parameter, ``plot_<key>.png``: the final objective
  and ω1, ω2 against it, one line per combination of the other varying parameters (numeric
  parameters on a numeric axis, others as categories);
* :func:`contact_sheet` — ``designs.png``: the final designs of all cases in one image, each
  labelled with its parameters and ω1.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from fem_eigopt.io.rundir import write_csv

logger = logging.getLogger(__name__)

__all__ = ["table_rows", "table_columns", "write_table", "parameter_plots", "contact_sheet", "format_value"]

#: columns after the parameters (ω/f columns are inserted after ``objective_name``)
_TAIL = ("volume_fraction", "grey_fraction", "supports_joined", "max_constraint", "evaluations", "optimizer_status",
         "wall_time_s", "run_dir", "message")


def format_value(v: Any) -> str:
    """A parameter value for labels: ``0.3``, ``'SS'`` → ``SS``, ``1e+09``."""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def table_rows(cases: Sequence[Any], records: Mapping[str, dict], varying: Sequence[str],
               sweep_dir: Path | None = None) -> list[dict]:
    """One row per case for ``summary.csv``.

    Parameters
    ----------
    cases : sequence of Case
        In sweep order.
    records : mapping of str to dict
        Case id → record of :func:`fem_eigopt.sweeps.worker.run_case`; a case without a record
        gets ``status = "missing"``.
    varying : sequence of str
        The parameter columns.
    sweep_dir : Path, optional
        Run directories inside it are written relative to it.

    Returns
    -------
    list of dict
    """
    rows = []
    for case in cases:
        rec = records.get(case.id)
        row: dict[str, Any] = {"case": case.id}
        for key in varying:
            row[key] = case.parameters.get(key)
        row["status"] = "missing" if rec is None else rec.get("status")
        summary = (rec or {}).get("summary") or {}
        row["objective"] = summary.get("objective")
        row["objective_name"] = summary.get("objective_name")
        for j, om in enumerate(summary.get("omega_final") or []):
            row[f"omega{j + 1}"] = om
        for j, f in enumerate(summary.get("frequencies_hz_final") or []):
            row[f"f{j + 1}"] = f
        row["volume_fraction"] = summary.get("volume_fraction")
        # density designs: how crisp, and whether the solid holds the supports together
        row["grey_fraction"] = summary.get("grey_fraction")
        row["supports_joined"] = summary.get("supports_joined")
        row["max_constraint"] = summary.get("max_constraint")
        row["evaluations"] = summary.get("evaluations")
        row["optimizer_status"] = summary.get("status")
        row["wall_time_s"] = summary.get("wall_time_s")
        run_dir = (rec or {}).get("run_dir")
        if run_dir and sweep_dir is not None:
            try:
                run_dir = str(Path(run_dir).resolve().relative_to(Path(sweep_dir).resolve()))
            except ValueError:
                pass
        row["run_dir"] = run_dir
        row["message"] = (rec or {}).get("message") or ("not run yet" if rec is None else "")
        rows.append(row)
    return rows


def table_columns(rows: Sequence[Mapping[str, Any]], varying: Sequence[str]) -> list[str]:
    """Column order of ``summary.csv``: case, parameters, status, objective, ω1.., f1.., the rest."""
    n_omega = max((sum(1 for k in r if k.startswith("omega") and k[5:].isdigit()) for r in rows), default=0)
    n_f = max((sum(1 for k in r if k.startswith("f") and k[1:].isdigit()) for r in rows), default=0)
    return (["case", *varying, "status", "objective", "objective_name"] + [f"omega{j + 1}" for j in range(n_omega)]
            + [f"f{j + 1}" for j in range(n_f)] + list(_TAIL))


def write_table(path: Path, rows: Sequence[Mapping[str, Any]], varying: Sequence[str]) -> Path:
    """Write ``summary.csv`` (atomically)."""
    return write_csv(path, rows, columns=table_columns(rows, varying))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def parameter_plots(sweep_dir: Path, rows: Sequence[Mapping[str, Any]], varying: Sequence[str]) -> list[Path]:
    """``plot_<key>.png`` for each varying parameter (see the module docstring).

    Returns
    -------
    list of Path
        The pictures written (none when no case is ok).
    """
    from fem_eigopt.io.pictures import _figure, save_figure_png

    ok = [r for r in rows if r.get("status") == "ok" and _finite(r.get("objective"))]
    paths = []
    if not ok:
        return paths
    for key in varying:
        values = [r[key] for r in ok]
        numeric = all(_is_number(v) for v in values)
        categories = [] if numeric else sorted({format_value(v) for v in values})
        others = [k for k in varying if k != key]
        groups: dict[tuple, list] = {}
        for r in ok:
            groups.setdefault(tuple(r.get(k) for k in others), []).append(r)
        fig = _figure((7.0, 6.0))
        ax_obj, ax_om = fig.subplots(2, 1, sharex=True)
        for n, (group, members) in enumerate(groups.items()):
            members = sorted(members, key=lambda r: r[key] if numeric else categories.index(format_value(r[key])))
            x = [m[key] if numeric else categories.index(format_value(m[key])) for m in members]
            label = ", ".join(f"{k}={format_value(v)}" for k, v in zip(others, group)) or None
            color = f"C{n % 10}"
            ax_obj.plot(x, [m["objective"] for m in members], "o-", color=color, label=label, ms=4)
            om1 = [m.get("omega1") for m in members]
            om2 = [m.get("omega2") for m in members]
            ax_om.plot(x, [v if _finite(v) else math.nan for v in om1], "o-", color=color, ms=4)
            if any(_finite(v) for v in om2):
                ax_om.plot(x, [v if _finite(v) else math.nan for v in om2], "s--", color=color, ms=3, alpha=0.7)
        ax_obj.set_ylabel(f"objective ({ok[0].get('objective_name') or 'final'})")
        ax_om.set_ylabel("ω [rad/s] (ω1 solid, ω2 dashed)")
        ax_om.set_xlabel(key)
        if not numeric:
            ax_om.set_xticks(range(len(categories)), categories)
        ax_obj.set_title(f"final objective and frequencies against {key}")
        if others and len(groups) <= 12:
            ax_obj.legend(fontsize="small")
        for ax in (ax_obj, ax_om):
            ax.grid(True, alpha=0.3)
        path = Path(sweep_dir) / f"plot_{key}.png"
        save_figure_png(fig, path)
        paths.append(path)
    return paths


def contact_sheet(path: Path, rows: Sequence[Mapping[str, Any]], varying: Sequence[str],
                  pictures: Mapping[str, bytes | None]) -> Path | None:
    """All final designs in one image, labelled with their parameters (see the module docstring).

    Parameters
    ----------
    path : Path
        The PNG to write (``designs.png``).
    rows : sequence of dict
        Rows of :func:`table_rows`.
    varying : sequence of str
        The parameters in the labels.
    pictures : mapping of str to bytes
        Case id → PNG of its design (from :func:`fem_eigopt.sweeps.worker.thumbnail_png`); cases
        without one get an empty tile with their status.

    Returns
    -------
    Path or None
        None when there are no rows.
    """
    import numpy as np
    from matplotlib.image import imread

    from fem_eigopt.io.pictures import _figure, save_figure_png

    if not rows:
        return None
    images = {}
    for r in rows:
        data = pictures.get(r["case"])
        if data:
            try:
                images[r["case"]] = imread(io.BytesIO(data), format="png")
            except Exception:
                logger.warning("case %s: unreadable design picture", r["case"])
    aspects = [img.shape[1] / img.shape[0] for img in images.values()] or [4.0]
    aspect = float(np.median(aspects))  # width / height of a tile
    n = len(rows)
    ncols = max(1, min(n, round(math.sqrt(n * 1.4 / aspect)) or 1))
    nrows = math.ceil(n / ncols)
    tile_w = 3.2
    tile_h = tile_w / aspect + 0.45  # room for the label
    fig = _figure((tile_w * ncols, tile_h * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, r in zip(axes, rows):
        label = ", ".join(f"{k}={format_value(r.get(k))}" for k in varying)
        if r.get("status") == "ok" and _finite(r.get("omega1")):
            label += f"\nω1 = {r['omega1']:.4g} rad/s"
        else:
            label += f"\n{r.get('status')}"
        img = images.get(r["case"])
        if img is not None:
            ax.imshow(img, interpolation="antialiased")
        else:
            ax.imshow(np.full((10, max(1, int(10 * aspect)), 3), 0.85), vmin=0, vmax=1)
            ax.text(0.5, 0.5, str(r.get("status")), ha="center", va="center", transform=ax.transAxes,
                    color="firebrick" if r.get("status") == "failed" else "black")
        ax.set_title(label, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(rows):]:
        ax.set_axis_off()
    return save_figure_png(fig, path, dpi=110)
