"""Issue 16's acceptance numbers on the simulator (``tools/artifact_acceptance.py``; too long for ``rtsource bench all``).

The simulator makes EEG with blinks, saccades, heartbeat and muscle bursts and keeps the
artifact-free EEG as ground truth. Setup's path calibrates the artifact correction on the
first part (which has artifacts too, as a real rest recording) and builds the operator
(fixed orientation, so a source's output keeps its oscillation); the rest is streamed
through the loop's own :class:`~rtsource.stream.operator.StreamOperator` (filter, artifact
stage, kernel) in 10-sample chunks. For each variant (none, ASR at a cutoff, projection,
projection + ASR) it measures:

- ROI band power (Hann windows of 0.5 s every 50 ms; mean over the ROI's sources) of the
  corrected output against the truth (the plain operator on the artifact-free EEG), in the
  windows that overlap blink (muscle) episodes: Pearson r, with the uncorrected r beside it;
- localisation: the source with the most band power of each simulated source's band during
  the blink windows, its distance to the true position, against the same on clean data;
- clean-data change: the variant on artifact-free EEG against the plain operator on it,
  ``var(difference) / var(plain)`` of the source output.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

# (name, centres in template mm, radius mm, band Hz); the temporal ROI pools both sides
ROIS = (
    ("occipital 8-12 Hz", ((15.0, -90.0, 5.0),), 25.0, (8.0, 12.0)),
    ("frontal 4-8 Hz", ((0.0, 45.0, 25.0),), 30.0, (4.0, 8.0)),
    ("frontal 15-25 Hz", ((0.0, 45.0, 25.0),), 30.0, (15.0, 25.0)),
    ("temporal 15-25 Hz", ((-60.0, -20.0, -5.0), (60.0, -20.0, -5.0)), 25.0, (15.0, 25.0)),
)
KINDS = ("blinks", "saccades", "ecg", "emg")


@dataclasses.dataclass
class _Sim:
    names: tuple
    sfreq: float
    calib_v: np.ndarray
    raw_uv: np.ndarray
    clean_uv: np.ndarray
    active: np.ndarray
    dipoles: tuple


def simulate(settings, calib_s: float, test_s: float) -> _Sim:
    from ..simulation_artifacts import KINDS as ALL
    from ..simulator import SignalGenerator, simulated_channels

    names, array = simulated_channels(settings)
    gen = SignalGenerator(settings.simulate, names, array)
    fs = gen.sfreq
    blocks = [gen.next_block(int(fs)) for _ in range(int(calib_s + test_s))]
    data = np.vstack([b.data_v for b in blocks])
    clean = np.vstack([b.clean_v for b in blocks])
    active = np.vstack([b.artifact_active for b in blocks])[:, [ALL.index(k) for k in KINDS]]
    n = int(calib_s * fs)
    return _Sim(tuple(names), fs, data[:n], data[n:] * 1e6, clean[n:] * 1e6, active[n:], gen.dipoles)


def _stream(bundle, x_uv: np.ndarray, settings, artifacts) -> np.ndarray:
    """The loop's operator (filter, artifact stage, kernel) over ``x_uv`` in 10-sample chunks;
    output re-aligned for the stage's delay (its last ``delay`` samples are not known: zeros)."""
    from ..stream.channels import ChannelMap
    from ..stream.operator import FilterSpec, StreamOperator

    n_ch = bundle.n_channels
    cmap = ChannelMap(np.arange(n_ch, dtype=np.int64), np.full(n_ch, 1e-6), ("uV",) * n_ch, (), False)
    p = settings.preprocess
    op = StreamOperator(bundle, cmap, 10, FilterSpec(p.highpass_hz, p.lowpass_hz, p.order), low_rank="off")
    d = 0
    if artifacts is not None and artifacts.per_chunk:
        op.cleaner = artifacts.stage(bundle.ch_names, cmap.scale, 10, sos=op._sos)
        d = op.cleaner.delay_samples
    x = x_uv.astype(np.float32)
    out = np.zeros((len(x), bundle.n_sources), dtype=np.float32)
    for s in range(0, len(x) - 9, 10):
        out[s : s + 10] = op.process(x[s : s + 10], 10)
    return np.vstack([out[d:], np.zeros((d, out.shape[1]), np.float32)])


