"""Regions of interest: named sets of sources of a source space.

How ROIs are made (spheres around template coordinates, vertex lists, hemispheres, files) is
:mod:`rtsource.inverse.roi`; how they are aggregated and folded with an operator is
:mod:`rtsource.roi_operator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import frozen as _readonly
from ..errors import ConfigError
from ..channel_names import check_roi_name
from .source_space import SourceSpace


@dataclass(frozen=True, eq=False)
class Roi:
    """A named set of sources.

    Attributes
    ----------
    name : str
        Channel label of the ROI on the output streams (ASCII, see :func:`check_roi_name`).
    vertices : ndarray of int64, shape (n_vertices,)
        Sorted, unique indices into the source space (``SourceSpace`` order: left
        hemisphere sources first). Read-only.
    description : str
        How it was made, for metadata and logs.
    """

    name: str
    vertices: np.ndarray
    description: str = ""

    def __post_init__(self) -> None:
        check_roi_name(self.name)
        v = np.asarray(self.vertices)
        if v.ndim != 1 or v.size == 0:
            raise ConfigError(f"ROI {self.name!r}: vertices must be a non-empty 1-d list of source indices, got shape {v.shape}")
        if not np.issubdtype(v.dtype, np.integer):
            if not np.all(np.mod(v, 1) == 0):
                raise ConfigError(f"ROI {self.name!r}: vertices must be integer source indices")
        v = v.astype(np.int64)
        if v.min() < 0:
            raise ConfigError(f"ROI {self.name!r}: vertex index {int(v.min())} is negative")
        u = np.unique(v)
        if len(u) != len(v):
            raise ConfigError(f"ROI {self.name!r}: vertex indices repeat ({len(v) - len(u)} duplicates); list each source once")
        object.__setattr__(self, "vertices", _readonly(u, np.int64))

    @property
    def n_sources(self) -> int:
        return len(self.vertices)

    def check_fits(self, sources: SourceSpace) -> None:
        """Raise ConfigError if a vertex index is outside ``sources``."""
        if self.vertices[-1] >= sources.n_sources:
            raise ConfigError(
                f"ROI {self.name!r}: vertex index {int(self.vertices[-1])} is outside the source space "
                f"{sources.name!r} ({sources.n_sources} sources); the ROI was made for another source space"
            )

    def centre_m(self, sources: SourceSpace) -> np.ndarray:
        """Mean position of the ROI's sources, shape (3,), metres in ``sources.frame``."""
        self.check_fits(sources)
        return sources.positions_m[self.vertices].mean(axis=0)
