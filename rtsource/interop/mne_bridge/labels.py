"""MNE ``Label``s as rtsource ROIs over a bundle's sources."""

from __future__ import annotations

import logging
import re

import numpy as np

from ...bundle import OperatorBundle
from ...errors import ConfigError
from .sources import source_vertices

logger = logging.getLogger(__name__)

_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.+-]")


def _roi_name(name: str) -> str:
    clean = _BAD_NAME_CHARS.sub("_", name.strip()).strip("_") or "label"
    if not clean[0].isalnum():
        clean = "L" + clean
    return clean[:64]


def labels_to_rois(labels, bundle: OperatorBundle, *, on_empty: str = "raise"):
    """MNE ``Label``s (or ``BiHemiLabel``s) as ROIs over the bundle's sources.

    Parameters
    ----------
    labels : mne.Label or sequence of them
        Surface labels on the bundle's subject (fsaverage for template bundles).
    bundle : OperatorBundle
        Made by :func:`bundle_from_forward` / :func:`bundle_from_inverse`, or on the template.
    on_empty : {"raise", "warn"}
        A label containing none of the bundle's sources: an error, or skipped with a warning.

    Returns
    -------
    tuple of rtsource.anatomy.regions.Roi
        Name (made a valid channel label: other characters become ``_``) and the sorted
        source indices. If ``rtsource.anatomy.regions`` is not available, ``(name, indices)``
        pairs instead.
    """
    if on_empty not in ("raise", "warn"):
        raise ConfigError(f"on_empty {on_empty!r} must be 'raise' or 'warn'")
    if not isinstance(labels, (list, tuple)):
        labels = [labels]
    kinds, vertices, indices, subject = source_vertices(bundle)
    try:
        from ...anatomy.regions import Roi
    except ImportError:  # the ROI module is optional to this bridge
        Roi = None
    out = []
    for label in labels:
        parts = [label.lh, label.rh] if label.hemi == "both" else [label]
        if subject and getattr(label, "subject", None) and label.subject != subject:
            logger.warning("label %r is on subject %r but the bundle's sources are on %r", label.name, label.subject, subject)
        idx = []
        for part in parts:
            if part.hemi not in kinds:
                raise ConfigError(f"label {label.name!r} is on hemisphere {part.hemi!r} but the bundle's sources are {kinds}")
            k = kinds.index(part.hemi)
            hit = np.flatnonzero(np.isin(vertices[k], part.vertices))
            idx.append(indices[k][hit])
        idx = np.unique(np.concatenate(idx)) if idx else np.zeros(0, np.int64)
        if idx.size == 0:
            msg = (
                f"label {label.name!r} ({sum(len(part.vertices) for part in parts)} vertices on {label.hemi}) contains none of the bundle's "
                f"{bundle.n_sources} sources; use a finer source space or a larger label"
            )
            if on_empty == "raise":
                raise ConfigError(msg)
            logger.warning(msg)
            continue
        name = _roi_name(label.name)
        n_vert = sum(len(part.vertices) for part in parts)
        desc = f"MNE label {label.name!r} ({label.hemi}, {n_vert} vertices, {idx.size} sources)"
        out.append(Roi(name, idx, desc) if Roi is not None else (name, idx))
    return tuple(out)


__all__ = ["labels_to_rois"]