def _windows(n: int, fs: float, win_s=0.5, step_s=0.05) -> np.ndarray:
    return np.arange(0, n - int(win_s * fs), int(step_s * fs))


def band_power(src: np.ndarray, fs: float, idx, band, starts, win_s=0.5) -> np.ndarray:
    """Mean band power over sources ``idx`` in Hann windows starting at ``starts``."""
    n = int(win_s * fs)
    f = np.fft.rfftfreq(n, 1 / fs)
    sel = (f >= band[0]) & (f <= band[1])
    w = np.hanning(n)[:, None]
    out = np.empty(len(starts))
    for i, s in enumerate(starts):
        spec = np.fft.rfft(src[s : s + n][:, idx] * w, axis=0)[sel]
        out[i] = np.mean(np.sum(np.abs(spec) ** 2, axis=0))
    return out


def _peak_error_mm(src, fs, starts, band, positions_m, true_m, win_s=0.5) -> float:
    n = int(win_s * fs)
    f = np.fft.rfftfreq(n, 1 / fs)
    sel = (f >= band[0]) & (f <= band[1])
    w = np.hanning(n)[:, None]
    acc = np.zeros(src.shape[1])
    for s in starts:
        acc += np.sum(np.abs(np.fft.rfft(src[s : s + n] * w, axis=0)[sel]) ** 2, axis=0)
    return float(np.linalg.norm(positions_m[int(np.argmax(acc))] - true_m) * 1e3)


