"""Sources between MNE and rtsource: MNE source spaces as a SourceSpace, and a bundle's
sources as MNE vertex numbers."""

from __future__ import annotations

import numpy as np

from ...anatomy.source_space import SourceSpace
from ...bundle import OperatorBundle
from ...errors import ConfigError, InverseError
from ...geometry import Frame
from ._common import FIFFV_COORD_HEAD, FIFFV_COORD_MRI, FIFFV_MNE_SURF_LEFT_HEMI, FIFFV_MNE_SURF_RIGHT_HEMI


def frame_of(coord_frame: int) -> Frame:
    """The rtsource frame of an MNE ``coord_frame`` (head or MRI; anything else is refused)."""
    if coord_frame == FIFFV_COORD_HEAD:
        return Frame.HEAD
    if coord_frame == FIFFV_COORD_MRI:
        return Frame.MRI
    raise InverseError(f"MNE coordinate frame {coord_frame} is neither head (4) nor MRI (5); rtsource cannot place these sources")


def _src_normals(s, use_cps: bool) -> np.ndarray:
    """MNE's source normals: patch-averaged for surface sources with patch info (``use_cps``)."""
    vertno = s["vertno"]
    if use_cps and s.get("patch_inds") is not None and s.get("pinfo") is not None:
        nn = np.array([s["nn"][s["pinfo"][s["patch_inds"][p]]].sum(axis=0) for p in range(len(vertno))])
    else:
        nn = np.array(s["nn"][vertno], dtype=np.float64)
    return nn / np.linalg.norm(nn, axis=1, keepdims=True)


def _src_areas(s) -> np.ndarray:
    """Cortical patch area per source in m^2 (0 where the source space has no patch info)."""
    vertno = s["vertno"]
    if s.get("tris") is None or s.get("tri_area") is None or s.get("pinfo") is None or s.get("patch_inds") is None:
        return np.zeros(len(vertno))
    dense = np.bincount(np.asarray(s["tris"]).ravel(), weights=np.repeat(np.asarray(s["tri_area"]), 3), minlength=len(s["rr"])) / 3.0
    return np.array([dense[s["pinfo"][s["patch_inds"][p]]].sum() for p in range(len(vertno))])


def _to_frame(points: np.ndarray, src_frame: int, want: Frame, trans, vectors: bool) -> np.ndarray:
    """Points (or directions) from a source space's frame into ``want`` (head/MRI) with ``trans``."""
    have = frame_of(src_frame)
    if have == want:
        return points
    if trans is None:
        raise InverseError(f"the source space is in the {have.value} frame and the operator in {want.value}, but no mri_head_t transform is available")
    t = np.asarray(trans["trans"], dtype=np.float64)
    if frame_of(trans["from"]) != have:
        t = np.linalg.inv(t)
    out = points @ t[:3, :3].T
    return out if vectors else out + t[:3, 3]


