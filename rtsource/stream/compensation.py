"""CTF synthetic-gradient compensation in the stream, folded into the operator.

The operator of a bundle describes data at the compensation grade its forward used: a CTF
channel compensated to grade ``g`` is ``x_g = x_raw - C_g r`` (Vrba & Robinson 2001,
Methods 25:249), with ``r`` the reference sensors and ``C_g`` the grade's matrix
(:class:`rtsource.sensors.meg.GradientCompensation`; the forward is ``G - C_g G_ref``). A
stream that carries another grade ``s`` gives ``x_s = x_raw - C_s r``, so

    x_g = x_s + (C_s - C_g) r,        K x_g = K x_s + K (C_s - C_g) r.

The stream's grade is what it declares in its header (``desc/acquisition/compensation_grade``;
``rtsource replay`` writes the grade of a CTF FIF), unless ``[stream] compensation_grade``
says otherwise. The second term is folded into the operator when the loop connects: the references become
extra operator inputs with the columns ``K (C_s - C_g)`` (unit factors included), so a chunk
costs one matrix product as before, over a few more columns. The bundle records ``C_g`` by
channel name (``provenance["forward"]`` ... ``"compensation"``), so ``s = 0`` (raw data, the
usual real-time case) and ``s = g`` are supported; another grade needs its own matrix, which
the bundle does not have, and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..arrays import frozen
from ..bundle import OperatorBundle
from ..errors import ChannelError, ConfigError
from .channels import StreamDescription, map_stream_channels

__all__ = ["AS_BUNDLE", "CompensationRecord", "StreamCompensation", "stream_compensation"]

#: ``[stream] compensation_grade`` meaning "as the stream declares, else the bundle's grade".
AS_BUNDLE = -1


@dataclass(frozen=True, eq=False)
class CompensationRecord:
    """The gradient compensation a bundle's forward used, as the bundle records it.

    Attributes
    ----------
    grade : int
        The compensation grade (0: none).
    channels : tuple of str
        MEG channels, one per row of ``matrix``.
    references : tuple of str
        Reference sensors, one per column.
    reference_units : tuple of str
        SI unit of each reference (``"T"``, ``"T/m"``).
    matrix : ndarray, shape (n_channels, n_references)
        ``C``: compensated = raw - C @ references; read-only.
    """

    grade: int
    channels: tuple[str, ...]
    references: tuple[str, ...]
    reference_units: tuple[str, ...]
    matrix: np.ndarray

    @classmethod
    def from_bundle(cls, bundle: OperatorBundle) -> "CompensationRecord | None":
        """The record of the bundle's MEG forward (None: no compensation, or not recorded)."""
        forward = bundle.provenance.get("forward")
        for part in _parts(forward):
            grade = part.get("compensation_grade", 0)
            if not grade:
                continue
            spec = part.get("compensation")
            if not isinstance(spec, Mapping):
                return cls(int(grade), (), (), (), np.zeros((0, 0)))  # bundles written before the matrix was kept
            try:
                m = np.asarray(spec["matrix"], dtype=float)
                rec = cls(int(grade), tuple(spec["channels"]), tuple(spec["references"]), tuple(spec["reference_units"]), m)
            except (KeyError, TypeError, ValueError):
                raise ChannelError("the bundle's compensation record is damaged (provenance forward.compensation); rebuild the bundle") from None
            if m.shape != (len(rec.channels), len(rec.references)) or not np.all(np.isfinite(m)):
                raise ChannelError(f"the bundle's compensation matrix has shape {m.shape} for {len(rec.channels)} channels and {len(rec.references)} references; rebuild the bundle")
            object.__setattr__(rec, "matrix", frozen(m))
            return rec
        return None


def _parts(forward: Any) -> list[Mapping[str, Any]]:
    if not isinstance(forward, Mapping):
        return []
    return [forward] + [p for p in forward.get("parts", ()) or () if isinstance(p, Mapping)]


