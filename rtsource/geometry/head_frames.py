"""Named head frames, the transforms that define them from fiducials, and point-based fits.

rtsource names the frames positions can be in (:class:`~rtsource.geometry.Frame`); this
module says what each one *is* and computes the transforms between them:

========  =====  ===========================================================================
frame     axes   definition
========  =====  ===========================================================================
HEAD      RAS    Neuromag/MNE head frame (also BIDS ``CapTrak``, ``ElektaNeuromag``): x from
                 LPA through RPA, origin where that line meets its perpendicular through the
                 nasion, y toward the nasion, z up (x cross y).
CTF       ALS    CTF head frame (also BIDS ``EEGLAB``, ``4DBti``, ``KitYokogawa``): origin
                 midway between LPA and RPA, x toward the nasion, y toward the LPA (made
                 orthogonal to x), z up.
TEMPLATE  RAS    The template head's frame (fsaverage surface RAS ~ MNI305).
MRI       RAS    A subject's MRI surface RAS.
DEVICE    -      A MEG system's own frame (fixed to the helmet).
UNKNOWN   -      As read from a file that did not say.
========  =====  ===========================================================================

A frame defined by fiducials is computed from the three landmarks NAS, LPA and RPA in any
input frame (``head_from_fiducials``, ``ctf_from_fiducials``). Point-based fits use the
closed-form least-squares solution of Umeyama 1991 (IEEE TPAMI 13:376; Horn 1987 JOSA A
4:629 and Arun et al. 1987 IEEE TPAMI 9:698 for the rigid case), which also gives the
MEG device -> head transform from head-localisation (HPI) coils known in both frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import FrameError, GeometryError
from .frames import Frame, Transform, as_frame
from .points import Points

logger = logging.getLogger(__name__)

#: The canonical fiducial names, in the order rtsource stores them.
FIDUCIAL_NAMES = ("NAS", "LPA", "RPA")

# Spellings of the anatomical landmarks in the formats rtsource reads (case-insensitive).
# EGI/BESA write FidNz/FidT9/FidT10, CTF and Polhemus nasion/left/right, KIT al/ar.
_FIDUCIAL_ALIASES = {
    "nas": "NAS", "nasion": "NAS", "fidnz": "NAS", "fid_nz": "NAS", "nasion_fid": "NAS",
    "lpa": "LPA", "left": "LPA", "fidt9": "LPA", "fid_t9": "LPA", "al": "LPA", "left_ear": "LPA",
    "leftear": "LPA", "lpf": "LPA", "lpa_fid": "LPA",
    "rpa": "RPA", "right": "RPA", "fidt10": "RPA", "fid_t10": "RPA", "ar": "RPA", "right_ear": "RPA",
    "rightear": "RPA", "rpf": "RPA", "rpa_fid": "RPA",
}  # fmt: skip


def fiducial_name(label: str) -> str | None:
    """``"NAS"``, ``"LPA"`` or ``"RPA"`` if ``label`` names that landmark, else None.

    ``"Nz"`` is *not* taken as the nasion here: it is also a 10-05 electrode. Readers use it
    as the nasion only when a file has no other nasion (and say so in their report).
    """
    key = label.strip().casefold().replace(" ", "_").replace("-", "_")
    return _FIDUCIAL_ALIASES.get(key)


@dataclass(frozen=True)
class FrameInfo:
    """What a named frame is: its axis letters and how its origin and axes are defined."""

    frame: Frame
    axes: str
    definition: str


FRAME_INFO: dict[Frame, FrameInfo] = {
    Frame.HEAD: FrameInfo(
        Frame.HEAD,
        "RAS",
        "Neuromag/MNE head frame: x from LPA through RPA, origin where that line meets its "
        "perpendicular through the nasion, y toward the nasion, z up",
    ),
    Frame.CTF: FrameInfo(
        Frame.CTF,
        "ALS",
        "CTF head frame: origin midway between LPA and RPA, x toward the nasion, y toward the "
        "LPA (orthogonalised), z up",
    ),
    Frame.TEMPLATE: FrameInfo(Frame.TEMPLATE, "RAS", "template head frame: fsaverage surface RAS (~MNI305)"),
    Frame.MRI: FrameInfo(Frame.MRI, "RAS", "a subject's MRI surface RAS (FreeSurfer tkr)"),
    Frame.DEVICE: FrameInfo(Frame.DEVICE, "", "a MEG device's own frame, fixed to the helmet"),
    Frame.UNKNOWN: FrameInfo(Frame.UNKNOWN, "", "not stated: align with fiducials, labels or a transform"),
}


# ---- BIDS coordinate systems -------------------------------------------------------------

# BIDS specification, appendix "Coordinate systems". Keys are case-folded.
_BIDS_HEAD = ("captrak", "elektaneuromag", "chietiitab", "neuromag")
_BIDS_ALS = ("ctf", "eeglab", "4dbti", "kityokogawa", "eeglab_hj", "eeglab-hj")
_BIDS_TEMPLATE_EXACT = ("mni305", "fsaverage", "fsaveragesym")
_BIDS_TEMPLATE_NEAR = (
    "mni152lin", "mni152nlin6sym", "mni152nlin6asym", "mni152nlin2009aasym", "mni152nlin2009asym",
    "mni152nlin2009basym", "mni152nlin2009casym", "mni152nlin2009asym", "mni152nlin2009bsym",
    "mni152nlin2009csym", "mni152nlin2009asym", "mnicolin27", "icbm452airspace",
    "icbm452warp5space", "ixi549space", "fslr", "mni",
)  # fmt: skip


def frame_for_coordinate_system(name: str) -> tuple[Frame, str]:
    """Map a BIDS (or common) coordinate-system name onto a frame, with the reason.

    Parameters
    ----------
    name : str
        E.g. ``"CapTrak"``, ``"CTF"``, ``"EEGLAB"``, ``"MNI305"``, ``"Other"``.

    Returns
    -------
    frame : Frame
        HEAD for the RAS fiducial frames (CapTrak, ElektaNeuromag, ChietiItab), CTF for the
        ALS ones (CTF, EEGLAB, 4DBti, KitYokogawa), TEMPLATE for MNI305/fsaverage and (as an
        approximation, a few mm off) the other MNI templates, UNKNOWN for anything else.
    reason : str
        One sentence for a reader's report.
    """
    key = name.strip().casefold()
    if key in _BIDS_HEAD:
        return Frame.HEAD, f"coordinate system {name!r} is the RAS fiducial head frame (Neuromag convention)"
    if key in _BIDS_ALS:
        extra = " (landmarks at the helix-tragus junctions)" if "hj" in key else ""
        return Frame.CTF, f"coordinate system {name!r} is the ALS fiducial frame (CTF convention){extra}"
    if key in _BIDS_TEMPLATE_EXACT:
        return Frame.TEMPLATE, f"coordinate system {name!r} is the template's frame (fsaverage / MNI305)"
    if key in _BIDS_TEMPLATE_NEAR or key.startswith("mni152"):
        return Frame.TEMPLATE, (
            f"coordinate system {name!r} is an MNI template space, taken as the template frame "
            f"(MNI305); they differ by a few millimetres"
        )
    try:
        frame = as_frame(key)
        return frame, f"coordinate system {name!r} names rtsource's {frame.value!r} frame"
    except FrameError:
        pass
    return Frame.UNKNOWN, (
        f"coordinate system {name!r} is not one rtsource knows; positions are taken as UNKNOWN "
        f"and must be aligned (fiducials or electrode labels)"
    )


# ---- fiducial frames ---------------------------------------------------------------------


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if not n > 1e-9:
        raise GeometryError(f"fiducials are degenerate: {what} has zero length; check NAS, LPA and RPA")
    return v / n


def fiducials_m(fiducials: Points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NAS, LPA, RPA of a labelled point set, in metres, after sanity checks.

    Labels are matched with :func:`fiducial_name`. The checks catch swapped or mistyped
    landmarks: the three must be distinct, not collinear, the ear-to-ear distance must be
    head-sized (8-25 cm) and the nasion must lie in front of the ear line.

    Raises
    ------
    GeometryError
        Naming the missing landmark or the failed check and the distances involved.
    """
    found: dict[str, np.ndarray] = {}
    for label, pos in zip(fiducials.labels, fiducials.positions_m):
        name = fiducial_name(label)
        if name is not None:
            found.setdefault(name, pos)
    missing = [n for n in FIDUCIAL_NAMES if n not in found]
    if missing:
        raise GeometryError(
            f"fiducials {missing} are missing (got labels {list(fiducials.labels)}); "
            f"a fiducial frame needs NAS, LPA and RPA"
        )
    nas, lpa, rpa = (found[n] for n in FIDUCIAL_NAMES)
    ear = float(np.linalg.norm(rpa - lpa))
    if not 0.08 <= ear <= 0.25:
        raise GeometryError(
            f"LPA-RPA distance is {ear * 1e3:.1f} mm, not head-sized (80-250 mm); check the "
            f"fiducials' unit and labels"
        )
    ex = (rpa - lpa) / ear
    along = lpa + np.dot(nas - lpa, ex) * ex
    ahead = float(np.linalg.norm(nas - along))
    if ahead < 0.03:
        raise GeometryError(
            f"the nasion is only {ahead * 1e3:.1f} mm from the LPA-RPA line (need >= 30 mm); "
            f"the fiducials are collinear or mislabelled"
        )
    return nas, lpa, rpa


