"""A simulated EEG/MEG system: known cortical sources -> sensor signals -> an LSL stream.

It stands in for the amplifier, so it lives beside the offline side rather than in
``stream/`` (which needs only a bundle). To avoid the "inverse crime" (testing an inverse
on data made with its own model) it uses a model of its own: a denser cortex at another
depth (default: all 20484 fsaverage5 vertices half-way between white and pial surface,
while the inverse uses 5124 white-surface vertices), for EEG a different head model (3
shells with FieldTrip's conductivities instead of the inverse's 4 shells), and for MEG
other coil integration points ("accurate") and another sphere origin (fitted to the scalp
instead of the inner skull).

Signal = oscillating dipoles (sine at f, amplitude-modulated at f_mod, along the cortical
normal) + background brain noise (random cortical dipoles with 1/f spectra) + white
sensor noise (+ the artifacts of ``[simulate] artifacts``, :mod:`rtsource.simulation_artifacts`,
with the artifact-free signal kept as ground truth: :meth:`SignalGenerator.next_block`).
EEG is referenced to a nose electrode (Nz) as many amplifiers record and published in
microvolts; MEG in T (magnetometers) and T/m (gradiometers).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from .anatomy.template import load_template, template_source_space
from .config import Settings, SimulateSettings
from .errors import ConfigError
from .forward.head_model import SphereHead, sphere_model_for_template
from .forward.leadfield import SensorSet, make_leadfield
from .sensors.montage import standard_montage

logger = logging.getLogger(__name__)

SIM_REFERENCE = "Nz"

# 1/f ("pink") noise as white noise through a 3-pole / 3-zero filter, accurate to ~0.3 dB
# over three decades (J. O. Smith, Spectral Audio Signal Processing, "Example: Synthesis
# of 1/f Noise").
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


@dataclass(frozen=True)
class SimulatedBlock:
    """One block of simulated samples with its ground truth.

    Attributes
    ----------
    data_v : ndarray, shape (n, n_channels)
        What the amplifier records (brain + noise + artifacts), SI units.
    clean_v : ndarray, shape (n, n_channels)
        The same without the artifacts (the ground truth of artifact correction).
    moments : ndarray, shape (n, n_dipoles)
        The oscillating sources' moments, A*m.
    artifact_active : ndarray of bool, shape (n, len(simulation_artifacts.KINDS))
        Which artifact kinds are in an episode at each sample.
    """

    data_v: np.ndarray
    clean_v: np.ndarray
    moments: np.ndarray
    artifact_active: np.ndarray


@dataclass(frozen=True)
class SimulatedDipole:
    """One oscillating source as placed on the simulator's cortex."""

    position_m: np.ndarray
    normal: np.ndarray
    frequency_hz: float
    amplitude_am: float
    modulation_hz: float
    gain: np.ndarray  # (n_channels,) signal per A*m along the normal (EEG referenced to Nz)


def simulated_channels(settings: Settings):
    """The channels ``[sensors]`` describes, for the simulator: (names, MEG array or None).

    EEG channels come first (named in ``[sensors] channels``), then the MEG array's (all, or
    ``[sensors] meg_channels``), with the simulator's own coil accuracy.
    """
    s = settings.sensors
    names = list(s.channels) if "eeg" in s.modality else []
    array = None
    if "meg" in s.modality:
        from .sensors.meg import load_meg_array

        array = load_meg_array(settings.resolve_path(s.meg_array) if s.meg_array != "generic" else "generic", accuracy=settings.simulate.meg_accuracy)
        if s.meg_channels:
            array = array.pick(list(s.meg_channels))
        names += list(array.ch_names)
    return tuple(names), array


