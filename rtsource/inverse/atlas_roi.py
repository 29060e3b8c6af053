"""ROIs from atlas regions by name: ``[[roi]] atlas = "aparc"`` and ``[rois] atlas = "aparc"``.

The atlas gives each source of the (template-frame) source space a region
(:meth:`rtsource.anatomy.atlas.Atlas.labels_for`); an ROI is the union of the sources of the
regions it names (region names with ``-lh``/``-rh``, or aliases such as ``broca-lh``, see
:data:`rtsource.anatomy.atlas.ALIASES`). The ROI itself is made by
:func:`rtsource.inverse.roi.roi_from_vertices`.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..anatomy.atlas import Atlas, load_atlas
from ..anatomy.source_space import SourceSpace
from .roi import roi_from_vertices


def _atlas(atlas: str | Atlas) -> Atlas:
    return atlas if isinstance(atlas, Atlas) else load_atlas(atlas)


def roi_from_atlas(sources: SourceSpace, name: str, atlas: str | Atlas, labels: str | Iterable[str]):
    """One ROI: the sources of one or more atlas regions.

    Parameters
    ----------
    sources : SourceSpace
        A template-frame cortical source space.
    name : str
        Channel label of the ROI.
    atlas : str or Atlas
        A template atlas by name (``"aparc"``), or an atlas such as a subject's
        (:func:`rtsource.anatomy.subject.subject_atlas`).
    labels : str or iterable of str
        Region names (``"transversetemporal-lh"``) or aliases (``"auditory-lh"``).

    Raises
    ------
    ConfigError
        An unknown name, or a region without sources in ``sources`` (named).
    """
    a = _atlas(atlas)
    regions = a.resolve(labels)
    per_region = a.region_sources(sources, regions)
    vertices = np.unique(np.concatenate(list(per_region.values())))
    return roi_from_vertices(sources, name, vertices, description=f"atlas {a.name}: {' + '.join(regions)}")


def rois_from_atlas(sources: SourceSpace, atlas: str | Atlas) -> list:
    """One ROI per region of the atlas, named like the region (``"bankssts-lh"``, ...).

    Raises
    ------
    ConfigError
        A region has no sources in ``sources``; the message names every such region.
    """
    a = _atlas(atlas)
    per_region = a.region_sources(sources)
    return [roi_from_vertices(sources, region, v, description=f"atlas {a.name}: {region}") for region, v in per_region.items()]


__all__ = ["roi_from_atlas", "rois_from_atlas"]
