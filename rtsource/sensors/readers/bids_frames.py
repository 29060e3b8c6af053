"""BIDS coordinate systems: each one mapped to an rtsource frame explicitly, and checked.

A ``*_coordsystem.json`` names the system its positions are in (``EEGCoordinateSystem``,
``MEGCoordinateSystem``, ...). rtsource does not take that name on trust: each supported
name is mapped to a :class:`~rtsource.geometry.Frame` with the axis convention the BIDS
specification gives for it (appendix "Coordinate systems"), and the positions are then
checked against that convention -- the anatomical landmarks when the file has them, else the
10-20 electrode labels (odd numbers on the left, ``Fp``/``AF``/``F`` in front of ``P``/``O``).
A file that says ``CapTrak`` but holds ALS coordinates (or millimetres off the declared axes)
is refused with what was found, instead of putting every source centimetres off.

==================  =====  ========  ===========================================================
BIDS name           axes   frame     what is checked
==================  =====  ========  ===========================================================
CapTrak,            RAS    HEAD      LPA and RPA on the x axis (RPA at +x), the nasion on +y
ElektaNeuromag,                      (x = z = 0): the Neuromag head frame, defined by the same
NeuromagHead                         three landmarks (within 5 mm)
CTF                 ALS    CTF       the nasion on +x (y = z = 0), LPA at +y, RPA at -y, origin
                                     midway between the ears (within 5 mm)
EEGLAB, EEGLAB-HJ,  ALS    CTF       orientation (nasion ahead on +x, LPA on +y) and the origin
4DBti, KitYokogawa                   between the ears (within 20 mm); these define the axes only
                                     approximately, so coregistration realigns by the landmarks
ChietiItab          RAS    HEAD      orientation (RPA on +x, nasion on +y) and the origin between
                                     the ears (within 20 mm)
fsaverage, MNI305   RAS    TEMPLATE  orientation only (RAS)
MNI152*, ...        RAS    TEMPLATE  orientation only; MNI152 and MNI305 differ by a few mm
==================  =====  ========  ===========================================================

``Other`` (a digitiser's own frame, which BIDS asks to describe) is read as UNKNOWN only when
the file gives the three anatomical landmarks in it: coregistration then aligns the positions
by those landmarks, so no frame is assumed (:func:`other_system_note`). Anything else
(``Talairach``, a scanner space, an individual MRI, ``Other`` without landmarks) is refused
with this list; pass ``frame=`` to the reader to say which frame such positions are in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ...errors import FrameError
from ...geometry import Frame
from ...geometry.head_frames import FIDUCIAL_NAMES

__all__ = ["BIDS_SYSTEMS", "BidsSystem", "bids_system", "check_bids_positions", "is_other", "other_system_note", "supported_systems"]

#: Tolerance for the landmarks of a frame defined by them (mm): digitiser software computes
#: those frames from the same landmarks it stores, so they sit on the axes to rounding.
STRICT_MM = 5.0
#: Tolerance for the origin of frames that BIDS defines only as "between the ears" (mm).
LOOSE_MM = 20.0
#: Least separation (m) of front/back and left/right electrode groups along the declared axes.
_LABEL_MARGIN_M = 0.03


@dataclass(frozen=True)
class BidsSystem:
    """One BIDS coordinate system as rtsource reads it.

    Attributes
    ----------
    name : str
        Its BIDS spelling.
    frame : Frame
        The rtsource frame its positions are taken to be in.
    axes : str
        ``"RAS"`` or ``"ALS"``: which way x, y, z point.
    check : str
        ``"landmarks"`` (the frame is defined by NAS/LPA/RPA; checked to :data:`STRICT_MM`),
        ``"between_ears"`` (orientation and an origin near the ears) or ``"orientation"``.
    description : str
        The convention in words, for the reader's notes.
    """

    name: str
    frame: Frame
    axes: str
    check: str
    description: str


_RAS_HEAD = "RAS: x from LPA through RPA, y through the nasion, z up; origin on the LPA-RPA line"
_ALS_CTF = "ALS: x through the nasion, y toward LPA, z up; origin midway between LPA and RPA"

#: Every supported system, by case-folded name.
BIDS_SYSTEMS: dict[str, BidsSystem] = {
    s.name.casefold(): s
    for s in (
        BidsSystem("CapTrak", Frame.HEAD, "RAS", "landmarks", _RAS_HEAD),
        BidsSystem("ElektaNeuromag", Frame.HEAD, "RAS", "landmarks", _RAS_HEAD),
        BidsSystem("NeuromagHead", Frame.HEAD, "RAS", "landmarks", _RAS_HEAD),
        BidsSystem("CTF", Frame.CTF, "ALS", "landmarks", _ALS_CTF),
        BidsSystem("EEGLAB", Frame.CTF, "ALS", "between_ears", "ALS with the origin between the ears"),
        BidsSystem("EEGLAB-HJ", Frame.CTF, "ALS", "between_ears", "ALS with the origin between the helix-tragus junctions"),
        BidsSystem("4DBti", Frame.CTF, "ALS", "between_ears", "ALS with the origin between the ears"),
        BidsSystem("KitYokogawa", Frame.CTF, "ALS", "between_ears", "ALS with the origin between the ears"),
        BidsSystem("ChietiItab", Frame.HEAD, "RAS", "between_ears", "RAS with the origin between the ears"),
        BidsSystem("fsaverage", Frame.TEMPLATE, "RAS", "orientation", "FreeSurfer fsaverage surface RAS (= the template frame)"),
        BidsSystem("fsaverageSym", Frame.TEMPLATE, "RAS", "orientation", "FreeSurfer fsaverage_sym surface RAS"),
        BidsSystem("MNI305", Frame.TEMPLATE, "RAS", "orientation", "MNI305 (the template frame)"),
    )
}

# MNI152 variants and other volumetric templates: RAS, a few mm from MNI305.
_NEAR_TEMPLATE = re.compile(r"^(mni152.*|mnicolin27|icbm452airspace|icbm452warp5space|ixi549space|fslr|uncinfant.*)$", re.I)


def supported_systems() -> list[str]:
    """The BIDS names this module maps (MNI152* stands for every MNI152 variant)."""
    return [s.name for s in BIDS_SYSTEMS.values()] + ["MNI152*", "MNIColin27", "ICBM452AirSpace", "IXI549Space", "fsLR"]


def bids_system(name: str, *, where: str = "coordsystem.json") -> BidsSystem:
    """The :class:`BidsSystem` for a BIDS coordinate-system name.

    Raises
    ------
    FrameError
        A name rtsource does not map (``Other``, ``Talairach``, ...), with the supported list.
    """
    key = str(name).strip().casefold()
    if key in BIDS_SYSTEMS:
        return BIDS_SYSTEMS[key]
    if _NEAR_TEMPLATE.match(key):
        return BidsSystem(
            str(name).strip(), Frame.TEMPLATE, "RAS", "orientation",
            f"{name} template space, taken as the template frame (MNI305); they differ by a few millimetres",
        )  # fmt: skip
    raise FrameError(
        f"{where}: coordinate system {name!r} is not one rtsource maps to a frame; supported: "
        f"{', '.join(supported_systems())}. Convert the positions to one of them, or pass frame= "
        f"([coreg] frame) to say which frame they are in ('head', 'ctf', 'template', or 'unknown' "
        f"to align by landmarks and labels)"
    )


def is_other(name: str) -> bool:
    """True for BIDS ``Other`` (a frame the file describes in words, not by name)."""
    return str(name).strip().casefold() == "other"


def other_system_note(has_landmarks: bool, description: str | None, *, where: str = "coordsystem.json") -> str:
    """The note for positions in BIDS ``Other``; refused without NAS, LPA and RPA in that frame.

    Raises
    ------
    FrameError
        No landmarks: nothing would place the positions on a head.
    """
    if not has_landmarks:
        raise FrameError(
            f"{where}: coordinate system 'Other' ({description or 'not described'}) without the anatomical landmarks NAS, "
            f"LPA and RPA in the same frame: rtsource cannot place the positions. Add AnatomicalLandmarkCoordinates, "
            f"convert the positions to a supported system ({', '.join(supported_systems())}), or pass frame= ([coreg] frame)"
        )
    return (
        f"Other ({description or 'not described'}) -> rtsource frame 'unknown': not assumed to be any head frame; "
        f"aligned by its landmarks NAS, LPA and RPA"
    )


def _axes(axes: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors pointing anterior, left and up in an RAS or ALS frame."""
    if axes == "RAS":
        return np.array([0.0, 1, 0]), np.array([-1.0, 0, 0]), np.array([0.0, 0, 1])
    return np.array([1.0, 0, 0]), np.array([0.0, 1, 0]), np.array([0.0, 0, 1])


