"""The first transform of a digitisation onto the template head, before any ICP.

Initial alignment
    *Fiducials* (NAS, LPA, RPA in the file): the least-squares rigid (or similarity) fit of
    the three landmarks onto the template's (Umeyama 1991, via
    :func:`rtsource.geometry.head_frames.fit_points`). *Labels*: without fiducials, the same
    fit over electrodes whose labels the template knows (10-05 names, old 10-20 names and the
    alias map), reweighted once so that a mislabelled electrode does not pull it. *Frame*:
    positions already in a fiducial frame (HEAD, CTF) use the template's own fiducial frame.

For MEG, :func:`head_to_template` and :func:`device_to_template` chain the recording's
DEVICE -> HEAD transform with HEAD -> TEMPLATE from the subject's fiducials.
"""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from ..channel_names import canonical_label
from ..errors import FrameError, GeometryError
from ..geometry import Frame, Points, Transform
from ..geometry.head_frames import compose, ctf_from_fiducials, fit_points, head_from_fiducials
from ..sensors.readers import Digitization
from .icp import tukey_weights

logger = logging.getLogger(__name__)

#: How :func:`initial_alignment` describes a start from electrode labels (the ICP then
#: keeps the label pairs in place of fiducials).
BY_LABELS = "electrode labels"


def fiducial_alignment(fiducials: Points, target: Points, *, scale: bool = False) -> Transform:
    """Least-squares fit of NAS, LPA, RPA onto the target's (Umeyama 1991).

    Parameters
    ----------
    fiducials : Points
        NAS, LPA, RPA (canonical or known spellings) in any frame.
    target : Points
        The head model's NAS, LPA, RPA (e.g. the template's, TEMPLATE frame).
    scale : bool
        Also fit a uniform scale.

    Returns
    -------
    Transform
        ``fiducials.frame -> target.frame``.
    """
    from ..geometry.head_frames import fiducials_m

    src = np.array(fiducials_m(fiducials))
    dst = np.array(fiducials_m(target))
    fit = fit_points(src, dst, scale=scale, what="fiducial alignment")
    return fit.transform(fiducials.frame, target.frame)


def label_pairs(electrodes: Points, target: Points, aliases: Mapping[str, str] | None):
    """Electrodes whose labels the target knows: source (k, 3), target (k, 3) positions, labels."""
    lookup = {canonical_label(x): i for i, x in enumerate(target.labels)}
    src, dst, names = [], [], []
    for label, pos in zip(electrodes.labels, electrodes.positions_m):
        j = lookup.get(canonical_label(label, aliases))
        if j is not None:
            src.append(pos)
            dst.append(target.positions_m[j])
            names.append(label)
    return np.array(src).reshape(-1, 3), np.array(dst).reshape(-1, 3), names


def label_alignment(
    electrodes: Points, target: Points, *, aliases: Mapping[str, str] | None = None, scale: bool = False, min_labels: int = 4
) -> tuple[Transform, list[str]]:
    """Fit electrodes onto the template's positions of the same names (Umeyama 1991).

    One robust pass: after the first fit, pairs further than Tukey's cutoff of the
    residuals are dropped and the fit repeated (a mislabelled electrode must not pull it).

    Returns
    -------
    transform : Transform
        ``electrodes.frame -> target.frame``.
    used : list of str
        The labels the final fit used.
    """
    src, dst, names = label_pairs(electrodes, target, aliases)
    if len(names) < min_labels:
        raise GeometryError(
            f"only {len(names)} electrode label(s) ({', '.join(names) or 'none'}) match the template's "
            f"10-05 names; need at least {min_labels} to align by labels"
        )
    fit = fit_points(src, dst, scale=scale, what="label alignment")
    w, _ = tukey_weights(fit.residuals_m, sigma_floor_m=2e-3)
    keep = w > 0
    if keep.sum() >= min_labels and not keep.all():
        fit = fit_points(src[keep], dst[keep], scale=scale, what="label alignment")
        names = [n for n, k in zip(names, keep) if k]
    return fit.transform(electrodes.frame, target.frame), names


def initial_alignment(
    dig: Digitization, template, *, aliases: Mapping[str, str] | None = None, scale: bool = False
) -> tuple[Transform, str]:
    """The first transform of ``dig`` onto the template, and how it was obtained.

    Order of preference: already in TEMPLATE; fiducials; electrode labels; a fiducial
    frame (HEAD, CTF) mapped through the template's own fiducial frame.
    """
    if dig.frame == template.frame:
        return Transform.identity(dig.frame, dig.frame), f"positions already in the {dig.frame.value} frame"
    if dig.has_fiducials:
        t = fiducial_alignment(dig.fiducials, template.fiducials, scale=scale)
        return t, "fiducials (NAS, LPA, RPA) fitted to the head model's"
    n_match = 0
    if dig.electrodes is not None:
        _, _, names = label_pairs(dig.electrodes, template.fit_electrodes, aliases)
        n_match = len(names)
        if n_match >= 4:
            try:
                t, used = label_alignment(dig.electrodes, template.fit_electrodes, aliases=aliases, scale=scale)
                return t, f"{BY_LABELS} ({len(used)}) fitted to the template's 10-05 positions"
            except GeometryError as exc:
                logger.warning("label alignment failed (%s)", exc)
    if dig.frame == Frame.HEAD:
        return head_from_fiducials(template.fiducials).inverse(), "HEAD frame mapped through the template's own fiducial head frame"
    if dig.frame == Frame.CTF:
        return ctf_from_fiducials(template.fiducials).inverse(), "CTF frame mapped through the template's own fiducial CTF frame"
    raise GeometryError(
        f"cannot place {dig.name!r} on the template: it has no fiducials (NAS, LPA, RPA), only {n_match} "
        f"electrode label(s) that the template knows (need 4), and its frame is {dig.frame.value!r}; "
        f"add the fiducials to the file, pass an alias map to standard names, or state the frame "
        f"(frame='head' / 'ctf' / 'template')"
    )


def head_to_template(fiducials_head: Points, *, template=None, scale: bool = False) -> Transform:
    """HEAD -> TEMPLATE (the head model) from the subject's fiducials in the HEAD frame."""
    from ..anatomy.template import load_template

    if fiducials_head.frame != Frame.HEAD:
        raise FrameError(f"fiducials must be in the 'head' frame, got {fiducials_head.frame.value!r}")
    template = template or load_template()
    return fiducial_alignment(fiducials_head, template.fiducials, scale=scale)


def device_to_template(device_to_head: Transform, head_to_model: Transform) -> Transform:
    """DEVICE -> HEAD -> TEMPLATE for MEG sensors, with the frames checked at each link."""
    if device_to_head.from_frame != Frame.DEVICE:
        raise FrameError(f"the first transform must start in 'device', not {device_to_head.from_frame.value!r}")
    return compose(device_to_head, head_to_model)


__all__ = [
    "BY_LABELS",
    "device_to_template",
    "fiducial_alignment",
    "head_to_template",
    "initial_alignment",
    "label_alignment",
    "label_pairs",
]
