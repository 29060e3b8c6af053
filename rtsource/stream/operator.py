"""The prepared operator the loop applies to each chunk: gather -> filter -> kernel.

Everything that can be decided once is decided when the loop connects to a stream: the
stream columns to read (by name, see :mod:`.channels`), the unit factors (folded into the
float32 operator), the causal filter and its state, and every buffer the hot path writes.
After that, :meth:`StreamOperator.process` allocates nothing.

Bad samples: a sample with a NaN or infinite value in any of the operator's channels gives
a NaN output sample (counted by the caller) and is skipped by the filter, whose state
therefore stays finite. After a gap in the input the filter state is restarted at the
steady state of the first sample after the gap (:meth:`restart_filter_at`), so a DC offset
does not ring through the high-pass as it would after a reset to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bundle import OperatorBundle
from ..errors import ConfigError
from ._checks import check_chunk, check_max_chunk
from .channels import ChannelMap


@dataclass(frozen=True)
class FilterSpec:
    """A causal Butterworth filter applied per channel before the operator."""

    highpass_hz: float = 0.0
    lowpass_hz: float = 0.0
    order: int = 2

    @property
    def active(self) -> bool:
        return self.highpass_hz > 0 or self.lowpass_hz > 0

    def design(self, sfreq: float) -> np.ndarray:
        """Second-order sections, shape (n_sections, 6)."""
        from .filter_design import butter_sos as butter

        nyq = sfreq / 2
        for name, f in (("highpass_hz", self.highpass_hz), ("lowpass_hz", self.lowpass_hz)):
            if f >= nyq:
                raise ConfigError(f"[preprocess] {name} = {f} Hz must be below the Nyquist frequency {nyq:g} Hz")
        if self.highpass_hz > 0 and self.lowpass_hz > 0:
            if self.highpass_hz >= self.lowpass_hz:
                raise ConfigError(f"[preprocess] highpass_hz {self.highpass_hz} must be below lowpass_hz {self.lowpass_hz}")
            return butter(self.order, [self.highpass_hz, self.lowpass_hz], "bandpass", sfreq)
        if self.highpass_hz > 0:
            return butter(self.order, self.highpass_hz, "highpass", sfreq)
        return butter(self.order, self.lowpass_hz, "lowpass", sfreq)


def low_rank_factors(kernel: np.ndarray, rtol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """K = A @ B with A (n_rows, r) and B (r, n_chan), r the numerical rank of K.

    From the SVD K = U S V^T: A = U_r S_r, B = V_r^T, keeping singular values above
    ``rtol`` times the largest. Minimum-norm and beamformer operators of MEG data cleaned
    with SSS have rank ~70 for 306 channels (the whitener keeps only that many dimensions).
    """
    u, sv, vt = np.linalg.svd(kernel, full_matrices=False)
    r = int(np.sum(sv > rtol * sv[0])) if len(sv) and sv[0] > 0 else 0
    return u[:, :r] * sv[:r], vt[:r]


class StreamOperator:
    """An operator bundle prepared for one stream's channel layout.

    Parameters
    ----------
    bundle : OperatorBundle
        The operator and its contract.
    channel_map : ChannelMap
        Where the bundle's channels sit in the stream and their unit factors.
    max_chunk : int
        Largest number of samples :meth:`process` accepts at once.
    filter_spec : FilterSpec, optional
        Causal filter applied to the operator's channels before the operator.
    low_rank : {"auto", "on", "off"}
        Apply K as A (B x) when K has low numerical rank: "auto" does so when it saves at
        least a quarter of the multiply-adds.
    """

    def __init__(
        self,
        bundle: OperatorBundle,
        channel_map: ChannelMap,
        max_chunk: int,
        filter_spec: FilterSpec | None = None,
        low_rank: str = "auto",
    ):
        from . import _kernels

        self._kernels = _kernels
        self.bundle = bundle
        self.channel_map = channel_map
        self.max_chunk = check_max_chunk(max_chunk, "StreamOperator")
        n_chan = bundle.n_channels
        n_src = bundle.n_sources
        # unit conversion folded into the operator's columns: K (V) * scale == K applied to
        # stream units (by the packing below, or before the SVD of the low-rank path)
        k, scale = bundle.kernel, channel_map.scale
        self.rank = n_chan
        self._project = None
        if low_rank not in ("auto", "on", "off"):
            raise ValueError(f"low_rank must be 'auto', 'on' or 'off', got {low_rank!r}")
        # The operator's rank is at most the rank of the whitened data (bundle params); when
        # that alone rules out a saving, skip the SVD (it matters for fast hot swaps).
        known_rank = bundle.params.get("rank")
        worth_trying = low_rank == "on" or not known_rank or (k.shape[0] * known_rank + known_rank * n_chan) < 0.75 * k.shape[0] * n_chan
        if low_rank != "off" and worth_trying:
            k, scale = k * scale[None, :], None
            a, b = low_rank_factors(k)
            r = b.shape[0]
            n_rows = k.shape[0]
            if low_rank == "on" or (n_rows * r + r * n_chan) < 0.75 * n_rows * n_chan:
                self.rank = r
                self._project = _kernels.pack_fixed(b)  # B as a fixed operator of r rows
                self._projected = np.zeros((self.max_chunk, r), dtype=np.float32)
                self._ones = np.ones(r, dtype=np.float32)
                k = a
        if bundle.n_orient == 3:
            self._kernel = _kernels.pack_pooled3(k, scale)
            self._apply = _kernels.apply_pooled3
        else:
            self._kernel = _kernels.pack_fixed(k, scale)
            self._apply = _kernels.apply_fixed
        self._inv_norm = (1.0 / bundle.noise_norm).astype(np.float32)
        self._index = np.ascontiguousarray(channel_map.index, dtype=np.int64)
        self._picked = np.zeros((self.max_chunk, n_chan), dtype=np.float32)
        self._out = np.zeros((self.max_chunk, n_src), dtype=np.float32)
        self._bad_rows = np.zeros(self.max_chunk, dtype=np.uint8)
        self.filter_spec = filter_spec or FilterSpec()
        if self.filter_spec.active:
            from .filter_design import sosfilt_zi

            self._sos = np.ascontiguousarray(self.filter_spec.design(bundle.sfreq), dtype=np.float64)
            self._zi_unit = np.ascontiguousarray(sosfilt_zi(self._sos), dtype=np.float64)
        else:
            self._sos = np.zeros((0, 6))
            self._zi_unit = np.zeros((0, 2))
        self._state = np.zeros((len(self._sos), n_chan, 2), dtype=np.float64)
        self._filter_primed = False
        #: number of NaN output rows of the last :meth:`process` call
        self.last_bad = 0
        #: artifact stage run in place between the filter and the kernel (set by the loop;
        #: see rtsource.stream.artifacts): ``process(chunk, picked, n, bad_rows, n_bad) -> n_bad``
        self.cleaner = None

    @property
    def n_outputs(self) -> int:
        return self.bundle.n_sources

    def prepared(self, n: int) -> np.ndarray:
        """The last chunk's operator channels after gathering and filtering (stream units),
        shape (n, n_channels): what the ROI stage, the adaptive covariance and others read."""
        return self._picked[:n]

    def bad_rows(self, n: int) -> np.ndarray:
        """Flags (1 = non-finite input) of the last processed chunk's first ``n`` rows."""
        return self._bad_rows[:n]

    def adopt_filter_state(self, other: "StreamOperator") -> None:
        """Continue ``other``'s filter memory for the channels both operators use.

        Used when a new operator replaces a running one (hot swap): the filters of the
        channels that remain carry on as if nothing happened (and so does the artifact stage).
        """
        if self.cleaner is not None and other.cleaner is not None:
            self.cleaner.adopt(other.cleaner)
        if not len(self._sos) or len(other._sos) != len(self._sos):
            return
        theirs = {name: j for j, name in enumerate(other.bundle.ch_names)}
        for j, name in enumerate(self.bundle.ch_names):
            if name in theirs:
                self._state[:, j, :] = other._state[:, theirs[name], :]
        self._filter_primed = other._filter_primed

    def restart_filter_at(self, chunk: np.ndarray, n: int) -> None:
        """Restart the filter as if the signal had always been at its first finite sample.

        Called before the first chunk and after a gap (see module docstring).
        """
        if not len(self._sos):
            return
        check_chunk("operator", chunk, n, self.max_chunk, int(self._index.max()) + 1 if len(self._index) else 0)
        k = self._kernels
        k.gather_channels(chunk, self._index, n, self._picked, self._bad_rows)
        good = np.flatnonzero(self._bad_rows[:n] == 0)
        if len(good):
            k.set_filter_steady_state(self._picked[good[0]].astype(np.float64), self._sos, self._state, self._zi_unit)
            self._filter_primed = True

    def process(self, chunk: np.ndarray, n: int) -> np.ndarray:
        """Apply the operator to the first ``n`` rows of a stream chunk.

        Parameters
        ----------
        chunk : ndarray, shape (>= n, n_stream_channels)
            Samples as pulled from LSL, in the stream's units and column order.
        n : int
            Number of valid rows, 1 <= n <= max_chunk.

        Returns
        -------
        ndarray of float32, shape (n, n_sources)
            A view into the operator's output buffer, valid until the next call. Rows of
            samples with non-finite input are NaN; their count is in :attr:`last_bad`.
        """
        k = self._kernels
        check_chunk("operator", chunk, n, self.max_chunk, int(self._index.max()) + 1 if len(self._index) else 0)
        if len(self._sos) and not self._filter_primed:
            self.restart_filter_at(chunk, n)
        n_bad = k.gather_channels(chunk, self._index, n, self._picked, self._bad_rows)
        if len(self._sos):
            k.sos_filter(self._picked, n, self._sos, self._state, self._bad_rows)
        if self.cleaner is not None:
            n_bad = self.cleaner.process(chunk, self._picked, n, self._bad_rows, n_bad)
        if self._project is None:
            self._apply(self._picked, n, self._kernel, self._inv_norm, self._out)
        else:  # low rank: z = B x (r values per sample), then the source rows A z
            k.apply_fixed(self._picked, n, self._project, self._ones, self._projected)
            self._apply(self._projected, n, self._kernel, self._inv_norm, self._out)
        if n_bad:
            k.fill_bad_rows(self._out, n, self._bad_rows, np.float32(np.nan))
        self.last_bad = n_bad
        return self._out[:n]

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernels before the first real chunk."""
        dummy = np.zeros((1, int(self._index.max()) + 1 if len(self._index) else 1), dtype=np.float32)
        state = self._state.copy()
        primed = self._filter_primed
        self.process(dummy, 1)
        if len(self._sos):
            self._kernels.set_filter_steady_state(np.zeros(self._state.shape[1]), self._sos, self._state, self._zi_unit)
        self._state[:] = state
        self._filter_primed = primed
        self.last_bad = 0
