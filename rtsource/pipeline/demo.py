"""``rtsource demo``: simulator -> calibration -> bundle -> loop -> a consumer that checks it.

    simulator process ──LSL EEG──> calibration capture (noise only) ─> build bundle
                      ──LSL EEG──> StreamLoop ──LSL sources──> OutputMonitor (latency, localisation)
                      ──LSL truth metadata (where the sources really are) ──┘

The monitor is an ordinary LSL consumer, like a neurofeedback task would be. It measures
end-to-end latency (pull time minus the input sample's timestamp) and finds, for each
simulated source, the cortical location whose output oscillates at that source's rhythm
(a lock-in at the rhythm, or twice it for pooled magnitudes), and the overall strongest
location, and reports their distance to the true positions in mm.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..bundle import OperatorBundle
from ..config import Settings
from ..errors import StreamError
from .setup import setup

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrueSource:
    position_m: np.ndarray
    frequency_hz: float


def read_truth(stream_name: str, timeout: float = 10.0) -> tuple[tuple[TrueSource, ...], float]:
    """The simulated sources (positions, rhythms) and the LSL time they switch on, from the
    truth stream's metadata."""
    import pylsl

    found = pylsl.resolve_byprop("name", stream_name, minimum=1, timeout=timeout)
    if not found:
        raise StreamError(f"truth stream {stream_name!r} not found")
    inlet = pylsl.StreamInlet(found[0])
    root = ET.fromstring(inlet.info(timeout=timeout).as_xml())
    inlet.close_stream()
    out = []
    for ch in root.findall("desc/channels/channel"):
        loc = ch.find("location")
        pos = np.array([float(loc.find(a).text) for a in "XYZ"]) * 1e-3
        out.append(TrueSource(pos, float(ch.find("frequency_hz").text)))
    return tuple(out), float(root.find("desc/sources_on_time").text)


class OutputMonitor:
    """Consumes the source outlet: counts samples, measures latency, accumulates lock-ins."""

    def __init__(self, bundle: OperatorBundle, outlet_name: str, truths: tuple[TrueSource, ...], after_ts: float = -np.inf):
        import pylsl

        found = pylsl.resolve_byprop("name", outlet_name, minimum=1, timeout=10)
        if not found:
            raise StreamError(f"output stream {outlet_name!r} not found")
        self.inlet = pylsl.StreamInlet(found[0], max_buflen=360)
        self.inlet.open_stream(timeout=10)
        self.n_src = bundle.n_sources
        self.truths = truths
        # pooled magnitudes oscillate at twice the source rhythm; signed outputs at the rhythm
        mult = 2.0 if bundle.n_orient == 3 else 1.0
        self.freqs = np.array([t.frequency_hz * mult for t in truths])
        self.after_ts = after_ts
        self.lockin = np.zeros((2 * len(truths), self.n_src))
        self.power = np.zeros(self.n_src)
        self.samples = 0
        self.samples_used = 0
        self.latencies: list[float] = []
        self.timestamps_ok = True
        self._last_ts = None
        self._stop = threading.Event()
        self._buf = np.zeros((1024, self.n_src), dtype=np.float32)
        self._offset = self.inlet.time_correction(timeout=5)

    def run(self) -> None:
        import pylsl

        while not self._stop.is_set():
            _, ts = self.inlet.pull_chunk(timeout=0.2, max_samples=1024, dest_obj=self._buf, min_samples=1, as_numpy=True)
            n = len(ts)
            if not n:
                continue
            now = pylsl.local_clock()
            self.latencies.append(now - (ts[-1] + self._offset))
            self.samples += n
            y = self._buf[:n].astype(np.float64)
            keep = ts > self.after_ts
            if keep.any():
                y, t = y[keep], ts[keep]
                self.power += (y**2).sum(axis=0)
                phase = 2 * np.pi * np.outer(self.freqs, t)
                basis = np.vstack([np.cos(phase), np.sin(phase)])  # (2 n_truth, n)
                self.lockin += basis @ y
                self.samples_used += len(t)

    def stop(self) -> None:
        self._stop.set()

    def localisation(self, bundle: OperatorBundle) -> dict:
        pos = bundle.sources.positions_m
        truth_pos = np.array([t.position_m for t in self.truths]) if self.truths else np.zeros((0, 3))
        result = {"per_source": []}
        k = len(self.truths)
        for j, t in enumerate(self.truths):
            amp = self.lockin[j] ** 2 + self.lockin[j + k] ** 2
            peak = int(np.argmax(amp))
            result["per_source"].append(
                {
                    "rhythm_hz": t.frequency_hz,
                    "true_mm": np.round(t.position_m * 1e3, 1).tolist(),
                    "found_mm": np.round(pos[peak] * 1e3, 1).tolist(),
                    "error_mm": round(float(np.linalg.norm(pos[peak] - t.position_m)) * 1e3, 1),
                }
            )
        if len(truth_pos) and self.samples_used:
            peak = int(np.argmax(self.power))
            d = np.linalg.norm(truth_pos - pos[peak], axis=1)
            result["strongest"] = {
                "found_mm": np.round(pos[peak] * 1e3, 1).tolist(),
                "nearest_true_mm": np.round(truth_pos[int(np.argmin(d))] * 1e3, 1).tolist(),
                "error_mm": round(float(d.min()) * 1e3, 1),
            }
        return result


