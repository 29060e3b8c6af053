"""FIF recordings -> :class:`~.acquisition.Acquisition`, through MNE-Python's reader.

MNE-Python's measurement info (``mne.io.read_info``, the optional ``mne`` extra) holds all
setup needs: channel kinds and units, the digitisation (fiducials, HPI coils, EEG
electrodes, head-shape points, in the head frame), bad channels, SSP projectors with their
active flags, the MEG coil geometry with the device->head transform and the CTF
compensation grade, and the sampling rate. :func:`acquisition_from_info` converts an
``Info`` (also one MNE-Python holds in memory), :func:`read_fif_acquisition` a file.

EEG electrode positions are matched to channel names: each EEG channel's own location
(``chs[i]['loc'][:3]``, which MNE fills from the digitisation) when it is set, else the
digitised EEG point whose number is the channel's position among the EEG channels (the
order MNE and the Neuromag acquisition write them in). EEG channels with neither are left
without a position (and named in :attr:`Acquisition.notes`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StreamError
from ..geometry import Frame, Points, Transform
from .acquisition import Acquisition, SspProjector
from .dependencies import need

logger = logging.getLogger(__name__)

# FIFF constants (MNE-Python's mne/_fiff/constants.py; the FIF format's, not MNE's invention)
_POINT_CARDINAL, _POINT_HPI, _POINT_EEG, _POINT_EXTRA = 1, 2, 3, 4
_CARDINAL = {1: "LPA", 2: "NAS", 3: "RPA"}
_COORD_DEVICE, _COORD_HEAD = 1, 4
_PROJ_EEG_AVREF = 10

#: MNE channel type -> (rtsource type, SI unit of the values MNE returns).
_TYPES = {
    "eeg": ("eeg", "V"), "mag": ("mag", "T"), "grad": ("grad", "T/m"), "ref_meg": ("ref_meg", "T"),
    "eog": ("eog", "V"), "ecg": ("ecg", "V"), "emg": ("emg", "V"), "stim": ("stim", ""),
}  # fmt: skip


def _projector_kind(p: Any) -> str:
    desc = str(p["desc"]).lower()
    if int(p["kind"]) == _PROJ_EEG_AVREF or "average eeg reference" in desc:
        return "average_eeg"
    for key, kind in (("ecg", "ecg"), ("eog", "eog"), ("pca", "empty_room"), ("empty", "empty_room")):
        if key in desc:
            return kind
    return "other"


def projectors_from_mne(projs) -> tuple[SspProjector, ...]:
    """MNE ``Projection`` items (``info['projs']``, ``cov['projs']``) as :class:`SspProjector`."""
    out = []
    for p in projs:
        data = p["data"]
        out.append(SspProjector(str(p["desc"]), tuple(data["col_names"]), np.atleast_2d(data["data"]), bool(p["active"]), _projector_kind(p)))
    return tuple(out)


def _digitization(info: Any, eeg_names: list[str], eeg_locs: dict[str, np.ndarray], where: str, notes: list[str]):
    """Fiducials, HPI, EEG electrodes (by channel name) and head-shape points, HEAD frame."""
    from ..sensors.readers.digitization import Digitization, ReadReport

    fid: dict[str, np.ndarray] = {}
    hpi, eeg_dig, extra = [], {}, []
    other_frames = set()
    for d in info.get("dig") or []:
        if int(d["coord_frame"]) != _COORD_HEAD:
            other_frames.add(int(d["coord_frame"]))
            continue
        kind, ident, r = int(d["kind"]), int(d["ident"]), np.asarray(d["r"], dtype=np.float64)
        if kind == _POINT_CARDINAL and ident in _CARDINAL:
            fid[_CARDINAL[ident]] = r
        elif kind == _POINT_HPI:
            hpi.append((f"HPI{ident:03d}", r))
        elif kind == _POINT_EEG:
            eeg_dig[ident] = r
        elif kind == _POINT_EXTRA:
            extra.append(r)
    if other_frames:
        notes.append(f"{len(other_frames)} digitised point frame(s) other than head ({sorted(other_frames)}) left out")
    # EEG electrodes by channel name: the channel's own location, else the digitised point of its number
    labels, pos, missing = [], [], []
    for k, name in enumerate(eeg_names, start=1):
        p = eeg_locs.get(name)
        if p is None:
            p = eeg_dig.get(k)
        if p is None:
            missing.append(name)
            continue
        labels.append(name)
        pos.append(p)
    if missing:
        notes.append(f"{len(missing)} EEG channel(s) without a digitised position: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    fid_names = [n for n in ("NAS", "LPA", "RPA") if n in fid]
    sets = dict(
        electrodes=Points(np.array(pos), Frame.HEAD, "m", tuple(labels)) if pos else None,
        fiducials=Points(np.array([fid[n] for n in fid_names]), Frame.HEAD, "m", tuple(fid_names)) if fid_names else None,
        headshape=Points(np.array(extra), Frame.HEAD, "m") if extra else None,
        hpi=Points(np.array([r for _, r in hpi]), Frame.HEAD, "m", tuple(n for n, _ in hpi)) if hpi else None,
    )
    if all(v is None for v in sets.values()):
        return None
    report = ReadReport(where, "fif", "m", "format", Frame.HEAD, "file: FIFF head coordinates (from the fiducials)", tuple(notes))
    return Digitization(**sets, report=report, name=where)


def acquisition_from_info(info: Any, *, path: str = "<info>", accuracy: str = "normal") -> Acquisition:
    """An MNE-Python ``Info`` as an :class:`Acquisition`.

    Parameters
    ----------
    info : mne.Info
        Of a raw, epochs or evoked recording.
    path : str
        Where it came from (named in errors and the provenance).
    accuracy : {"point", "normal", "accurate"}
        MEG coil integration accuracy of the array.

    Returns
    -------
    Acquisition
        ``format = "fif"``; positions in the HEAD frame (m), MEG array in DEVICE with
        ``dev_head_t``.
    """
    mne = need("mne", "mne", "FIF recordings")
    from ..sensors.meg.fif import meg_array_from_info

    names = list(info["ch_names"])
    types, units = [], []
    for i in range(len(names)):
        t, u = _TYPES.get(mne.channel_type(info, i), ("misc", ""))
        types.append(t)
        units.append(u)
    notes: list[str] = []
    eeg_names = [n for n, t in zip(names, types) if t == "eeg"]
    eeg_locs = {}
    for ch in info["chs"]:
        if ch["ch_name"] in eeg_names:
            loc = np.asarray(ch["loc"][:3], dtype=np.float64)
            if np.all(np.isfinite(loc)) and np.any(loc != 0) and int(ch.get("coord_frame", _COORD_HEAD)) == _COORD_HEAD:
                eeg_locs[ch["ch_name"]] = loc
    dig = _digitization(info, eeg_names, eeg_locs, path, notes)
    meg = dev_head_t = None
    if any(t in ("mag", "grad") for t in types):
        meg = meg_array_from_info(info, accuracy=accuracy, name=Path(path).name)
        dev_head_t = meg.dev_head_t
        if dev_head_t is None:
            notes.append("no device->head transform: the MEG sensors cannot be placed on the head")
    elif info.get("dev_head_t") is not None:
        t = np.asarray(info["dev_head_t"]["trans"], dtype=np.float64)
        dev_head_t = Transform(Frame.DEVICE, Frame.HEAD, t)
    projs = projectors_from_mne(info["projs"])
    return Acquisition(
        path=path, format="fif", sfreq=float(info["sfreq"]), ch_names=tuple(names), ch_types=tuple(types), ch_units=tuple(units),
        bads=tuple(b for b in info["bads"] if b in names), digitization=dig, projectors=projs, meg=meg, dev_head_t=dev_head_t, notes=tuple(notes),
    )  # fmt: skip


def read_fif_acquisition(path: str | Path, *, accuracy: str = "normal") -> Acquisition:
    """How a FIF recording was acquired (its measurement info; needs MNE-Python).

    Parameters
    ----------
    path : str or Path
        A raw, epochs or evoked FIF file (``.fif``, ``.fif.gz``).
    accuracy : {"point", "normal", "accurate"}
        MEG coil integration accuracy.

    Returns
    -------
    Acquisition

    Raises
    ------
    StreamError
        Missing or unreadable file.
    MissingDependency
        MNE-Python is not installed (``pip install rtsource[mne]``).
    """
    mne = need("mne", "mne", "FIF recordings")
    path = Path(path)
    if not path.is_file():
        raise StreamError(f"recording {str(path)!r} does not exist or is not a file; check the path")
    try:
        info = mne.io.read_info(str(path), verbose="error")
    except Exception as exc:  # MNE raises many kinds on a damaged file
        raise StreamError(f"MNE-Python cannot read the measurement info of {str(path)!r}: {type(exc).__name__}: {exc}") from None
    acq = acquisition_from_info(info, path=str(path), accuracy=accuracy)
    logger.info(
        "%s: %d channels (%s), %d bad, %d projector(s), %g Hz", path.name, len(acq.ch_names), acq.modality or "no EEG/MEG",
        len(acq.bads), len(acq.projectors), acq.sfreq,
    )  # fmt: skip
    return acq


__all__ = ["acquisition_from_info", "projectors_from_mne", "read_fif_acquisition"]
