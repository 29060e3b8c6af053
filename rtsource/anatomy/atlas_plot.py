"""The ROI picture: the template cortex with the atlas regions outlined and the ROIs filled.

One PNG to check that ``[[roi]] atlas = ...`` picked what was meant: six views (each
hemisphere from the side and from the midline, both from above and below), every atlas
region in a pale colour of its own with its outline dark, and the ROIs in strong colours
with a legend. Needs matplotlib (``pip install rtsource[qc]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError

# (title, hemisphere or None for both, right vector, up vector); the viewer looks along up x right
_VIEWS = (
    ("left, lateral", 0, (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    ("left, medial", 0, (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    ("top", None, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    ("right, lateral", 1, (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    ("right, medial", 1, (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    ("bottom", None, (1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
)


def write_roi_png(
    path: str | Path, rois: Sequence = (), *, atlas="aparc", spacing: str = "ico5", title: str = "", dpi: int = 90, sources=None
) -> Path:
    """Draw the template (or a subject's) cortex with atlas outlines and the ROIs; write a PNG.

    Parameters
    ----------
    path : path
    rois : sequence of Roi
        ROIs (``name``, ``vertices``, ``n_sources``) on the template source space ``spacing``
        (white surface); filled in colour.
    atlas : str or Atlas
        The atlas whose regions are outlined (a template atlas by name, or a subject's,
        :func:`rtsource.anatomy.subject.subject_atlas`).
    spacing : {"ico4", "ico5"}
        The template source space the ROIs' vertex indices refer to (and that is drawn).
    sources : SourceSpace, optional
        Draw this triangulated source space instead (a subject's; ``spacing`` is ignored).
    """
    from .atlas import Atlas, load_atlas
    from .template import template_source_space

    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("the ROI picture needs matplotlib, which is not installed; pip install 'rtsource[qc]'") from None
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    atlas_obj = atlas if isinstance(atlas, Atlas) else load_atlas(atlas)
    if sources is not None and not len(sources.triangles):
        raise ConfigError(f"the ROI picture draws a surface, but the source space {sources.name!r} has no triangles")
    space = template_source_space(spacing, "pial") if sources is None else sources
    labels = atlas_obj.labels_for(space).astype(np.int64)
    verts, tris = space.positions_m, space.triangles
    n_regions = atlas_obj.n_regions
    pale = colormaps["tab20"](np.arange(n_regions) % 20)[:, :3] * 0.35 + 0.65
    strong = colormaps["tab10"](np.arange(max(len(rois), 1)) % 10)[:, :3]
    tri_lab = labels[tris]
    same = (tri_lab[:, 0] == tri_lab[:, 1]) & (tri_lab[:, 1] == tri_lab[:, 2])
    base = np.where(same[:, None] & (tri_lab[:, :1] >= 0), pale[np.maximum(tri_lab[:, 0], 0)], 0.82)
    base[~same] = 0.25  # a triangle across two regions: the outline
    for k, roi in enumerate(rois):
        roi.check_fits(space)
        inside = np.isin(tris, roi.vertices).sum(axis=1) >= 2
        base[inside] = strong[k]
    v = verts[tris]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-15)
    tri_hemi = space.hemisphere[tris[:, 0]]

    fig = Figure(figsize=(15, 9), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 3, left=0.01, right=0.99, bottom=0.1, top=0.9, wspace=0.02, hspace=0.08)
    for i, (name, hemi, right, up) in enumerate(_VIEWS):
        ax = fig.add_subplot(grid[i // 3, i % 3])
        right, up = np.array(right), np.array(up)
        toward = np.cross(right, up)
        keep = np.ones(len(tris), bool) if hemi is None else tri_hemi == hemi
        t = np.flatnonzero(keep)
        order = t[np.argsort(v[t].mean(axis=1) @ toward)]  # far first: painter's algorithm
        xy = np.stack([v[order] @ right, v[order] @ up], axis=-1) * 1e3
        shade = 0.45 + 0.55 * np.clip(fn[order] @ toward, 0, 1)
        colors = np.clip(shade[:, None] * base[order], 0, 1)
        ax.add_collection(PolyCollection(xy, facecolors=colors, edgecolors=colors, linewidths=0.2))
        ax.set_xlim(xy[..., 0].min() - 3, xy[..., 0].max() + 3)
        ax.set_ylim(xy[..., 1].min() - 3, xy[..., 1].max() + 3)
        ax.set_aspect("equal")
        ax.set_axis_off()
        ax.set_title(name, fontsize=11)
    if rois:
        handles = [Patch(color=strong[k], label=f"{r.name} ({r.n_sources} sources)") for k, r in enumerate(rois)]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(rois), 6), fontsize=10, frameon=False)
    where = f"the template ({spacing})" if sources is None else space.name
    fig.suptitle(title or f"atlas {atlas_obj.name} on {where}; ROIs filled", fontsize=13)
    path = Path(path)
    try:
        fig.savefig(path)
    except OSError as exc:
        raise ConfigError(f"cannot write the ROI picture {path}: {exc}") from None
    return path


__all__ = ["write_roi_png"]
