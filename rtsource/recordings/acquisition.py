"""The :class:`Acquisition`: what a lab's recording says about how it was recorded.

A :class:`~rtsource.recordings.Recording` is the samples; an Acquisition is everything else
setup needs from the same file (or from a BIDS session directory): which channels, of which
type and unit, where the EEG electrodes and the head-localisation points were digitised, which
channels the lab marked bad, the SSP projectors, the MEG sensor array with its device->head
transform and gradient compensation, and the sampling rate. Readers of each format return one
(FIF through MNE-Python, BIDS natively); :func:`rtsource.setup` turns it into sensors,
coregistration inputs, projectors and, with the samples, a noise covariance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import StreamError

if TYPE_CHECKING:  # annotations only
    from ..geometry import Transform
    from ..sensors.meg.array import MegArray
    from ..sensors.readers.digitization import Digitization


@dataclass(frozen=True, eq=False)
class SspProjector:
    """One signal-space projection item, as MNE-Python stores it in ``info['projs']``.

    Attributes
    ----------
    description : str
        Its name in the file (e.g. ``"PCA-v1"``, ``"Average EEG reference"``).
    ch_names : tuple of str
        The channels its vectors are defined on (matched by name when applied).
    vectors : ndarray, shape (n_vectors, n_channels)
        The spatial patterns to project out (unit norm per vector on ``ch_names``); read-only.
    active : bool
        Whether the file's data were already projected (MNE's ``active``).
    kind : str
        What it removes, as far as the file says: ``"average_eeg"``, ``"ecg"``, ``"eog"``,
        ``"empty_room"``, ``"other"``.
    """

    description: str
    ch_names: tuple[str, ...]
    vectors: np.ndarray
    active: bool = False
    kind: str = "other"

    def __post_init__(self) -> None:
        v = np.array(self.vectors, dtype=np.float64, copy=True)
        if v.ndim == 1:
            v = v[None, :]
        names = tuple(str(n) for n in self.ch_names)
        if v.ndim != 2 or v.shape[1] != len(names):
            raise StreamError(f"projector {self.description!r}: vectors of shape {v.shape} for {len(names)} channel names")
        if not np.all(np.isfinite(v)):
            raise StreamError(f"projector {self.description!r} has non-finite values; the file is damaged")
        v.flags.writeable = False
        object.__setattr__(self, "vectors", v)
        object.__setattr__(self, "ch_names", names)


@dataclass(frozen=True, eq=False)
class Acquisition:
    """How a recording was acquired: channels, positions, bads, projectors, MEG geometry.

    Attributes
    ----------
    path : str
        The file or directory read.
    format : str
        ``"fif"``, ``"bids"``, ``"edf"``, ``"brainvision"``, ``"xdf"``, ...
    sfreq : float
        Sampling rate in Hz (0 when the source does not say, e.g. a BIDS directory without
        ``*_eeg.json``).
    ch_names, ch_types, ch_units : tuple of str
        Every channel of the recording in file order; types as rtsource names them (``"eeg"``,
        ``"mag"``, ``"grad"``, ``"ref_meg"``, ``"eog"``, ``"ecg"``, ``"emg"``, ``"stim"``,
        ``"misc"``), units as SI symbols (``"V"``, ``"T"``, ``"T/m"``).
    bads : tuple of str
        Channels the lab marked bad (FIF ``info['bads']``, BIDS ``status = bad``).
    digitization : Digitization or None
        EEG electrode positions (labelled with the channel names), fiducials, HPI coils and
        head-shape points, all in one frame (the head frame for FIF), metres.
    projectors : tuple of SspProjector
        SSP projectors of the recording.
    meg : MegArray or None
        The MEG sensor array (coil geometry, reference sensors, compensation) when the
        recording has MEG channels.
    dev_head_t : Transform or None
        MEG device -> head transform.
    notes : tuple of str
        What the reader decided (frames mapped, channels skipped, ...), for the setup report.
    """

    path: str
    format: str
    sfreq: float
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    ch_units: tuple[str, ...]
    bads: tuple[str, ...] = ()
    digitization: Digitization | None = None
    projectors: tuple[SspProjector, ...] = ()
    meg: MegArray | None = None
    dev_head_t: Transform | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.ch_names)
        for key in ("ch_names", "ch_types", "ch_units"):
            value = tuple(str(x) for x in getattr(self, key))
            if len(value) != n:
                raise StreamError(f"acquisition {self.path!r}: {len(value)} {key} for {n} channels")
            object.__setattr__(self, key, value)
        if len(set(self.ch_names)) != n:
            dup = sorted({c for c in self.ch_names if self.ch_names.count(c) > 1})
            raise StreamError(f"acquisition {self.path!r}: duplicate channel names {dup}")
        unknown = sorted(set(self.bads) - set(self.ch_names))
        if unknown:
            raise StreamError(f"acquisition {self.path!r}: bad channels {unknown} are not channels of the recording")
        if not (np.isfinite(self.sfreq) and self.sfreq >= 0):
            raise StreamError(f"acquisition {self.path!r}: sampling rate {self.sfreq!r} Hz")
        object.__setattr__(self, "bads", tuple(str(b) for b in self.bads))
        object.__setattr__(self, "projectors", tuple(self.projectors))
        object.__setattr__(self, "notes", tuple(self.notes))

    def names_of(self, *types: str) -> tuple[str, ...]:
        """Channel names of the given types, in file order (bad channels included)."""
        return tuple(n for n, t in zip(self.ch_names, self.ch_types) if t in types)

    @property
    def modality(self) -> str:
        """``"eeg"``, ``"meg"`` or ``"eeg+meg"``: which source-imaging channels it has ("" if none)."""
        eeg = "eeg" in self.ch_types
        meg = any(t in ("mag", "grad") for t in self.ch_types)
        return "eeg+meg" if eeg and meg else "meg" if meg else "eeg" if eeg else ""