class SignalGenerator:
    """Deterministic source of simulated sensor data, sample block by sample block.

    Parameters
    ----------
    settings : SimulateSettings
    ch_names : sequence of str
        Channels to simulate: EEG electrodes (positions from the template's 10-05 montage)
        and, when ``meg_array`` is given, that array's channels.
    meg_array : rtsource.sensors.meg.MegArray, optional
        The MEG sensors (their names in ``ch_names`` are MEG channels).
    extra : rtsource.sim_events.EventedSources, optional
        Evoked sources and coupled pairs (placed on this cortex, added to the data); the
        markers of each :meth:`next` block are in :attr:`markers`, their moments (A*m) in
        :attr:`extra_moments`.
    """

    def __init__(self, settings: SimulateSettings, ch_names, meg_array=None, extra=None):
        self.settings = settings
        self.ch_names = tuple(ch_names)
        self.sfreq = float(settings.sfreq)
        rng = np.random.default_rng(settings.seed)
        template = load_template()
        self.template = template
        meg_names = set(meg_array.ch_names) if meg_array is not None else set()
        self._eeg_idx = np.array([i for i, c in enumerate(self.ch_names) if c not in meg_names], dtype=int)
        self._meg_idx = np.array([i for i, c in enumerate(self.ch_names) if c in meg_names], dtype=int)
        self.meg_array = meg_array.pick([self.ch_names[i] for i in self._meg_idx]) if len(self._meg_idx) else None
        self.ch_types = tuple("eeg" for _ in self.ch_names)
        if self.meg_array is not None:
            types = list(self.ch_types)
            for i, t in zip(self._meg_idx, self.meg_array.whitening_groups):
                types[i] = t
            self.ch_types = tuple(types)
        montage = None
        if len(self._eeg_idx):
            montage = standard_montage("standard_1005").pick([self.ch_names[i] for i in self._eeg_idx] + [SIM_REFERENCE])
        self.model = sphere_model_for_template(template, settings.relative_radii, settings.conductivities)
        # EEG by the series in these spheres; MEG by Sarvas about the scalp sphere's centre
        self._sensors = SensorSet(montage, self.meg_array)
        self._head = SphereHead(self.model, meg_origin_m=template.scalp_center_m)
        cortex = template_source_space(settings.spacing, settings.surface)
        # usable: real cortex (the medial wall has white == pial, thickness 0) and safely
        # inside the simulator's brain sphere
        thickness = np.linalg.norm(
            template_source_space(settings.spacing, "pial").positions_m - template_source_space(settings.spacing, "white").positions_m,
            axis=1,
        )
        r = np.linalg.norm(cortex.positions_m - self.model.center_m, axis=1)
        usable = np.flatnonzero((r < self.model.radii_m[0] - 1.5e-3) & (thickness > 0.5e-3))
        self.cortex = cortex
        self.usable = usable

        self.dipoles = tuple(
            self._place(np.asarray(s.position_mm) * 1e-3, s.frequency_hz, s.amplitude_nam * 1e-9, s.modulation_hz)
            for s in settings.sources
        )
        self._dipole_gain = np.array([d.gain for d in self.dipoles]).reshape(len(self.dipoles), len(self.ch_names))
        self.extra = extra
        self.markers: list[tuple[str, int]] = []  # (event, sample index) of the last next() block
        self.extra_moments = np.zeros((0, extra.n_sources if extra is not None else 0))
        if extra is not None:
            gains = [self._place(np.asarray(p, float) * 1e-3, 0.0, 0.0, 0.0).gain for p in extra.positions_mm]
            self._extra_gain = np.array(gains).reshape(extra.n_sources, len(self.ch_names))
        self._phase = rng.uniform(0, 2 * np.pi, len(self.dipoles))
        # background: random cortical dipoles with 1/f time courses
        n_noise = settings.n_noise_sources
        if n_noise > len(usable):
            raise ConfigError(
                f"[simulate] n_noise_sources = {n_noise}: the simulator's {settings.spacing} {settings.surface} cortex has "
                f"{len(usable)} usable positions; use at most {len(usable)} (or spacing = 'ico5' for more)"
            )
        if n_noise:
            pick = rng.choice(usable, size=n_noise, replace=False)
            self._noise_gain = self._normal_gains(pick)  # (n_chan, n_noise)
        else:
            self._noise_gain = np.zeros((len(self.ch_names), 0))
        self._noise_scale = self._pink_scale() * settings.brain_noise_nam * 1e-9
        # white sensor noise per channel type, SI (1 fT/cm = 1e-13 T/m)
        per_type = {"eeg": settings.sensor_noise_uv * 1e-6, "mag": settings.meg_noise_ft * 1e-15, "grad": settings.grad_noise_ft_cm * 1e-13}
        self._sensor_noise = np.array([per_type[t] for t in self.ch_types])
        self._pink_state = np.zeros((3, n_noise))
        self._rng = rng
        self._next_sample = 0
        self.artifacts = None
        if settings.artifacts and len(self._eeg_idx):
            from .simulation_artifacts import ArtifactGenerator

            pos = montage.electrodes.positions_m
            self.artifacts = ArtifactGenerator(settings, pos[:-1], pos[-1], [self.ch_names[i] for i in self._eeg_idx])

    # ---- geometry ----
    def _normal_gains(self, index: np.ndarray) -> np.ndarray:
        """Signal per A*m of dipoles along the normals at cortex[index], (n_channels, len(index))."""
        out = np.zeros((len(self.ch_names), len(index)))
        g = make_leadfield(self.cortex.subset(index), self._sensors, self._head, use_cache=False).leadfield.normal_gain()
        n_eeg = len(self._eeg_idx) + 1 if len(self._eeg_idx) else 0  # EEG rows first, the reference last of them
        if n_eeg:
            out[self._eeg_idx] = g[: n_eeg - 1] - g[n_eeg - 1]  # reference: the nose electrode
        if self.meg_array is not None:
            out[self._meg_idx] = g[n_eeg:]
        return out

    def _place(self, position_m, frequency, amplitude, modulation) -> SimulatedDipole:
        d = np.linalg.norm(self.cortex.positions_m[self.usable] - position_m, axis=1)
        k = self.usable[int(np.argmin(d))]
        if d.min() > 0.02:
            raise ConfigError(
                f"[[simulate.sources]] position_mm = {np.round(position_m * 1e3, 1).tolist()} is "
                f"{d.min() * 1e3:.0f} mm from the nearest usable cortical vertex; choose a cortical position"
            )
        return SimulatedDipole(self.cortex.positions_m[k], self.cortex.normals[k], frequency, amplitude, modulation, self._normal_gains(np.array([k]))[:, 0])

    def _pink_scale(self) -> float:
        # rms of unit white noise through the pink filter, from its impulse response energy
        from scipy.signal import lfilter

        h = lfilter(_PINK_B, _PINK_A, np.r_[1.0, np.zeros(1 << 16)])
        return 1.0 / float(np.sqrt(np.sum(h**2)))

    # ---- signal ----
    @property
    def n_channels(self) -> int:
        return len(self.ch_names)

    def source_waveforms(self, start: int, n: int) -> np.ndarray:
        """True dipole moments (A*m) of the oscillating sources, shape (n, n_dipoles)."""
        t = (start + np.arange(n)) / self.sfreq
        out = np.zeros((n, len(self.dipoles)))
        for j, d in enumerate(self.dipoles):
            env = 0.5 * (1 - np.cos(2 * np.pi * d.modulation_hz * t)) if d.modulation_hz > 0 else 1.0
            out[:, j] = d.amplitude_am * env * np.sin(2 * np.pi * d.frequency_hz * t + self._phase[j])
        out[t < self.settings.baseline_seconds] = 0.0  # noise-only calibration period
        return out

    def next(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` samples (with artifacts, when on; :meth:`next_block` adds the truth).

        Returns
        -------
        data_v : ndarray, shape (n, n_channels)
            Scalp potentials in volts, referenced to Nz.
        moments : ndarray, shape (n, n_dipoles)
            The oscillating sources' moments in A*m (the ground truth).
        """
        block = self.next_block(n)
        return block.data_v, block.moments

    def next_block(self, n: int) -> SimulatedBlock:
        """The next ``n`` samples with the artifact-free signal and the artifact episodes."""
        from scipy.signal import lfilter

        from .simulation_artifacts import KINDS

        moments = self.source_waveforms(self._next_sample, n)
        data = moments @ self._dipole_gain
        if self.extra is not None:
            self.extra_moments, self.markers = self.extra.next(n)
            data = data + self.extra_moments @ self._extra_gain
        if self._noise_gain.shape[1]:
            white = self._rng.standard_normal((n, self._noise_gain.shape[1]))
            pink, self._pink_state = lfilter(_PINK_B, _PINK_A, white, axis=0, zi=self._pink_state)
            data = data + (pink * self._noise_scale) @ self._noise_gain.T
        data = data + self._rng.standard_normal((n, self.n_channels)) * self._sensor_noise
        clean = data
        active = np.zeros((n, len(KINDS)), dtype=bool)
        if self.artifacts is not None:
            artifact, active = self.artifacts.next(self._next_sample, n)
            data = data.copy()
            data[:, self._eeg_idx] += artifact
        self._next_sample += n
        return SimulatedBlock(data, clean, moments, active)


def publish_scale(ch_types, eeg_unit: str) -> np.ndarray:
    """Factor from SI to the published unit per channel (EEG in microvolts by default)."""
    eeg = 1e6 if eeg_unit == "uV" else 1.0
    return np.array([eeg if t == "eeg" else 1.0 for t in ch_types])


def _sensor_info(gen: SignalGenerator, name: str, source_id: str, unit: str):
    import pylsl

    modality = "MEG" if not len(gen._eeg_idx) else ("EEG" if gen.meg_array is None else "EEG+MEG")
    info = pylsl.StreamInfo(name, "MEG" if modality == "MEG" else "EEG", gen.n_channels, gen.sfreq, pylsl.cf_float32, source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", "rtsource simulator")
    desc.append_child_value("modality", modality)
    desc.append_child_value("location_unit", "mm")
    desc.append_child_value("frame", "template")
    chans = desc.append_child("channels")
    eeg_pos = {}
    if len(gen._eeg_idx):
        names = [gen.ch_names[i] for i in gen._eeg_idx]
        eeg_pos = dict(zip(names, (standard_montage("standard_1005").pick(names).electrodes.positions_m * 1e3).tolist()))
    meg_meta = {}
    if gen.meg_array is not None:
        from .sensors.meg import channel_metadata

        meg_meta = {m["label"]: m for m in channel_metadata(gen.meg_array.to_head())}
    for ch_name in gen.ch_names:
        ch = chans.append_child("channel")
        ch.append_child_value("label", ch_name)
        loc = ch.append_child("location")
        if ch_name in meg_meta:
            m = meg_meta[ch_name]
            ch.append_child_value("type", m["type"])
            ch.append_child_value("unit", m["unit"])
            for axis in "XYZ":
                loc.append_child_value(axis, m[axis])
            ch.append_child_value("normal", m["normal"])
        else:
            ch.append_child_value("type", "EEG")
            ch.append_child_value("unit", "microvolts" if unit == "uV" else "volts")
            for axis, v in zip("XYZ", eeg_pos[ch_name]):
                loc.append_child_value(axis, f"{v:.3f}")
    if len(gen._eeg_idx):
        ref = desc.append_child("reference")
        ref.append_child_value("label", SIM_REFERENCE)
    return info


def _truth_info(gen: SignalGenerator, name: str, source_id: str, t0: float):
    import pylsl

    info = pylsl.StreamInfo(name, "SimulatedSources", len(gen.dipoles), gen.sfreq, pylsl.cf_float32, source_id)
    chans = info.desc().append_child("channels")
    for j, d in enumerate(gen.dipoles):
        ch = chans.append_child("channel")
        ch.append_child_value("label", f"sim_{j}")
        ch.append_child_value("type", "dipole_moment")
        ch.append_child_value("unit", "nA*m")
        ch.append_child_value("frequency_hz", repr(d.frequency_hz))
        loc = ch.append_child("location")
        for axis, v in zip("XYZ", (d.position_m * 1e3).tolist()):
            loc.append_child_value(axis, f"{v:.3f}")
    info.desc().append_child_value("location_unit", "mm")
    info.desc().append_child_value("frame", "template")
    # LSL time of the first sample and of the end of the noise-only baseline
    info.desc().append_child_value("first_sample_time", repr(t0))
    info.desc().append_child_value("sources_on_time", repr(t0 + gen.settings.baseline_seconds))
    return info


class Simulator:
    """Publishes a :class:`SignalGenerator` on LSL in real time (and the truth, optionally)."""

    def __init__(self, settings: SimulateSettings, ch_names, meg_array=None, extra=None):
        import pylsl

        self.generator = SignalGenerator(settings, ch_names, meg_array, extra)
        self.settings = settings
        # the sample clock starts now; timestamps are t0 + k / sfreq whenever run() starts
        self.t0 = pylsl.local_clock() + 0.2
        self._scale = publish_scale(self.generator.ch_types, settings.unit)
        self.outlet = pylsl.StreamOutlet(_sensor_info(self.generator, settings.stream_name, settings.source_id, settings.unit), chunk_size=0, max_buffered=360)
        self.truth = None
        if settings.truth_stream:
            self.truth = pylsl.StreamOutlet(_truth_info(self.generator, settings.stream_name + "-truth", settings.source_id + "-truth", self.t0))
        self.markers = None  # NAME-markers: one string per event, stamped with its sample's time
        if extra is not None:
            info = pylsl.StreamInfo(settings.stream_name + "-markers", "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, settings.source_id + "-markers")
            self.markers = pylsl.StreamOutlet(info)
        self.samples_pushed = 0
        self._stop = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> "Simulator":
        """The simulator ``[simulate]`` and ``[sensors]`` describe (EEG, MEG or both), with the
        event-locked sources and coupled pairs of ``[[simulate.evoked]]`` / ``[[simulate.coupled]]``
        (their markers on ``NAME-markers``)."""
        from .pipeline.events import evented_sources

        names, array = simulated_channels(settings)
        return cls(settings.simulate, names, array, extra=evented_sources(settings))

    def stop(self) -> None:
        self._stop.set()

    def run(self, duration: float | None = None) -> int:
        """Push chunks in real time for ``duration`` s (None: until :meth:`stop`). Returns samples pushed."""
        import pylsl

        sfreq = self.generator.sfreq
        chunk = self.settings.chunk_size
        t0 = self.t0
        total = None if duration is None else int(round(duration * sfreq))
        while not self._stop.is_set() and (total is None or self.samples_pushed < total):
            n = chunk if total is None else min(chunk, total - self.samples_pushed)
            ts = t0 + (self.samples_pushed + np.arange(n)) / sfreq
            wait = ts[-1] - pylsl.local_clock()
            if wait > 0:  # a real amplifier delivers a chunk when its last sample exists
                time.sleep(wait)
            data, moments = self.generator.next(n)
            self.outlet.push_chunk((data * self._scale).astype(np.float32), ts.tolist())
            if self.truth is not None:
                self.truth.push_chunk((moments * 1e9).astype(np.float32), ts.tolist())
            if self.markers is not None:
                for name, k in self.generator.markers:
                    self.markers.push_sample([name], t0 + k / sfreq)
            self.samples_pushed += n
        return self.samples_pushed

    def run_in_thread(self, duration: float | None = None) -> threading.Thread:
        th = threading.Thread(target=self.run, kwargs={"duration": duration}, daemon=True, name="rtsource-simulator")
        th.start()
        return th