def _frame_matrix(origin: np.ndarray, ex: np.ndarray, ey: np.ndarray, ez: np.ndarray) -> np.ndarray:
    """Matrix taking coordinates in the input frame to one with these axes and origin."""
    rot = np.vstack([ex, ey, ez])  # rows: new axes in input coordinates
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ origin
    return m


def head_from_fiducials(fiducials: Points) -> Transform:
    """The transform from the fiducials' frame to the HEAD frame they define (Neuromag).

    x from LPA through RPA; origin = foot of the perpendicular from NAS onto the LPA-RPA
    line; y from the origin toward NAS; z = x cross y (up). Right-handed, RAS.

    Parameters
    ----------
    fiducials : Points
        NAS, LPA and RPA (labels in any spelling :func:`fiducial_name` knows), any frame
        except HEAD itself.

    Returns
    -------
    Transform
        ``fiducials.frame -> Frame.HEAD``; rigid. (From HEAD itself it is the correction that
        makes positions said to be in HEAD agree with their own fiducials.)
    """
    nas, lpa, rpa = fiducials_m(fiducials)
    ex = _unit(rpa - lpa, "LPA->RPA")
    origin = lpa + np.dot(nas - lpa, ex) * ex
    ey = _unit(nas - origin, "origin->NAS")
    ez = np.cross(ex, ey)
    return Transform(fiducials.frame, Frame.HEAD, _frame_matrix(origin, ex, ey, ez))


