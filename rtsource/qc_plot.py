"""The coregistration QC picture: the scalp with the sensors on it, from five sides.

One PNG a person can judge at a glance: a shaded scalp seen from the left, front, right,
back and top, electrodes coloured by their distance to the scalp (before projection) with
their labels, headshape points (outliers as red crosses), the aligned fiducials and the
template's, and a panel with the distance histogram and the numbers. The title carries the
RMS, the threshold and the verdict.

Needs matplotlib (``pip install rtsource[qc]``); only the Agg canvas is used, so no display
and no global pyplot state are touched.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .errors import ConfigError

logger = logging.getLogger(__name__)

# (name, screen-right, screen-up) in the template frame (RAS); toward the viewer = right x up.
VIEWS = (
    ("left", (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    ("front", (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    ("right", (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    ("back", (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    ("top", (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
)
_AXIS_LETTERS = {(1, 0, 0): "R", (-1, 0, 0): "L", (0, 1, 0): "A", (0, -1, 0): "P", (0, 0, 1): "S", (0, 0, -1): "I"}
_FID_STYLE = {"NAS": ("#1b9e77", "^"), "LPA": ("#7570b3", "s"), "RPA": ("#d95f02", "D")}
_SKIN = np.array([0.93, 0.80, 0.69])


def _matplotlib():
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            "the QC picture needs matplotlib, which is not installed; install it with "
            "pip install 'rtsource[qc]' (or pip install matplotlib), or leave qc_png unset"
        ) from None
    return Figure, FigureCanvasAgg


def _draw_scalp(ax, verts, tris, normals, right, up, toward):
    from matplotlib.collections import PolyCollection

    facing = normals @ toward
    keep = facing > -0.05
    t = tris[keep]
    depth = (verts[t].mean(axis=1) @ toward)
    order = np.argsort(depth)  # far first: painter's algorithm
    t = t[order]
    xy = np.stack([verts[t] @ right, verts[t] @ up], axis=-1) * 1e3
    light = toward + 0.35 * up + 0.2 * right
    light /= np.linalg.norm(light)
    shade = 0.35 + 0.65 * np.clip(normals[keep][order] @ light, 0, 1)
    colors = np.clip(shade[:, None] * _SKIN, 0, 1)
    pc = PolyCollection(xy, facecolors=colors, edgecolors=colors, linewidths=0.3, zorder=1)
    ax.add_collection(pc)


def write_qc_png(
    path: str | Path,
    scalp,
    *,
    electrodes=None,
    electrode_distances_mm: np.ndarray | None = None,
    electrode_outliers: np.ndarray | None = None,
    headshape=None,
    headshape_outliers: np.ndarray | None = None,
    fiducials=None,
    reference_fiducials=None,
    title: str = "Coregistration QC",
    subtitle: str = "",
    passed: bool | None = None,
    distances_mm: np.ndarray | None = None,
    distance_kinds: tuple[str, ...] = (),
    text_lines: tuple[str, ...] = (),
    dpi: int = 100,
) -> Path:
    """Draw the QC picture (see module docstring) and write it as PNG.

    Parameters
    ----------
    path : path
        Output file (``.png``).
    scalp : Mesh
        The head surface, in the frame of all points (metres).
    electrodes : Points, optional
        Labelled electrodes (drawn where they are, not projected).
    electrode_distances_mm : ndarray, shape (n_electrodes,), optional
        Signed distance to the scalp per electrode (colour).
    electrode_outliers, headshape_outliers : ndarray of bool, optional
        Points the fit rejected (red crosses).
    headshape : Points, optional
    fiducials, reference_fiducials : Points, optional
        Aligned fiducials (filled markers) and the head model's (open markers).
    title, subtitle : str
    passed : bool, optional
        Colours the title green (True) or red (False).
    distances_mm, distance_kinds : optional
        All QC distances and their kinds (``"electrode"``/``"headshape"``) for the histogram.
    text_lines : tuple of str
        Lines printed in the stats panel.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    from matplotlib import colormaps, colors as mcolors

    path = Path(path)
    verts = scalp.vertices_m
    tris = scalp.triangles
    v = verts[tris]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-15)
    vnorm = scalp.vertex_normals()
    center = verts.mean(axis=0)
    half = float(np.abs(verts - center).max()) * 1e3 * 1.12

    el = electrodes.positions_m if electrodes is not None and len(electrodes) else np.zeros((0, 3))
    el_labels = electrodes.labels if electrodes is not None and len(electrodes) else ()
    el_d = np.zeros(len(el)) if electrode_distances_mm is None else np.asarray(electrode_distances_mm, dtype=float)
    el_out = np.zeros(len(el), bool) if electrode_outliers is None else np.asarray(electrode_outliers, bool)
    hs = headshape.positions_m if headshape is not None and len(headshape) else np.zeros((0, 3))
    hs_out = np.zeros(len(hs), bool) if headshape_outliers is None else np.asarray(headshape_outliers, bool)

    def outward(points):
        # a point is seen when the scalp under it faces the viewer
        if not len(points):
            return np.zeros((0, 3))
        d = points - center
        near = np.argmin(((verts[None, :, :] - points[:, None, :]) ** 2).sum(-1), axis=1) if len(points) < 2000 else None
        return vnorm[near] if near is not None else d / np.linalg.norm(d, axis=1, keepdims=True)

    el_n, hs_n = outward(el), outward(hs)
    lim = max(5.0, float(np.ceil(np.percentile(np.abs(el_d), 95)))) if len(el_d) else 5.0
    norm = mcolors.TwoSlopeNorm(vmin=-lim, vcenter=0.0, vmax=lim)
    cmap = colormaps["coolwarm"]

    fig = Figure(figsize=(16, 10.5), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 3, left=0.02, right=0.98, bottom=0.06, top=0.86, wspace=0.04, hspace=0.1)
    axes = [fig.add_subplot(grid[i // 3, i % 3]) for i in range(5)]
    stats_ax = fig.add_subplot(grid[1, 2])
    scatter = None
    for ax, (name, right, up) in zip(axes, VIEWS):
        right, up = np.array(right), np.array(up)
        toward = np.cross(right, up)
        _draw_scalp(ax, verts, tris, fn, right, up, toward)
        to2d = lambda p: np.c_[(p - center) @ right, (p - center) @ up] * 1e3  # noqa: E731
        if len(hs):
            vis = hs_n @ toward > 0.05
            xy = to2d(hs)
            ok = vis & ~hs_out
            ax.scatter(xy[ok, 0], xy[ok, 1], s=9, c="#222222", marker="o", linewidths=0, zorder=3, label="headshape")
            bad = vis & hs_out
            if bad.any():
                ax.scatter(xy[bad, 0], xy[bad, 1], s=40, c="red", marker="x", linewidths=1.5, zorder=5, label="outlier")
        if len(el):
            vis = el_n @ toward > 0.15
            xy = to2d(el)
            scatter = ax.scatter(
                xy[vis, 0], xy[vis, 1], s=46, c=el_d[vis], cmap=cmap, norm=norm, edgecolors="black", linewidths=0.6, zorder=4, label="electrode"
            )
            bad = vis & el_out
            if bad.any():
                ax.scatter(xy[bad, 0], xy[bad, 1], s=110, facecolors="none", edgecolors="red", linewidths=1.8, zorder=5)
            for (x, y), lab, depth in zip(xy[vis], np.array(el_labels, dtype=object)[vis], (el_n[vis] @ toward)):
                if depth > 0.35:
                    ax.annotate(lab, (x, y), xytext=(3.5, 3.5), textcoords="offset points", fontsize=6.5, color="#102040", zorder=6)
        for pts, filled in ((reference_fiducials, False), (fiducials, True)):
            if pts is None:
                continue
            for lab, p in zip(pts.labels, pts.positions_m):
                if (p - center) @ toward < -0.03:  # behind the head in this view
                    continue
                color, marker = _FID_STYLE.get(lab, ("black", "o"))
                x, y = to2d(p[None])[0]
                ax.scatter(
                    [x], [y], s=150 if filled else 260, marker=marker, zorder=7,
                    facecolors=color if filled else "none", edgecolors="black" if filled else color, linewidths=1.0 if filled else 2.2,
                    label=f"{lab} (aligned)" if filled else f"{lab} (head model)",
                )
        ax.set_xlim(-half, half)
        ax.set_ylim(-half, half)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("#cccccc")
        ax.set_title(f"{name}", fontsize=12)
        letter = lambda vec: _AXIS_LETTERS.get(tuple(int(round(c)) for c in vec), "")  # noqa: E731
        ax.text(0.98, 0.5, letter(right), transform=ax.transAxes, ha="right", va="center", fontsize=11, color="#888888")
        ax.text(0.02, 0.5, letter(-right), transform=ax.transAxes, ha="left", va="center", fontsize=11, color="#888888")
        ax.text(0.5, 0.98, letter(up), transform=ax.transAxes, ha="center", va="top", fontsize=11, color="#888888")
        ax.plot([-half * 0.9, -half * 0.9 + 50], [-half * 0.92] * 2, color="black", lw=2, zorder=8)
        ax.text(-half * 0.9 + 25, -half * 0.88, "50 mm", ha="center", fontsize=8)

    all_h, all_l = [], []
    for ax in axes:
        hh, ll = ax.get_legend_handles_labels()
        for h, lab in zip(hh, ll):
            if lab not in all_l:
                all_h.append(h)
                all_l.append(lab)
    fig.legend(all_h, all_l, loc="center left", bbox_to_anchor=(0.015, 0.895), ncol=8, fontsize=9, frameon=False)
    if scatter is not None:
        cax = fig.add_axes([0.74, 0.955, 0.23, 0.013])
        cb = fig.colorbar(scatter, cax=cax, orientation="horizontal")
        cb.set_label("electrode distance to scalp (mm, + outside)", fontsize=9)
        cb.ax.tick_params(labelsize=8)

    # stats panel: histogram and numbers
    stats_ax.set_title("distance to the scalp", fontsize=12)
    if distances_mm is not None and len(distances_mm):
        d = np.asarray(distances_mm, dtype=float)
        kinds = np.array(distance_kinds) if len(distance_kinds) == len(d) else np.array(["point"] * len(d))
        lo, hi = min(-10.0, float(np.floor(d.min()))), max(10.0, float(np.ceil(d.max())))
        bins = np.linspace(lo, hi, 41)
        for kind, color in (("electrode", "#3b6fb6"), ("headshape", "#555555"), ("point", "#3b6fb6")):
            sel = kinds == kind
            if sel.any():
                stats_ax.hist(d[sel], bins=bins, color=color, alpha=0.7, label={"headshape": "headshape points"}.get(kind, kind + "s") + f" ({int(sel.sum())})")
        stats_ax.axvline(0, color="black", lw=0.8)
        stats_ax.set_xlabel("signed distance (mm)", fontsize=9)
        stats_ax.tick_params(labelsize=8)
        stats_ax.legend(fontsize=8, loc="upper left", frameon=False)
    else:
        stats_ax.set_axis_off()
    if text_lines:
        stats_ax.text(
            0.99, 0.97, "\n".join(text_lines), transform=stats_ax.transAxes, ha="right", va="top", fontsize=8.5, multialignment="left",
            family="monospace", bbox=dict(boxstyle="round", facecolor="white", edgecolor="#bbbbbb", alpha=0.9),
        )

    color = {True: "#1a7f37", False: "#c62828", None: "black"}[passed]
    fig.suptitle(title, fontsize=16, color=color, x=0.02, ha="left", y=0.985, fontweight="bold")
    if subtitle:
        fig.text(0.02, 0.94, subtitle, fontsize=10, ha="left", va="center", color="#333333")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi, facecolor="white")
    logger.info("QC picture written to %s", path)
    return path


def write_coreg_qc_png(result, template, path: str | Path) -> Path:
    """The QC picture of a :class:`rtsource.coreg.CoregResult` on its head model."""
    qc = result.qc
    kinds = np.array(qc.point_kinds)
    el_sel, hs_sel = kinds == "electrode", kinds == "headshape"
    verdict = "PASSED" if qc.passed else "FAILED"
    title = (
        f"Coregistration QC: RMS {qc.rms_mm:.1f} mm (threshold {qc.max_rms_mm:g} mm) - {verdict}"
    )
    sources = ", ".join(Path(r.path).name for r in result.reports) or result.aligned.name
    subtitle = (
        f"{sources}  |  method {qc.method}, start: {qc.initial}  |  scale {qc.scale:.3f}  |  "
        f"{int(el_sel.sum())} electrodes, {int(hs_sel.sum())} headshape points"
    )
    lines = [
        f"RMS (inliers) {qc.rms_mm:6.2f} mm",
        f"RMS (all)     {qc.rms_all_mm:6.2f} mm",
        f"median |d|    {qc.median_mm:6.2f} mm",
        f"max |d|       {qc.max_mm:6.2f} mm",
        f"outliers      {int(qc.outliers.sum()):3d} ({qc.outlier_fraction:.0%})",
        f"rotation      {qc.rotation_deg:6.1f} deg",
        f"translation   {qc.translation_mm:6.1f} mm",
    ]
    if qc.iterations:
        lines.append(f"ICP           {qc.iterations:3d} it" + ("" if qc.converged else " (not conv.)"))
    for name, err in qc.fiducial_errors_mm:
        lines.append(f"{name} - model   {err:6.1f} mm")
    return write_qc_png(
        path,
        template.fit_scalp,
        electrodes=result.aligned.electrodes,
        electrode_distances_mm=qc.distances_mm[el_sel],
        electrode_outliers=qc.outliers[el_sel],
        headshape=result.aligned.headshape,
        headshape_outliers=qc.outliers[hs_sel],
        fiducials=result.montage.fiducials,
        reference_fiducials=template.fiducials,
        title=title,
        subtitle=subtitle,
        passed=qc.passed,
        distances_mm=qc.distances_mm,
        distance_kinds=qc.point_kinds,
        text_lines=tuple(lines),
    )


__all__ = ["VIEWS", "write_coreg_qc_png", "write_qc_png"]