def start_simulator_process(settings_path: str | None, extra: list[str]) -> subprocess.Popen:
    """Run ``rtsource simulate`` in its own process, as a real amplifier would be (until terminated)."""
    cmd = [sys.executable, "-m", "rtsource.cli", "simulate"] + extra
    if settings_path:
        cmd += ["--config", settings_path]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run_demo(
    settings: Settings,
    *,
    config_path: str | None,
    duration: float,
    calibration_seconds: float,
    bundle_path: Path,
    progress=lambda msg: None,
    gui: bool = False,
) -> dict:
    """Run the whole demo; returns the summary (see module docstring)."""
    from ..build import compute_leadfield
    from ..session import capture, feature_options, loop_options, operator_rebuilder
    from ..stream.inlet import StreamSelector
    from ..stream.loop import StreamLoop

    sim = settings.simulate
    baseline = calibration_seconds + 10.0  # the sources stay off while we calibrate
    viewer = None
    if gui:  # fails at once, with the install hint, if the GUI extra is missing
        from ..display import start_viewer_process

        viewer = start_viewer_process(settings.output.name)
    proc = start_simulator_process(config_path, ["--baseline", f"{baseline:g}", "--modality", settings.sensors.modality])
    t_start = time.perf_counter()
    try:
        progress(f"waiting for the simulated stream {sim.stream_name!r}")
        deadline = time.monotonic() + 120.0
        while True:
            if proc.poll() is not None:
                raise StreamError(f"the simulator exited with code {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                truths, sources_on = read_truth(sim.stream_name + "-truth", timeout=2.0)
                break
            except StreamError:
                if time.monotonic() > deadline:
                    raise
        selector = StreamSelector(sim.stream_name, "", sim.source_id)
        progress(f"capturing {calibration_seconds:g} s of noise-only calibration")
        cal = capture(settings, selector, calibration_seconds, resolve_timeout=30.0)
        if cal.timestamps[-1] >= sources_on:
            raise StreamError("the calibration overlapped the simulated sources; increase the baseline")
        progress("computing the lead field (cached after the first run)")
        slf = compute_leadfield(settings)
        data_cal = None
        if settings.inverse.method == "LCMV":
            import pylsl

            time.sleep(max(0.0, sources_on - pylsl.local_clock()))
            seconds = min(settings.data_cov.seconds, 20.0)
            progress(f"capturing {seconds:g} s of data with the sources on, for the beamformer")
            data_cal = capture(settings, selector, seconds)
        bundle = setup(settings, out=bundle_path, sfreq=cal.stream.sfreq, calibration=cal, data_calibration=data_cal, leadfield=slf, progress=lambda m: None)
        progress(f"bundle: {bundle.describe()} -> {bundle_path}")
        opts = loop_options(settings, str(bundle_path), selector=selector, resolve_timeout=30.0)
        loop = StreamLoop(bundle, opts, features=feature_options(settings, bundle), rebuilder=operator_rebuilder())
        loop.connect()
        import pylsl

        monitor = OutputMonitor(bundle, settings.output.name, truths, after_ts=sources_on)
        mon_thread = threading.Thread(target=monitor.run, daemon=True)
        mon_thread.start()
        wait = sources_on - pylsl.local_clock()
        progress(f"running the loop for {duration:g} s (sources switch on in {max(wait, 0):.0f} s)")
        stats = loop.run(duration=max(wait, 0) + duration)
        time.sleep(0.5)  # let the last published chunk reach the monitor
        monitor.stop()
        mon_thread.join(timeout=5)
        loop.close()
        lat = np.array(monitor.latencies) if monitor.latencies else np.array([np.nan])
        summary = {
            "bundle": bundle.describe(),
            "loop": stats.summary(),
            # what the loop reported on its events stream (bad channels, swaps, gaps, NaN episodes, ...)
            "events": {k: v for k, v in sorted(loop.events.counts.items()) if k not in ("started", "stopped")},
            "bad_channels": sorted({e["channel"] for e in loop.events.recent if e["event"] == "bad_channel" and e.get("reason") != "recovered"}),
            "consumer": {
                "samples_received": monitor.samples,
                # samples_out is counted where the loop's outlet accepted them, the received
                # ones by this separate consumer: a difference is a real loss
                "missing": stats.samples_out - monitor.samples,
                "end_to_end_latency_ms_p50": round(float(np.percentile(lat, 50)) * 1e3, 3),
                "end_to_end_latency_ms_p99": round(float(np.percentile(lat, 99)) * 1e3, 3),
            },
            "localisation": monitor.localisation(bundle),
            "wall_seconds": round(time.perf_counter() - t_start, 1),
        }
        return summary
    finally:
        if viewer is not None:
            from ..display import stop_viewer_process

            stop_viewer_process(viewer)
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            err = ""
        if proc.returncode not in (0, -15, None) and err:
            logger.warning("simulator exited with %s: %s", proc.returncode, err[-2000:])
