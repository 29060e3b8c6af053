"""Atlas region outlines on the viewer's cortex (``rtsource view --atlas aparc``).

The mesh the viewer draws (:class:`~rtsource.display.cortex_geometry.CortexGeometry`) is a
source space: the bundle's own triangulation, or a template surface. Its vertices get the
atlas's region (the template's atlas by name; for a bundle in a FreeSurfer subject's MRI
frame, the subject's ``label/?h.NAME.annot`` found through the bundle's provenance), and
the vertices on a region border are painted dark on every frame: a fixed index array, no
work per frame beyond one assignment.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..arrays import frozen as _readonly
from ..errors import RtsourceError
from .cortex_geometry import CortexGeometry

logger = logging.getLogger(__name__)


def outline_vertices(faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Vertices on region borders, one vertex thick.

    Of every mesh edge whose ends lie in two different regions (or in a region and none,
    -1: the medial wall), the end with the larger region index is kept, so a border to no
    region is drawn on the region's side.

    Parameters
    ----------
    faces : ndarray of int, shape (n_faces, 3)
    labels : ndarray of int, shape (n_vertices,)
        Region index per vertex, -1 for none.

    Returns
    -------
    ndarray of int64, sorted, unique
    """
    faces = np.asarray(faces, np.int64)
    labels = np.asarray(labels, np.int64)
    if not len(faces):
        return np.zeros(0, np.int64)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    a, b = labels[edges[:, 0]], labels[edges[:, 1]]
    across = a != b
    pick = np.where(a[across] > b[across], edges[across, 0], edges[across, 1])
    return np.unique(pick)


def _sources_of(geometry: CortexGeometry, bundle_path: str | None):
    """The source space whose positions are the geometry's vertices (bundle or template)."""
    if geometry.origin.startswith("template "):
        from ..anatomy.template import template_source_space

        return template_source_space(geometry.origin.split()[1]), None
    if geometry.origin.startswith("bundle ") and bundle_path:
        from ..bundle import load_bundle

        bundle = load_bundle(bundle_path)
        return bundle.sources, bundle
    raise RtsourceError(f"region outlines need a surface of sources; the viewer draws {geometry.origin!r}")


def _atlas_for(name: str, sources, bundle):
    """The template's atlas, or the FreeSurfer subject's annotation named in the bundle."""
    from ..geometry import Frame

    if sources.frame == Frame.TEMPLATE:
        from ..anatomy.atlas import load_atlas

        return load_atlas(name)
    head = dict(bundle.provenance.get("head", {})) if bundle is not None else {}
    if head.get("model") != "freesurfer" or not head.get("subjects_dir") or not head.get("subject"):
        raise RtsourceError(f"the sources are in the {sources.frame.value!r} frame and the bundle names no FreeSurfer subject; no atlas to outline")
    from ..anatomy.subject import open_subject, subject_atlas

    return subject_atlas(open_subject(head["subjects_dir"], head["subject"]), name)


def with_outline(geometry: CortexGeometry, atlas: str, *, bundle_path: str | None = None) -> CortexGeometry:
    """The geometry with :attr:`CortexGeometry.outline` set to the atlas's region borders.

    Raises
    ------
    RtsourceError
        The mesh is not a source surface, or no atlas fits its frame (the viewer logs this
        and draws without outlines).
    """
    sources, bundle = _sources_of(geometry, bundle_path)
    if sources.n_sources != geometry.n_vertices or not np.allclose(sources.positions_m, geometry.vertices_m, atol=1e-6):
        raise RtsourceError(f"the drawn mesh ({geometry.origin}) is not the source space {sources.name!r}; no outlines")
    labels = _atlas_for(atlas, sources, bundle).labels_for(sources)
    outline = outline_vertices(geometry.faces, labels)
    logger.info("atlas %s: %d border vertices outlined on %s", atlas, len(outline), geometry.origin)
    return dataclasses.replace(geometry, outline=_readonly(outline, np.int64))


def outline_or_none(geometry: CortexGeometry, atlas: str, *, bundle_path: str | None) -> CortexGeometry:
    """:func:`with_outline`, or the geometry unchanged (with a warning) when it cannot be made."""
    try:
        return with_outline(geometry, atlas, bundle_path=bundle_path)
    except (RtsourceError, OSError) as exc:
        logger.warning("no %s outlines: %s", atlas, exc)
        return geometry


__all__ = ["outline_or_none", "outline_vertices", "with_outline"]

