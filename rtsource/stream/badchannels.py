"""Automatic bad-channel detection on the live channel chunks.

Rules (thresholds are :class:`BadChannelRules` fields; defaults in brackets). Statistics are
computed per block of ``block_s`` [1 s] (PREP's window length) on three signals per
channel: ``r`` the raw value in SI units (V for EEG, T for magnetometers, T/m for
gradiometers), ``h`` = r high-passed at ``highpass_hz`` [1 Hz, as PREP does before its
criteria] and ``y`` = h re-referenced to the mean of the good EEG channels for EEG (PREP
also works on an average-referenced signal) and ``y = h`` for MEG. The high-pass starts in
its steady state for the first sample, so DC offsets cause no start-up transient.

Sensor types are judged separately: absolute limits come in each type's unit, and the
relative rules (robust z-scores, correlations) compare a channel only with channels of its
own type, so microvolts never meet femtotesla.

``flat``
    SD of h in the block below the type's floor for ``flat_s`` [5 s] in a row: an
    electrode or sensor that records nothing. EEG ``flat_uv`` [0.5 uV]: resting EEG is
    5-50 uV, amplifier noise alone ~0.5-1 uV. Magnetometers ``flat_mag_ft`` [5 fT] and
    gradiometers ``flat_grad_ft_cm`` [5 fT/cm]: SQUID sensors have a white noise floor of
    ~3 fT/sqrt(Hz) (3 fT/cm/sqrt(Hz) for planar gradiometers; Hamalainen et al. 1993, Rev.
    Mod. Phys. 65:413, and the Elekta Neuromag specifications), ~20 fT RMS even in a 1-50 Hz
    band, so a working sensor never falls below a few fT; MNE's ``find_bad_channels_maxwell``
    calls a channel flat only below 0.01 fT or 0.01 fT/cm (a digitally constant signal),
    which these floors include. Duration as EEGLAB ``clean_flatlines`` (Kothe,
    clean_rawdata: 5 s).
``saturated``
    In a block, at least ``saturation_fraction`` [0.2] of the samples are at or beyond
    ``rail_uv`` (the EEG amplifier's range, if known [0: off]), or sit exactly at the block's
    maximum or minimum value (a clipping plateau), or the block is one constant non-zero
    value (an ADC pinned at its limit; an exactly zero channel is "flat"), for
    ``saturation_s`` [1 s].
``nonfinite``
    At least ``nonfinite_fraction`` [0.5] of a block's samples are NaN or infinite, for
    ``saturation_s``.
``noisy_deviation``
    PREP "deviation" criterion (Bigdely-Shamlo et al. 2015, Front. Neuroinform. 9:16):
    robust z-score of the channel's amplitude (median over the last ``window_s`` [5 s] of
    the block SD of y) against the good channels of its type, ``(a - median) / (0.7413
    IQR)``, above ``deviation_z`` [5, PREP's default], for ``noisy_s`` [3 s]. For MEG the
    amplitude over the median of its type, above ``deviation_ratio_meg`` [6]: MEG
    topographies are focal, so sensors over a strong source reach several times the median
    while the others (dominated by sensor noise) spread very little, and a robust z would
    call clean sensors bad (the simulator's 150 nAm sources give gradiometers up to 3.6x
    the median, z up to 18). Or that
    amplitude above the type's ceiling (when more than half of the channels are noisy the
    robust statistics no longer see them): EEG ``noisy_uv`` [150 uV], magnetometers
    ``noisy_mag_ft`` [4000 fT], gradiometers ``noisy_grad_ft_cm`` [4000 fT/cm]. These are
    MNE's usual peak-to-peak rejection limits (``reject=dict(eeg=150e-6, mag=4000e-15,
    grad=4000e-13)``, MNE-Python's introductory tutorial and ``compute_raw_covariance``);
    used here as a limit on the SD they are ~3x more lenient (a 1 s block of noise spans
    ~6 SD): a channel this noisy would fail epoch rejection all the time. 0 turns a
    ceiling off.
``noisy_hf``
    PREP "noisiness" criterion: robust z (within the type) of the ratio of the channel's
    high-frequency amplitude (above ``hf_hz`` [40 Hz]: muscle, line noise, a bad contact)
    to its amplitude in the signal band (``highpass_hz`` to ``hf_hz``), window median,
    above ``hf_z`` [5, PREP's default], for ``noisy_s``. For MEG the ratio over the median
    of its type, above ``deviation_ratio_meg`` (as the deviation rule, for the same reason:
    sensor noise makes the ratio nearly equal on clean sensors, and a robust z of that tiny
    spread flagged a clean gradiometer, z 6.0, when the simulator's sources switched on). (PREP uses 50 Hz and robust amplitudes of the two parts;
    4th-order Butterworth filters and RMS here.)
``low_correlation`` (EEG)
    PREP "correlation" criterion: per block, the 98th percentile of the channel's absolute
    correlation with the good channels of its type is below ``correlation_min`` [0.4, PREP's default]
    in at least ``correlation_fraction`` [0.5] of the window's blocks, for ``noisy_s``.
    (PREP flags a channel bad in >1 % of windows of a whole recording; online, the share of
    a short window with a persistence requirement plays that role.)

The window rules (deviation, noisiness, correlation) start when the first window is full.
Robust statistics use only the good channels, so channels already flagged do not mask new
ones.

Events and hysteresis: a channel is flagged (one ``bad`` event with the rule that fired
first; priority flat > nonfinite > saturated > noisy_hf > noisy_deviation >
low_correlation) when a rule held for its persistence time; while flagged it produces no
further events whatever rule holds. It is re-armed (one ``recovered`` event) only after
``recover_s`` [10 s] in a row in which *no* rule held; then it can be flagged again. A
channel marked bad by hand (:meth:`BadChannelDetector.mark_bad`) is never auto-recovered.

Everything is allocated in ``__init__``: per-block accumulators, a ring of the last
``window_s`` of block statistics (write index), filter states. :meth:`BadChannelDetector.update`
allocates nothing unless an event fires.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import ChannelError, ConfigError

logger = logging.getLogger(__name__)

#: reason strings by rule code (rtsource.stream._qc_kernels FLAT ... MANUAL)
REASONS = {1: "flat", 2: "nonfinite", 3: "saturated", 4: "noisy_hf", 5: "noisy_deviation", 6: "low_correlation", 7: "manual"}

#: sensor types the detector knows, in group order, with their SI unit and display unit
SENSOR_TYPES = ("eeg", "mag", "grad")
_DISPLAY = {"eeg": ("uV", 1e-6), "mag": ("fT", 1e-15), "grad": ("fT/cm", 1e-13)}


@dataclass(frozen=True)
class BadChannelRules:
    """Thresholds of the detection rules (see the module docstring for each rule's source)."""

    block_s: float = 1.0
    window_s: float = 5.0
    highpass_hz: float = 1.0
    flat_uv: float = 0.5
    flat_mag_ft: float = 5.0
    flat_grad_ft_cm: float = 5.0
    noisy_uv: float = 150.0
    noisy_mag_ft: float = 4000.0
    noisy_grad_ft_cm: float = 4000.0
    flat_s: float = 5.0
    rail_uv: float = 0.0
    saturation_fraction: float = 0.2
    saturation_s: float = 1.0
    nonfinite_fraction: float = 0.5
    deviation_z: float = 5.0
    deviation_ratio_meg: float = 6.0
    hf_hz: float = 40.0
    hf_z: float = 5.0
    correlation_min: float = 0.4
    correlation_quantile: float = 0.98
    correlation_fraction: float = 0.5
    noisy_s: float = 3.0
    recover_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("block_s", "window_s", "highpass_hz", "flat_uv", "flat_mag_ft", "flat_grad_ft_cm", "flat_s", "saturation_s", "deviation_z", "deviation_ratio_meg", "hf_hz", "hf_z", "noisy_s", "recover_s"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ConfigError(f"[badchannels] {name} = {v!r} must be a positive number")
        for name in ("saturation_fraction", "nonfinite_fraction", "correlation_min", "correlation_quantile", "correlation_fraction"):
            v = getattr(self, name)
            if not (0 < v <= 1):
                raise ConfigError(f"[badchannels] {name} = {v!r} must be in (0, 1]")
        if not (np.isfinite(self.rail_uv) and self.rail_uv >= 0):
            raise ConfigError(f"[badchannels] rail_uv = {self.rail_uv!r} must be >= 0 (0: amplifier range unknown)")
        for name in ("noisy_uv", "noisy_mag_ft", "noisy_grad_ft_cm"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ConfigError(f"[badchannels] {name} = {v!r} must be >= 0 (0: no absolute ceiling)")
        if self.window_s < self.block_s:
            raise ConfigError(f"[badchannels] window_s = {self.window_s} must be at least block_s = {self.block_s}")

    def limits(self, kind: str) -> tuple[float, float, float]:
        """(flat, noisy, rail) limits in SI units for a sensor type ('eeg', 'mag', 'grad')."""
        if kind == "eeg":
            return self.flat_uv * 1e-6, self.noisy_uv * 1e-6, self.rail_uv * 1e-6
        if kind == "mag":
            return self.flat_mag_ft * 1e-15, self.noisy_mag_ft * 1e-15, 0.0
        if kind == "grad":
            return self.flat_grad_ft_cm * 1e-13, self.noisy_grad_ft_cm * 1e-13, 0.0
        raise ChannelError(f"sensor type {kind!r} is not one of {SENSOR_TYPES}")


@dataclass(frozen=True)
class BadChannelEvent:
    """A channel turned bad (``kind="bad"``) or recovered (``kind="recovered"``).

    Attributes
    ----------
    channel : str
    reason : str
        One of :data:`REASONS` values (for ``recovered``: the reason it had been flagged for).
    kind : str
    time : float
        Timestamp (producer clock) of the last sample of the block that decided it.
    value : float
        The rule's measurement (SD in the channel's SI unit for flat, sample share for saturated / nonfinite,
        robust z for noisy rules, max correlation for low_correlation).
    """

    channel: str
    reason: str
    kind: str
    time: float
    value: float = float("nan")

    def as_event(self) -> dict:
        """Keys for the events stream (``bad_channel``: channel, reason)."""
        return {"event": "bad_channel", "channel": self.channel, "reason": self.reason if self.kind == "bad" else "recovered", "value": self.value}


class BadChannelDetector:
    """Watch the operator's channels of a live stream and report bad ones.

    Parameters
    ----------
    ch_names : sequence of str
        Channels to watch, in operator order.
    sfreq : float
    index : ndarray of int, optional
        Column of each channel in the stream chunk (``ChannelMap.index``); default
        ``arange(n)`` (the chunk holds exactly these channels).
    scale : ndarray, optional
        Factor from stream units to SI per channel (``ChannelMap.scale``); default ones.
    rules : BadChannelRules
    ignore : sequence of str
        Channels never flagged (e.g. the recording reference, which is all zeros).
    ch_types : sequence of {"eeg", "mag", "grad"}, optional
        Sensor type per channel (the bundle's ``ch_types``); default all EEG.
    """

    def __init__(self, ch_names, sfreq: float, *, index=None, scale=None, rules: BadChannelRules | None = None, ignore=(), ch_types=None):
        from .filter_design import butter_sos

        from . import _qc_kernels as k

        self._k = k
        self.ch_names = tuple(ch_names)
        n = len(self.ch_names)
        if n < 4:
            raise ConfigError(f"bad-channel detection needs at least 4 channels to compare, got {n}")
        self.sfreq = float(sfreq)
        self.rules = rules = rules or BadChannelRules()
        self._index = np.ascontiguousarray(np.arange(n) if index is None else index, dtype=np.int64)
        self._scale = np.ascontiguousarray(np.ones(n) if scale is None else scale, dtype=np.float64)
        if self._index.shape != (n,) or self._scale.shape != (n,):
            raise ConfigError(f"index / scale must have shape ({n},)")
        unknown = [c for c in ignore if c not in self.ch_names]
        if unknown:
            raise ChannelError(f"[badchannels] ignore lists {unknown}, which are not operator channels ({', '.join(self.ch_names[:6])}, ...)")
        self._ignored = np.array([c in set(ignore) for c in self.ch_names], dtype=np.uint8)
        self.ch_types = tuple(ch_types) if ch_types is not None else ("eeg",) * n
        if len(self.ch_types) != n or not set(self.ch_types) <= set(SENSOR_TYPES):
            raise ChannelError(f"ch_types must give one of {SENSOR_TYPES} for each of the {n} channels, got {sorted(set(self.ch_types))}")
        self._group = np.array([SENSOR_TYPES.index(t) for t in self.ch_types], dtype=np.int64)
        self._eeg = (self._group == 0).astype(np.uint8)
        lim = np.array([rules.limits(t) for t in self.ch_types]).reshape(n, 3)
        self._flat_v = np.ascontiguousarray(lim[:, 0])
        self._noisy_v = np.ascontiguousarray(lim[:, 1])
        self._rail = np.ascontiguousarray(lim[:, 2])
        self._mask = np.zeros(n, dtype=np.uint8)
        nyq = self.sfreq / 2
        if rules.highpass_hz >= nyq:
            raise ConfigError(f"[badchannels] highpass_hz = {rules.highpass_hz} must be below Nyquist {nyq:g} Hz")
        self._hp_sos = np.ascontiguousarray(butter_sos(2, rules.highpass_hz, "highpass", self.sfreq))
        self.hf_enabled = rules.hf_hz < 0.8 * nyq
        if self.hf_enabled:
            self._hf_sos = np.ascontiguousarray(butter_sos(4, rules.hf_hz, "highpass", self.sfreq))
            self._lf_sos = np.ascontiguousarray(butter_sos(4, rules.hf_hz, "lowpass", self.sfreq))
        else:
            logger.info("bad channels: %g Hz sampling is too slow for the high-frequency noise rule above %g Hz; rule off", self.sfreq, rules.hf_hz)
            self._hf_sos = np.zeros((1, 6))
            self._hf_sos[0, 3] = 1.0  # y = 0
            self._lf_sos = self._hf_sos.copy()
        self._hp_state = np.zeros((len(self._hp_sos), n, 2))
        self._hf_state = np.zeros((len(self._hf_sos), n, 2))
        self._lf_state = np.zeros((len(self._lf_sos), n, 2))
        self.block_len = max(2, int(round(rules.block_s * self.sfreq)))
        block_s = self.block_len / self.sfreq
        self.n_window = max(1, int(round(rules.window_s / block_s)))

        def blocks(seconds):
            return max(1, int(round(seconds / block_s)))

        # persistence per rule code 1..6: flat, nonfinite, saturated, hf, deviation, correlation
        self._persist = np.array([blocks(rules.flat_s), blocks(rules.saturation_s), blocks(rules.saturation_s),
                                  blocks(rules.noisy_s), blocks(rules.noisy_s), blocks(rules.noisy_s)], dtype=np.int64)  # fmt: skip
        if not self.hf_enabled:
            self._persist[k.HF_NOISE - 1] = np.iinfo(np.int64).max
        self._recover = blocks(rules.recover_s)
        self._params = np.array([rules.saturation_fraction, rules.deviation_z, rules.hf_z, rules.correlation_min, rules.correlation_fraction,
                                 rules.nonfinite_fraction, rules.correlation_quantile, rules.deviation_ratio_meg])  # fmt: skip
        self._h = np.zeros(n)
        self._acc = np.zeros((n, k.N_ACC))
        self._cross = np.zeros((n, n))
        self._pos = np.zeros(1, dtype=np.int64)
        self._blocks_seen = np.zeros(1, dtype=np.int64)
        self._amp_ring = np.full((self.n_window, n), np.nan)
        self._ratio_ring = np.full((self.n_window, n), np.nan)
        self._corr_ring = np.full((self.n_window, n), np.nan)
        self._flagged = np.zeros(n, dtype=np.int64)
        self._good = (1 - self._ignored).astype(np.uint8)
        self._bad_count = np.zeros((k.N_RULES, n), dtype=np.int64)
        self._clear_count = np.zeros(n, dtype=np.int64)
        self.values = np.full((k.N_RULES, n), np.nan)  # latest measurement per rule (display, events)
        self._cond = np.zeros((k.N_RULES, n), dtype=np.uint8)
        self._scratch = np.zeros(n)
        self._scratch2 = np.zeros(self.n_window)
        self._work = np.zeros((7, n))
        self._changes = np.zeros(n, dtype=np.int64)
        self._flag_reason = np.zeros(n, dtype=np.int64)  # why each channel was last flagged
        self._filters, self._block, self._rules, self._sensors, self._window, self._flags, self._scratch_out = self._qc_groups(self.__dict__, self.block_len)
        self._primed = False
        self._events: list[BadChannelEvent] = []
        #: messages about the whole stream (all channels of a type flat: a unit problem?), oldest first
        self.hints: list[str] = []
        self.blocks = 0

    # ---- state ----
    @property
    def bad_channels(self) -> tuple[str, ...]:
        """Channels currently flagged (automatically or by hand), operator order."""
        return tuple(c for c, f in zip(self.ch_names, self._flagged) if f)

    def reason(self, channel: str) -> str:
        """Why ``channel`` is flagged ('' if it is not)."""
        return REASONS.get(int(self._flagged[self._pos_of(channel)]), "")

    def _pos_of(self, channel: str) -> int:
        try:
            return self.ch_names.index(channel)
        except ValueError:
            raise ChannelError(f"channel {channel!r} is not one of the operator's channels ({', '.join(self.ch_names[:8])}, ...)") from None

    def mark_bad(self, channel: str, time: float = float("nan")) -> BadChannelEvent | None:
        """Mark a channel bad by hand (never auto-recovered); returns the event, None if it was already bad."""
        j = self._pos_of(channel)
        was = self._flagged[j]
        self._flagged[j] = self._k.MANUAL
        self._good[j] = 0
        if was:
            return None
        ev = BadChannelEvent(channel, "manual", "bad", time)
        self._events.append(ev)
        return ev

    def mark_good(self, channel: str, time: float = float("nan")) -> BadChannelEvent | None:
        """Clear a channel's flag (manual or automatic); returns the event, None if it was good."""
        j = self._pos_of(channel)
        was = int(self._flagged[j])
        self._flagged[j] = 0
        self._good[j] = 0 if self._ignored[j] else 1
        self._bad_count[:, j] = 0
        self._clear_count[j] = 0
        if not was:
            return None
        ev = BadChannelEvent(channel, REASONS[was], "recovered", time)
        self._events.append(ev)
        return ev

    def events(self) -> list[BadChannelEvent]:
        """Events since the last call (oldest first); clears them."""
        out, self._events = self._events, []
        return out

    # ---- processing ----
    def _prime(self, chunk: np.ndarray, n: int) -> bool:
        """Start the high-passes in their steady state for the first finite sample per channel."""
        from .filter_design import sosfilt_zi

        rows = chunk[:n][:, self._index].astype(np.float64) * self._scale
        ok = np.isfinite(rows)
        if not ok.any(axis=0).all():
            return False
        first = rows[ok.argmax(axis=0), np.arange(rows.shape[1])]
        zi_hp = sosfilt_zi(self._hp_sos)
        self._hp_state[:] = zi_hp[:, None, :] * first[None, :, None]
        if self.hf_enabled:
            zi_hf = sosfilt_zi(self._hf_sos)
            self._hf_state[:] = zi_hf[:, None, :] * first[None, :, None]
        self._primed = True
        return True

    def restart(self) -> None:
        """Drop the current partial block and restart the filters at the next sample (after a gap)."""
        self._acc[:] = 0.0
        self._cross[:] = 0.0
        self._pos[0] = 0
        self._primed = False

    def update(self, chunk: np.ndarray, n: int, timestamps: np.ndarray) -> int:
        """Feed the first ``n`` rows of a stream chunk; returns the number of new events.

        Parameters
        ----------
        chunk : ndarray, shape (>= n, n_stream_channels)
            As pulled (stream units and column order; ``index`` and ``scale`` map it).
        n : int
        timestamps : ndarray, shape (>= n,)
        """
        if not self._primed and not self._prime(chunk, n):
            return 0
        k = self._k
        start = 0
        new = 0
        while start < n:
            end = k.qc_accumulate(chunk, start, n, self._index, self._scale, self._good, self._sensors, self._filters, self._block)
            if end < 0:
                break
            changes = k.qc_evaluate(self._block, self._rules, self._sensors, self._window, self._flags, self._scratch_out)
            self.blocks += 1
            if changes:
                new += self._emit(float(timestamps[end - 1]))
            start = end
        return new

    def _emit(self, time: float) -> int:
        count = 0
        flat = []
        for j in np.flatnonzero(self._changes):
            code = int(self._changes[j])
            if code > 0:
                self._flag_reason[j] = code
                ev = BadChannelEvent(self.ch_names[j], REASONS[code], "bad", time, float(self.values[code - 1, j]))
                if code == self._k.FLAT:
                    flat.append(ev)  # logged below: all of a type flat is one message with a hint
                else:
                    logger.warning("channel %s is bad (%s, value %.4g)", ev.channel, ev.reason, ev.value)
            else:
                ev = BadChannelEvent(self.ch_names[j], REASONS.get(int(self._flag_reason[j]), ""), "recovered", time)
                logger.info("channel %s recovered", ev.channel)
            self._events.append(ev)
            count += 1
        if flat:
            self._report_flat(flat)
        return count

    def _report_flat(self, flat: list[BadChannelEvent]) -> None:
        """Log newly flat channels; when every channel of a type is flat, say what that means."""
        k = self._k
        whole = set()
        for g, kind in enumerate(SENSOR_TYPES):
            members = (self._group == g) & (self._ignored == 0)
            if members.sum() >= 4 and np.all(self._flagged[members] == k.FLAT):
                whole.add(kind)
                unit, factor = _DISPLAY[kind]
                largest = float(np.nanmax(self.values[k.FLAT - 1, members])) / factor
                floor = self._flat_v[members][0] / factor
                wrong = {"eeg": "numbers in V labelled as microvolts", "mag": "numbers in T labelled as fT", "grad": "numbers in T/m labelled as fT/cm"}[kind]
                hint = (
                    f"all {int(members.sum())} {kind.upper()} channels are flat (block SD at most {largest:.3g} {unit}, floor {floor:g} {unit}): "
                    f"the stream's unit metadata is probably wrong ({wrong}?) or the amplifier sends no signal; check the unit in the "
                    f"stream's header (desc/channels/channel/unit) or set [stream] assume_unit"
                )
                self.hints.append(hint)
                logger.warning("%s", hint)
        for ev in flat:
            if self.ch_types[self.ch_names.index(ev.channel)] not in whole:
                logger.warning("channel %s is bad (%s, value %.4g)", ev.channel, ev.reason, ev.value)

    def warm_up(self) -> None:
        """Compile the kernels on scratch copies of the state (nothing changes, no event)."""
        k = self._k
        n_stream = int(self._index.max()) + 1
        x = np.zeros((2, n_stream), np.float32)
        c = {name: v.copy() for name, v in self.__dict__.items() if isinstance(v, np.ndarray)}
        filters, block, rules, sensors, *rest = self._qc_groups(c, 2)
        k.qc_accumulate(x, 0, 2, c["_index"], c["_scale"], c["_good"], sensors, filters, block)
        k.qc_evaluate(block, rules, sensors, *rest)

    def _qc_groups(self, a: dict, block_len: int) -> tuple:
        """The kernels' typed views (:class:`~._qc_kernels.QcFilters`, ...) of the state arrays in
        ``a`` (this detector's attributes, or scratch copies of them): the same arrays, not copies."""
        k = self._k
        return (
            k.QcFilters(a["_hp_sos"], a["_hp_state"], a["_hf_sos"], a["_hf_state"], a["_lf_sos"], a["_lf_state"]),
            k.QcBlock(a["_acc"], a["_cross"], a["_h"], a["_pos"], block_len),
            k.QcRules(a["_params"], a["_persist"], self._recover, self.n_window),
            k.QcSensors(a["_group"], a["_eeg"], len(SENSOR_TYPES), a["_rail"], a["_flat_v"], a["_noisy_v"]),
            k.QcWindow(a["_blocks_seen"], a["_amp_ring"], a["_ratio_ring"], a["_corr_ring"]),
            k.QcFlags(a["_good"], a["_ignored"], a["_flagged"], a["_bad_count"], a["_clear_count"]),
            k.QcScratch(a["values"], a["_cond"], a["_scratch"], a["_scratch2"], a["_work"], a["_changes"], a["_mask"]),
        )
