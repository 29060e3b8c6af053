"""A FreeSurfer subject directory: head surfaces, cortical source spaces, atlas labels, fiducials.

    SUBJECTS_DIR/SUBJECT/
      surf/{lh,rh}.{white,pial,sphere}      cortex and its registration sphere
      bem/{inner_skull,outer_skull,outer_skin}.surf   (or bem/watershed/SUBJECT_*_surface, bem/flash/*.surf)
      label/{lh,rh}.aparc.annot             the atlas (any ``NAME.annot``)
      mri/transforms/talairach.xfm, mri/orig.mgz      MNI305 alignment (estimated fiducials)

Everything is in the subject's MRI surface RAS frame (:attr:`Frame.MRI`), in metres. The
``ico`` source spaces follow MNE-Python's subsampling: every vertex of an order-k
icosphere picks the nearest vertex of ``?h.sphere`` (both on the unit sphere); the dense
white surface gives normals and, summed over the dense vertices nearest on the sphere to
each source, patch areas; ``oct`` grids are MNE-Python's octahedron subdivisions.
:class:`SubjectHead` offers coregistration and the forward model what the template offers
(BEM surfaces from ``bem/`` or an MNE ``-bem.fif``, MRI fiducials, the standard electrodes
on the subject's scalp); :func:`subject_atlas` labels the subject's own vertices. How a
config selects a subject (``[head] model = "freesurfer"``) is :mod:`rtsource.pipeline.subject`.
"""

from __future__ import annotations

import gzip
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GeometryError
from ..geometry import Frame, Mesh, Points, Transform, check_nested
from ..geometry.icosphere import icosphere
from .freesurfer import read_annot, read_surface
from .source_space import SourceSpace
from .template import HeadModelSurfaces

logger = logging.getLogger(__name__)

HEMIS = ("lh", "rh")
_BEM_NAMES = ("outer_skin", "outer_skull", "inner_skull")
_ICO = {"ico3": 3, "ico4": 4, "ico5": 5, "ico6": 6, "oct5": 5, "oct6": 6}


@dataclass(frozen=True)
class FreeSurferSubject:
    """Paths of one subject (see module docstring); reading happens in the functions."""

    subjects_dir: Path
    subject: str

    @property
    def path(self) -> Path:
        return Path(self.subjects_dir) / self.subject

    def file(self, *parts: str) -> Path:
        """A file of the subject; GeometryError naming it (and the subject) if it is missing."""
        p = self.path.joinpath(*parts)
        if not p.exists():
            raise GeometryError(
                f"FreeSurfer subject {self.subject!r} in {self.subjects_dir}: {p} does not exist; "
                "run recon-all (and mne watershed_bem for bem/) or check subjects_dir and subject"
            )
        return p


def open_subject(subjects_dir: str | Path, subject: str) -> FreeSurferSubject:
    """A subject directory, checked to exist."""
    s = FreeSurferSubject(Path(subjects_dir).expanduser(), subject)
    if not s.path.is_dir():
        raise GeometryError(f"FreeSurfer subject directory {s.path} does not exist; check subjects_dir = {str(subjects_dir)!r} and subject = {subject!r}")
    return s


def freesurfer_icosphere(order: int) -> tuple[np.ndarray, np.ndarray]:
    """The order-k icosphere in FreeSurfer's orientation (a vertex at +z, a neighbour in the
    +x half of the x-z plane), so that nearest sphere vertices are the ones FreeSurfer's and
    MNE-Python's ``ico`` spacings pick (on fsaverage: vertices 0 .. 10*4^k+1)."""
    v, t = icosphere(order)
    base = np.asarray(v[:12], float)
    a = base[0]
    b = base[1 + int(np.argmax(base[1:] @ a))]  # a neighbour of a

    def frame(p, q):
        e2 = q - (q @ p) * p
        e2 /= np.linalg.norm(e2)
        return np.c_[p, e2, np.cross(p, e2)]

    target = frame(np.array([0.0, 0.0, 1.0]), np.array([2.0, 0.0, 1.0]) / np.sqrt(5.0))
    rot = target @ frame(a, b).T
    return np.asarray(v, float) @ rot.T, np.asarray(t, np.int64)