def run(*, quick: bool = False, method: str = "dSPM", progress=print, variants=None) -> dict:
    """Measure every variant; returns ``{variant: {metric: value}}`` (see the module docstring)."""
    from ..build import build_bundle, compute_leadfield
    from ..config import Settings
    from ..inverse.covariance import estimate_noise_covariance
    from ..inverse.reference import reference_matrix
    from ..pipeline.artifacts import calibrate_artifacts
    from ..stream.calibration import Calibration
    from ..stream.channels import StreamDescription

    t_start = time.perf_counter()
    s = Settings()
    sim_settings = dataclasses.replace(s.simulate, artifacts=KINDS, spacing="ico4" if quick else s.simulate.spacing)
    s = dataclasses.replace(
        s, simulate=sim_settings, preprocess=dataclasses.replace(s.preprocess, highpass_hz=0.5),
        inverse=dataclasses.replace(s.inverse, method=method, fixed=True),
    )  # fmt: skip
    calib_s, test_s = (30.0, 20.0) if quick else (60.0, 60.0)
    sim = simulate(s, calib_s, test_s)
    fs = sim.sfreq
    progress(f"simulated {calib_s + test_s:g} s of {len(sim.names)}-channel EEG with {', '.join(KINDS)} ({time.perf_counter() - t_start:.0f} s)")
    slf = compute_leadfield(s)
    names = tuple(slf.leadfield.ch_names)
    assert names == sim.names
    m = reference_matrix(names, s.sensors.reference)
    cal_filtered = sim.calib_v
    noise = estimate_noise_covariance(cal_filtered - cal_filtered.mean(axis=0), names, method="shrunk", reference=m)
    desc = StreamDescription(name="simulator", type="EEG", source_id="", sfreq=fs, n_channels=len(names), channel_format="float32",
                             ch_names=names, ch_types=("EEG",) * len(names), ch_units=("V",) * len(names))  # fmt: skip
    rest = Calibration(sim.calib_v, np.arange(len(sim.calib_v)) / fs, names, desc, 0)
    plain = build_bundle(s, sfreq=fs, noise_cov=noise, leadfield=slf)
    positions = plain.sources.positions_m
    truth = _stream(plain, sim.clean_uv, s, None)
    raw = _stream(plain, sim.raw_uv, s, None)
    starts = _windows(len(truth) - int(0.25 * fs) - 1, fs)  # the last samples of delayed variants are unknown
    n_win = int(0.5 * fs)
    in_ep = {k: np.array([sim.active[st : st + n_win, KINDS.index(k)].any() for st in starts]) for k in ("blinks", "emg")}
    rois = []
    for name, centres, radius, band in ROIS:
        d = np.min([np.linalg.norm(positions * 1e3 - np.array(c), axis=1) for c in centres], axis=0)
        rois.append((name, np.flatnonzero(d <= radius), band))
    bp_truth = {name: band_power(truth, fs, idx, band, starts) for name, idx, band in rois}
    # localisation of the simulated oscillators (10 Hz occipital, 20 Hz motor) in blink windows
    blink_starts = starts[in_ep["blinks"]][::5]  # every 250 ms
    dip = [(dp.position_m, (dp.frequency_hz - 2.0, dp.frequency_hz + 2.0)) for dp in sim.dipoles]
    loc_clean = [_peak_error_mm(truth, fs, blink_starts, band, positions, pos) for pos, band in dip]

    def measure(bundle, artifacts, label):
        t0 = time.perf_counter()
        y = _stream(bundle, sim.raw_uv, s, artifacts)
        yc = _stream(bundle, sim.clean_uv, s, artifacts)
        cost = time.perf_counter() - t0
        res: dict = {}
        for name, idx, band in rois:
            cor = band_power(y, fs, idx, band, starts)
            unc = band_power(raw, fs, idx, band, starts)
            own = band_power(yc, fs, idx, band, starts)
            for k in ("blinks", "emg"):
                e = in_ep[k]
                res[f"{name} during {k}: r"] = round(float(np.corrcoef(cor[e], bp_truth[name][e])[0, 1]), 3)
                res[f"{name} during {k}: r uncorrected"] = round(float(np.corrcoef(unc[e], bp_truth[name][e])[0, 1]), 3)
                # the ceiling: the variant on the artifact-free EEG in the same windows (what
                # the correction itself changes, e.g. brain signal along a projected pattern)
                res[f"{name} during {k}: r of the variant on clean data"] = round(float(np.corrcoef(own[e], bp_truth[name][e])[0, 1]), 3)
        valid = slice(0, len(truth) - int(0.25 * fs) - 1)
        res["clean-data change (fraction of variance)"] = float(np.var(yc[valid] - truth[valid]) / np.var(truth[valid]))
        for (pos, band), clean_err in zip(dip, loc_clean):
            hz = f"{np.mean(band):g} Hz source"
            res[f"{hz}: localisation error in blinks, mm"] = round(_peak_error_mm(y, fs, blink_starts, band, positions, pos), 1)
            res[f"{hz}: localisation error on clean data, mm"] = round(clean_err, 1)
            res[f"{hz}: localisation error in blinks uncorrected, mm"] = round(_peak_error_mm(raw, fs, blink_starts, band, positions, pos), 1)
        res["offline processing of both streams, s"] = round(cost, 1)
        progress(json.dumps({label: res}))
        return res

    wanted = variants or (
        "none", "asr cutoff 20", "asr cutoff 10", "projection", "projection + asr cutoff 20", "projection + asr cutoff 10",
        "projection with 6 muscle", "projection with 6 muscle + asr cutoff 20",
    )  # fmt: skip
    results: dict = {"seconds": {"calibration": calib_s, "test": test_s}, "sfreq": fs, "method": method}
    for label in wanted:
        methods = tuple(p.strip() for p in label.split("+"))
        cutoff, n_muscle = 20.0, 0
        meth = []
        for part in methods:
            if part.startswith("asr"):
                meth.append("asr")
                cutoff = float(part.split()[-1])
            elif part.startswith("projection"):  # "projection" or "projection with 6 muscle"
                meth.append("projection")
                n_muscle = int(part.split()[2]) if "muscle" in part else 0
            elif part != "none":
                meth.append(part)
        if not meth:
            results[label] = measure(plain, None, label)
            continue
        a = dataclasses.replace(s.artifacts, method=tuple(meth), asr_cutoff=cutoff, n_muscle=n_muscle)
        cal = calibrate_artifacts(dataclasses.replace(s, artifacts=a), rest=rest, progress=lambda msg: None)
        bundle = build_bundle(s, sfreq=fs, noise_cov=noise, leadfield=slf, artifacts=cal) if "projection" in meth else dataclasses.replace(plain, artifacts=cal)
        results[label] = measure(bundle, cal, label)
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    return results
