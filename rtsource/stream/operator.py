"""The prepared operator the loop applies to each chunk: gather -> filter -> kernel.

Everything that can be decided once is decided when the loop connects to a stream: the
stream columns to read (by name, see :mod:`.channels`), the unit factors (folded into the
float32 operator), the causal filter and its state, and every buffer the hot path writes.
After that, :meth:`StreamOperator.process` allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bundle import OperatorBundle
from ..errors import ConfigError
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
        from scipy.signal import butter

        nyq = sfreq / 2
        for name, f in (("highpass_hz", self.highpass_hz), ("lowpass_hz", self.lowpass_hz)):
            if f >= nyq:
                raise ConfigError(f"[preprocess] {name} = {f} Hz must be below the Nyquist frequency {nyq:g} Hz")
        if self.highpass_hz > 0 and self.lowpass_hz > 0:
            if self.highpass_hz >= self.lowpass_hz:
                raise ConfigError(f"[preprocess] highpass_hz {self.highpass_hz} must be below lowpass_hz {self.lowpass_hz}")
            return butter(self.order, [self.highpass_hz, self.lowpass_hz], "bandpass", output="sos", fs=sfreq)
        if self.highpass_hz > 0:
            return butter(self.order, self.highpass_hz, "highpass", output="sos", fs=sfreq)
        return butter(self.order, self.lowpass_hz, "lowpass", output="sos", fs=sfreq)


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
    """

    def __init__(self, bundle: OperatorBundle, channel_map: ChannelMap, max_chunk: int, filter_spec: FilterSpec | None = None):
        from . import _kernels

        self._kernels = _kernels
        self.bundle = bundle
        self.channel_map = channel_map
        self.max_chunk = int(max_chunk)
        n_chan = bundle.n_channels
        n_src = bundle.n_sources
        # unit conversion folded into the operator's columns: K (V) * scale == K applied to stream units
        k = bundle.kernel * channel_map.scale[None, :]
        if bundle.n_orient == 3:
            self._kernel = np.ascontiguousarray(k.reshape(n_src, 3, n_chan), dtype=np.float32)
            self._apply = _kernels.apply_pooled3
        else:
            self._kernel = np.ascontiguousarray(k, dtype=np.float32)
            self._apply = _kernels.apply_fixed
        self._inv_norm = (1.0 / bundle.noise_norm).astype(np.float32)
        self._index = np.ascontiguousarray(channel_map.index, dtype=np.int64)
        self._picked = np.zeros((self.max_chunk, n_chan), dtype=np.float32)
        self._out = np.zeros((self.max_chunk, n_src), dtype=np.float32)
        self.filter_spec = filter_spec or FilterSpec()
        if self.filter_spec.active:
            self._sos = np.ascontiguousarray(self.filter_spec.design(bundle.sfreq), dtype=np.float64)
        else:
            self._sos = np.zeros((0, 6))
        self._state = np.zeros((len(self._sos), n_chan, 2), dtype=np.float64)

    @property
    def n_outputs(self) -> int:
        return self.bundle.n_sources

    def reset_filter(self) -> None:
        """Forget the filter memory (after a gap in the input)."""
        self._state[:] = 0.0

    def process(self, chunk: np.ndarray, n: int) -> np.ndarray:
        """Apply the operator to the first ``n`` rows of a stream chunk.

        Parameters
        ----------
        chunk : ndarray of float32, shape (>= n, n_stream_channels)
            Samples as pulled from LSL, in the stream's units and column order.
        n : int
            Number of valid rows, 1 <= n <= max_chunk.

        Returns
        -------
        ndarray of float32, shape (n, n_sources)
            A view into the operator's output buffer, valid until the next call.
        """
        k = self._kernels
        k.gather_channels(chunk, self._index, n, self._picked)
        if len(self._sos):
            k.sos_filter(self._picked, n, self._sos, self._state)
        self._apply(self._picked, n, self._kernel, self._inv_norm, self._out)
        return self._out[:n]

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernels before the first real chunk."""
        dummy = np.zeros((1, int(self._index.max()) + 1 if len(self._index) else 1), dtype=np.float32)
        state = self._state.copy()
        self.process(dummy, 1)
        self._state[:] = state