def octahedron_sphere(order: int) -> tuple[np.ndarray, np.ndarray]:
    """MNE-Python's ``oct`` grid of that order: the octahedron with vertices on the axes,
    subdivided ``order - 1`` times (normalised midpoints; ``oct6``: 4098 vertices)."""
    v = [np.array(p, float) for p in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))]
    t = [(0, 2, 4), (2, 1, 4), (1, 3, 4), (3, 0, 4), (2, 0, 5), (1, 2, 5), (3, 1, 5), (0, 3, 5)]
    for _ in range(order - 1):
        mids: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in mids:
                m = v[a] + v[b]
                v.append(m / np.linalg.norm(m))
                mids[key] = len(v) - 1
            return mids[key]

        t = [q for a, b, c in t for q in ((a, mid(a, b), mid(c, a)), (b, mid(b, c), mid(a, b)), (c, mid(c, a), mid(b, c)), (mid(a, b), mid(b, c), mid(c, a)))]
    return np.asarray(v), np.asarray(t, np.int64)


def _bem_file(s: FreeSurferSubject, name: str) -> Path:
    candidates = (s.path / "bem" / f"{name}.surf", s.path / "bem" / "watershed" / f"{s.subject}_{name}_surface", s.path / "bem" / "flash" / f"{name}.surf")
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return s.file("bem", f"{name}.surf")  # raises, naming the expected file


def subject_head_surfaces(s: FreeSurferSubject) -> HeadModelSurfaces:
    """Scalp, outer and inner skull from ``bem/``; checked closed, outward and nested."""
    meshes = []
    for name in _BEM_NAMES:
        m = read_surface(_bem_file(s, name), frame=Frame.MRI, name=name)
        m.check_closed()
        if m.signed_volume() <= 0:
            raise GeometryError(f"{s.subject}: bem surface {name} is inward oriented; the file's triangles must wind outward (FreeSurfer's convention)")
        meshes.append(m)
    check_nested(meshes[2], meshes[1])
    check_nested(meshes[1], meshes[0])
    return HeadModelSurfaces(*meshes)


def subject_source_space(s: FreeSurferSubject, spacing: str = "ico4", surface: str = "white") -> tuple[SourceSpace, tuple[np.ndarray, np.ndarray]]:
    """A cortical source space of both hemispheres, subsampled like MNE-Python's ``ico``.

    Parameters
    ----------
    s : FreeSurferSubject
    spacing : {"ico3", "ico4", "ico5", "ico6", "oct5", "oct6", "all"}
        ``icoK``: the order-K icosphere (10 4^K + 2 sources per hemisphere); ``octK``: the
        octahedron grid (4^K + 2, as MNE-Python's); ``all``: every vertex.
    surface : {"white", "pial"}

    Returns
    -------
    SourceSpace
        MRI frame, metres; left hemisphere first.
    vertno : (ndarray, ndarray)
        The dense-surface vertex numbers of the sources, per hemisphere (to look up labels).

    Raises
    ------
    GeometryError
        Missing files, or an icosphere vertex without a vertex of its own on the sphere.
    """
    if spacing != "all" and spacing not in _ICO:
        raise GeometryError(f"spacing {spacing!r} is not known; use one of {', '.join([*_ICO, 'all'])}")
    if surface not in ("white", "pial"):
        raise GeometryError(f"surface {surface!r} is not known; use 'white' or 'pial'")
    from scipy.spatial import cKDTree

    pos, nrm, area, hemi, tris, vertnos = [], [], [], [], [], []
    offset = 0
    for h, name in enumerate(HEMIS):
        white = read_surface(s.file("surf", f"{name}.white"), name=f"{name}.white")
        dense = white if surface == "white" else read_surface(s.file("surf", f"{name}.{surface}"), name=f"{name}.{surface}")
        if len(dense.vertices) != len(white.vertices):
            raise GeometryError(f"{s.subject}: {name}.{surface} has {len(dense.vertices)} vertices, {name}.white {len(white.vertices)}")
        normals = white.vertex_normals()
        areas = white.vertex_areas()
        if spacing == "all":
            vertno = np.arange(len(white.vertices))
            owner = vertno
            sub_tris = white.triangles
        else:
            sphere = read_surface(s.file("surf", f"{name}.sphere"), name=f"{name}.sphere")
            if len(sphere.vertices) != len(white.vertices):
                raise GeometryError(f"{s.subject}: {name}.sphere has {len(sphere.vertices)} vertices, {name}.white {len(white.vertices)}")
            unit = sphere.vertices_m / np.linalg.norm(sphere.vertices_m, axis=1, keepdims=True)
            ico, ico_tris = freesurfer_icosphere(_ICO[spacing]) if spacing.startswith("ico") else octahedron_sphere(_ICO[spacing])
            _, vertno = cKDTree(unit).query(ico)
            if len(np.unique(vertno)) != len(vertno):
                raise GeometryError(
                    f"{s.subject} {name}: {len(vertno) - len(np.unique(vertno))} {spacing} vertices share a sphere vertex; "
                    f"{name}.sphere is too coarse for {spacing}; use a smaller spacing"
                )
            # sources in vertex-number order, as MNE-Python keeps them
            order = np.argsort(vertno)
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            vertno = vertno[order]
            _, owner = cKDTree(unit[vertno]).query(unit)  # patch: dense vertices nearest on the sphere
            sub_tris = rank[ico_tris]
        pos.append(dense.vertices_m[vertno])
        nrm.append(normals[vertno])
        area.append(np.bincount(owner, weights=areas, minlength=len(vertno)) if spacing != "all" else areas)
        hemi.append(np.full(len(vertno), h, np.int8))
        tris.append(np.asarray(sub_tris, np.int64) + offset)
        vertnos.append(np.asarray(vertno, np.int64))
        offset += len(vertno)
    space = SourceSpace(
        np.vstack(pos), np.vstack(nrm), np.concatenate(area), np.concatenate(hemi), Frame.MRI,
        f"{s.subject}-{spacing}-{surface}", np.vstack(tris),
    )  # fmt: skip
    return space, (vertnos[0], vertnos[1])


