"""Make the README's screenshot of ``rtsource view`` from the real pipeline, and measure its frame rate.

    simulator process ──LSL EEG──> calibration ─> bundle (template, ico5: 20484 sources)
                      ──LSL EEG──> StreamLoop ──> NAME (sources)                ──┐
                                   ├──> NAME-telemetry, NAME-events            ├──> rtsource view (process,
                                        └─ relay: NAME-roi, NAME-bandpower        ──┘     --screenshot, --report)

The loop publishes the sources, telemetry and events; it does not publish ROI and band-power
streams yet, so the relay here derives them from the loop's output, with the names, types and
channel layouts of :mod:`rtsource.stream.outputs`. The viewer runs as ``python -m
rtsource.display.app`` in its own process and saves the window once the simulated sources
have been on for a few seconds; it measures frames per second with new vertex colours over
the 3 s before the shot.

Headless machines need an X server with OpenGL (Mesa's software renderer under Xvfb):

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1920x1080x24" python tools/screenshot_viewer.py

Options: ``--out`` (default docs/viewer.png), ``--spacing ico4|ico5``, ``--size``, ``--view``.

``--synthetic`` measures the viewer alone: instead of the pipeline, the test suite's LSL
producers (``tests/display/producers.py``: the same five streams, synthetic activity on the
template) publish 20484 sources at 500 Hz in chunks of 10, i.e. 50 new frames of colours per
second, and the viewer runs uncapped for ``--seconds``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: ROIs: name -> centre in mm (template frame); each source joins the nearest centre of its hemisphere.
ROIS = {
    "lh-occipital": (-15.0, -90.0, 5.0),
    "rh-occipital": (15.0, -90.0, 5.0),
    "lh-parietal": (-30.0, -60.0, 50.0),
    "rh-parietal": (30.0, -60.0, 50.0),
    "lh-central": (-38.0, -22.0, 55.0),
    "rh-central": (38.0, -22.0, 55.0),
    "lh-frontal": (-30.0, 40.0, 20.0),
    "rh-frontal": (30.0, 40.0, 20.0),
}
# pooled (loose-orientation) outputs are magnitudes: a 10 Hz source shows up at 10 and 20 Hz
BANDS = {"alpha": (8.0, 12.0), "beta": (15.0, 25.0)}
BANDPOWER_RATE_HZ = 10.0


class Relay:
    """Publishes NAME-roi and NAME-bandpower from the loop's output."""

    def __init__(self, bundle, output_name: str, bundle_path: str):
        import pylsl

        from rtsource.stream import outputs

        sfreq = bundle.sfreq
        names = list(ROIS)
        pos = bundle.sources.positions_m * 1e3
        centres = np.array([ROIS[n] for n in names])
        d = np.sum((pos[:, None, :] - centres[None]) ** 2, axis=2)
        side = np.array([0 if n.startswith("lh") else 1 for n in names])
        d[side[None, :] != bundle.sources.hemisphere[:, None]] = np.inf
        owner = np.argmin(d, axis=1)
        near = d[np.arange(len(pos)), owner] < 35.0**2  # a ROI is the sources within 35 mm of its centre
        w = np.zeros((bundle.n_sources, len(names)), np.float32)
        w[np.flatnonzero(near), owner[near]] = 1.0
        self.weights = w / np.maximum(w.sum(axis=0, keepdims=True), 1.0)
        self.history = np.zeros((int(sfreq), len(names)), np.float32)  # 1 s, written with an index
        self.next = 0
        self.sfreq = sfreq
        self.next_band = 0.0

        def info(name, type_, labels, units, rate, fmt):
            i = pylsl.StreamInfo(outputs.stream_name(output_name, name), type_, len(labels), rate, fmt, f"{output_name}{name}-relay")
            chans = i.desc().append_child("channels")
            for lab, unit in zip(labels, units):
                ch = chans.append_child("channel")
                ch.append_child_value("label", lab)
                if unit:
                    ch.append_child_value("unit", unit)
            block = i.desc().append_child("rtsource")
            block.append_child_value("output_name", output_name)
            block.append_child_value("bundle", bundle_path)
            return pylsl.StreamOutlet(i, chunk_size=0, max_buffered=30)

        unit = bundle.output_unit
        self.roi = info(outputs.ROI_SUFFIX, outputs.ROI_TYPE, names, [unit] * len(names), sfreq, pylsl.cf_float32)
        bands = [f"{n}/{b}" for n in names for b in BANDS]
        self.band = info(outputs.BANDPOWER_SUFFIX, outputs.BANDPOWER_TYPE, bands, [""] * len(bands), BANDPOWER_RATE_HZ, pylsl.cf_float32)
        self.freqs = np.fft.rfftfreq(len(self.history), 1.0 / sfreq)

    def on_chunk(self, ts: np.ndarray, out: np.ndarray) -> None:
        """Called by the loop after each published chunk."""
        roi = np.ascontiguousarray(out @ self.weights)
        self.roi.push_chunk(roi, ts.tolist())
        for row in roi:
            self.history[self.next] = row
            self.next = (self.next + 1) % len(self.history)
        if ts[-1] >= self.next_band:
            self.next_band = ts[-1] + 1.0 / BANDPOWER_RATE_HZ
            h = np.concatenate([self.history[self.next :], self.history[: self.next]])
            spec = np.abs(np.fft.rfft(h - h.mean(axis=0), axis=0)) ** 2 / len(h)
            powers = [spec[(self.freqs >= lo) & (self.freqs <= hi)].mean(axis=0) for lo, hi in BANDS.values()]
            self.band.push_sample(np.stack(powers, axis=1).ravel().astype(np.float32).tolist(), float(ts[-1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "viewer.png"))
    p.add_argument("--spacing", choices=("ico4", "ico5"), default="ico5")
    p.add_argument("--size", default="1600x900")
    p.add_argument("--view", default="top")
    p.add_argument("--calibration", type=float, default=10.0)
    p.add_argument("--active", type=float, default=6.0, help="seconds the sources are on before the shot")
    p.add_argument("--max-fps", type=float, default=0.0, help="viewer frame cap (0: uncapped, to measure)")
    p.add_argument("--average-ms", type=float, default=50.0, help="the viewer colours the cortex by the mean over this many ms")
    p.add_argument("--synthetic", action="store_true", help="measure the viewer fed by synthetic producers (no loop, no simulator)")
    p.add_argument("--seconds", type=float, default=20.0, help="--synthetic: how long the viewer runs")
    args = p.parse_args()

    import pylsl

    if args.synthetic:
        return synthetic(args)

    from rtsource.lsl_config import configure_liblsl

    configure_liblsl()
    from rtsource.build import build_bundle, compute_leadfield
    from rtsource.bundle import save_bundle
    from rtsource.config import Settings
    from rtsource.pipeline.demo import read_truth, start_simulator_process
    from rtsource.errors import StreamError
    from rtsource.inverse.covariance import estimate_noise_covariance
    from rtsource.inverse.reference import reference_matrix
    from rtsource.stream.calibration import capture_calibration
    from rtsource.stream.inlet import StreamSelector
    from rtsource.stream.loop import LoopOptions, StreamLoop
    from rtsource.session import operator_rebuilder
    from rtsource.stream.operator import FilterSpec

    settings = Settings()
    settings = dataclasses.replace(settings, source_space=dataclasses.replace(settings.source_space, spacing=args.spacing))
    sim = settings.simulate
    output_name = f"rtsource-screenshot-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="rtsource-screenshot-"))
    baseline = args.calibration + 14.0
    proc = start_simulator_process(None, ["--baseline", f"{baseline:g}"])
    viewer = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                truths, sources_on = read_truth(sim.stream_name + "-truth", timeout=2.0)
                break
            except StreamError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
        selector = StreamSelector(sim.stream_name, "EEG", sim.source_id)
        print(f"calibrating for {args.calibration:g} s ...", flush=True)
        cal = capture_calibration(selector, tuple(settings.sensors.channels), args.calibration, resolve_timeout=30.0)
        m = reference_matrix(tuple(settings.sensors.channels), settings.sensors.reference)
        cov = estimate_noise_covariance(cal.data, cal.ch_names, method=settings.noise_cov.method, reference=m)
        bundle = build_bundle(settings, sfreq=cal.stream.sfreq, noise_cov=cov, leadfield=compute_leadfield(settings))
        bundle_path = tmp / f"demo_{args.spacing}_bundle.npz"
        save_bundle(bundle, bundle_path)
        print(f"bundle: {bundle.describe()}", flush=True)
        pre = settings.preprocess
        loop = StreamLoop(bundle, LoopOptions(selector=selector, resolve_timeout=30.0, max_chunk=settings.stream.max_chunk,
                                              filter=FilterSpec(pre.highpass_hz, pre.lowpass_hz, pre.order), output_name=output_name,
                                              bundle_path=str(bundle_path)), rebuilder=operator_rebuilder())
        loop.connect()
        relay = Relay(bundle, output_name, str(bundle_path))
        thread = loop.run_in_thread(on_chunk=relay.on_chunk)
        wait_on = max(0.0, sources_on - pylsl.local_clock())
        report = tmp / "report.json"
        cmd = [sys.executable, "-m", "rtsource.display.app", output_name, "--screenshot", args.out, "--report", str(report),
               "--size", args.size, "--view", args.view, "--max-fps", str(args.max_fps), "--average-ms", str(args.average_ms),
               "--screenshot-after", f"{wait_on + args.active:.1f}"]
        print(f"sources switch on in {wait_on:.0f} s; viewer: {' '.join(cmd[1:])}", flush=True)
        viewer = subprocess.run(cmd, timeout=wait_on + args.active + 180)
        loop.stop()
        thread.join(timeout=10)
        loop.close()
        if viewer.returncode != 0 or not report.exists():
            print(f"the viewer failed (exit {viewer.returncode})", file=sys.stderr)
            return 1
        rep = json.loads(report.read_text())
        stats = loop.stats.summary()
        print(json.dumps({"viewer": rep, "loop": stats, "load_average": os.getloadavg()}, indent=2))
        print(f"\nsaved {args.out}: {rep['vertices']} vertices, {rep['measured_fps']} frames/s with new colours "
              f"(all frames {rep['measured_fps_all_frames']}/s) over the 3 s before the shot, {rep['measured_cpu_ms_per_frame']} ms of CPU "
              f"per frame ({rep['measured_cpu_share']:.2f} of a core); load average {os.getloadavg()[0]:.2f}")
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def synthetic(args) -> int:
    """Feed the viewer from the test producers and report its frame rate."""
    from tests.display.producers import OutputProducer, write_template_bundle

    tmp = Path(tempfile.mkdtemp(prefix="rtsource-fps-"))
    bundle, path = write_template_bundle(tmp, args.spacing, sfreq=500.0)
    name = f"rtsource-fps-{os.getpid()}"
    report = tmp / "report.json"
    cmd = [sys.executable, "-m", "rtsource.display.app", name, "--report", str(report), "--size", args.size, "--view", args.view,
           "--max-fps", str(args.max_fps), "--screenshot", str(tmp / "fps.png"), "--screenshot-after", str(max(args.seconds - 3.0, 0.0))]
    with OutputProducer(name, bundle, path, chunk=10):
        load_before = os.getloadavg()[0]
        viewer = subprocess.run(cmd, timeout=args.seconds + 120)
    if viewer.returncode != 0:
        return 1
    rep = json.loads(report.read_text())
    print(json.dumps(rep, indent=2))
    print(f"\n{rep['vertices']} vertices, window {args.size}: {rep['measured_fps']} frames/s with new colours over the last 3 s "
          f"(whole run: {rep['mean_fps']} frames/s); {rep['measured_cpu_ms_per_frame']} ms of CPU per frame, the viewer got "
          f"{rep['measured_cpu_share']:.2f} of a core; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