def ctf_from_fiducials(fiducials: Points) -> Transform:
    """The transform from the fiducials' frame to the CTF (ALS) frame they define.

    Origin midway between LPA and RPA; x toward NAS; z = x cross (LPA - origin), normalised
    (up); y = z cross x (toward the LPA, orthogonal to x). Right-handed, ALS.
    """
    nas, lpa, rpa = fiducials_m(fiducials)
    origin = 0.5 * (lpa + rpa)
    ex = _unit(nas - origin, "origin->NAS")
    ez = _unit(np.cross(ex, lpa - origin), "x cross LPA")
    ey = np.cross(ez, ex)
    return Transform(fiducials.frame, Frame.CTF, _frame_matrix(origin, ex, ey, ez))


def frame_from_fiducials(fiducials: Points, to_frame: Frame | str) -> Transform:
    """``head_from_fiducials`` or ``ctf_from_fiducials`` by the target frame's name."""
    to = as_frame(to_frame)
    if to == Frame.HEAD:
        return head_from_fiducials(fiducials)
    if to == Frame.CTF:
        return ctf_from_fiducials(fiducials)
    raise FrameError(f"frame {to.value!r} is not defined by fiducials; use 'head' or 'ctf'")


def head_to_ctf(fiducials: Points) -> Transform:
    """HEAD -> CTF for one subject, from its fiducials (in any frame)."""
    return compose(head_from_fiducials(fiducials).inverse(), ctf_from_fiducials(fiducials))