def subject_region_labels(s: FreeSurferSubject, vertno: tuple[np.ndarray, np.ndarray], annot: str = "aparc") -> tuple[tuple[str, ...], np.ndarray]:
    """Region names (``"precentral-lh"``, ...) and the region index of every source.

    The sources are given by their dense-surface vertex numbers per hemisphere (as
    :func:`subject_source_space` returns them); labels come from :func:`subject_atlas`
    ("unknown", "corpuscallosum" and vertices outside the colour table get -1).

    Returns
    -------
    names : tuple of str
        Left hemisphere's regions first.
    labels : ndarray of int16, shape (n_sources,)
    """
    atlas = subject_atlas(s, annot)
    n_lh = int(np.sum(atlas.surface.hemisphere == 0))
    sizes = (n_lh, len(atlas.labels) - n_lh)
    for name, verts, n in zip(HEMIS, vertno, sizes):
        if len(verts) and verts.max() >= n:
            raise GeometryError(f"{s.subject}: {name}.{annot}.annot has {n} vertices, fewer than the source vertex numbers")
    index = np.concatenate([np.asarray(vertno[0], np.int64), np.asarray(vertno[1], np.int64) + n_lh])
    return atlas.region_names, atlas.labels[index].astype(np.int16)


def _read_mgh_vox2ras(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vox2ras, vox2ras_tkr) of an MGH/MGZ volume's header (mm), FreeSurfer's definitions.

    Header (big-endian): int32 version, width, height, depth, frames, type, dof; int16
    goodRASflag; float32 voxel sizes (3), Mdc (9, column by column: x_r x_a x_s, y_r ...),
    c_ras (3). ``vox2ras = [Mdc diag(sizes) | c_ras - Mdc diag(sizes) dims/2]``; the tkr form
    has FreeSurfer's fixed LIA axes, centred on the volume (whatever Mdc is).
    """
    with path.open("rb") as f:
        raw = f.read(284) if path.suffix != ".mgz" else b""
    if not raw:
        with gzip.open(path, "rb") as f:
            try:
                raw = f.read(284)
            except (OSError, EOFError) as exc:
                raise GeometryError(f"{path}: not a readable gzip file ({exc})") from None
    head = raw
    if len(head) < 90:
        raise GeometryError(f"{path}: too short for an MGH header; the file is damaged")
    version, w, h, d = struct.unpack(">iiii", head[:16])
    if version != 1 or min(w, h, d) <= 0:
        raise GeometryError(f"{path}: not an MGH volume (version {version}, dimensions {w} x {h} x {d})")
    (good,) = struct.unpack(">h", head[28:30])
    if good <= 0:
        raise GeometryError(f"{path}: the header has no valid RAS orientation (goodRASflag = {good}); rerun recon-all's conform step")
    values = np.array(struct.unpack(">15f", head[30:90]), dtype=np.float64)
    sizes, mdc, c_ras = values[:3], values[3:12].reshape(3, 3).T, values[12:15]
    m = mdc * sizes
    centre = np.array([w, h, d], float) / 2.0
    vox2ras = np.eye(4)
    vox2ras[:3, :3] = m
    vox2ras[:3, 3] = c_ras - m @ centre
    # surface (tkr) RAS: FreeSurfer's fixed LIA orientation, centred (tkregister2's vox2ras-tkr)
    xs, ys, zs = sizes
    tkr = np.array([[-xs, 0, 0, xs * w / 2], [0, 0, zs, -zs * d / 2], [0, -ys, 0, ys * h / 2], [0, 0, 0, 1]], float)
    return vox2ras, tkr


def _read_xfm(path: Path) -> np.ndarray:
    """The 3x4 ``Linear_Transform`` of an MNI ``.xfm`` file as a 4x4 matrix (mm)."""
    text = path.read_text(encoding="utf-8", errors="replace")[:100_000]
    key = text.find("Linear_Transform")
    end = text.find(";", key)
    if key < 0 or end < 0:
        raise GeometryError(f"{path}: no 'Linear_Transform = ... ;' block; not an MNI transform file")
    try:
        numbers = [float(x) for x in text[text.index("=", key) + 1 : end].split()]
    except ValueError:
        raise GeometryError(f"{path}: the Linear_Transform block holds something that is not a number") from None
    if len(numbers) != 12:
        raise GeometryError(f"{path}: Linear_Transform has {len(numbers)} numbers, needs 12 (3 rows of 4)")
    m = np.eye(4)
    m[:3] = np.reshape(numbers, (3, 4))
    return m


def talairach_transform(s: FreeSurferSubject) -> Transform:
    """The subject's MRI surface RAS -> MNI305 (the template frame), metres.

    ``mri/transforms/talairach.xfm`` maps scanner RAS to MNI305; ``mri/orig.mgz`` gives
    scanner RAS from surface (tkr) RAS. fsaverage's surface RAS is MNI305, which is the
    template frame.
    """
    xfm = _read_xfm(s.file("mri", "transforms", "talairach.xfm"))
    vox2ras, tkr = _read_mgh_vox2ras(s.file("mri", "orig.mgz"))
    m = xfm @ vox2ras @ np.linalg.inv(tkr)
    out = np.eye(4)
    out[:3, :3] = m[:3, :3]
    out[:3, 3] = m[:3, 3] * 1e-3
    return Transform(Frame.MRI, Frame.TEMPLATE, out)


def estimate_fiducials(s: FreeSurferSubject) -> Points:
    """NAS, LPA, RPA of the subject's MRI, estimated from the template's through the inverse
    of the Talairach transform (as MNE-Python's ``get_mni_fiducials``), MRI frame, metres."""
    from .template import load_template

    return load_template().fiducials.transformed(talairach_transform(s).inverse())


def subject_fiducials(s: FreeSurferSubject, path: str | Path | None = None) -> tuple[Points, str]:
    """The subject's MRI fiducials and where they came from.

    ``path`` (an MNE ``-fiducials.fif``), else ``bem/SUBJECT-fiducials.fif``, else estimated
    from the Talairach transform (:func:`estimate_fiducials`).

    Raises
    ------
    GeometryError
        None of the three is available (the message names the files looked for).
    """
    from .mne_files import read_fiducials_fif

    own = s.path / "bem" / f"{s.subject}-fiducials.fif"
    if path and not Path(path).is_file():
        raise GeometryError(f"fiducials file {path} does not exist; check [head] fiducials")
    for candidate in [Path(path)] if path else [own]:
        if candidate.exists():
            fid = read_fiducials_fif(candidate)
            if fid.frame != Frame.MRI:
                raise GeometryError(f"{candidate}: fiducials in the {fid.frame.value!r} frame; the subject's must be in MRI (save them with mne coreg)")
            return fid, str(candidate)
    xfm, orig = s.path / "mri" / "transforms" / "talairach.xfm", s.path / "mri" / "orig.mgz"
    if xfm.exists() and orig.exists():
        return estimate_fiducials(s), f"estimated from {xfm} (fsaverage's fiducials through its inverse)"
    raise GeometryError(
        f"FreeSurfer subject {s.subject!r}: no MRI fiducials: neither {own} nor {xfm} with {orig} exist; save them with "
        "mne coreg, set [head] fiducials, or give the head->MRI transform ([head] trans = '...-trans.fif')"
    )


@dataclass(frozen=True)
class SubjectHead:
    """A subject's head as the forward model and coregistration use it (MRI frame, metres).

    It offers what :class:`rtsource.anatomy.template.Template` offers coregistration and the
    forward model (``surfaces``, ``fiducials``, ``fit_scalp``, ``fit_electrodes``, ``frame``).

    Attributes
    ----------
    subject : FreeSurferSubject
    surfaces : HeadModelSurfaces
        Scalp, outer and inner skull (``bem/`` or an MNE ``-bem.fif``).
    fiducials : Points or None
        NAS, LPA, RPA in MRI (None: unknown; coregistration then needs a -trans.fif).
    electrodes : Points or None
        The standard 10-05 positions carried onto this scalp (see :func:`load_subject_head`).
    coreg_scalp : Mesh or None
        A denser scalp for coregistration (``surf/lh.seghead``), else the BEM scalp.
    provenance : dict
        Where each part came from (files), for the bundle.
    """

    subject: FreeSurferSubject
    surfaces: HeadModelSurfaces
    fiducials: Points | None
    electrodes: Points | None
    coreg_scalp: Mesh | None = None
    provenance: dict = field(default_factory=dict)

    @property
    def frame(self) -> Frame:
        return Frame.MRI

    @property
    def fit_scalp(self) -> Mesh:
        return self.coreg_scalp if self.coreg_scalp is not None else self.surfaces.scalp

    @property
    def fit_electrodes(self) -> Points:
        if self.electrodes is None:
            return Points(np.zeros((0, 3)), Frame.MRI, "m", ())
        return self.electrodes


def load_subject_head(s: FreeSurferSubject, *, bem: str | Path | None = None, fiducials: str | Path | None = None, need_fiducials: bool = False) -> SubjectHead:
    """The subject's head: BEM surfaces, fiducials, the standard electrodes on its scalp.

    Parameters
    ----------
    s : FreeSurferSubject
    bem : path, optional
        MNE ``-bem.fif`` / ``-bem-sol.fif`` with the three surfaces (default: ``bem/*.surf``).
    fiducials : path, optional
        MNE ``-fiducials.fif`` (default: see :func:`subject_fiducials`).
    need_fiducials : bool
        Raise when no fiducials are found (else ``fiducials`` is None).

    Notes
    -----
    The standard electrodes are the template's 10-05 positions carried into the subject's
    MRI by the inverse Talairach transform (an affine: it follows the head's size and
    shape) when ``talairach.xfm`` exists, else by the similarity transform of the template's
    fiducials onto the subject's; then projected onto the subject's scalp.
    """
    from ..geometry import project_onto_mesh
    from ..geometry.head_frames import fiducials_m, fit_points
    from .template import load_template

    prov: dict = {"subject": s.subject, "subjects_dir": str(s.subjects_dir)}
    if bem:
        surfaces = bem_fif_surfaces(bem)
        prov["bem"] = str(bem)
    else:
        surfaces = subject_head_surfaces(s)
        prov["bem"] = str(s.path / "bem")
    seghead = s.path / "surf" / "lh.seghead"
    coreg_scalp = None
    if seghead.exists():
        coreg_scalp = read_surface(seghead, name="seghead")
        prov["coreg_scalp"] = str(seghead)
    try:
        fid, where = subject_fiducials(s, fiducials)
        prov["fiducials"] = where
    except GeometryError:
        if need_fiducials or fiducials:
            raise
        fid, electrodes = None, None
        prov["fiducials"] = "none"
    if fid is not None:
        template = load_template()
        xfm = s.path / "mri" / "transforms" / "talairach.xfm"
        if xfm.exists() and (s.path / "mri" / "orig.mgz").exists():
            to_mri = talairach_transform(s).inverse()
            how = "talairach"
        else:
            fit = fit_points(np.array(fiducials_m(template.fiducials)), np.array(fiducials_m(fid)), scale=True, what="template fiducials onto the subject's")
            to_mri, how = fit.transform(Frame.TEMPLATE, Frame.MRI), "fiducials"
        moved = template.fit_electrodes.transformed(to_mri)
        scalp = coreg_scalp if coreg_scalp is not None else surfaces.scalp
        electrodes = Points(project_onto_mesh(moved.positions_m, scalp).points_m, Frame.MRI, "m", moved.labels)
        prov["standard_electrodes"] = f"template 10-05 through the {how} transform, projected onto the scalp"
    return SubjectHead(s, surfaces, fid, electrodes, coreg_scalp, prov)


def bem_fif_surfaces(path: str | Path) -> HeadModelSurfaces:
    """Scalp, outer and inner skull of an MNE ``-bem.fif`` / ``-bem-sol.fif`` (MRI frame), checked."""
    from .mne_files import read_bem_surfaces_fif

    found = read_bem_surfaces_fif(path)
    missing = [n for n in _BEM_NAMES if n not in found]
    if missing:
        raise GeometryError(
            f"{path}: no {', '.join(missing)} surface (it has {', '.join(found)}); EEG needs a three-layer BEM "
            "(mne.make_bem_model with three conductivities)"
        )
    meshes = [found[n] for n in _BEM_NAMES]
    if any(m.frame != Frame.MRI for m in meshes):
        raise GeometryError(f"{path}: BEM surfaces in the {meshes[0].frame.value!r} frame; the subject's must be in MRI")
    for m in meshes:
        m.check_closed()
    check_nested(meshes[2], meshes[1])
    check_nested(meshes[1], meshes[0])
    return HeadModelSurfaces(*meshes)


def subject_atlas(s: FreeSurferSubject, annot: str = "aparc"):
    """The subject's ``label/?h.ANNOT.annot`` as an :class:`rtsource.anatomy.atlas.Atlas`.

    Labels sit on the dense ``?h.white`` vertices (left hemisphere first; ``?h.pial`` too
    when present), so any source space of the subject (any spacing, white or pial) is
    labelled by its sources' own vertices.
    """
    from .atlas import Atlas, AtlasSurface

    names: list[str] = []
    labels, white, pial, hemi = [], [], [], []
    for h, name in enumerate(HEMIS):
        w = read_surface(s.file("surf", f"{name}.white"), name=f"{name}.white").vertices_m
        p_file = s.path / "surf" / f"{name}.pial"
        p = read_surface(p_file, name=f"{name}.pial").vertices_m if p_file.exists() else w
        a = read_annot(s.file("label", f"{name}.{annot}.annot"))
        if len(a.labels) != len(w) or len(p) != len(w):
            raise GeometryError(f"{s.subject}: {name}.{annot}.annot has {len(a.labels)} vertices, {name}.white {len(w)}, {name}.pial {len(p)}; they must be equal")
        keep = [i for i, n in enumerate(a.names) if n not in ("unknown", "corpuscallosum", "")]
        lut = np.full(len(a.names) + 1, -1, np.int64)
        lut[keep] = np.arange(len(keep)) + len(names)
        names += [f"{a.names[i]}-{name}" for i in keep]
        labels.append(lut[a.labels])
        white.append(w)
        pial.append(p)
        hemi.append(np.full(len(w), h, np.int8))
    surface = AtlasSurface(np.vstack(white), np.vstack(pial), np.concatenate(hemi), Frame.MRI, s.subject)
    return Atlas(annot, tuple(names), np.concatenate(labels), f"{s.subject}'s label/?h.{annot}.annot", surface)


__all__ = [
    "FreeSurferSubject",
    "SubjectHead",
    "bem_fif_surfaces",
    "load_subject_head",
    "octahedron_sphere",
    "subject_atlas",
    "subject_fiducials",
    "estimate_fiducials",
    "freesurfer_icosphere",
    "open_subject",
    "subject_head_surfaces",
    "subject_region_labels",
    "subject_source_space",
    "talairach_transform",
]
