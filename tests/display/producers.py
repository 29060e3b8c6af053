"""Real LSL producers of an rtsource output, following :mod:`rtsource.stream.outputs`.

The loop does not publish its ROI, band-power, telemetry and events streams yet, so the
viewer's tests (and ``tools/screenshot_viewer.py --synthetic``) publish them here exactly as
the contract describes: names ``NAME``, ``NAME-roi``, ``NAME-bandpower``, ``NAME-telemetry``,
``NAME-events`` with their types, channel labels and a ``desc/rtsource`` block carrying
``output_name`` and ``bundle``. The source stream's header is made by the loop's own
:func:`rtsource.stream.outlets.make_source_info` from a real bundle file.

The source values are magnitudes like a pooled dSPM output: a noise floor everywhere plus
two active patches (occipital 10 Hz, left central 20 Hz bursts) whose envelopes wax and
wane, so the cortex, ROI traces and band powers all have something to show.
"""

from __future__ import annotations

import gc
import json
import threading
from pathlib import Path

import numpy as np
import pylsl

from rtsource.anatomy.source_space import SourceSpace
from rtsource.anatomy.template import template_source_space
from rtsource.bundle import OperatorBundle, save_bundle
from rtsource.stream import outputs
from rtsource.stream.channels import StreamDescription
from rtsource.stream.outlets import make_source_info

#: (name, centre in mm (template frame), radius in mm, rhythm in Hz)
PATCHES = (
    ("occipital", (15.0, -92.0, 2.0), 22.0, 10.0),
    ("left central", (-38.0, -22.0, 58.0), 18.0, 20.0),
)

#: ROIs: name -> centre in mm; every source belongs to the nearest centre of its hemisphere.
ROIS = {
    "lh-occipital": (-15.0, -90.0, 5.0),
    "rh-occipital": (15.0, -90.0, 5.0),
    "lh-central": (-38.0, -22.0, 55.0),
    "rh-central": (38.0, -22.0, 55.0),
    "lh-frontal": (-30.0, 40.0, 20.0),
    "rh-frontal": (30.0, 40.0, 20.0),
    "lh-temporal": (-55.0, -20.0, -10.0),
    "rh-temporal": (55.0, -20.0, -10.0),
}
BANDS = {"alpha": (8.0, 12.0), "beta": (16.0, 24.0)}
BANDPOWER_RATE_HZ = 10.0
EEG_CHANNELS = ("Fp1", "Fp2", "C3", "C4", "O1", "O2", "T7", "T8")


def template_bundle(spacing: str = "ico4", *, n_orient: int = 3, sfreq: float = 250.0, seed: int = 0, sources: SourceSpace | None = None) -> OperatorBundle:
    """A valid bundle on the template cortex (random operator: only its layout matters here)."""
    rng = np.random.default_rng(seed)
    space = sources if sources is not None else template_source_space(spacing)
    n_src, n_chan = space.n_sources, len(EEG_CHANNELS)
    return OperatorBundle(
        kernel=rng.normal(size=(n_src * n_orient, n_chan)) * 1e5,
        noise_norm=np.ones(n_src) * 1e5,
        n_orient=n_orient,
        method="dSPM",
        output_unit="",
        ch_names=EEG_CHANNELS,
        ch_types=("eeg",) * n_chan,
        ch_units=("V",) * n_chan,
        reference="average",
        sfreq=sfreq,
        sources=space,
        channel_positions_m=rng.normal(size=(n_chan, 3)) * 0.09,
        channel_frame="template",
        params={"snr": 3.0, "lambda2": 1 / 9, "loose": 0.2, "depth": 0.8},
        provenance={"test": "display producers"},
    )


def write_template_bundle(directory: Path, spacing: str = "ico4", **kwargs) -> tuple[OperatorBundle, Path]:
    bundle = template_bundle(spacing, **kwargs)
    path = Path(directory) / f"viewer_{spacing}.npz"
    save_bundle(bundle, path)
    return bundle, path


def _rtsource_block(info, output_name: str, bundle_path: str) -> None:
    block = info.desc().append_child("rtsource")
    block.append_child_value("output_name", output_name)
    block.append_child_value("bundle", bundle_path)


def _labelled_info(name, type_, labels, units, sfreq, fmt, source_id, output_name, bundle_path):
    info = pylsl.StreamInfo(name, type_, len(labels), sfreq, fmt, source_id)
    chans = info.desc().append_child("channels")
    for label, unit in zip(labels, units):
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        if unit:
            ch.append_child_value("unit", unit)
    _rtsource_block(info, output_name, bundle_path)
    return info


