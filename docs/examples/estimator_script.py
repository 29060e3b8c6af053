"""Build an operator bundle on the template head and apply it to chunks in this process.

    python docs/examples/estimator_script.py [OUT_DIR]

The walk-through is docs/api.md. The data come from rtsource's simulator, so the script
runs anywhere; in an experiment they come from your amplifier's SDK, your own LSL inlet or
a file, chunk by chunk. OUT_DIR (default: the current directory) receives the bundle and
``estimator_output.npz`` (the chunks and what the estimator made of them).
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np

import rtsource

out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
out_dir.mkdir(parents=True, exist_ok=True)

# 1. The configuration: defaults plus a band-pass and two ROIs.
settings = rtsource.load_config(Path(__file__).with_name("estimator.toml"))

# 2. 30 s of simulated 64-channel EEG in microvolts: 20 s of background activity only
#    (the noise calibration), then two oscillating sources switch on.
recording = rtsource.simulate_recording(settings, seconds=30.0)
n_rest = int(20.0 * recording.sfreq)
rest = dataclasses.replace(recording, data=recording.data[:n_rest])
task = recording.data[n_rest:]

# 3. The offline stage: lead field (cached), noise covariance from the calibration,
#    inverse operator, bundle file. Without `calibration=` it would be captured from the
#    LSL stream that [stream] names.
bundle = rtsource.setup(settings, calibration=rest, out=out_dir / "bundle.npz")
print(f"bundle: {bundle.describe()}")

# 4. The online stage in this process: the same filters, channel matching by name, kernels
#    and ROI stage as `rtsource run`, fed with the chunks the amplifier delivers.
estimator = rtsource.Estimator.from_config(
    settings, bundle, recording.ch_names, recording.ch_units, ch_types=recording.ch_types, sfreq=recording.sfreq
)
sources, rois = [], []
for start in range(0, len(task), 10):  # 10-sample chunks
    estimate = estimator.process(task[start : start + 10])
    sources.append(estimate.sources)  # (10, 5124) in bundle.output_unit
    rois.append(estimate.rois)  # (10, 2): one column per ROI
sources, rois = np.vstack(sources), np.vstack(rois)

# 5. What came out: the strongest source, and each ROI's oscillation.
peak = int(np.argmax(np.mean(sources**2, axis=0)))
print(f"strongest source: {bundle.source_labels()[peak]} at {np.round(bundle.sources.positions_m[peak] * 1e3, 1).tolist()} mm")
for j, name in enumerate(estimator.roi_names):
    spectrum = np.abs(np.fft.rfft(rois[:, j] - rois[:, j].mean()))
    freqs = np.fft.rfftfreq(len(rois), 1.0 / bundle.sfreq)
    print(f"ROI {name}: strongest rhythm {freqs[np.argmax(spectrum)]:.1f} Hz")

np.savez(
    out_dir / "estimator_output.npz",
    chunks=task, ch_names=np.array(recording.ch_names), ch_units=np.array(recording.ch_units),
    sources=sources, rois=rois, roi_names=np.array(estimator.roi_names),
)  # fmt: skip