def compose(*transforms: Transform) -> Transform:
    """Chain transforms left to right (the first is applied first); frames must chain.

    Raises
    ------
    FrameError
        Naming the position in the chain and both frames when a link does not fit.
    """
    if not transforms:
        raise FrameError("compose() needs at least one transform")
    out = transforms[0]
    for i, t in enumerate(transforms[1:], start=1):
        if t.from_frame != out.to_frame:
            chain = " -> ".join([transforms[0].from_frame.value] + [x.to_frame.value for x in transforms[:i]])
            raise FrameError(
                f"transform {i} goes {t.from_frame.value!r} -> {t.to_frame.value!r} but the chain so far "
                f"ends in {out.to_frame.value!r} ({chain}); insert the missing transform"
            )
        out = out.then(t)
    return out


# ---- closed-form point fits ----------------------------------------------------------------


@dataclass(frozen=True)
class PointFit:
    """A closed-form fit ``y ~ scale * R x + t``.

    Attributes
    ----------
    rotation : ndarray, shape (3, 3)
        Proper rotation (det +1).
    translation_m : ndarray, shape (3,)
    scale : float
        1.0 for a rigid fit.
    residuals_m : ndarray, shape (n,)
        Distance between each fitted source point and its target, metres.
    """

    rotation: np.ndarray
    translation_m: np.ndarray
    scale: float
    residuals_m: np.ndarray

    @property
    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation_m
        return m

    def transform(self, from_frame: Frame | str, to_frame: Frame | str) -> Transform:
        return Transform(as_frame(from_frame), as_frame(to_frame), self.matrix)


def check_spans_plane(points_m: np.ndarray, what: str, labels=None) -> None:
    """Raise unless there are >= 3 points that are not (nearly) collinear.

    Nearly collinear: the second principal extent is under 1% of the first, which leaves
    the rotation about that line undetermined.
    """
    p = np.asarray(points_m, dtype=float)
    if len(p) < 3:
        raise GeometryError(f"{what}: need at least 3 non-collinear points, got {len(p)}")
    s = np.linalg.svd(p - p.mean(axis=0), compute_uv=False)
    if not s[0] > 0 or s[1] < 1e-2 * s[0]:
        names = f" ({', '.join(labels)})" if labels else ""
        raise GeometryError(
            f"{what}: the {len(p)} points{names} are (nearly) collinear (second principal extent "
            f"{s[1] / max(s[0], 1e-300):.2%} of the first); need at least 3 points spanning a plane"
        )