def _landmark_problems(system: BidsSystem, nas: np.ndarray, lpa: np.ndarray, rpa: np.ndarray) -> list[str]:
    ant, left, up = _axes(system.axes)
    mid = (lpa + rpa) / 2
    problems = []
    if np.dot(nas - mid, ant) < 0.03:
        problems.append(f"the nasion is not in front of the ears along the declared anterior axis ({'+y' if system.axes == 'RAS' else '+x'})")
    if np.dot(lpa - rpa, left) < 0.05:
        problems.append(f"LPA is not on the left of RPA along the declared left axis ({'-x' if system.axes == 'RAS' else '+y'})")
    if problems or system.check == "orientation":
        return problems
    mm = 1e3
    if system.check == "between_ears":
        off = np.linalg.norm(mid) * mm
        if off > LOOSE_MM:
            problems.append(f"the origin is {off:.0f} mm from the midpoint of LPA and RPA (at most {LOOSE_MM:g} mm)")
        return problems
    if system.axes == "RAS":  # Neuromag: ears on x, nasion on y
        off = {"LPA y": lpa[1], "LPA z": lpa[2], "RPA y": rpa[1], "RPA z": rpa[2], "NAS x": nas[0], "NAS z": nas[2]}
    else:  # CTF: nasion on x, origin midway between the ears
        off = {"NAS y": nas[1], "NAS z": nas[2], "LPA z": lpa[2], "RPA z": rpa[2], "(LPA+RPA)/2 x": mid[0], "(LPA+RPA)/2 y": mid[1]}
    bad = {k: v * mm for k, v in off.items() if abs(v) * mm > STRICT_MM}
    if bad:
        problems.append(
            "the landmarks are off the axes that define it: " + ", ".join(f"{k} = {v:+.1f} mm" for k, v in bad.items())
            + f" (at most {STRICT_MM:g} mm)"
        )
    return problems


