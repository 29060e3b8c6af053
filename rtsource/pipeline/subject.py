"""A FreeSurfer subject as the head of the offline build: ``[head] model = "freesurfer"``.

    [head] subjects_dir, subject ─> SubjectHead (bem/*.surf or a -bem.fif; fiducials)
        ─> source space (surf/?h.white, ?h.sphere: ico/oct spacings)      MRI frame, metres
        ─> head model (the subject's BEM surfaces, or spheres fitted to its scalp)
        ─> electrodes: a standard montage carried onto the subject's scalp, or a file moved
           by the -trans.fif ([head] trans), or coregistered to the scalp ([coreg])
        ─> MEG: DEVICE -> HEAD (the array's) -> MRI (the -trans.fif, or the fiducials' frame)
    [[roi]] atlas ─> label/?h.NAME.annot on the subject's own vertices

Everything of a subject's bundle is in the subject's MRI surface RAS frame
(:attr:`~rtsource.geometry.Frame.MRI`): sources, electrodes and the viewer's mesh. The
template's functions in :mod:`rtsource.build` call these when the settings name a subject.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from ..anatomy.subject import FreeSurferSubject, SubjectHead, load_subject_head, open_subject, subject_atlas, subject_source_space
from ..config import Settings
from ..errors import ConfigError, FrameError
from ..geometry import Frame, Transform

logger = logging.getLogger(__name__)


def subject_from_settings(settings: Settings) -> FreeSurferSubject:
    """The subject ``[head] subjects_dir`` (else ``$SUBJECTS_DIR``) and ``subject`` name."""
    h = settings.head
    if h.subjects_dir:
        root = settings.resolve_path(h.subjects_dir)
    elif os.environ.get("SUBJECTS_DIR"):
        root = Path(os.environ["SUBJECTS_DIR"])
    else:
        raise ConfigError("[head] model = 'freesurfer' needs subjects_dir = '...' (or the SUBJECTS_DIR environment variable)")
    return open_subject(root, h.subject)


def _path(settings: Settings, value: str) -> str:
    return str(settings.resolve_path(value)) if value else ""


@lru_cache(maxsize=4)
def _head(subjects_dir: str, subject: str, bem: str, fiducials: str) -> SubjectHead:
    return load_subject_head(FreeSurferSubject(Path(subjects_dir), subject), bem=bem or None, fiducials=fiducials or None)


def head_from_settings(settings: Settings) -> SubjectHead:
    """The subject's head (read once per process for the same files)."""
    s = subject_from_settings(settings)
    return _head(str(s.subjects_dir), s.subject, _path(settings, settings.head.bem), _path(settings, settings.head.fiducials))


def head_to_mri(settings: Settings) -> Transform | None:
    """HEAD -> MRI from ``[head] trans`` (an MNE -trans.fif in either direction), or None."""
    if not settings.head.trans:
        return None
    from ..anatomy.mne_files import read_trans_fif

    t = read_trans_fif(settings.resolve_path(settings.head.trans))
    if (t.from_frame, t.to_frame) == (Frame.MRI, Frame.HEAD):
        t = t.inverse()
    if (t.from_frame, t.to_frame) != (Frame.HEAD, Frame.MRI):
        raise FrameError(f"[head] trans = {settings.head.trans!r} maps {t.from_frame.value!r} -> {t.to_frame.value!r}; give the head <-> MRI -trans.fif of mne coreg")
    return t


def _need_fiducials(head: SubjectHead, what: str) -> None:
    if head.fiducials is None:
        raise ConfigError(
            f"{what} needs the subject's MRI fiducials, and {head.subject.subject!r} has none: save bem/"
            f"{head.subject.subject}-fiducials.fif with mne coreg, set [head] fiducials, keep mri/transforms/talairach.xfm "
            "and mri/orig.mgz, or give [head] trans"
        )


def source_space_from_settings(settings: Settings):
    """The subject's sources ``[source_space]`` describes, MRI frame, metres."""
    ss = settings.source_space
    if ss.kind == "cortex":
        if ss.surface == "mid":
            raise ConfigError("[source_space] surface = 'mid' is the template's; a subject's sources sit on 'white' or 'pial'")
        return subject_source_space(subject_from_settings(settings), ss.spacing, ss.surface)[0]
    inner = head_from_settings(settings).surfaces.inner_skull
    if ss.kind == "volume":
        from ..anatomy.volume import volume_source_space

        return volume_source_space(inner, spacing_m=ss.volume_spacing_mm * 1e-3, mindist_m=ss.volume_mindist_mm * 1e-3)
    if ss.kind == "discrete":
        from ..anatomy.volume import read_source_points_csv

        return read_source_points_csv(settings.resolve_path(ss.points), inner_skull=inner, frame=Frame.MRI)[0]
    from ..anatomy.surfaces import cortical_source_space

    return cortical_source_space(
        settings.resolve_path(ss.lh) if ss.lh else None, settings.resolve_path(ss.rh) if ss.rh else None, frame=Frame.MRI, n_sources=ss.n_sources
    )


def head_model_from_settings(settings: Settings):
    """The forward model on the subject: its BEM surfaces, or spheres fitted to its scalp."""
    from ..forward.head_model import BemHead, SphereHead, sphere_model_for_template

    head = head_from_settings(settings)
    f = settings.forward
    if f.method == "sphere":
        _need_fiducials(head, "[forward] method = 'sphere' on a subject (the sphere is fitted to the scalp above the fiducials)")
        model = sphere_model_for_template(head, f.relative_radii, f.conductivities)
        return SphereHead(model, rtol=f.rtol, inner_skull=head.surfaces.inner_skull)
    return BemHead(head.surfaces.as_tuple(), tuple(f.bem_conductivities), method=f.method)