def fit_points(source_m, target_m, *, weights=None, scale: bool = False, what: str = "point fit") -> PointFit:
    """Least-squares similarity (or rigid) transform taking ``source_m`` onto ``target_m``.

    Minimises ``sum_i w_i |y_i - (s R x_i + t)|^2`` in closed form (Umeyama 1991, IEEE TPAMI
    13:376, eqs. 34-42; the rigid case is Arun et al. 1987 / Horn 1987): with weighted
    centroids mx, my and H = sum w (y - my)(x - mx)^T = U D V^T, R = U S V^T where
    S = diag(1, 1, det(U V^T)) keeps R proper, s = tr(D S) / sum w |x - mx|^2, t = my - s R mx.

    Parameters
    ----------
    source_m, target_m : ndarray, shape (n, 3)
        Corresponding points (metres).
    weights : ndarray, shape (n,), optional
        Non-negative weights (default 1).
    scale : bool
        Fit a uniform scale as well.
    what : str
        Name used in error messages.
    """
    x = np.asarray(source_m, dtype=float)
    y = np.asarray(target_m, dtype=float)
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] != 3:
        raise GeometryError(f"{what}: source and target must both have shape (n, 3), got {x.shape} and {y.shape}")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(x),) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise GeometryError(f"{what}: weights must be {len(x)} finite non-negative numbers")
    keep = w > 0
    check_spans_plane(x[keep], what)
    w = w / w.sum()
    mx = w @ x
    my = w @ y
    xc, yc = x - mx, y - my
    h = (yc * w[:, None]).T @ xc
    u, d, vt = np.linalg.svd(h)
    s_fix = np.ones(3)
    s_fix[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag(s_fix) @ vt
    c = float((d * s_fix).sum() / (w @ (xc**2).sum(axis=1))) if scale else 1.0
    t = my - c * rot @ mx
    res = np.linalg.norm(y - (c * x @ rot.T + t), axis=1)
    return PointFit(rot, t, c, res)


@dataclass(frozen=True)
class HpiFit:
    """The MEG device -> head transform fitted to head-localisation coils.

    Attributes
    ----------
    transform : Transform
        DEVICE -> HEAD (rigid).
    labels : tuple of str
        Coil names, in the order of ``residuals_m``.
    residuals_m : ndarray, shape (n_coils,)
        Distance between each coil's head-frame position and its transformed device-frame
        position (metres): a coil far above the others moved or was mislocalised.
    """

    transform: Transform
    labels: tuple[str, ...]
    residuals_m: np.ndarray

    def describe(self) -> str:
        per = ", ".join(f"{n} {r * 1e3:.1f} mm" for n, r in zip(self.labels, self.residuals_m))
        return f"device->head from {len(self.labels)} HPI coils; residuals {per}"


def device_to_head_from_hpi(hpi_device: Points, hpi_head: Points, *, max_residual_mm: float | None = None) -> HpiFit:
    """Rigid DEVICE -> HEAD transform from coils known in both frames (closed form, Horn 1987).

    Parameters
    ----------
    hpi_device : Points
        Coil positions localised by the MEG system (frame DEVICE).
    hpi_head : Points
        The same coils digitised in the HEAD frame.
    max_residual_mm : float, optional
        Refuse the fit if any coil's residual exceeds this.

    Coils are paired by label when both sets are labelled (case-insensitively), else by order.

    Raises
    ------
    FrameError
        If the inputs are not in DEVICE and HEAD.
    GeometryError
        Fewer than 3 coils, collinear coils, unmatched labels, or a residual above the limit
        (the message lists every coil's residual).
    """
    if hpi_device.frame != Frame.DEVICE or hpi_head.frame != Frame.HEAD:
        raise FrameError(
            f"HPI coils must be given in the 'device' and 'head' frames, got "
            f"{hpi_device.frame.value!r} and {hpi_head.frame.value!r}"
        )
    if hpi_device.labels and hpi_head.labels:
        head_index = {x.casefold(): i for i, x in enumerate(hpi_head.labels)}
        missing = [x for x in hpi_device.labels if x.casefold() not in head_index]
        if missing:
            raise GeometryError(
                f"HPI coils {missing} are localised in the device but not digitised in the head frame "
                f"(head coils: {list(hpi_head.labels)}); rename them to match"
            )
        labels = hpi_device.labels
        head = hpi_head.positions_m[[head_index[x.casefold()] for x in labels]]
    else:
        if len(hpi_device) != len(hpi_head):
            raise GeometryError(
                f"{len(hpi_device)} HPI coils in the device frame but {len(hpi_head)} in the head frame; "
                f"label them or give the same coils in the same order"
            )
        labels = hpi_device.labels or hpi_head.labels or tuple(f"coil{i + 1}" for i in range(len(hpi_head)))
        head = hpi_head.positions_m
    check_spans_plane(hpi_device.positions_m, "HPI coils", labels)
    fit = fit_points(hpi_device.positions_m, head, what="HPI coil fit")
    result = HpiFit(fit.transform(Frame.DEVICE, Frame.HEAD), tuple(labels), fit.residuals_m)
    logger.info("%s", result.describe())
    if max_residual_mm is not None and fit.residuals_m.max() * 1e3 > max_residual_mm:
        raise GeometryError(
            f"HPI fit residual {fit.residuals_m.max() * 1e3:.1f} mm exceeds max_residual_mm = "
            f"{max_residual_mm:g} ({result.describe()}); re-localise the coils or drop the bad one"
        )
    return result


__all__ = [
    "FIDUCIAL_NAMES",
    "FRAME_INFO",
    "FrameInfo",
    "HpiFit",
    "PointFit",
    "check_spans_plane",
    "compose",
    "ctf_from_fiducials",
    "device_to_head_from_hpi",
    "fiducial_name",
    "fiducials_m",
    "fit_points",
    "frame_for_coordinate_system",
    "frame_from_fiducials",
    "head_from_fiducials",
    "head_to_ctf",
]