def source_space_from_mne(src, *, frame: Frame, trans=None, use_cps: bool = True, name: str | None = None) -> tuple[SourceSpace, dict]:
    """An rtsource SourceSpace (in ``frame``, metres) from MNE ``SourceSpaces``.

    Returns
    -------
    sources : SourceSpace
        Positions, normals, patch areas, hemispheres (0 lh, 1 rh, -1 volume/discrete) and
        the decimated triangulation of surface sources, in MNE's source order.
    info : dict
        ``vertices`` (list of lists of MNE vertex numbers per source space), ``kinds``
        (``"lh"``, ``"rh"``, ``"vol"``, ``"discrete"``) and ``subject`` -- kept in the bundle's
        provenance for labels and SourceEstimates.
    """
    pos, nrm, area, hemi, tris, vertices, kinds = [], [], [], [], [], [], []
    offset = 0
    for s in src:
        vertno = np.asarray(s["vertno"], dtype=np.int64)
        p = _to_frame(np.asarray(s["rr"][vertno], dtype=np.float64), s["coord_frame"], frame, trans, vectors=False)
        nn = _to_frame(_src_normals(s, use_cps), s["coord_frame"], frame, trans, vectors=True)
        pos.append(p)
        nrm.append(nn / np.linalg.norm(nn, axis=1, keepdims=True))
        area.append(_src_areas(s) if s["type"] == "surf" else np.zeros(len(vertno)))
        if s["type"] == "surf":
            h = 0 if s["id"] == FIFFV_MNE_SURF_LEFT_HEMI else 1 if s["id"] == FIFFV_MNE_SURF_RIGHT_HEMI else -1
            kinds.append({0: "lh", 1: "rh"}.get(h, "surf"))
        else:
            h = -1
            kinds.append("vol" if s["type"] == "vol" else "discrete")
        hemi.append(np.full(len(vertno), h))
        if s["type"] == "surf" and s.get("use_tris") is not None and len(s["use_tris"]):
            remap = np.full(len(s["rr"]), -1, dtype=np.int64)
            remap[vertno] = np.arange(len(vertno)) + offset
            t = remap[np.asarray(s["use_tris"])]
            tris.append(t[np.all(t >= 0, axis=1)])
        vertices.append(vertno.tolist())
        offset += len(vertno)
    subject = src[0].get("subject_his_id") if len(src) else None
    sources = SourceSpace(
        np.vstack(pos),
        np.vstack(nrm),
        np.concatenate(area),
        np.concatenate(hemi),
        frame,
        name or f"mne-{'+'.join(kinds)}-{offset}" + (f"-{subject}" if subject else ""),
        np.vstack(tris) if tris else np.zeros((0, 3), np.int64),
    )
    return sources, {"vertices": vertices, "kinds": kinds, "subject": subject or ""}


def source_vertices(bundle: OperatorBundle) -> tuple[list[str], list[np.ndarray], list[np.ndarray], str]:
    """How the bundle's sources map onto MNE vertex numbers.

    Returns
    -------
    kinds : list of str
        Per source space: "lh", "rh", "vol", "discrete".
    vertices : list of ndarray
        MNE vertex numbers per source space (sorted).
    indices : list of ndarray
        The bundle's source index of each of those vertices.
    subject : str
        The FreeSurfer subject ("fsaverage" for the template, "" if unknown).

    Raises
    ------
    ConfigError
        The bundle's sources have no known MNE vertex numbers (neither made from MNE
        objects nor on the fsaverage template).
    """
    mne_info = bundle.provenance.get("mne") if bundle.provenance else None
    if mne_info and "vertices" in mne_info:
        kinds = list(mne_info["kinds"])
        vertices = [np.asarray(v, dtype=np.int64) for v in mne_info["vertices"]]
        offsets = np.cumsum([0] + [len(v) for v in vertices])
        if offsets[-1] != bundle.n_sources:
            raise ConfigError(f"bundle provenance lists {offsets[-1]} MNE vertices for {bundle.n_sources} sources; the bundle was edited")
        indices = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(vertices))]
        return kinds, vertices, indices, str(mne_info.get("subject") or "")
    name = bundle.sources.name
    if name.startswith("fsaverage-ico"):
        # the template's sources are fsaverage's first vertices per hemisphere (icosahedral order)
        kinds, vertices, indices = [], [], []
        for h, kind in ((0, "lh"), (1, "rh")):
            idx = np.flatnonzero(bundle.sources.hemisphere == h)
            kinds.append(kind)
            vertices.append(np.arange(len(idx), dtype=np.int64))
            indices.append(idx)
        return kinds, vertices, indices, "fsaverage"
    raise ConfigError(
        f"the sources {name!r} of this bundle have no MNE vertex numbers; labels and SourceEstimates need a bundle "
        "made from MNE objects (bundle_from_forward / bundle_from_inverse) or on the fsaverage template"
    )


__all__ = ["frame_of", "source_space_from_mne", "source_vertices"]
