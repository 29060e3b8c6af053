"""Gradient compensation of reference-sensor systems (CTF synthetic gradiometers).

A CTF system records, besides its axial gradiometers, a few reference magnetometers and
gradiometers far from the head. Software ("synthetic") gradiometers of order 1, 2 or 3 are
formed by subtracting a weighted sum of the references from every channel (Vrba & Robinson
2001, Methods 25:249):

    s_comp = s - C s_ref,           C: (n_channels, n_references)

The data of a recording carry the grade they were saved with (MNE-Python keeps it in the
upper 16 bits of each MEG channel's coil type, the matrices in ``info["comps"]``). The
forward model must describe the data the inverse sees, so the lead field of a compensated
array is ``G - C G_ref`` with ``G_ref`` the references' lead field -- what MNE-Python's
``make_forward_solution`` computes (its compensator ``I - C`` applied to the gain of all
coils). :class:`GradientCompensation` carries the grade, the matrix and the reference
sensors with a :class:`~.array.MegArray`, so the stream side can apply the same ``C`` to
raw data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ...arrays import frozen as _ro
from ...errors import ChannelError
from ...geometry import Frame

__all__ = ["GradientCompensation"]


class _Sensors(Protocol):
    """What this module needs of the references (a :class:`~.array.MegArray`; array.py imports
    this module, so it is not imported back)."""

    ch_names: tuple[str, ...]
    frame: Frame
    compensation: object

    @property
    def n_channels(self) -> int: ...


@dataclass(frozen=True, eq=False)
class GradientCompensation:
    """The gradient compensation in effect for a MEG array's channels.

    Parameters
    ----------
    grade : int
        The compensation grade of the data (CTF: 1, 2 or 3 for first- to third-order
        synthetic gradiometers). Must be >= 1 (grade 0 is "no compensation": carry None).
    matrix : ndarray, shape (n_channels, n_references)
        ``C``: compensated = raw - C @ references (dimensionless for T channels and T
        references). Rows in the array's channel order.
    references : MegArray
        The reference sensors, in the same frame as the array (their own compensation is
        None).

    Raises
    ------
    ChannelError
        A grade < 1, a matrix of the wrong shape or with non-finite entries.
    """

    grade: int
    matrix: np.ndarray
    references: _Sensors

    def __post_init__(self) -> None:
        # MegArray is checked by name: this module sits below array.py (which holds one of these)
        if type(self.references).__name__ != "MegArray" or not hasattr(self.references, "point_channel"):
            raise ChannelError(f"GradientCompensation references must be a MegArray, got {type(self.references).__name__}")
        if self.references.compensation is not None:
            raise ChannelError("GradientCompensation references must not carry a compensation of their own")
        try:
            grade = int(self.grade)
        except (TypeError, ValueError):
            grade = -1
        if grade < 1 or grade != self.grade:
            raise ChannelError(
                f"GradientCompensation grade = {self.grade!r} must be an integer >= 1 (CTF: 1, 2, 3); data without "
                f"compensation carry compensation=None"
            )
        m = np.array(self.matrix, dtype=float)
        if m.ndim != 2 or m.shape[1] != self.references.n_channels:
            raise ChannelError(
                f"GradientCompensation matrix must have shape (n_channels, {self.references.n_channels}) -- one column "
                f"per reference sensor -- got {m.shape}"
            )
        if not np.all(np.isfinite(m)):
            raise ChannelError("GradientCompensation matrix has non-finite entries")
        object.__setattr__(self, "grade", grade)
        object.__setattr__(self, "matrix", _ro(m))

    @property
    def n_references(self) -> int:
        return self.references.n_channels

    def compensate(self, data: np.ndarray, reference_data: np.ndarray) -> np.ndarray:
        """Apply ``s - C s_ref`` to raw data (or lead-field rows).

        Parameters
        ----------
        data : ndarray, shape (n_channels, ...)
            Uncompensated channel data in the array's channel order.
        reference_data : ndarray, shape (n_references, ...)
            The references' data (same trailing shape).

        Returns
        -------
        ndarray, shape (n_channels, ...)
        """
        d = np.asarray(data, dtype=float)
        r = np.asarray(reference_data, dtype=float)
        if d.shape[0] != self.matrix.shape[0] or r.shape[0] != self.matrix.shape[1] or d.shape[1:] != r.shape[1:]:
            raise ChannelError(
                f"compensate: data {d.shape} and reference_data {r.shape} do not fit the {self.matrix.shape} "
                f"compensation matrix (rows: channels, columns: references, same trailing shape)"
            )
        return d - np.tensordot(self.matrix, r, axes=(1, 0))

    def pick_rows(self, index) -> "GradientCompensation":
        """The compensation of a subset of the channels (rows ``index``)."""
        return GradientCompensation(self.grade, self.matrix[np.asarray(index, dtype=np.int64)], self.references)

    def with_references(self, references: _Sensors) -> "GradientCompensation":
        """The same matrix with the references moved or re-integrated (same channels)."""
        if references.ch_names != self.references.ch_names:
            raise ChannelError("with_references: the reference channels must stay the same, in the same order")
        return GradientCompensation(self.grade, self.matrix, references)