def electrodes_from_settings(settings: Settings):
    """The EEG electrodes on the subject's scalp, MRI frame: (Montage, CoregResult or None).

    A standard montage name: the template's 10-05 positions carried onto the subject
    (:func:`rtsource.anatomy.subject.load_subject_head`). A file: moved by ``[head] trans``
    when given (then projected and checked), else coregistered (``[coreg]``) to the scalp.
    """
    from ..coreg import run_coreg
    from ..sensors.montage import STANDARD_SYSTEMS, Montage

    head = head_from_settings(settings)
    sensors, c = settings.sensors, settings.coreg
    if sensors.montage in STANDARD_SYSTEMS:
        _need_fiducials(head, f"[sensors] montage = {sensors.montage!r} on a subject")
        montage = Montage(head.electrodes, head.fiducials, f"{sensors.montage} on {head.subject.subject}")
        return montage.pick(list(sensors.channels), sensors.aliases), None
    trans = head_to_mri(settings)
    if trans is None:
        _need_fiducials(head, "coregistering an electrode file to a subject without [head] trans")
    result = run_coreg(
        settings.resolve_path(sensors.montage),
        aliases=sensors.aliases,
        headshape_path=settings.resolve_path(c.headshape) if c.headshape else None,
        method=c.method,
        scale=c.scale,
        max_rms_mm=c.max_rms_mm,
        max_outlier_fraction=c.max_outlier_fraction,
        allow_bad_fit=c.allow_bad_fit,
        qc_png=settings.resolve_path(c.qc_png) if c.qc_png else None,
        channels=sensors.channels,
        unit=c.unit or None,
        frame=c.frame or None,
        head=head,
        transform=trans,
    )
    return result.montage.pick(list(sensors.channels), sensors.aliases), result


def meg_to_subject(settings: Settings, array):
    """A MEG array moved into the subject's MRI: its DEVICE -> HEAD, then HEAD -> MRI.

    HEAD -> MRI is ``[head] trans``, else the Neuromag head frame of the subject's MRI
    fiducials (the frame the recording's digitised fiducials define).
    """
    from ..geometry.head_frames import compose, head_from_fiducials

    t = array.dev_head_t
    if t is not None and t.to_frame == Frame.TEMPLATE:
        # a helmet placed on the template (the generic array): the same place in the
        # subject's fiducial head frame
        from ..anatomy.template import template_head_transform

        logger.info("MEG array %r is placed on the template; moving it to the subject's head frame", array.name)
        t = compose(t, template_head_transform())
    if t is None or t.to_frame != Frame.HEAD:
        raise FrameError(
            f"MEG array {array.name!r} carries no device -> head transform ({'none' if t is None else t.to_frame.value}); "
            "a subject's MEG forward needs the recording's (a FIF file's dev_head_t)"
        )
    h2m = head_to_mri(settings)
    if h2m is None:
        head = head_from_settings(settings)
        _need_fiducials(head, "MEG on a subject without [head] trans")
        h2m = head_from_fiducials(head.fiducials).inverse()
    return array.with_dev_head_t(compose(t, h2m)).to_head()


@lru_cache(maxsize=8)
def _atlas(subjects_dir: str, subject: str, annot: str):
    return subject_atlas(FreeSurferSubject(Path(subjects_dir), subject), annot)


def atlas_from_settings(settings: Settings, annot: str):
    """The subject's ``label/?h.ANNOT.annot`` as an atlas on its own vertices."""
    s = subject_from_settings(settings)
    return _atlas(str(s.subjects_dir), s.subject, annot)


def sources_in_mni(settings: Settings, sources):
    """The subject's sources moved into MNI305 (the template frame) by ``talairach.xfm``.

    ROIs given in template coordinates (``[[roi]] center_mm``, ``[rois] file``) select the
    subject's sources through this view; it keeps the sources' order, so the indices are the
    subject's. Positions go through the affine; normals through its inverse transpose,
    renormalised.

    Raises
    ------
    GeometryError
        No ``mri/transforms/talairach.xfm`` (or ``mri/orig.mgz``) in the subject directory.
    """
    import numpy as np

    from ..anatomy.source_space import SourceSpace
    from ..anatomy.subject import talairach_transform

    if sources.frame != Frame.MRI:
        raise FrameError(f"the sources {sources.name!r} are in {sources.frame.value!r}, not the subject's MRI frame")
    t = talairach_transform(subject_from_settings(settings))
    normals = sources.normals @ np.linalg.inv(t.matrix[:3, :3])  # (A^-T n) for each row n
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return SourceSpace(t.apply_m(sources.positions_m), normals, sources.areas_m2, sources.hemisphere, Frame.TEMPLATE, f"{sources.name} in MNI305", sources.triangles)


def provenance(settings: Settings) -> dict:
    """What the bundle records about the subject's head."""
    out = dict(head_from_settings(settings).provenance)
    out.update(model="freesurfer", frame=Frame.MRI.value, trans=_path(settings, settings.head.trans))
    return out


__all__ = [
    "atlas_from_settings",
    "electrodes_from_settings",
    "head_from_settings",
    "head_model_from_settings",
    "head_to_mri",
    "meg_to_subject",
    "provenance",
    "source_space_from_settings",
    "sources_in_mni",
    "subject_from_settings",
]
