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

from ..arrays import aligned_zeros
from ..bundle import OperatorBundle
from ..errors import ConfigError
from ._checks import check_chunk, check_max_chunk
from .channels import ChannelMap
from .compensation import StreamCompensation


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
    compensation : StreamCompensation, optional
        Gradient compensation to fold in (:mod:`.compensation`): the reference channels
        become extra inputs with the columns ``K D``, so the per-chunk cost stays one product.
    output_rate_hz : float
        Decimate to this rate before the operator (0: off; see :mod:`.decimation`): the
        anti-aliasing low-pass joins the filter cascade and the operator sees only every
        D-th sample, so :meth:`process` returns fewer rows than it is given.
    dispatch : {"auto", "kernel", "blas"}
        Which path applies the operator (see :mod:`.dispatch`): "auto" measures both per
        chunk-size class in :meth:`warm_up`; "kernel" / "blas" force one (benchmarks).
    threads : int
        numba threads the loop runs the kernels with (0: all cores but one); the dispatch
        measurement uses as many.
    operator_dtype : {"float32", "int16"}
        Storage of the operator's tiles: "int16" keeps per-row scaled int16 values (half
        the bytes read per chunk; see :mod:`.quantize`), always applied by the own kernel;
        its relative output error is :attr:`storage_error`.
    """

    def __init__(
        self,
        bundle: OperatorBundle,
        channel_map: ChannelMap,
        max_chunk: int,
        filter_spec: FilterSpec | None = None,
        low_rank: str = "auto",
        compensation: StreamCompensation | None = None,
        output_rate_hz: float = 0.0,
        dispatch: str = "auto",
        threads: int = 0,
        operator_dtype: str = "float32",
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
        index = np.asarray(channel_map.index, dtype=np.int64)
        #: names of the operator's inputs: the bundle's channels, then any compensation references
        self.input_names = tuple(bundle.ch_names)
        self.compensation = compensation
        if compensation is not None:
            # K x_g = K x_s + (K D) r: the references' columns, in stream units (see .compensation)
            k = np.hstack([k * scale[None, :], (k @ compensation.matrix) * compensation.ref_scale[None, :]])
            scale = None
            index = np.concatenate([index, compensation.ref_index])
            self.input_names += compensation.ref_names
        n_in = k.shape[1]
        self.rank = n_in
        self._project = None
        if low_rank not in ("auto", "on", "off"):
            raise ValueError(f"low_rank must be 'auto', 'on' or 'off', got {low_rank!r}")
        # The operator's rank is at most the rank of the whitened data (bundle params); when
        # that alone rules out a saving, skip the SVD (it matters for fast hot swaps).
        known_rank = bundle.params.get("rank")
        worth_trying = low_rank == "on" or not known_rank or (k.shape[0] * known_rank + known_rank * n_in) < 0.75 * k.shape[0] * n_in
        if low_rank != "off" and worth_trying:
            k, scale = (k if scale is None else k * scale[None, :]), None
            a, b = low_rank_factors(k)
            r = b.shape[0]
            n_rows = k.shape[0]
            if low_rank == "on" or (n_rows * r + r * n_in) < 0.75 * n_rows * n_in:
                self.rank = r
                self._project = _kernels.pack_fixed(b)  # B as a fixed operator of r rows
                self._projected = np.zeros((self.max_chunk, r), dtype=np.float32)
                self._ones = np.ones(r, dtype=np.float32)
                k = a
        if dispatch not in ("auto", "kernel", "blas"):
            raise ValueError(f"dispatch must be 'auto', 'kernel' or 'blas', got {dispatch!r}")
        from .dispatch import kernel_threads

        self.dispatch_mode = dispatch
        self._threads = kernel_threads(threads)  # as the loop runs them; the tiles go in as many parallel blocks
        self._rows, self._rows_scale = k, scale  # for the BLAS path (dispatch.BlasPath)
        self._blas = None
        self._use_blas = None  # (max_chunk + 1,) bool per chunk size, set by warm_up
        self.dispatch = None
        if bundle.n_orient == 3:
            self._kernel = _kernels.pack_pooled3(k, scale)
            self._apply = _kernels.apply_pooled3
        else:
            self._kernel = _kernels.pack_fixed(k, scale)
            self._apply = _kernels.apply_fixed
        self._inv_norm = (1.0 / bundle.noise_norm).astype(np.float32)
        self._row_scale = None  # (n_tiles, 48) factors of int16 tiles (see _to_int16)
        #: relative output error of the operator's storage against float32 (0 for float32)
        self.storage_error = 0.0
        self.operator_dtype = operator_dtype
        if operator_dtype != "float32":
            self._to_int16(k, scale, operator_dtype)
        self._index = np.ascontiguousarray(index, dtype=np.int64)
        self._n_columns = int(self._index.max()) + 1 if len(self._index) else 0  # stream columns read
        self._n_chan = n_chan
        if compensation is not None:  # D in stream units, transposed: compensated = x + r @ D_s^T
            d_stream = compensation.matrix * compensation.ref_scale[None, :] / channel_map.scale[:, None]
            self._comp_stream_t = np.ascontiguousarray(d_stream.T, dtype=np.float32)
            self._compensated = np.zeros((self.max_chunk, n_chan), dtype=np.float32)
        self._picked = aligned_zeros((self.max_chunk, n_in), np.float32)
        self._out = aligned_zeros((self.max_chunk, n_src), np.float32)
        self._bad_rows = np.zeros(self.max_chunk, dtype=np.uint8)
        self.filter_spec = filter_spec or FilterSpec()
        #: the decimation stage (None: every input sample gives an output sample)
        self.decimation = None
        sections = [self.filter_spec.design(bundle.sfreq)] if self.filter_spec.active else []
        if output_rate_hz:
            from ._decimation_kernels import keep_every
            from .decimation import design_antialias

            self._keep_every = keep_every
            self.decimation = design_antialias(bundle.sfreq, output_rate_hz)
            sections.append(self.decimation.sos)  # after [preprocess]: one cascade, one state
        self._factor = self.decimation.factor if self.decimation is not None else 1
        self._skip = 0  # input samples to drop before the next kept one (the phase)
        self._kept = np.zeros(self.max_chunk, dtype=np.int64)
        if sections:
            from .filter_design import sosfilt_zi

            self._sos = np.ascontiguousarray(np.concatenate(sections), dtype=np.float64)
            self._zi_unit = np.ascontiguousarray(sosfilt_zi(self._sos), dtype=np.float64)
        else:
            self._sos = np.zeros((0, 6))
            self._zi_unit = np.zeros((0, 2))
        self._state = np.zeros((len(self._sos), n_in, 2), dtype=np.float64)
        self._filter_primed = False
        #: number of NaN output rows of the last :meth:`process` call
        self.last_bad = 0
        #: output rows of the last :meth:`process` call (its input rows without decimation)
        self.last_out = 0

        #: artifact stage run in place between the filter and the kernel (set by the loop;
        #: see rtsource.stream.artifacts): ``process(chunk, picked, n, bad_rows, n_bad) -> n_bad``
        self.cleaner = None

    @property
    def output_rate_hz(self) -> float:
        """Rate of the output samples (the input rate without decimation)."""
        return self.bundle.sfreq / self._factor

    @property
    def delay_s(self) -> float:
        """Group delay the decimation filter adds to the output's content (0 without)."""
        return self.decimation.group_delay_s if self.decimation is not None else 0.0

    def describe(self) -> tuple[tuple[str, str], ...]:
        """Fields for the output streams' metadata: the decimation stage (if any)."""
        fields = {"output_rate_hz": f"{self.output_rate_hz:g}"}
        if self.dispatch is not None:
            fields["operator_path"] = self.dispatch.describe()
        fields["operator_dtype"] = self.operator_dtype
        if self.operator_dtype != "float32":
            fields["operator_relative_error"] = f"{self.storage_error:.3g}"
        if self.decimation is not None:
            fields.update(self.decimation.describe())
        return tuple(fields.items())

    def output_stamps(self, ts: np.ndarray, n: int) -> tuple[int, np.ndarray]:
        """(rows, timestamps) of the last :meth:`process` call's output, given its input's.

        Each output sample carries the timestamp of the input sample it was computed at.
        """
        if self.decimation is None:
            return n, ts
        m = self.last_out
        return m, ts[self._kept[:m]]

    def _to_int16(self, rows: np.ndarray, scale, dtype: str) -> None:
        """Replace the float32 tiles by int16 ones and their row factors (see :mod:`.quantize`)."""
        from . import quantize

        quantize.check_dtype(dtype)
        self._kernel, self._row_scale = quantize.quantize_tiles(self._kernel)
        record = dict(self.bundle.provenance).get("operator_storage") if self._project is None else None
        if isinstance(record, dict) and record.get("dtype") == dtype and "relative_error" in record:
            self.storage_error = float(record["relative_error"])  # measured at build time, on noise-like data
        else:  # measured now, on a few white samples in the stream's units
            k = rows if scale is None else rows * np.asarray(scale)[None, :]
            n_rows = k.shape[0] // self.bundle.n_orient
            x = np.random.default_rng(0).standard_normal((32, k.shape[1]))
            self.storage_error = quantize.output_error(k, np.ones(n_rows) if self._project is not None else self.bundle.noise_norm, self.bundle.n_orient, x)

    @property
    def n_outputs(self) -> int:
        return self.bundle.n_sources

    def prepared(self, n: int) -> np.ndarray:
        """The last chunk's operator channels after gathering and filtering (stream units),
        shape (n, n_channels): what the ROI stage, the adaptive covariance and others read.

        With a folded gradient compensation these are the compensated channels (computed
        here, into a preallocated buffer, only when asked: the operator itself needs no
        such step), so every consumer sees the data the operator describes.
        """
        if self.compensation is None:
            return self._picked[:n]
        out = self._compensated[:n]
        np.matmul(self._picked[:n, self._n_chan :], self._comp_stream_t, out=out)
        out += self._picked[:n, : self._n_chan]
        return out

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
        theirs = {name: j for j, name in enumerate(other.input_names)}
        for j, name in enumerate(self.input_names):
            if name in theirs:
                self._state[:, j, :] = other._state[:, theirs[name], :]
        self._filter_primed = other._filter_primed
        if other._factor == self._factor:  # the phase runs on: no sample kept twice or skipped
            self._skip = other._skip

    def restart_filter_at(self, chunk: np.ndarray, n: int) -> None:
        """Restart the filter as if the signal had always been at its first finite sample.

        Called before the first chunk and after a gap (see module docstring).
        """
        if not len(self._sos):
            return
        check_chunk("operator", chunk, n, self.max_chunk, self._n_columns)
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
        ndarray of float32, shape (m, n_sources)
            A view into the operator's output buffer, valid until the next call; m = n
            without decimation, else the kept samples (:meth:`output_stamps`, possibly 0).
            Rows of samples with non-finite input are NaN; their count is in :attr:`last_bad`.
        """
        k = self._kernels
        check_chunk("operator", chunk, n, self.max_chunk, self._n_columns)
        if len(self._sos) and not self._filter_primed:
            self.restart_filter_at(chunk, n)
        n_bad = k.gather_channels(chunk, self._index, n, self._picked, self._bad_rows)
        if len(self._sos):
            k.sos_filter(self._picked, n, self._sos, self._state, self._bad_rows)
        if self.cleaner is not None:
            n_bad = self.cleaner.process(chunk, self._picked, n, self._bad_rows, n_bad)
        if self.decimation is not None:
            n, self._skip = self._keep_every(self._picked, n, self._factor, self._skip, self._bad_rows, self._kept)
            n_bad = int(self._bad_rows[:n].sum()) if n_bad else 0
        self.last_out = n
        if n == 0:
            self.last_bad = 0
            return self._out[:0]
        if self._project is None:
            if self._use_blas is not None and self._use_blas[n]:
                self._blas.apply(self._picked, n, self._out)
            else:
                self._apply(self._picked, n, self._kernel, self._inv_norm, self._out, self._row_scale, self._threads)
        else:  # low rank: z = B x (r values per sample), then the source rows A z
            k.apply_fixed(self._picked, n, self._project, self._ones, self._projected, None, self._threads)
            self._apply(self._projected, n, self._kernel, self._inv_norm, self._out, self._row_scale, self._threads)
        if n_bad:
            k.fill_bad_rows(self._out, n, self._bad_rows, np.float32(np.nan))
        self.last_bad = n_bad
        return self._out[:n]

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernels before the first real chunk."""
        dummy = np.zeros((1, int(self._index.max()) + 1 if len(self._index) else 1), dtype=np.float32)
        state = self._state.copy()
        primed, skip = self._filter_primed, self._skip
        self._skip = 0
        self.process(dummy, 1)
        self._skip = skip
        if len(self._sos):
            self._kernels.set_filter_steady_state(np.zeros(self._state.shape[1]), self._sos, self._state, self._zi_unit)
        self._state[:] = state
        self._filter_primed = primed
        self.last_bad = 0
        self.last_out = 0
        if self.dispatch is None:
            self._choose_dispatch()

    def _choose_dispatch(self) -> None:
        """Own kernel or BLAS per chunk-size class (measured, or cached for the shape class)."""
        from . import dispatch as dp

        rows, scale = self._rows, self._rows_scale
        threads = self._threads
        key = dp.shape_key(self.bundle.n_orient, self.bundle.n_channels, self.bundle.n_sources, False, threads)
        known = dp.cached(key) if self.dispatch_mode == "auto" else None
        if self.dispatch_mode == "kernel" or self._project is not None or self.operator_dtype != "float32":
            self.dispatch = dp.KERNEL_ONLY
        elif known is not None and not known.any_blas:  # a hot swap in the same shape class: no BLAS copy
            self.dispatch = known
        else:
            blas = dp.BlasPath(rows, scale, self._inv_norm, self.bundle.n_orient, self.max_chunk)
            if self.dispatch_mode == "blas":
                self.dispatch = dp.BLAS_ONLY
            else:
                import numba

                x = np.random.default_rng(0).normal(size=(min(self.max_chunk, dp.CLASS_BOUNDS[-1]), self._picked.shape[1])).astype(np.float32)
                before = numba.get_num_threads()
                numba.set_num_threads(threads)  # as the loop will run them (StreamLoop.run)
                limiter = dp.limit_blas_threads(threads)
                try:
                    self.dispatch = dp.choose(
                        key, lambda n: self._apply(x, n, self._kernel, self._inv_norm, self._out, self._row_scale, self._threads), lambda n: blas.apply(x, n, self._out), self.max_chunk
                    )
                finally:
                    numba.set_num_threads(before)
                    limiter.restore_original_limits()
            if self.dispatch.any_blas:
                self._blas = blas
                self._use_blas = self.dispatch.table(self.max_chunk)
        self._rows = self._rows_scale = None  # the bundle keeps the operator; no second reference needed