@dataclass(frozen=True, eq=False)
class StreamCompensation:
    """What :class:`~rtsource.stream.operator.StreamOperator` folds into the operator.

    Attributes
    ----------
    ref_names : tuple of str
        The references read from the stream (extra operator inputs).
    ref_index : ndarray of int64, shape (n_references,)
        Their stream columns.
    ref_scale : ndarray, shape (n_references,)
        Stream unit -> SI factors.
    matrix : ndarray, shape (n_channels, n_references)
        ``D = C_s - C_g`` on the bundle's channels (zero rows for channels it does not
        touch): data at the bundle's grade = stream data + D @ references.
    stream_grade, bundle_grade : int
    """

    ref_names: tuple[str, ...]
    ref_index: np.ndarray
    ref_scale: np.ndarray
    matrix: np.ndarray
    stream_grade: int
    bundle_grade: int

    def describe(self) -> str:
        return (
            f"gradient compensation: stream at grade {self.stream_grade}, operator at grade {self.bundle_grade}; "
            f"{len(self.ref_names)} reference channels folded into the operator"
        )


def stream_compensation(
    bundle: OperatorBundle, stream: StreamDescription, stream_grade: int, *, aliases: Mapping[str, str] | None = None, assume_unit: str = ""
) -> StreamCompensation | None:
    """The compensation to fold in for a stream at ``stream_grade`` (None: nothing to do).

    Parameters
    ----------
    bundle : OperatorBundle
        Its forward's grade and matrix are read from the provenance.
    stream : StreamDescription
        The connected stream (the references are found by name).
    stream_grade : int
        ``[stream] compensation_grade``: -1 = as the stream declares it
        (``desc/acquisition/compensation_grade``, which ``rtsource replay`` writes for CTF
        files), else the bundle's grade (nothing to do); 0 = the stream is uncompensated;
        g >= 1 = the stream carries grade g.

    Raises
    ------
    ConfigError
        A grade the bundle cannot convert from (it holds only its own grade's matrix).
    ChannelError, UnitError
        The references are missing from the stream, or their units do not fit.
    """
    if stream_grade == AS_BUNDLE:
        stream_grade = stream.compensation_grade
        if stream_grade == AS_BUNDLE:
            return None
    if stream_grade < AS_BUNDLE:
        raise ConfigError(f"[stream] compensation_grade = {stream_grade}: use -1 (as the bundle), 0 (uncompensated) or the CTF grade 1-3")
    record = CompensationRecord.from_bundle(bundle)
    bundle_grade = 0 if record is None else record.grade
    if stream_grade == bundle_grade:
        return None
    if bundle_grade == 0 or stream_grade != 0:
        raise ConfigError(
            f"[stream] compensation_grade = {stream_grade} but the bundle's forward used grade {bundle_grade}: the bundle holds only "
            f"its own grade's matrix, so it can read data at grade {bundle_grade} or uncompensated data (0). Rebuild the bundle "
            f"from the array at grade {stream_grade}, or set the stream's grade to {bundle_grade} (or 0) in the acquisition"
        )
    if not record.references:
        raise ConfigError("the bundle was built before rtsource recorded the compensation matrix; rebuild it to read uncompensated data")
    rows = {name: i for i, name in enumerate(record.channels)}
    d = np.zeros((bundle.n_channels, len(record.references)))
    for j, name in enumerate(bundle.ch_names):
        if name in rows:
            d[j] = -record.matrix[rows[name]]  # D = C_0 - C_g = -C_g
    cmap = map_stream_channels(
        stream, record.references, record.reference_units, aliases=aliases, assume_unit=assume_unit, ch_types=("ref_meg",) * len(record.references)
    )
    return StreamCompensation(record.references, frozen(np.asarray(cmap.index, np.int64)), frozen(np.asarray(cmap.scale, float)), frozen(d), stream_grade, bundle_grade)