class OutputProducer:
    """Publishes the five streams of one rtsource output in real time from a thread.

    Parameters
    ----------
    output_name : str
        ``NAME`` of the streams.
    bundle, bundle_path : OperatorBundle, path
        The bundle whose sources the source stream carries (its header names the path).
    streams : iterable of str
        Which of "sources", "roi", "bandpower", "telemetry", "events" to publish.
    chunk : int
        Samples per push.
    rois : mapping, optional
        ROI name -> centre (mm); a different set gives the ROI stream a different layout.
    seed : int
        Noise seed.
    """

    def __init__(self, output_name: str, bundle: OperatorBundle, bundle_path, *, streams=("sources", "roi", "bandpower", "telemetry", "events"),
                 chunk: int = 10, rois: dict | None = None, seed: int = 0, source_id_suffix: str = ""):
        self.output_name = output_name
        self.bundle = bundle
        self.bundle_path = str(bundle_path)
        self.sfreq = float(bundle.sfreq)
        self.chunk = int(chunk)
        self.rois = dict(rois or ROIS)
        self.streams = tuple(streams)
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples_pushed = 0
        self.outlets: dict[str, pylsl.StreamOutlet] = {}
        sid = f"{output_name}{source_id_suffix}"
        pos_mm = bundle.sources.positions_m * 1e3
        # spatial maps of the active patches and the ROI averaging matrix
        self._patch_maps = np.array([np.exp(-np.sum((pos_mm - np.array(c)) ** 2, axis=1) / (2 * (r / 2) ** 2)) for _, c, r, _ in PATCHES], np.float32)
        self._patch_freqs = np.array([f for *_, f in PATCHES])
        names = list(self.rois)
        centres = np.array([self.rois[n] for n in names])
        hemi = bundle.sources.hemisphere
        d = np.sum((pos_mm[:, None, :] - centres[None]) ** 2, axis=2)
        side = np.array([0 if n.startswith("lh") else 1 if n.startswith("rh") else -1 for n in names])
        d[(side[None, :] >= 0) & (side[None, :] != hemi[:, None])] = np.inf
        owner = np.argmin(d, axis=1)
        w = np.zeros((bundle.n_sources, len(names)), np.float32)
        w[np.arange(bundle.n_sources), owner] = 1.0
        w /= np.maximum(w.sum(axis=0, keepdims=True), 1.0)
        self._roi_weights = w
        self.roi_names = tuple(names)
        self.band_labels = tuple(f"{r}/{b}" for r in names for b in BANDS)
        self._roi_history = np.zeros((int(self.sfreq), len(names)), np.float32)  # 1 s for the band powers
        self._hist_next = 0
        self._noise = np.abs(self._rng.standard_normal((97, bundle.n_sources), dtype=np.float32)) * 0.8 + 0.6

        desc = StreamDescription(name="rtsource-test-eeg", type="EEG", source_id="test-eeg", sfreq=self.sfreq, n_channels=len(bundle.ch_names),
                                 channel_format="float32", ch_names=bundle.ch_names, ch_types=("EEG",) * len(bundle.ch_names),
                                 ch_units=("volts",) * len(bundle.ch_names))
        if "sources" in self.streams:
            info = make_source_info(bundle, desc, name=output_name, type_=outputs.SOURCES_TYPE, source_id=sid, bundle_path=self.bundle_path)
            self.outlets["sources"] = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=30)
        if "roi" in self.streams:
            info = _labelled_info(outputs.stream_name(output_name, outputs.ROI_SUFFIX), outputs.ROI_TYPE, self.roi_names, ("",) * len(names),
                                  self.sfreq, pylsl.cf_float32, sid + outputs.ROI_SUFFIX, output_name, self.bundle_path)
            self.outlets["roi"] = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=30)
        if "bandpower" in self.streams:
            info = _labelled_info(outputs.stream_name(output_name, outputs.BANDPOWER_SUFFIX), outputs.BANDPOWER_TYPE, self.band_labels,
                                  ("",) * len(self.band_labels), BANDPOWER_RATE_HZ, pylsl.cf_float32, sid + outputs.BANDPOWER_SUFFIX, output_name, self.bundle_path)
            self.outlets["bandpower"] = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=30)
        if "telemetry" in self.streams:
            labels = tuple(lab for lab, _ in outputs.TELEMETRY_CHANNELS)
            units = tuple(u for _, u in outputs.TELEMETRY_CHANNELS)
            info = _labelled_info(outputs.stream_name(output_name, outputs.TELEMETRY_SUFFIX), outputs.TELEMETRY_TYPE, labels, units,
                                  outputs.TELEMETRY_RATE_HZ, pylsl.cf_double64, sid + outputs.TELEMETRY_SUFFIX, output_name, self.bundle_path)
            self.outlets["telemetry"] = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=30)
        if "events" in self.streams:
            info = pylsl.StreamInfo(outputs.stream_name(output_name, outputs.EVENTS_SUFFIX), outputs.EVENTS_TYPE, 1, 0.0, pylsl.cf_string, sid + outputs.EVENTS_SUFFIX)
            _rtsource_block(info, output_name, self.bundle_path)
            self.outlets["events"] = pylsl.StreamOutlet(info)

    # ---- values ----
    def source_chunk(self, start: int, n: int) -> np.ndarray:
        """``n`` samples of pooled source magnitudes from sample index ``start``."""
        t = (start + np.arange(n)) / self.sfreq
        envelope = 0.75 + 0.25 * np.sin(2 * np.pi * np.array([0.23, 0.37])[None, :] * t[:, None] + np.array([0.0, 1.7]))
        carrier = 0.5 * (1.0 + np.sin(2 * np.pi * self._patch_freqs[None, :] * t[:, None]))
        amp = (12.0 * envelope * carrier).astype(np.float32)  # (n, n_patches)
        # the noise floor cycles through a bank of rows drawn once: a 20k-source stream at
        # 500 Hz would otherwise spend more CPU on random numbers than the viewer on drawing
        rows = (start + np.arange(n)) % len(self._noise)
        return self._noise[rows] + amp @ self._patch_maps

    def _telemetry_sample(self, now_s: float) -> list[float]:
        v = {
            "samples_in": self.samples_pushed, "samples_out": self.samples_pushed, "lost": 0, "skipped": 0, "gaps": 0, "gap_seconds": 0.0,
            "nan_samples": 0, "backlog": 0, "input_rate_hz": self.sfreq, "output_rate_hz": self.sfreq,
            "process_ms_p50": 2.1, "process_ms_p99": 6.4, "latency_ms_p50": 4.6, "latency_ms_p99": 17.9, "bad_channels": 1,
            "operator_swaps": 1, "last_swap_ms": 38.0, "covariance_age_s": 0.0, "waiting": 0, "clock_jumps": 0,
            "hot_swap_ready": 1, "rebuild_failures": 0, "commands_refused": 0, "push_failures": 0, "excluded_channels": 0,
            "effective_rate_hz": self.sfreq, "max_buffered_s": 5.0, "rss_mb": 300.0, "head_displacement_mm": 2.5,
            "artifact_delay_ms": 250.0, "artifact_repaired": 0.05, "artifact_channels": 0.2, "artifact_ms_p50": 0.05, "artifact_ms_p99": 0.4,
            "artifact_episodes": 3,
        }
        return [float(v[lab]) for lab, _ in outputs.TELEMETRY_CHANNELS]

    # ---- running ----
    def start(self) -> "OutputProducer":
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"producer:{self.output_name}")
        self._thread.start()
        return self

    def _event(self, **fields) -> None:
        if "events" in self.outlets:
            fields.setdefault("time", pylsl.local_clock())
            self.outlets["events"].push_sample([json.dumps(fields)])

    def _run(self) -> None:
        t0 = pylsl.local_clock() + 0.05
        next_band = next_tele = next_state = t0
        while not self._stop.is_set():
            n = self.chunk
            ts = t0 + (self.samples_pushed + np.arange(n)) / self.sfreq
            wait = ts[-1] - pylsl.local_clock()
            if wait > 0:
                self._stop.wait(wait)
            if self._stop.is_set():
                break
            y = self.source_chunk(self.samples_pushed, n)
            if "sources" in self.outlets:
                self.outlets["sources"].push_chunk(y, ts.tolist())
            roi = y @ self._roi_weights
            for row in roi:  # keep 1 s of ROI history (write index) for the band powers
                self._roi_history[self._hist_next] = row
                self._hist_next = (self._hist_next + 1) % len(self._roi_history)
            if "roi" in self.outlets:
                self.outlets["roi"].push_chunk(np.ascontiguousarray(roi), ts.tolist())
            self.samples_pushed += n
            if ts[-1] >= next_state:
                # LSL gives a consumer only what is pushed after it connected: repeat the
                # state, so a viewer started later still learns the bad channel
                if next_state == t0:
                    self._event(event="started")
                next_state = ts[-1] + 2.0
                self._event(event="bad_channel", channel="T8", reason="flat for 2 s")
            if "bandpower" in self.outlets and ts[-1] >= next_band:
                next_band = ts[-1] + 1.0 / BANDPOWER_RATE_HZ
                hist = np.concatenate([self._roi_history[self._hist_next :], self._roi_history[: self._hist_next]])  # oldest first
                spec = np.abs(np.fft.rfft(hist - hist.mean(axis=0), axis=0)) ** 2 / len(hist)
                freqs = np.fft.rfftfreq(len(hist), 1.0 / self.sfreq)
                powers = [spec[(freqs >= lo) & (freqs <= hi)].mean(axis=0) for lo, hi in BANDS.values()]
                sample = np.stack(powers, axis=1).ravel()  # ROI-major: roi/alpha, roi/beta, ...
                self.outlets["bandpower"].push_sample(sample.astype(np.float32).tolist(), float(ts[-1]))
            if "telemetry" in self.outlets and ts[-1] >= next_tele:
                next_tele = ts[-1] + 1.0 / outputs.TELEMETRY_RATE_HZ
                self.outlets["telemetry"].push_sample(self._telemetry_sample(ts[-1]), float(ts[-1]))

    def stop(self) -> None:
        """Stop pushing and destroy the outlets (consumers see the streams go away)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.outlets.clear()
        gc.collect()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