_LABEL_RE = re.compile(r"^(Fp|AF|F|FC|FT|C|T|TP|CP|P|PO|O|I)(\d+|z)$", re.I)


def _label_problems(system: BidsSystem, labels: tuple[str, ...], positions_m: np.ndarray) -> tuple[list[str], int]:
    """Check the declared axes against 10-20 labels; returns (problems, labels used)."""
    ant, left, up = _axes(system.axes)
    front, back, lefts, rights = [], [], [], []
    used = 0
    for label, p in zip(labels, positions_m):
        m = _LABEL_RE.match(label.strip())
        if not m:
            continue
        prefix, num = m.group(1).casefold(), m.group(2).casefold()
        used += 1
        if prefix in ("fp", "af", "f"):
            front.append(p)
        elif prefix in ("po", "o", "i", "p"):
            back.append(p)
        if num != "z":
            (lefts if int(num) % 2 else rights).append(p)
    problems = []
    if len(front) >= 2 and len(back) >= 2:
        d = np.dot(np.mean(front, axis=0) - np.mean(back, axis=0), ant)
        if d < _LABEL_MARGIN_M:
            problems.append(f"frontal electrodes (Fp/AF/F) are {d * 1e3:+.0f} mm ahead of the parietal/occipital ones along the declared anterior axis")
    if len(lefts) >= 2 and len(rights) >= 2:
        d = np.dot(np.mean(lefts, axis=0) - np.mean(rights, axis=0), left)
        if d < _LABEL_MARGIN_M:
            problems.append(f"odd-numbered (left) electrodes are {d * 1e3:+.0f} mm left of the even-numbered ones along the declared left axis")
    return problems, used


def check_bids_positions(
    system: BidsSystem,
    *,
    fiducials: dict[str, np.ndarray] | None = None,
    labels: tuple[str, ...] = (),
    positions_m: np.ndarray | None = None,
    where: str = "coordsystem.json",
) -> str:
    """Check positions against the convention of ``system``; return a note saying how.

    Parameters
    ----------
    system : BidsSystem
        The declared system.
    fiducials : dict of str -> ndarray, shape (3,), optional
        ``NAS``, ``LPA``, ``RPA`` in metres, in the declared system.
    labels : tuple of str
        Electrode labels (10-20 names are used when the landmarks are missing).
    positions_m : ndarray, shape (n, 3), optional
        The electrodes' positions in metres.
    where : str
        The file, for messages.

    Returns
    -------
    str
        One sentence for the reader's notes: the mapping and what confirmed it.

    Raises
    ------
    FrameError
        The positions contradict the declared system; the message lists what was found.
    """
    head = f"{system.name} ({system.description}) -> rtsource frame {system.frame.value!r}"
    fid = {k: np.asarray(v, float) for k, v in (fiducials or {}).items() if k in FIDUCIAL_NAMES}
    if len(fid) == 3:
        problems, how = _landmark_problems(system, fid["NAS"], fid["LPA"], fid["RPA"]), "checked against NAS, LPA and RPA"
    elif positions_m is not None and len(labels):
        problems, used = _label_problems(system, tuple(labels), np.asarray(positions_m, float))
        if not problems and used < 4:
            return f"{head}; NOT checked (no landmarks and too few 10-20 electrode labels)"
        how = f"checked against {used} 10-20 electrode labels"
    else:
        return f"{head}; NOT checked (no landmarks and no electrode labels)"
    if problems:
        raise FrameError(
            f"{where}: the positions do not fit the declared coordinate system {system.name!r} ({system.description}): "
            + "; ".join(problems)
            + ". Fix the coordinate system in the coordsystem.json, or pass frame= ([coreg] frame) to override it"
        )
    return f"{head}; {how}"
