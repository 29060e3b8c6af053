"""The per-chunk ROI stage (its stream, ``NAME-roi``, is made in :mod:`.outlets`).

    linear modes      channel chunk (gathered, filtered, stream units) ─> R (n_roi x n_chan) ─> (n, n_roi)
    non-linear modes  per-source output (n, n_sources) ─> CSR reduce (mean |.| or max |.|)  ─> (n, n_roi)

``R`` is :attr:`rtsource.roi_operator.RoiOperator.matrix` with the stream's unit factors
folded into its columns, so a linear ROI stage needs only the channel chunk the
:class:`~rtsource.stream.operator.StreamOperator` prepares (gather + causal filter) and
costs n_roi x n_chan multiply-adds per sample: ROI-only outputs need not compute the
per-source output at all. Everything is allocated in ``__init__``; :meth:`RoiStage.process`
allocates nothing.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..roi_operator import RoiOperator
from ._checks import check_chunk, check_max_chunk


class RoiStage:
    """ROI time courses, chunk by chunk, into a preallocated buffer.

    Parameters
    ----------
    roi_operator : RoiOperator
        ROIs, mode and (for linear modes) the folded matrix, for the operator in use.
    max_chunk : int
        Largest ``n`` :meth:`process` accepts.
    channel_scale : ndarray, shape (n_channels,), optional
        Factor from the stream's unit to V per operator channel (``ChannelMap.scale``);
        folded into the matrix so the stage reads the chunk in stream units. Default ones
        (chunk already in V).
    n_sources : int, optional
        Width of the per-source output (non-linear modes), checked against the ROI indices.
    """

    def __init__(self, roi_operator: RoiOperator, max_chunk: int, *, channel_scale: np.ndarray | None = None, n_sources: int | None = None):
        from . import _roi_kernels

        self._k = _roi_kernels
        self.roi_operator = roi_operator
        self.max_chunk = check_max_chunk(max_chunk, "RoiStage")
        w = roi_operator.weights
        self.linear = roi_operator.linear
        if self.linear:
            n_chan = len(roi_operator.ch_names)
            scale = np.ones(n_chan) if channel_scale is None else np.asarray(channel_scale, dtype=np.float64)
            if scale.shape != (n_chan,):
                raise ConfigError(f"channel_scale has shape {scale.shape}, expected ({n_chan},) (one factor per operator channel)")
            self._matrix = np.ascontiguousarray(roi_operator.matrix * scale[None, :], dtype=np.float64)
            self.n_inputs = n_chan
        else:
            self._matrix = np.zeros((w.n_roi, 0))
            self.n_inputs = w.n_sources if n_sources is None else int(n_sources)
            if n_sources is not None and len(w.indices) and int(w.indices.max()) >= n_sources:
                raise ConfigError(f"ROI source index {int(w.indices.max())} >= per-source output width {n_sources}")
        self._indptr = np.ascontiguousarray(w.indptr, dtype=np.int64)
        self._indices = np.ascontiguousarray(w.indices, dtype=np.int64)
        self._weights = np.ascontiguousarray(w.weights, dtype=np.float64)
        self._max = roi_operator.mode == "max"
        self._out = np.zeros((self.max_chunk, w.n_roi), dtype=np.float32)

    @property
    def input_kind(self) -> str:
        """``"channels"`` (give :meth:`process` the prepared channel chunk) or ``"sources"``."""
        return "channels" if self.linear else "sources"

    @property
    def n_roi(self) -> int:
        return self.roi_operator.n_roi

    @property
    def names(self) -> tuple[str, ...]:
        return self.roi_operator.names

    def process(self, x: np.ndarray, n: int) -> np.ndarray:
        """ROI values of the first ``n`` rows of ``x``.

        Parameters
        ----------
        x : ndarray of float32
            Linear modes: the prepared channel chunk, shape (>= n, n_channels), operator
            channel order, stream units (``StreamOperator``'s gathered and filtered buffer).
            Non-linear modes: the per-source output, shape (>= n, n_sources).
        n : int
            1 <= n <= max_chunk.

        Returns
        -------
        ndarray of float32, shape (n, n_roi)
            A view into the stage's buffer, valid until the next call.
        """
        check_chunk("ROI stage", x, n, self.max_chunk, self.n_inputs)
        if self.linear:
            self._k.roi_apply(x, n, self._matrix, self._out)
        elif self._max:
            self._k.roi_max_abs(x, n, self._indptr, self._indices, self._out)
        else:
            self._k.roi_mean_abs(x, n, self._indptr, self._indices, self._weights, self._out)
        return self._out[:n]

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernel before the first real chunk."""
        self.process(np.zeros((1, max(self.n_inputs, 1)), dtype=np.float32), 1)

    def rebuilt(self, roi_operator: RoiOperator, *, channel_scale: np.ndarray | None = None, n_sources: int | None = None) -> "RoiStage":
        """A new stage (own buffers) for a swapped-in operator, with the same ROI names.

        Build it in the background (see :mod:`rtsource.stream.swap`) and install it between
        chunks by replacing the reference.
        """
        if roi_operator.names != self.names:
            raise ConfigError(f"the new ROI operator has ROIs {roi_operator.names}, the stage publishes {self.names}; ROI channels cannot change while streaming")
        stage = RoiStage(roi_operator, self.max_chunk, channel_scale=channel_scale, n_sources=n_sources)
        return stage
