"""One entry point for setup's input: :func:`read_acquisition` picks the reader of a path.

=======================  =============================================================
path                     reader
=======================  =============================================================
a directory              BIDS session (``*_electrodes.tsv``, ``*_coordsystem.json``,
                         ``*_channels.tsv``): ``rtsource.recordings.bids.read_bids_acquisition``
``.fif``, ``.fif.gz``    MNE-Python's measurement info (:mod:`.fif_acquisition`)
anything else            the :class:`~.recording.Recording`'s channels (EDF/BDF,
                         BrainVision, XDF, ...) plus a positions file read with
                         :func:`rtsource.sensors.readers.read_digitization`
=======================  =============================================================

Adding a format is one entry in :data:`ACQUISITION_FORMATS` naming a module and a
``read_*(path, positions=None, **options) -> Acquisition`` function in it; modules are
imported only when their format is chosen.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import StreamError
from .acquisition import Acquisition


@dataclass(frozen=True)
class AcquisitionFormat:
    """A family of inputs :func:`read_acquisition` reads.

    Attributes
    ----------
    name : str
        ``"bids"``, ``"fif"``, ``"recording"``.
    claims : callable
        ``claims(path) -> bool``: whether this reader is the one for ``path``.
    module, function : str
        Where the reader is (``rtsource.recordings.<module>.<function>``), imported lazily.
    """

    name: str
    claims: Callable[[Path], bool]
    module: str
    function: str


def _is_fif(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".fif", ".fif.gz"))


#: The readers, tried in order; the last one claims every file.
ACQUISITION_FORMATS: tuple[AcquisitionFormat, ...] = (
    AcquisitionFormat("bids", Path.is_dir, "bids", "read_bids_acquisition"),
    AcquisitionFormat("fif", _is_fif, "fif_acquisition", "read_fif_acquisition"),
    AcquisitionFormat("recording", Path.is_file, "acquisition_readers", "read_recording_acquisition"),
)


def read_acquisition(path: str | Path, positions: str | Path | None = None, *, accuracy: str = "normal") -> Acquisition:
    """How a recording (file or BIDS session directory) was acquired, for setup.

    Parameters
    ----------
    path : str or Path
        A FIF file, a BIDS session directory, or an EDF/BDF/BrainVision/XDF (any
        :func:`~.registry.read_recording`) file.
    positions : str or Path, optional
        A positions file (any format :func:`rtsource.sensors.readers.read_digitization`
        reads): the electrodes, fiducials and head-shape points. Required for formats that
        carry no positions (EDF/BDF, BrainVision, XDF); for FIF it replaces the file's
        digitisation.
    accuracy : {"point", "normal", "accurate"}
        MEG coil integration accuracy (FIF, BIDS MEG).

    Returns
    -------
    Acquisition

    Raises
    ------
    StreamError
        The path does not exist, or no reader handles it.
    MissingDependency
        The reader needs an optional package (FIF: ``pip install rtsource[mne]``).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise StreamError(f"recording {str(path)!r} does not exist; check the path ([recording] file or --recording)")
    fmt = next(f for f in ACQUISITION_FORMATS if f.claims(path))
    try:
        module = importlib.import_module(f"{__package__}.{fmt.module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{fmt.module}":
            raise
        raise StreamError(f"{str(path)!r} is a directory (a BIDS session?) but this rtsource has no BIDS reader; pass a recording file") from None
    read = getattr(module, fmt.function)
    if fmt.name == "fif":
        acq = read(path, accuracy=accuracy)
        return acq if positions is None else _with_positions(acq, positions)
    # the options a reader takes (a BIDS session names its own positions; EEG readers have no coils)
    takes = inspect.signature(read).parameters
    options = {k: v for k, v in (("positions", positions), ("accuracy", accuracy)) if k in takes}
    acq = read(path, **options)
    if positions is not None and "positions" not in takes:
        acq = _with_positions(acq, positions)
    return acq


def _with_positions(acq: Acquisition, positions: str | Path) -> Acquisition:
    """``acq`` with its digitisation replaced by a positions file's (electrodes named like channels)."""
    dig = _read_positions(positions, acq)
    return dataclasses.replace(acq, digitization=dig, notes=acq.notes + (f"positions from {positions} (not the file's digitisation)",))


def _read_positions(positions: str | Path, acq: Acquisition):
    """A positions file with its electrodes relabelled to the channel names they match."""
    from ..channel_names import canonical_label
    from ..geometry import Points
    from ..sensors.readers import read_digitization

    dig = read_digitization(positions)
    el = dig.electrodes
    if el is not None and len(el):
        by_key = {canonical_label(c): c for c in acq.names_of("eeg")}
        labels = tuple(by_key.get(canonical_label(lab), lab) for lab in el.labels)
        dig = dataclasses.replace(dig, electrodes=Points(el.positions_m, el.frame, "m", labels))
    return dig


#: Recording stream types -> the channel types of an Acquisition.
_STREAM_TYPES = {"EEG": "eeg", "EOG": "eog", "ECG": "ecg", "EMG": "emg", "STIM": "stim", "MISC": "misc"}


def read_recording_acquisition(path: str | Path, positions: str | Path | None = None) -> Acquisition:
    """An EDF/BDF/BrainVision/XDF (or other :func:`~.registry.read_recording`) file plus a positions file.

    Channel names and the sampling rate come from the recording; channel types from its
    stream types (``EEG`` -> ``"eeg"``, ...; MEG needs FIF); the positions from
    ``positions``, whose electrode labels are matched to the channel names (case, old
    10-20 names). Without ``positions`` there are no electrode positions, and setup says so.
    """
    from .registry import read_recording

    rec = read_recording(path)
    types = []
    for t in rec.ch_types:
        kind = _STREAM_TYPES.get(str(t).upper(), "misc")
        if str(t).upper() == "MEG":
            raise StreamError(f"{str(path)!r}: MEG channels without their sensor geometry; set up MEG from the FIF (or BIDS) recording")
        types.append(kind)
    units = tuple("V" if t in ("eeg", "eog", "ecg", "emg") else u for t, u in zip(types, rec.ch_units))
    acq = Acquisition(path=str(path), format=rec.format, sfreq=float(rec.sfreq), ch_names=rec.ch_names, ch_types=tuple(types), ch_units=units)
    if positions is None:
        return dataclasses.replace(acq, notes=(f"{Path(path).name} carries no electrode positions; give [recording] positions",))
    dig = _read_positions(positions, acq)
    matched = np.isin(acq.names_of("eeg"), dig.electrodes.labels if dig.electrodes is not None else ()).sum()
    return dataclasses.replace(acq, digitization=dig, notes=(f"positions from {positions}: {matched} of {len(acq.names_of('eeg'))} EEG channels",))


__all__ = ["ACQUISITION_FORMATS", "AcquisitionFormat", "read_acquisition", "read_recording_acquisition"]
