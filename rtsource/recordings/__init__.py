"""Lab recordings read for setup and replay: XDF, EDF/BDF, BrainVision, FIF and what MNE reads.

Every reader returns a :class:`Recording` (samples ``(n_samples, n_channels)``, rate in Hz,
channel names / types / units); :func:`read_recording` chooses the reader by extension
through the one registry (:mod:`.registry`). :func:`rtsource.replay.run_replay` plays a
recording on LSL; :func:`rtsource.setup` computes a covariance from one.

Formats (optional packages in brackets; each reader names the missing one):

============  =========================  ============================================  ===================
extension     reader                     values                                        module
============  =========================  ============================================  ===================
.xdf          pyxdf [``xdf``]            the stream's own numbers and channel format   :mod:`.xdf`
.edf / .bdf   edfio [``edf``]            physical values (float64) in the file's unit  :mod:`.edf`
.vhdr         MNE if installed, else     MNE: volts; built-in: A/D value x resolution  :mod:`.brainvision`
              the built-in reader        in the header's unit (float64)
.fif and      MNE-Python [``mne``]       SI units (V, T, T/m), float64                 :mod:`.mne_files`
others MNE
reads
============  =========================  ============================================  ===================

Setup reads more than the samples: :func:`read_acquisition` returns an :class:`Acquisition`
(channels, digitised positions, bads, SSP projectors, MEG sensors, device->head transform)
of a FIF file (:mod:`.fif_acquisition`), a BIDS session directory, or any file above plus a
positions file (:mod:`.acquisition_readers`).

Damage. A file cut short (a recording that stopped before the file was closed) is read as
far as it goes: :attr:`Recording.damage` says what is missing and
:attr:`Recording.declared_samples` what the header or footer promised. Malformed files raise
:class:`~rtsource.errors.StreamError` naming the file and the field.
"""

from __future__ import annotations

from .acquisition import Acquisition, SspProjector
from .acquisition_readers import ACQUISITION_FORMATS, read_acquisition
from .bids import read_bids_acquisition
from .brainvision import read_brainvision
from .dependencies import MissingDependency
from .edf import read_edf
from .mne_files import read_mne
from .recording import Recording
from .registry import FORMATS, RecordingFormat, read_recording
from .xdf import read_xdf

__all__ = [
    "ACQUISITION_FORMATS",
    "Acquisition",
    "FORMATS",
    "MissingDependency",
    "Recording",
    "RecordingFormat",
    "SspProjector",
    "read_bids_acquisition",
    "read_brainvision",
    "read_edf",
    "read_acquisition",
    "read_mne",
    "read_recording",
    "read_xdf",
]
