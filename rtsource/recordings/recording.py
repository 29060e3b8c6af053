"""The :class:`Recording`: samples, rate and channel descriptions of a lab file, ready to replay.

Every reader of :mod:`rtsource.recordings` returns one; :func:`rtsource.replay.run_replay`
plays one on LSL, and :func:`rtsource.setup` computes a covariance from one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import StreamError

#: LSL channel format for the NumPy dtypes a recording may hold.
LSL_FORMATS = {np.dtype(np.float32): "float32", np.dtype(np.float64): "double64", np.dtype(np.int16): "int16", np.dtype(np.int32): "int32", np.dtype(np.int8): "int8", np.dtype(np.int64): "int64"}
FORMAT_DTYPES = {v: k for k, v in LSL_FORMATS.items()}


@dataclass(frozen=True)
class Recording:
    """A recording loaded for replay.

    Attributes
    ----------
    data : ndarray, shape (n_samples, n_channels)
        Samples in ``ch_units``; read-only. Its dtype decides the LSL channel format.
    sfreq : float
        Sampling rate in Hz.
    ch_names, ch_types, ch_units : tuple of str
        Per channel, as the stream will describe them.
    name, type : str
        Stream name and type to publish under (overridable in :func:`run_replay`).
    path, format : str
        Where it came from, and the reader used ("xdf", "edf", "bdf", "brainvision", "mne").
    dropped : tuple of str
        Channels of the file that are not replayed (another sampling rate, not numeric), so
        nothing disappears without a trace.
    file_gaps : int
        Gaps in the file's own timestamps (XDF), not reproduced by the replay.
    declared_samples : int
        Samples the file's header or footer says the recording holds (0: it does not say).
    damage : str
        What is wrong with a file that could be read only in part (truncated: the
        recording stopped before the file was closed), else "".
    compensation_grade : int
        CTF synthetic-gradient compensation grade of the MEG samples (0: uncompensated;
        -1: not a recording with gradient compensation), which a replay declares in the
        stream header (``desc/acquisition/compensation_grade``).
    """

    data: np.ndarray
    sfreq: float
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    ch_units: tuple[str, ...]
    name: str
    type: str
    path: str
    format: str
    dropped: tuple[str, ...] = ()
    file_gaps: int = 0
    declared_samples: int = 0
    damage: str = ""
    compensation_grade: int = -1

    def __post_init__(self) -> None:
        data = np.array(self.data, copy=True)
        if data.ndim != 2:
            raise StreamError(f"recording {self.path!r}: samples have shape {data.shape}, expected (n_samples, n_channels)")
        if data.dtype not in LSL_FORMATS:
            data = data.astype(np.float64)
        data.flags.writeable = False
        object.__setattr__(self, "data", data)
        n = data.shape[1]
        for key in ("ch_names", "ch_types", "ch_units"):
            value = tuple(str(x) for x in getattr(self, key))
            if len(value) != n:
                raise StreamError(f"recording {self.path!r}: {len(value)} {key} for {n} channels")
            object.__setattr__(self, key, value)
        if not (np.isfinite(self.sfreq) and self.sfreq > 0):
            raise StreamError(f"recording {self.path!r} has sampling rate {self.sfreq!r}; only regularly sampled recordings can be replayed")
        if data.shape[0] == 0:
            raise StreamError(f"recording {self.path!r} has no samples" + (f": {self.damage}" if self.damage else ""))

    @property
    def n_samples(self) -> int:
        return self.data.shape[0]

    @property
    def n_channels(self) -> int:
        return self.data.shape[1]

    @property
    def channel_format(self) -> str:
        return LSL_FORMATS[self.data.dtype]

    @property
    def duration(self) -> float:
        return self.n_samples / self.sfreq

