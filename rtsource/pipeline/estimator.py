"""Apply a bundle to chunks in the caller's own process: no LSL, no threads.

For experiment scripts (PsychoPy and the like) that get samples from somewhere (an amplifier
SDK, their own LSL inlet, a file) and want source or ROI values directly:

    chunk (n, stream channels, stream units) ─> StreamOperator: channels by name, unit
        factors, causal filter, kernel ─> sources (n, n_sources)
                                      └─> RoiStage ─> ROIs (n, n_roi) ─> BandPowerStage

These are the objects :class:`rtsource.stream.loop.StreamLoop` applies to every chunk it
pulls, built the same way, so :meth:`Estimator.process` returns what ``rtsource run``
publishes for the same samples (to float32 rounding). What the loop adds around them (LSL,
gaps and clock checks, bad-channel detection, hot swaps) is not here: call
:meth:`Estimator.restart` after a gap in your data, as the loop does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..bundle import OperatorBundle
from ..config import Settings
from ..errors import ChannelError, ConfigError
from ..stream.operator import FilterSpec


@dataclass(frozen=True)
class Estimate:
    """What :meth:`Estimator.process` returns for one chunk.

    Attributes
    ----------
    sources : ndarray of float32, shape (n, n_sources)
        One value per source and sample, in ``bundle.output_unit`` (orientation-pooled for
        loose / free operators); NaN rows for samples with non-finite input.
    rois : ndarray of float32, shape (n, n_roi), or None
        ROI time courses (None without ROIs).
    bandpower : ndarray of float32, shape (k, n_roi * n_bands), or None
        Band-power samples that fell due in this chunk (None without band power).
    bandpower_times : ndarray of float64, shape (k,), or None
        Their timestamps (s, on the clock of the timestamps given to :meth:`Estimator.process`).
    """

    sources: np.ndarray
    rois: np.ndarray | None = None
    bandpower: np.ndarray | None = None
    bandpower_times: np.ndarray | None = None


class Estimator:
    """A bundle applied to chunks of a known channel layout, in this process.

    Parameters
    ----------
    bundle : OperatorBundle or str or Path
        The operator bundle (a path is loaded with :func:`rtsource.load_bundle`).
    ch_names : sequence of str
        Labels of the columns of the chunks you will pass, in order. They are matched to the
        bundle's channels by name (any order; extra columns are ignored).
    ch_units : str or sequence of str
        Unit of each column ('uV', 'V', 'fT', 'T/m', ...), or one unit for all. Required:
        a factor of 10^6 is the classic silent error.
    ch_types : sequence of str, optional
        Type of each column ('EEG', 'MEG', 'EOG', ...); a column of another type matched
        by name to an operator channel is refused. Default: unchecked.
    sfreq : float, optional
        Your sampling rate in Hz, checked against the bundle's (the filters are designed
        for the bundle's rate).
    filter : FilterSpec, optional
        Causal Butterworth filter before the operator (``[preprocess]``).
    aliases : mapping, optional
        Your label -> bundle label, for non-standard names (``[sensors] aliases``).
    rois : sequence of rtsource.anatomy.regions.Roi, optional
        Regions of interest on the bundle's sources (empty: no ROI output).
    roi_mode, roi_component : str
        ROI aggregation and component (``[rois] mode`` / ``component``).
    roi_calibration : ndarray, shape (n_samples, n_channels), optional
        Calibration data in SI units, bundle channel order (``pca_flip``, band-power z-score).
    bandpower : rtsource.stream.bandpower.BandPowerSpec, optional
        Band power of the ROIs (needs ROIs).
    max_chunk : int
        Largest block the kernels process at once; longer chunks are processed in blocks.
    low_rank : {"auto", "on", "off"}
        Apply the operator as A (B x) when its rank is low (``[performance] low_rank``).
    compensation_grade : int
        CTF gradient compensation grade of your data (``[stream] compensation_grade``): -1
        the bundle's, 0 uncompensated (the references, named in ``ch_names``, are then
        folded into the operator; :mod:`rtsource.stream.compensation`).

    Notes
    -----
    Use :meth:`from_config` to take all of these from a configuration, as ``rtsource run``
    does. The estimator keeps filter state between calls: pass consecutive chunks of one
    recording, and call :meth:`restart` after a gap.
    """

    def __init__(
        self,
        bundle: OperatorBundle | str | Path,
        ch_names: Sequence[str],
        ch_units: str | Sequence[str],
        *,
        ch_types: Sequence[str] | None = None,
        sfreq: float | None = None,
        filter: FilterSpec | None = None,
        aliases: Mapping[str, str] | None = None,
        rois: Sequence = (),
        roi_mode: str = "mean_flip",
        roi_component: str = "auto",
        roi_calibration: np.ndarray | None = None,
        bandpower=None,
        max_chunk: int = 1024,
        low_rank: str = "auto",
        compensation_grade: int = -1,
    ):
        from ..stream.channels import StreamDescription, map_stream_channels
        from ..stream.compensation import stream_compensation
        from ..stream.operator import StreamOperator

        if not isinstance(bundle, OperatorBundle):
            from ..bundle import load_bundle

            bundle = load_bundle(bundle)
        self.bundle = bundle
        names = tuple(str(c) for c in ch_names)
        units = (ch_units,) * len(names) if isinstance(ch_units, str) else tuple(ch_units)
        types = ("",) * len(names) if ch_types is None else tuple(ch_types)
        for what, values in (("ch_units", units), ("ch_types", types)):
            if len(values) != len(names):
                raise ChannelError(f"{what} has {len(values)} entries for {len(names)} ch_names; give one per column (or one unit for all)")
        if sfreq is not None and abs(float(sfreq) - bundle.sfreq) > 1e-6 * bundle.sfreq:
            raise ConfigError(f"sfreq = {sfreq:g} Hz but the bundle was built for {bundle.sfreq:g} Hz; rebuild it for {sfreq:g} Hz (setup(..., sfreq={sfreq:g}))")
        if int(max_chunk) < 1:
            raise ConfigError(f"max_chunk = {max_chunk}: must be >= 1")
        self.layout = StreamDescription(
            name="Estimator input", type="", source_id="", sfreq=bundle.sfreq, n_channels=len(names), channel_format="float32",
            ch_names=names, ch_types=types, ch_units=units,
        )  # fmt: skip
        cmap = map_stream_channels(self.layout, bundle.ch_names, bundle.ch_units, aliases=aliases, ch_types=bundle.ch_types)
        #: the prepared operator (the loop's StreamOperator): channel map, filter, kernel
        comp = stream_compensation(bundle, self.layout, int(compensation_grade), aliases=aliases)
        self.operator = StreamOperator(bundle, cmap, int(max_chunk), filter, low_rank=low_rank, compensation=comp)
        self.operator.warm_up()
        # the bundle's artifact correction (ASR, EOG regression) as the loop runs it; its
        # look-ahead delays the output: :attr:`delay_s`, band-power stamps moved by it
        from ..stream.artifacts import LoopArtifacts
        from ..stream.telemetry import LoopStats

        self.artifacts = LoopArtifacts(bundle, LoopStats(), None, aliases=aliases)
        self.artifacts.attach(self.operator, self.layout)
        #: how far the output lags the input (ASR's look-ahead), s
        self.delay_s = self.artifacts.delay_s
        self.roi_stage = None
        self.bandpower_stage = None
        if rois:
            from ..roi_operator import RoiOperator
            from ..stream.roi import RoiStage

            roi_operator = RoiOperator.from_bundle(bundle, rois, roi_mode, roi_component, calibration=roi_calibration)
            self.roi_stage = RoiStage(roi_operator, int(max_chunk), channel_scale=cmap.scale, n_sources=bundle.n_sources)
            self.roi_stage.warm_up()
            if bandpower is not None:
                from ..stream.bandpower import BandPowerStage

                self.bandpower_stage = BandPowerStage(bandpower, roi_operator.names, bundle.sfreq, int(max_chunk), unit=bundle.output_unit)
                self.bandpower_stage.warm_up()
                if roi_calibration is not None and bandpower.zscore:
                    self.bandpower_stage.calibrate(roi_operator.apply(roi_calibration))
        elif bandpower is not None:
            raise ConfigError("bandpower needs ROIs: pass rois (or [[roi]] entries in the config)")
        self._samples = 0
        self._restart = False

    @classmethod
    def from_config(
        cls,
        config: Settings | str | Path | None,
        bundle: OperatorBundle | str | Path | None,
        ch_names: Sequence[str],
        ch_units: str | Sequence[str],
        *,
        ch_types: Sequence[str] | None = None,
        sfreq: float | None = None,
        calibration: np.ndarray | None = None,
    ) -> "Estimator":
        """An estimator set up as ``rtsource run CONFIG`` sets up its loop.

        ``[preprocess]``, ``[sensors] aliases``, ``[stream] max_chunk``, ``[performance]
        low_rank``, ``[[roi]]`` / ``[rois]`` and ``[bandpower]`` come from the config;
        ``bundle`` None reads ``[bundle] path``. ``calibration`` (n_samples, n_channels) in
        SI units on the bundle's channels feeds ``pca_flip`` and the band-power z-score.
        """
        from ..session import feature_options, loop_options
        from .setup import as_settings

        settings = as_settings(config)
        if bundle is None:
            bundle = settings.resolve_path(settings.bundle.path)
        if not isinstance(bundle, OperatorBundle):
            from ..bundle import load_bundle

            bundle = load_bundle(bundle)
        opts = loop_options(settings, "")
        feats = feature_options(settings, bundle, calibration=calibration)
        return cls(
            bundle, ch_names, ch_units, ch_types=ch_types, sfreq=sfreq, filter=opts.filter, aliases=opts.aliases,
            rois=feats.rois, roi_mode=feats.roi_mode, roi_component=feats.roi_component, roi_calibration=feats.roi_calibration,
            bandpower=feats.bandpower, max_chunk=opts.max_chunk, low_rank=opts.low_rank, compensation_grade=opts.compensation_grade,
        )  # fmt: skip

    @property
    def roi_names(self) -> tuple[str, ...]:
        """Labels of the ROI columns (empty without ROIs)."""
        return self.roi_stage.names if self.roi_stage is not None else ()

    @property
    def bandpower_labels(self) -> tuple[str, ...]:
        """Labels of the band-power columns (``ROI_band``; empty without band power)."""
        return self.bandpower_stage.labels if self.bandpower_stage is not None else ()

    def restart(self) -> None:
        """Forget the filter state (after a gap): the next chunk restarts the causal filters
        at the steady state of its first finite sample, as the loop does after a gap, and
        the band-power filters start over."""
        self._restart = True
        if self.bandpower_stage is not None:
            self.bandpower_stage.reset()

    def process(self, chunk: np.ndarray, timestamps: np.ndarray | None = None) -> Estimate:
        """Source (and ROI, band-power) values of one chunk.

        Parameters
        ----------
        chunk : array_like, shape (n, n_columns)
            Samples in your units and column order (as given to the constructor); converted
            to float32 as LSL's float32 streams carry them.
        timestamps : array_like of float, shape (n,), optional
            The samples' times in s; only band power uses them (its output samples carry
            them). Default: sample count / sfreq since the estimator was made.

        Returns
        -------
        Estimate
            New arrays (yours to keep).
        """
        x = np.ascontiguousarray(chunk, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.layout.n_channels:
            raise ChannelError(f"chunk has shape {x.shape}, expected (n_samples, {self.layout.n_channels}) in the column order of ch_names")
        n_total = x.shape[0]
        if timestamps is None:
            ts = (self._samples + np.arange(n_total)) / self.bundle.sfreq
        else:
            ts = np.asarray(timestamps, dtype=np.float64)
            if ts.shape != (n_total,):
                raise ChannelError(f"timestamps has shape {ts.shape}, expected ({n_total},): one per sample of the chunk")
        ts = self.artifacts.stamps(ts)
        sources = np.empty((n_total, self.bundle.n_sources), dtype=np.float32)
        rois = np.empty((n_total, self.roi_stage.n_roi), dtype=np.float32) if self.roi_stage is not None else None
        bp_values, bp_times = [], []
        op, step = self.operator, self.operator.max_chunk
        for start in range(0, n_total, step):
            n = min(step, n_total - start)
            block = x[start : start + n]
            if self._restart:
                op.restart_filter_at(block, n)
                self._restart = False
            out = op.process(block, n)
            sources[start : start + n] = out
            if self.roi_stage is not None:
                roi = self.roi_stage.process(op.prepared(n) if self.roi_stage.input_kind == "channels" else out, n)
                rois[start : start + n] = roi
                if self.bandpower_stage is not None:
                    values, t = self.bandpower_stage.process(roi, ts[start : start + n], n)
                    bp_values.append(values.copy())
                    bp_times.append(t.copy())
        self._samples += n_total
        if self.bandpower_stage is None:
            return Estimate(sources, rois)
        n_bp = len(self.bandpower_stage.labels)
        values = np.concatenate(bp_values) if bp_values else np.zeros((0, n_bp), dtype=np.float32)
        times = np.concatenate(bp_times) if bp_times else np.zeros(0)
        return Estimate(sources, rois, values, times)

