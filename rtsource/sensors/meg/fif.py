"""MEG arrays from a recording's channel info: an MNE-Python ``Info`` or a FIF file.

MNE-Python is an optional dependency (the ``mne`` extra); it is imported only when a FIF
file is read. What is taken from the channel info (``info["chs"]``, FIFF conventions):

- MEG channels (``kind`` FIFFV_MEG_CH) become the array's channels, reference channels
  (FIFFV_REF_MEG_CH) the reference sensors of the gradient compensation;
- ``loc[0:3]`` is the coil centre and ``loc[3:6]``, ``loc[6:9]``, ``loc[9:12]`` the coil
  frame's x, y, z axes in the DEVICE frame (metres); they are stored in float32 in FIF
  files, so the rotation is re-orthonormalised (the nearest rotation, polar decomposition;
  the correction is ~1e-7);
- ``coil_type`` selects the vendor coil (:mod:`.vendor_coils`); its upper 16 bits are the
  compensation grade of the data, the matrices are in ``info["comps"]``;
- ``info["dev_head_t"]`` becomes the array's DEVICE -> HEAD transform.

The compensation matrix is used as MNE-Python uses it (``mne._fiff.compensator``): rows
are MEG channels by name (channels not listed are not compensated), columns reference
channels by name; the lead field of the array is then ``G - C G_ref``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ChannelError, FrameError
from ...geometry import Frame, Transform
from .array import MegArray
from .compensation import GradientCompensation
from .vendor_coils import COMPENSATION_GRADE_SHIFT, vendor_coil

logger = logging.getLogger(__name__)

__all__ = ["meg_array_from_info", "read_meg_array_fif"]

# FIFF constants (the FIF file format; Elekta/MNE): channel kinds, units, coordinate frames.
_MEG_CH = 1
_REF_MEG_CH = 301
_UNIT_T = 112
_UNIT_T_M = 201
_COORD_DEVICE = 1
_COORD_HEAD = 4
_UNIT_OF_KIND = {"mag": _UNIT_T, "axial_grad": _UNIT_T, "planar_grad": _UNIT_T_M}
# Largest |R^T R - I| of a stored coil frame accepted before re-orthonormalisation.
_MAX_FRAME_ERROR = 1e-3


def _nearest_rotation(axes: np.ndarray, where: str) -> np.ndarray:
    """The proper rotation nearest to a 3x3 matrix of (almost) orthonormal columns."""
    err = float(np.abs(axes.T @ axes - np.eye(3)).max())
    if not np.isfinite(err) or err > _MAX_FRAME_ERROR:
        raise ChannelError(
            f"{where}: the coil axes in loc[3:12] are not orthonormal (|R^T R - I| = {err:.3g}); the channel "
            f"info is damaged -- check the file"
        )
    u, _, vt = np.linalg.svd(axes)
    rot = u @ vt
    if np.linalg.det(rot) < 0:
        raise ChannelError(
            f"{where}: the coil axes in loc[3:12] form a left-handed frame; rtsource needs x, y, z = x cross y"
        )
    return rot


def _channels(chs: list, kind: int, where: str) -> tuple[list[str], list[str], list[int], np.ndarray, np.ndarray]:
    names, kinds, ids, pos, rot = [], [], [], [], []
    for ch in chs:
        if int(ch["kind"]) != kind:
            continue
        name = str(ch["ch_name"])
        at = f"{where}: channel {name!r}"
        try:
            coil = vendor_coil(int(ch["coil_type"]))
        except ChannelError as exc:
            raise ChannelError(f"{at}: {exc}") from None
        if int(ch.get("coord_frame", _COORD_DEVICE)) != _COORD_DEVICE:
            raise FrameError(
                f"{at}: coil position in coordinate frame {int(ch['coord_frame'])}, expected the device frame "
                f"({_COORD_DEVICE}); MEG sensor positions must be given relative to the helmet"
            )
        unit = int(ch["unit"])
        if unit != _UNIT_OF_KIND[coil.kind]:
            raise ChannelError(
                f"{at}: unit {unit} does not fit its coil ({coil.description}, a {coil.kind}); expected "
                f"{_UNIT_OF_KIND[coil.kind]} ({'T/m' if coil.kind == 'planar_grad' else 'T'})"
            )
        loc = np.asarray(ch["loc"], dtype=float)
        if loc.shape != (12,) or not np.all(np.isfinite(loc)) or not np.any(loc[3:]):
            raise ChannelError(f"{at} has no sensor position and orientation in its loc ({loc.tolist()}); the file lacks the MEG geometry")
        names.append(name)
        kinds.append(coil.kind)
        ids.append(coil.coil_type)
        pos.append(loc[:3])
        rot.append(_nearest_rotation(loc[3:12].reshape(3, 3).T, at))
    return names, kinds, ids, np.asarray(pos).reshape(-1, 3), np.asarray(rot).reshape(-1, 3, 3)


def _grade(chs: list, where: str) -> int:
    grades = {int(ch["coil_type"]) >> COMPENSATION_GRADE_SHIFT for ch in chs if int(ch["kind"]) == _MEG_CH}
    if len(grades) > 1:
        raise ChannelError(f"{where}: the MEG channels carry different compensation grades {sorted(grades)}; they must agree")
    return grades.pop() if grades else 0


def _dev_head_t(info: Any, where: str) -> Transform | None:
    t = info.get("dev_head_t")
    if t is None:
        return None
    m = np.asarray(t["trans"], dtype=float)
    if int(t["from"]) != _COORD_DEVICE or int(t["to"]) != _COORD_HEAD:
        raise FrameError(f"{where}: dev_head_t maps frame {int(t['from'])} to {int(t['to'])}, expected device (1) -> head (4)")
    return Transform(Frame.DEVICE, Frame.HEAD, m)


def _compensation(info: Any, grade: int, meg_names: list[str], refs: MegArray | None, where: str) -> GradientCompensation:
    comps = [c for c in info.get("comps", []) if int(c["kind"]) == grade]
    if not comps:
        have = sorted(int(c["kind"]) for c in info.get("comps", []))
        raise ChannelError(
            f"{where}: the data are compensated with grade {grade} but info['comps'] holds no matrix of that grade "
            f"(grades present: {have or 'none'}); the file is incomplete"
        )
    if refs is None:
        raise ChannelError(f"{where}: the data are compensated with grade {grade} but the file has no reference channels")
    data = comps[0]["data"]
    mat = np.asarray(data["data"], dtype=float)
    rows, cols = [str(x) for x in data["row_names"]], [str(x) for x in data["col_names"]]
    ref_index = {n: i for i, n in enumerate(refs.ch_names)}
    missing = [c for c in cols if c not in ref_index]
    if missing:
        raise ChannelError(
            f"{where}: compensation grade {grade} uses reference channels {missing[:8]} that are not reference "
            f"channels of the recording ({', '.join(refs.ch_names[:8])}, ...)"
        )
    row_of = {n: i for i, n in enumerate(rows)}
    c = np.zeros((len(meg_names), refs.n_channels))
    for i, name in enumerate(meg_names):
        k = row_of.get(name)
        if k is not None:
            c[i, [ref_index[x] for x in cols]] = mat[k]
    n_rows = sum(name in row_of for name in meg_names)
    logger.info("compensation grade %d: %d of %d MEG channels compensated with %d references", grade, n_rows, len(meg_names), len(cols))
    return GradientCompensation(grade, c, refs)


def meg_array_from_info(info: Any, *, accuracy: str = "normal", name: str | None = None) -> MegArray:
    """The MEG sensor array of a recording's channel info (MNE-Python ``Info``).

    Parameters
    ----------
    info : mne.Info
        Or any mapping with ``chs``, ``dev_head_t`` and ``comps`` in MNE-Python's layout.
    accuracy : {"point", "normal", "accurate"}
        Coil integration accuracy.
    name : str, optional
        The array's name (default: ``"fif"``).

    Returns
    -------
    MegArray
        In the DEVICE frame with the recording's ``dev_head_t``, vendor coil types, and the
        gradient compensation in effect (None at grade 0).

    Raises
    ------
    ChannelError
        No MEG channels, an unknown coil type, a unit that does not fit the coil, a channel
        without geometry, a compensation grade without its matrix.
    """
    where = f"channel info of {name or 'the recording'}"
    chs = list(info["chs"])
    names, kinds, ids, pos, rot = _channels(chs, _MEG_CH, where)
    if not names:
        raise ChannelError(f"{where} has no MEG channels (kind {_MEG_CH}); is it an EEG recording?")
    dev_head_t = _dev_head_t(info, where)
    grade = _grade(chs, where)
    refs = None
    rnames, rkinds, rids, rpos, rrot = _channels(chs, _REF_MEG_CH, where)
    if rnames:
        refs = MegArray(tuple(rnames), tuple(rkinds), rpos, rrot, Frame.DEVICE, accuracy, dev_head_t, f"{name or 'fif'} references", tuple(rids))
    comp = _compensation(info, grade, names, refs, where) if grade else None
    return MegArray(tuple(names), tuple(kinds), pos, rot, Frame.DEVICE, accuracy, dev_head_t, name or "fif", tuple(ids), comp)


def read_meg_array_fif(path: str | Path, *, accuracy: str = "normal") -> MegArray:
    """The MEG array of a FIF recording (its measurement info; needs MNE-Python).

    Parameters
    ----------
    path : str or Path
        A raw, epochs, evoked or info FIF file.
    accuracy : {"point", "normal", "accurate"}

    Returns
    -------
    MegArray
        See :func:`meg_array_from_info`.
    """
    path = Path(path)
    try:
        import mne
    except ImportError:
        raise ChannelError(
            f"reading the MEG sensors of {str(path)!r} needs MNE-Python: pip install 'rtsource[mne]' (or mne)"
        ) from None
    if not path.is_file():
        raise ChannelError(f"FIF file {str(path)!r} does not exist; give the path of a recording")
    try:
        info = mne.io.read_info(path, verbose="error")
    except (OSError, ValueError) as exc:
        raise ChannelError(f"cannot read the measurement info of {str(path)!r}: {exc}") from None
    return meg_array_from_info(info, accuracy=accuracy, name=path.name)
